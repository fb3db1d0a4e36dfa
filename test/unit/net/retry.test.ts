import { describe, expect, it, vi } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { backoffDelayMs, defaultRetryPolicy, withRetry } from '../../../src/net/retry.js';

const tiny = { retries: 3, minDelayMs: 1, maxDelayMs: 2, factor: 2, jitter: false };

describe('withRetry', () => {
  it('retries retryable errors until one attempt succeeds', async () => {
    const fn = vi.fn(async (attempt: number) => {
      if (attempt < 3) throw new OtaError('NETWORK_RESET', 'reset');
      return 'done';
    });
    await expect(withRetry(fn, { operation: 'op', logger: silentLogger, policy: tiny })).resolves.toBe('done');
    expect(fn).toHaveBeenCalledTimes(3);
  });

  it('never retries an error marked not retryable', async () => {
    const fn = vi.fn(async () => {
      throw new OtaError('HTTP_NOT_FOUND', 'gone');
    });
    await expect(withRetry(fn, { operation: 'op', logger: silentLogger, policy: tiny })).rejects.toMatchObject({ code: 'HTTP_NOT_FOUND' });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('gives up after the retry budget with the last error', async () => {
    const fn = vi.fn(async () => {
      throw new OtaError('NETWORK_TIMEOUT', 'slow');
    });
    await expect(withRetry(fn, { operation: 'op', logger: silentLogger, policy: tiny })).rejects.toMatchObject({ code: 'NETWORK_TIMEOUT' });
    expect(fn).toHaveBeenCalledTimes(4);
  });

  it('applies the extra filter: retryable storage errors are not retried when the filter says so', async () => {
    const fn = vi.fn(async () => {
      throw new OtaError('DISK_FULL', 'full');
    });
    const error = withRetry(fn, { operation: 'op', logger: silentLogger, policy: tiny, shouldRetry: (e) => e.category === 'network' });
    await expect(error).rejects.toMatchObject({ code: 'DISK_FULL' });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('turns plain thrown errors into OtaErrors (ECONNRESET stays a retryable reset)', async () => {
    const fn = vi.fn(async (attempt: number) => {
      if (attempt === 1) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
      throw new Error('bug');
    });
    await expect(withRetry(fn, { operation: 'op', logger: silentLogger, policy: tiny })).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(fn).toHaveBeenCalledTimes(2);
  });

  it('stops waiting when the signal aborts during a backoff, with CANCELLED', async () => {
    const controller = new AbortController();
    const fn = vi.fn(async () => {
      setTimeout(() => controller.abort(), 5);
      throw new OtaError('NETWORK_RESET', 'reset');
    });
    const pending = withRetry(fn, { operation: 'op', logger: silentLogger, policy: { ...tiny, minDelayMs: 60_000, maxDelayMs: 60_000 }, signal: controller.signal });
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('keeps an OtaError abort reason (a deadline) instead of CANCELLED', async () => {
    const controller = new AbortController();
    controller.abort(new OtaError('NETWORK_TIMEOUT', 'deadline'));
    await expect(withRetry(async () => 1, { operation: 'op', logger: silentLogger, signal: controller.signal })).rejects.toMatchObject({
      code: 'NETWORK_TIMEOUT',
    });
  });

  it('logs each failed attempt with its code and the retries left', async () => {
    const logger = new MemoryLogger();
    let n = 0;
    await withRetry(
      async () => {
        if (n++ === 0) throw new OtaError('HTTP_STATUS', 'boom', { details: { status: 503 } });
        return true;
      },
      { operation: 'fetch snapshot.json', logger, policy: tiny },
    );
    expect(logger.lines).toEqual([
      expect.objectContaining({ level: 'warn', fields: expect.objectContaining({ code: 'HTTP_STATUS', retriesLeft: 3, operation: 'fetch snapshot.json' }) }),
    ]);
  });
});

describe('backoffDelayMs', () => {
  it('grows exponentially up to the ceiling', () => {
    const policy = { ...defaultRetryPolicy, minDelayMs: 1_000, factor: 2, maxDelayMs: 5_000 };
    expect([0, 1, 2, 3, 4].map((i) => backoffDelayMs(policy, i))).toEqual([1_000, 2_000, 4_000, 5_000, 5_000]);
  });
});

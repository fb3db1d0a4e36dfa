import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { createDownloader } from '../../../src/net/download.js';
import type { DownloaderOptions, ProgressEvent } from '../../../src/net/download.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import type { HttpClient } from '../../../src/net/http-client.js';
import { createFaultyServer } from '../../support/faulty-server.js';
import type { FaultyServer } from '../../support/faulty-server.js';
import { rejection } from '../../support/assertions.js';

const SIZE = 200 * 1024;
const content = randomBytes(SIZE);
const sha256 = createHash('sha256').update(content).digest('hex');

const fastRetry = { retries: 3, minDelayMs: 5, maxDelayMs: 20, factor: 2, jitter: true };

let dir: string;
let server: FaultyServer;
let http: HttpClient;

function makeHttp(overrides: Partial<Parameters<typeof createHttpClient>[0]> = {}): HttpClient {
  return createHttpClient({
    connectTimeoutMs: 1_000,
    headersTimeoutMs: 1_000,
    idleTimeoutMs: 1_000,
    userAgent: 'otad-test',
    logger: silentLogger,
    ...overrides,
  });
}

function makeDownloader(overrides: Partial<DownloaderOptions> = {}) {
  return createDownloader({
    http,
    clock: systemClock,
    logger: silentLogger,
    retry: fastRetry,
    // Loopback moves megabytes per millisecond: only a deliberate drip falls below 1 kB/s. The
    // window is generous because server and client share one event loop on a busy machine.
    minThroughput: { bytesPerSec: 1_000, graceMs: 1_000 },
    deadlineMs: 20_000,
    checkIntervalMs: 10,
    ...overrides,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'otad-net-'));
  server = await createFaultyServer({ '/file': content });
  http = makeHttp();
});

afterEach(async () => {
  await http.close();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('downloader', () => {
  it('downloads a file in one attempt, verifies it and moves it into place', async () => {
    const dest = join(dir, 'pkg.tar.gz');
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result).toEqual({ path: dest, bytes: SIZE, sha256, resumedFrom: 0, attempts: 1 });
    expect((await readFile(dest)).equals(content)).toBe(true);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('resumes after a connection reset mid-body, and the server sent each byte only once', async () => {
    server.setFaults({ resetAfterBytes: 70_000 });
    const dest = join(dir, 'pkg');
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.attempts).toBe(2);
    expect(result.resumedFrom).toBe(70_000);
    expect(server.requests.map((r) => r.range)).toEqual([null, 'bytes=70000-']);
    // Resumed, not restarted: the total on the wire is the file, not twice the file.
    expect(server.bytesSent()).toBe(SIZE);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('maps a TCP reset (ECONNRESET) to NETWORK_RESET and retries, sending at most one extra cut-off part', async () => {
    server.setFaults({ resetAfterBytes: 100_000, resetMode: 'rst' });
    const logger = new MemoryLogger();
    const dest = join(dir, 'pkg');
    const result = await makeDownloader({ logger }).download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.attempts).toBe(2);
    expect(logger.lines.find((l) => l.level === 'warn')?.fields.code).toBe('NETWORK_RESET');
    // A reset may discard bytes still in flight, so the resume point is wherever the data stopped.
    expect(server.bytesSent()).toBeLessThanOrEqual(SIZE + 100_000);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('resumes from a partial file left by an earlier process, re-hashing it first', async () => {
    const dest = join(dir, 'pkg');
    await writeFile(`${dest}.partial`, content.subarray(0, 123_456));
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.resumedFrom).toBe(123_456);
    expect(server.requests[0]?.range).toBe('bytes=123456-');
    expect(server.bytesSent()).toBe(SIZE - 123_456);
    expect(result.sha256).toBe(sha256);
  });

  it('retries after 500 and 503 and then succeeds', async () => {
    server.setFaults({ statusesFirst: [500, 503] });
    const logger = new MemoryLogger();
    const dest = join(dir, 'pkg');
    const result = await makeDownloader({ logger }).download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.attempts).toBe(3);
    expect(server.requests.map((r) => r.status)).toEqual([500, 503, 200]);
    const failures = logger.lines.filter((l) => l.message.includes('attempt') && l.level === 'warn');
    expect(failures.map((l) => l.fields.code)).toEqual(['HTTP_STATUS', 'HTTP_STATUS']);
  });

  it('times out a server that hangs before sending headers, then retries and succeeds', async () => {
    await http.close();
    http = makeHttp({ headersTimeoutMs: 100 });
    server.setFaults({ hangFirst: 1 });
    const logger = new MemoryLogger();
    const result = await makeDownloader({ logger }).download({ url: server.url(), dest: join(dir, 'pkg'), expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.attempts).toBe(2);
    expect(logger.lines.find((l) => l.level === 'warn')?.fields.code).toBe('NETWORK_TIMEOUT');
  });

  it('stops a drip-feeding server after the grace period with NETWORK_TOO_SLOW, retries with backoff, then fails cleanly', async () => {
    server.setFaults({ dripMs: 20 });
    const logger = new MemoryLogger();
    const dest = join(dir, 'pkg');
    const error = await rejection(
      makeDownloader({ logger, retry: { ...fastRetry, retries: 2 }, minThroughput: { bytesPerSec: 1_000, graceMs: 150 } }).download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 }),
    );
    expect(error.code).toBe('NETWORK_TOO_SLOW');
    expect(error.retryable).toBe(true);
    expect(server.requests).toHaveLength(3);
    const warned = logger.lines.filter((l) => l.level === 'warn').map((l) => l.fields.code);
    expect(warned).toEqual(['NETWORK_TOO_SLOW', 'NETWORK_TOO_SLOW', 'NETWORK_TOO_SLOW']);
    // The few dripped bytes are kept for a later resume; nothing reached dest.
    expect(existsSync(dest)).toBe(false);
    expect(server.bytesSent()).toBeLessThan(SIZE);
  });

  it('stops a chunked body at the signed length when the server sends more, and removes the partial', async () => {
    server.setFaults({ extraBytes: 50_000 });
    const dest = join(dir, 'pkg');
    const error = await rejection(makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 }));
    expect(error.code).toBe('TRUST_LENGTH_MISMATCH');
    expect(server.requests).toHaveLength(1);
    expect(existsSync(`${dest}.partial`)).toBe(false);
    expect(existsSync(dest)).toBe(false);
  });

  it('refuses a body whose Content-Length exceeds the signed length before reading it', async () => {
    server.setFaults({ extraBytes: 50_000, announceExtra: true });
    const dest = join(dir, 'pkg');
    const error = await rejection(makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 }));
    expect(error.code).toBe('TRUST_LENGTH_MISMATCH');
    expect(error.details?.announced).toBe(SIZE + 50_000);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('rejects a body with one flipped bit as TRUST_HASH_MISMATCH and leaves nothing at dest', async () => {
    server.setFaults({ flipBit: { byte: 4242, bit: 3 } });
    const dest = join(dir, 'pkg');
    const error = await rejection(makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 }));
    expect(error.code).toBe('TRUST_HASH_MISMATCH');
    expect(error.retryable).toBe(false);
    expect(server.requests).toHaveLength(1);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.partial`)).toBe(false);
  });

  it('restarts from zero when a server answers a Range request with 200', async () => {
    server.setFaults({ resetAfterBytes: 60_000, ignoreRange: true });
    const dest = join(dir, 'pkg');
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result.resumedFrom).toBe(0);
    expect(server.requests.map((r) => [r.range, r.status])).toEqual([
      [null, 200],
      ['bytes=60000-', 200],
    ]);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('discards the partial when a server lies about the range, and fetches the whole file again', async () => {
    server.setFaults({ resetAfterBytes: 60_000, lieRange: true });
    const dest = join(dir, 'pkg');
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(server.requests.map((r) => r.range)).toEqual([null, 'bytes=60000-', null]);
    expect(result.attempts).toBe(3);
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('does not retry a 404', async () => {
    const error = await rejection(
      makeDownloader().download({ url: server.url('/missing'), dest: join(dir, 'pkg'), expectedLength: SIZE, expectedSha256: sha256 }),
    );
    expect(error.code).toBe('HTTP_NOT_FOUND');
    expect(error.retryable).toBe(false);
    expect(server.requests).toHaveLength(1);
  });

  it('returns an existing complete destination without touching the network', async () => {
    const dest = join(dir, 'pkg');
    await writeFile(dest, content);
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: SIZE, expectedSha256: sha256 });
    expect(result).toEqual({ path: dest, bytes: SIZE, sha256, resumedFrom: 0, attempts: 0 });
    expect(server.requests).toHaveLength(0);
  });

  it('stops when the caller aborts, reports CANCELLED and keeps the partial for a later resume', async () => {
    server.setFaults({ dripMs: 5 });
    const controller = new AbortController();
    const dest = join(dir, 'pkg');
    const events: ProgressEvent[] = [];
    const pending = makeDownloader({ minThroughput: { bytesPerSec: 0, graceMs: 1_000 }, progressIntervalMs: 0 }).download({
      url: server.url(),
      dest,
      expectedLength: SIZE,
      expectedSha256: sha256,
      signal: controller.signal,
      onProgress: (event) => {
        events.push(event);
        if (event.bytes >= 5) controller.abort();
      },
    });
    const error = await rejection(pending);
    expect(error.code).toBe('CANCELLED');
    expect(server.requests).toHaveLength(1);
    expect(existsSync(dest)).toBe(false);
    expect((await readFile(`${dest}.partial`)).equals(content.subarray(0, events.at(-1)?.bytes ?? 0))).toBe(true);
  });

  it('fails with NETWORK_TIMEOUT when the overall deadline passes, without further attempts', async () => {
    server.setFaults({ dripMs: 5 });
    const error = await rejection(
      makeDownloader({ deadlineMs: 100, minThroughput: { bytesPerSec: 0, graceMs: 1_000 } }).download({
        url: server.url(),
        dest: join(dir, 'pkg'),
        expectedLength: SIZE,
        expectedSha256: sha256,
      }),
    );
    expect(error.code).toBe('NETWORK_TIMEOUT');
    expect(error.details?.deadline).toBe(true);
    expect(server.requests).toHaveLength(1);
  });

  it('handles an empty target without a request', async () => {
    const empty = createHash('sha256').digest('hex');
    const dest = join(dir, 'empty');
    const result = await makeDownloader().download({ url: server.url(), dest, expectedLength: 0, expectedSha256: empty });
    expect(result).toMatchObject({ bytes: 0, sha256: empty });
    expect((await readFile(dest)).length).toBe(0);
  });

  it('reports throttled progress ending with the whole file', async () => {
    const events: ProgressEvent[] = [];
    await makeDownloader().download({
      url: server.url(),
      dest: join(dir, 'pkg'),
      expectedLength: SIZE,
      expectedSha256: sha256,
      onProgress: (event) => events.push(event),
    });
    expect(events.length).toBeGreaterThan(0);
    expect(events.length).toBeLessThanOrEqual(102); // at most one per 1 % plus the final one
    expect(events.at(-1)).toMatchObject({ bytes: SIZE, total: SIZE, etaMs: expect.any(Number) });
    const seen = events.map((e) => e.bytes);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
  });
});

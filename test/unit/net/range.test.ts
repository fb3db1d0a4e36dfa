import { describe, expect, it } from 'vitest';
import { parseContentRange, planRangeResponse } from '../../../src/net/range.js';

const base = { url: 'http://127.0.0.1/pkg', expectedLength: 1000 };

describe('parseContentRange', () => {
  it.each([
    ['bytes 0-999/1000', { start: 0, end: 999, total: 1000 }],
    ['bytes 500-999/*', { start: 500, end: 999, total: null }],
    ['bytes 10-5/1000', null],
    ['bytes 0-1000/1000', null],
    ['items 0-1/2', null],
    [undefined, null],
  ])('%s → %j', (value, expected) => {
    expect(parseContentRange(value)).toEqual(expected);
  });
});

describe('planRangeResponse', () => {
  it('appends a fresh 200 with the signed length', () => {
    expect(planRangeResponse({ ...base, requestedOffset: 0, status: 200, headers: { 'content-length': '1000' } }).kind).toBe('append');
  });

  it('restarts from zero when a Range request gets 200 (server ignored it)', () => {
    expect(planRangeResponse({ ...base, requestedOffset: 400, status: 200, headers: {} }).kind).toBe('restart');
  });

  it('appends a 206 that starts exactly at the requested offset', () => {
    const decision = planRangeResponse({ ...base, requestedOffset: 400, status: 206, headers: { 'content-range': 'bytes 400-999/1000' } });
    expect(decision.kind).toBe('append');
  });

  it('discards the partial when a 206 starts elsewhere or has no Content-Range (a lying server)', () => {
    const cases: Array<Record<string, string>> = [{ 'content-range': 'bytes 0-999/1000' }, {}];
    for (const headers of cases) {
      const decision = planRangeResponse({ ...base, requestedOffset: 400, status: 206, headers });
      expect(decision).toMatchObject({ kind: 'reject', discardPartial: true, error: { code: 'HTTP_STATUS', retryable: true } });
    }
  });

  it('refuses a file whose announced total differs from the signed length', () => {
    const longer = planRangeResponse({ ...base, requestedOffset: 0, status: 200, headers: { 'content-length': '5000' } });
    expect(longer).toMatchObject({ kind: 'reject', discardPartial: true, error: { code: 'TRUST_LENGTH_MISMATCH', retryable: false } });
    const ranged = planRangeResponse({ ...base, requestedOffset: 400, status: 206, headers: { 'content-range': 'bytes 400-1999/2000' } });
    expect(ranged).toMatchObject({ kind: 'reject', error: { code: 'TRUST_LENGTH_MISMATCH' } });
  });

  it('rejects other success statuses as a final HTTP_STATUS', () => {
    const decision = planRangeResponse({ ...base, requestedOffset: 0, status: 204, headers: {} });
    expect(decision).toMatchObject({ kind: 'reject', discardPartial: false, error: { code: 'HTTP_STATUS', retryable: false } });
  });
});

import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../../src/server/rate-limit.js';

describe('per-source token bucket', () => {
  it('allows a burst, then refuses with the wait until the next token, flagging only the first refusal', () => {
    const limiter = new RateLimiter({ perSecond: 2, burst: 3 });
    expect([0, 0, 0].map(() => limiter.take('a', 0).allowed)).toEqual([true, true, true]);
    expect(limiter.take('a', 0)).toEqual({ allowed: false, retryAfterMs: 500, firstRefusal: true });
    expect(limiter.take('a', 100)).toMatchObject({ allowed: false, firstRefusal: false });
    expect(limiter.take('b', 100).allowed).toBe(true);
    expect(limiter.take('a', 600).allowed).toBe(true);
    expect(limiter.take('a', 600)).toMatchObject({ allowed: false, firstRefusal: true });
  });

  it('refills to the burst and no further, and forgets the least recently seen source past its limit', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 2, maxSources: 2 });
    limiter.take('a', 0);
    limiter.take('a', 0);
    expect([0, 0, 0].map(() => limiter.take('a', 60_000).allowed)).toEqual([true, true, false]);
    limiter.take('b', 60_000);
    limiter.take('c', 60_000); // drops a, the least recently seen
    expect([0, 0].map(() => limiter.take('a', 60_000).allowed)).toEqual([true, true]);
  });
});

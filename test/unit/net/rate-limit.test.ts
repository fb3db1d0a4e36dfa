/**
 * The token bucket's accounting with an injected clock: what it makes the downloader wait is
 * exactly the bytes beyond the burst at the cap, whatever the chunk sizes.
 */
import { describe, expect, it } from 'vitest';
import { createRateLimiter } from '../../../src/net/rate-limit.js';

function manualTime(): { now: () => number; sleep: (ms: number) => Promise<void>; slept: number[] } {
  let t = 1000;
  const slept: number[] = [];
  return {
    now: () => t,
    sleep: async (ms) => {
      slept.push(ms);
      t += ms;
    },
    slept,
  };
}

describe('download rate cap (token bucket)', () => {
  it('passes the burst at once and then holds the cap: total wait = (bytes - burst) / rate', async () => {
    const time = manualTime();
    const limiter = createRateLimiter({ bytesPerSec: 100_000, burstBytes: 20_000, now: time.now, sleep: time.sleep });
    for (const chunk of [10_000, 10_000, 64_000, 1_000, 65_536, 9_464]) await limiter.take(chunk);
    const stats = limiter.stats();
    expect(stats.bytes).toBe(160_000);
    // 140 000 bytes beyond the burst at 100 000 B/s: 1.4 s of waiting, and the clock moved only by waiting.
    expect(time.slept.reduce((a, b) => a + b, 0)).toBeCloseTo(1400, 6);
    expect(stats.waitedMs).toBeCloseTo(1400, 6);
    expect(time.now() - stats.startedAt!).toBeCloseTo(1400, 6);
    // The first two chunks fit in the burst; the first wait is the third chunk's 64 000 bytes at the cap.
    expect(time.slept[0]).toBeCloseTo(640, 6);
  });

  it('refills over time up to the burst only: a pause earns no more than the burst', async () => {
    const time = manualTime();
    const limiter = createRateLimiter({ bytesPerSec: 50_000, burstBytes: 10_000, now: time.now, sleep: time.sleep });
    await limiter.take(10_000);
    expect(time.slept).toEqual([]);
    await time.sleep(60_000); // a minute without reading
    time.slept.length = 0;
    await limiter.take(30_000);
    // Only the burst was saved up: 20 000 bytes owed at 50 000 B/s.
    expect(time.slept).toEqual([400]);
    expect(limiter.burstBytes).toBe(10_000);
  });

  it('refuses a cap that is not a positive number', () => {
    expect(() => createRateLimiter({ bytesPerSec: 0 })).toThrow(/positive/);
  });
});

import { describe, expect, it } from 'vitest';
import { createProgressThrottle } from '../../../src/net/progress.js';
import { createThroughputGuard } from '../../../src/net/throughput.js';

describe('throughput guard', () => {
  const floor = { bytesPerSec: 1_000, graceMs: 5_000 };

  it('says nothing during the grace period, however slow', () => {
    const guard = createThroughputGuard(floor, 0);
    guard.record(1);
    expect(guard.check(4_999)).toBeNull();
  });

  it('flags a drip feed of one byte a second once the grace period is over', () => {
    const guard = createThroughputGuard(floor, 0);
    for (let t = 1; t <= 5; t++) guard.record(1);
    expect(guard.check(5_000)).toEqual({ rateBps: 1, windowMs: 5_000, windowBytes: 5 });
  });

  it('judges each window on its own: a fast start does not excuse a later stall', () => {
    const guard = createThroughputGuard(floor, 0);
    guard.record(1_000_000);
    expect(guard.check(5_000)).toBeNull();
    guard.record(10);
    expect(guard.check(10_000)).toMatchObject({ windowBytes: 10 });
  });

  it('is off when the floor is zero', () => {
    const guard = createThroughputGuard({ bytesPerSec: 0, graceMs: 1 }, 0);
    expect(guard.check(1_000_000)).toBeNull();
  });
});

describe('progress throttle', () => {
  it('emits at most once per interval unless another 1 % arrived', () => {
    const throttle = createProgressThrottle({ total: 10_000, startMs: 0, startBytes: 0, intervalMs: 250 });
    expect(throttle.update(10, 0)).not.toBeNull();
    expect(throttle.update(20, 100)).toBeNull(); // 10 bytes < 1 % and 100 ms < 250 ms
    expect(throttle.update(200, 150)).not.toBeNull(); // another 1 %
    expect(throttle.update(201, 400)).not.toBeNull(); // the interval passed
  });

  it('computes rate and ETA from the bytes of this call only', () => {
    const throttle = createProgressThrottle({ total: 10_000, startMs: 0, startBytes: 4_000, intervalMs: 250 });
    expect(throttle.final(6_000, 1_000)).toEqual({ bytes: 6_000, total: 10_000, rateBps: 2_000, etaMs: 2_000 });
  });

  it('reports an unknown ETA before any time has passed', () => {
    const throttle = createProgressThrottle({ total: 100, startMs: 50, startBytes: 0 });
    expect(throttle.final(0, 50)).toEqual({ bytes: 0, total: 100, rateBps: 0, etaMs: null });
  });
});

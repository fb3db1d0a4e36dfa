import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deviceDelayMs, inRollout, rolloutBucket } from '../../../src/schedule/spread.js';

const HOUR = 3_600_000;
/** 10,000 device ids shaped like systemd machine ids (32 hex digits). */
const machineIds = Array.from({ length: 10_000 }, (_, i) => createHash('md5').update(`robot ${i}`).digest('hex'));
/** ...and like sequential serial numbers, the worst case for a weak hash. */
const serials = Array.from({ length: 10_000 }, (_, i) => `RB-2026-${String(i).padStart(6, '0')}`);

function deciles(values: number[], width: number): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const v of values) counts[Math.floor((v / width) * 10)]! += 1;
  return counts;
}

describe('deviceDelayMs', () => {
  it('is deterministic per device and key, an integer inside [0, window)', () => {
    const a = deviceDelayMs('robot-1', 'robot-ai/check', HOUR);
    expect(deviceDelayMs('robot-1', 'robot-ai/check', HOUR)).toBe(a);
    expect(Number.isInteger(a)).toBe(true);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(HOUR);
    expect(deviceDelayMs('robot-1', 'robot-ai/install', HOUR)).not.toBe(a);
    expect(deviceDelayMs('robot-1', 'robot-ai/check', 0)).toBe(0);
  });

  it.each([['machine ids', machineIds], ['serial numbers', serials]])(
    'spreads 10,000 %s uniformly: each decile of the window holds 1000 ± 100',
    (_name, ids) => {
      const delays = ids.map((id) => deviceDelayMs(id, 'robot-ai', HOUR));
      for (const d of delays) expect(d >= 0 && d < HOUR).toBe(true);
      for (const count of deciles(delays, HOUR)) expect(Math.abs(count - 1000)).toBeLessThanOrEqual(100);
    },
  );

  it('rejects a negative window or an empty device id', () => {
    expect(() => deviceDelayMs('robot-1', 'k', -1)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => deviceDelayMs('', 'k', HOUR)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('rollout', () => {
  it.each([['machine ids', machineIds], ['serial numbers', serials]])(
    'buckets 10,000 %s uniformly over [0, 100): each decile holds 1000 ± 100',
    (_name, ids) => {
      const buckets = ids.map((id) => rolloutBucket(id, 'robot-ai', '2.4.0'));
      for (const b of buckets) expect(b >= 0 && b < 100).toBe(true);
      for (const count of deciles(buckets, 100)) expect(Math.abs(count - 1000)).toBeLessThanOrEqual(100);
    },
  );

  it('takes every device at 100 and none at 0', () => {
    expect(machineIds.every((id) => inRollout(id, 'robot-ai', '2.4.0', 100))).toBe(true);
    expect(machineIds.some((id) => inRollout(id, 'robot-ai', '2.4.0', 0))).toBe(false);
  });

  it('is monotone: raising the percent only adds devices, lowering it only removes them', () => {
    const ids = machineIds.slice(0, 2000);
    let previous = new Set<string>();
    for (const percent of [0, 1, 5, 10, 25, 50, 75, 99, 100]) {
      const members = new Set(ids.filter((id) => inRollout(id, 'robot-ai', '2.4.0', percent)));
      for (const id of previous) expect(members.has(id)).toBe(true);
      previous = members;
    }
  });

  it('takes about the given share of the fleet', () => {
    const share = machineIds.filter((id) => inRollout(id, 'robot-ai', '2.4.0', 25)).length;
    expect(Math.abs(share - 2500)).toBeLessThanOrEqual(250);
  });

  it('picks a different slice of the fleet for each release and is independent of the delay', () => {
    const first = machineIds.filter((id) => inRollout(id, 'robot-ai', '2.4.0', 10));
    const second = new Set(machineIds.filter((id) => inRollout(id, 'robot-ai', '2.5.0', 10)));
    const overlap = first.filter((id) => second.has(id)).length;
    expect(overlap).toBeLessThan(200); // about 10% of 1000 by chance, far from all of them
    const earlyDelayers = machineIds.filter((id) => deviceDelayMs(id, 'robot-ai', HOUR) < HOUR / 10);
    const inFirst = earlyDelayers.filter((id) => first.includes(id)).length;
    expect(inFirst).toBeLessThan(200);
  });

  it('rejects a percentage outside 0..100', () => {
    for (const bad of [-1, 101, Number.NaN]) {
      expect(() => inRollout('robot-1', 'robot-ai', '2.4.0', bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });
});

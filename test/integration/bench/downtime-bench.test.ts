/**
 * The downtime benchmark, short: one update under a real otad and one stop/start of the baseline.
 * Only the shape and the arithmetic are asserted, never a time.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchDowntime, downtimeLines } from '../../../src/bench/downtime-bench.js';
import { REPO_ROOT } from '../../../src/bench/downtime-world.js';

describe('npm run bench downtime', () => {
  it.skipIf(!existsSync(join(REPO_ROOT, 'dist/src/cli/otad.js')))('measures the split of real updates and of the stop/start baseline, and prints them', async () => {
    const r = await benchDowntime({ runs: 2 });
    expect(r.all).toHaveLength(2);
    for (const s of [...r.all, r.baseline]) {
      for (const v of Object.values(s)) expect(v).toBeGreaterThanOrEqual(0);
      expect(s.ownMs).toBeCloseTo(s.totalMs - s.waitMs, 1);
    }
    for (const s of r.all) expect(s.stopMs + s.switchMs + s.startMs + s.probeMs).toBeCloseTo(s.totalMs, 1);
    expect(r.baseline.switchMs).toBe(0);
    const text = downtimeLines(r).join('\n');
    expect(text).toMatch(/median of 2 updates \(probe interval 100 ms\)/);
    expect(text).toMatch(/stop +[\d.]+ ms +switch +[\d.]+ ms +start +[\d.]+ ms +first green probe +[\d.]+ ms/);
    expect(text).toMatch(/otad's own share +[\d.]+ ms \(min [\d.]+, max [\d.]+\) +goal < 100 ms \(median\): (met|NOT met)/);
    expect(text).toContain('baseline, the same process stopped and started by a service manager');
  }, 240_000);
});

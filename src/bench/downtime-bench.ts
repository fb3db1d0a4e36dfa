/**
 * `npm run bench downtime`: the downtime of the demo product's update, measured by a real otad
 * (the built CLI, src/bench/downtime-world.ts) over several updates, as otad records it in each
 * run's history: the median of each part (stop, switch, start, first green probe) and of otad's
 * own share (everything but the product's start-up and the probe interval; goal < 100 ms).
 *
 * Baseline: systemd is not PID 1 here, so `systemctl restart` cannot run; the baseline is the same
 * process stopped and started the way a service manager does it (SIGTERM, wait for the exit, spawn
 * it again, through otad's own process service manager), then probed with the same health check
 * at the same interval until it answers green. What otad adds over that is the switch, its
 * bookkeeping (every downtime mark and state is a committed SQLite transaction) and its probe
 * round.
 */
import type { Downtime } from '../store/downtime.js';
import { PRODUCT, startDowntimeWorld, waitFor } from './downtime-world.js';

export interface DowntimeSplit {
  totalMs: number;
  stopMs: number;
  switchMs: number;
  startMs: number;
  probeMs: number;
  waitMs: number;
  ownMs: number;
}

export interface DowntimeBenchResult {
  runs: number;
  intervalMs: number;
  /** Median of each part over the runs (each part's own median: they need not add up). */
  median: DowntimeSplit;
  all: DowntimeSplit[];
  /** The stop/start baseline, median over the same number of restarts. */
  baseline: DowntimeSplit;
  goalMs: number;
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? Number.NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function medianSplit(splits: readonly DowntimeSplit[]): DowntimeSplit {
  const keys = ['totalMs', 'stopMs', 'switchMs', 'startMs', 'probeMs', 'waitMs', 'ownMs'] as const;
  return Object.fromEntries(keys.map((k) => [k, median(splits.map((s) => s[k]))])) as unknown as DowntimeSplit;
}

const splitOf = (d: Downtime): DowntimeSplit => ({ totalMs: d.totalMs!, stopMs: d.stopMs, switchMs: d.switchMs, startMs: d.startMs, probeMs: d.probeMs, waitMs: d.waitMs, ownMs: d.otadMs! });

export async function benchDowntime(opts: { runs?: number; intervalMs?: number } = {}): Promise<DowntimeBenchResult> {
  const runs = Math.max(1, opts.runs ?? 7);
  const intervalMs = opts.intervalMs ?? 100;
  const w = await startDowntimeWorld({ probation: { window: '1s', interval: `${intervalMs}ms`, failureThreshold: 3 }, checkins: false });
  try {
    const all: DowntimeSplit[] = [];
    for (let i = 1; i <= runs; i++) {
      const version = `1.${i}.0`;
      await w.publish(version);
      const s = await w.update(version);
      if (s.lastOutcome !== 'committed') throw new Error(`update to ${version} ended ${s.lastOutcome}: ${s.error?.message ?? ''}`);
      const d = s.lastDowntime;
      if (d === null || d.totalMs === null || d.otadMs === null) throw new Error(`run ${s.runId}: no measured downtime (${d?.note ?? 'none'})`);
      all.push(splitOf(d));
    }

    // The baseline: the same process, stopped and started by a service manager, probed until green.
    await w.stopOtad();
    const baselines: DowntimeSplit[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await w.units.stop(PRODUCT);
      const t1 = performance.now();
      await w.units.start(PRODUCT);
      const t2 = performance.now();
      let wait = 0;
      for (;;) {
        const r0 = performance.now();
        const h = await w.health();
        if (h?.ok) break;
        await new Promise((r) => setTimeout(r, intervalMs));
        wait += performance.now() - r0;
      }
      const t3 = performance.now();
      baselines.push({ totalMs: t3 - t0, stopMs: t1 - t0, switchMs: 0, startMs: t2 - t1, probeMs: t3 - t2, waitMs: wait, ownMs: t3 - t0 - wait });
      await waitFor('the service to answer', async () => (await w.health())?.ok === true, 30_000);
    }
    return { runs, intervalMs, median: medianSplit(all), all, baseline: medianSplit(baselines), goalMs: 100 };
  } finally {
    await w.close();
  }
}

/** The lines `npm run bench` prints. */
export function downtimeLines(r: DowntimeBenchResult): string[] {
  const f = (ms: number) => `${ms.toFixed(1).padStart(7)} ms`;
  const m = r.median;
  const b = r.baseline;
  return [
    `downtime of the demo update, real otad, median of ${r.runs} updates (probe interval ${r.intervalMs} ms):`,
    `  stop ${f(m.stopMs)}   switch ${f(m.switchMs)}   start ${f(m.startMs)}   first green probe ${f(m.probeMs)} (of which start-up + interval ${f(m.waitMs)})`,
    `  total ${f(m.totalMs)}   otad's own share ${f(m.ownMs)} (min ${Math.min(...r.all.map((s) => s.ownMs)).toFixed(1)}, max ${Math.max(...r.all.map((s) => s.ownMs)).toFixed(1)})   goal < ${r.goalMs} ms (median): ${m.ownMs < r.goalMs ? 'met' : 'NOT met'}`,
    `  baseline, the same process stopped and started by a service manager and probed until green (no systemd here):`,
    `  stop ${f(b.stopMs)}   start ${f(b.startMs)}   first green probe ${f(b.probeMs)} (of which start-up + interval ${f(b.waitMs)})   total ${f(b.totalMs)}   own ${f(b.ownMs)}`,
    `  ratio total ours / baseline ${(m.totalMs / b.totalMs).toFixed(2)}; otad's share over the baseline's own ${(m.ownMs - b.ownMs).toFixed(1)} ms`,
  ];
}

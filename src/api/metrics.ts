/**
 * Prometheus metrics from the event bus and the daemon's status, in a registry of their own (never
 * prom-client's global one, so two daemons in one test process do not share counters).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { STATE_NAMES } from '../../machines/types.js';
import type { DaemonControl } from '../daemon/control.js';

export interface Metrics {
  readonly registry: Registry;
  close(): void;
}

/** Steps whose progress counts as downloaded bytes. */
const DOWNLOAD_STEP = /download|stage|fetch/i;

export function createMetrics(control: DaemonControl): Metrics {
  const registry = new Registry();
  const registers = [registry];

  new Gauge({
    name: 'otad_product_state',
    help: 'Current lifecycle state of each product (1 for the current state, 0 for the others)',
    labelNames: ['product', 'state'],
    registers,
    collect() {
      this.reset();
      for (const p of control.status().products) {
        for (const s of STATE_NAMES) this.set({ product: p.product, state: s }, p.state === s ? 1 : 0);
      }
    },
  });
  const transitions = new Counter({ name: 'otad_transitions_total', help: 'Lifecycle transitions', labelNames: ['product', 'from', 'to'], registers });
  const durations = new Histogram({
    name: 'otad_run_duration_seconds',
    help: 'Duration of finished update runs',
    labelNames: ['product', 'outcome'],
    buckets: [1, 10, 60, 300, 900, 1800, 3600, 7200],
    registers,
  });
  const bytes = new Counter({ name: 'otad_download_bytes_total', help: 'Bytes downloaded, from progress events', labelNames: ['product'], registers });
  const failures = new Counter({ name: 'otad_failures_total', help: 'Runs that ended with an error, by error code', labelNames: ['product', 'code'], registers });
  const lastCheck = new Gauge({
    name: 'otad_last_successful_check_timestamp_seconds',
    help: 'When the last check that reached the update server succeeded (Unix time)',
    labelNames: ['product'],
    registers,
  });

  // Downtime (src/store/downtime.ts): the last measured run's split per product, and every measured total.
  new Gauge({
    name: 'otad_last_downtime_seconds',
    help: "Downtime of the product's newest run that stopped its services, by part: total (first stop to first all-green probe round), stop, switch, start, probe, wait (the part of probe that is the product's start-up and the probe interval), otad (total - wait). Absent while the run is still down or when the total could not be measured",
    labelNames: ['product', 'part', 'green_on'],
    registers,
    collect() {
      this.reset();
      for (const p of control.status().products) {
        const d = p.lastDowntime;
        if (d === null || d.totalMs === null || d.otadMs === null) continue;
        const parts: Record<string, number> = { total: d.totalMs, stop: d.stopMs, switch: d.switchMs, start: d.startMs, probe: d.probeMs, wait: d.waitMs, otad: d.otadMs };
        for (const [part, ms] of Object.entries(parts)) this.set({ product: p.product, part, green_on: d.greenOn ?? 'unknown' }, ms / 1000);
      }
    },
  });
  const downtimeBuckets = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
  const downtime = new Histogram({
    name: 'otad_downtime_seconds',
    help: 'Downtime of each finished run that stopped services (first stop to first all-green probe round), by part: total, otad (total minus the product start-up and probe interval), stop, switch, start, probe',
    labelNames: ['product', 'part', 'outcome'],
    buckets: downtimeBuckets,
    registers,
  });

  // A check succeeded when the machine left `checking` on its step's done event.
  const lastCheckAt = new Map<string, number>();
  for (const p of control.status().products) {
    if (p.lastCheckAt !== null && p.error === null && p.lastOutcome !== 'failed') lastCheckAt.set(p.product, p.lastCheckAt);
  }
  for (const [product, at] of lastCheckAt) lastCheck.set({ product }, at / 1000);

  const seenBytes = new Map<string, number>();
  const offs = [
    control.bus.subscribe('transition', (t) => {
      transitions.inc({ product: t.product, from: t.from, to: t.to });
      if (t.from === 'checking' && t.event.startsWith('xstate.done.actor')) lastCheck.set({ product: t.product }, t.at / 1000);
    }),
    control.bus.subscribe('progress', (p) => {
      if (!DOWNLOAD_STEP.test(p.step)) return;
      // Progress reports running totals per step of a run: count only what is new.
      const key = `${p.runId}\u0000${p.step}`;
      const before = seenBytes.get(key) ?? 0;
      if (p.bytes > before) bytes.inc({ product: p.product }, p.bytes - before);
      seenBytes.set(key, Math.max(before, p.bytes));
      if (seenBytes.size > 100) seenBytes.delete(seenBytes.keys().next().value as string);
    }),
    control.bus.subscribe('notification', (n) => {
      if (n.kind !== 'run-ended' || !n.runId) return;
      if (n.error) failures.inc({ product: n.product, code: n.error.code });
      const run = control.history({ runId: n.runId, limit: 1 })[0];
      if (run?.endedAt) durations.observe({ product: n.product, outcome: n.outcome ?? 'unknown' }, (run.endedAt - run.startedAt) / 1000);
      const d = run?.downtime;
      if (d && d.totalMs !== null && d.otadMs !== null) {
        const outcome = n.outcome ?? 'unknown';
        const parts: Record<string, number> = { total: d.totalMs, otad: d.otadMs, stop: d.stopMs, switch: d.switchMs, start: d.startMs, probe: d.probeMs };
        for (const [part, ms] of Object.entries(parts)) downtime.observe({ product: n.product, part, outcome }, ms / 1000);
      }
    }),
  ];
  return {
    registry,
    close() {
      for (const off of offs) off();
    },
  };
}

/**
 * Downtime of a run: from the first service stop to the first probation round in which every
 * health probe is green, on the new release (validate) or on the old one (after a rollback).
 *
 * The steps mark the boundaries they already have (stop, stopped, switched, started, green) and
 * every mark is written to the `downtime` table at once, so a crash or a power cut never loses
 * what was measured before it. The time since the previous mark goes to the phase that mark
 * began:
 *
 *   stop     → stop    (the services stopping, in reverse order)
 *   stopped  → switch  (the link renamed to the new release, the journal written)
 *   switched → start   (the services starting, in order)
 *   started  → probe   (until the first round with every probe green; also a failing release's
 *                       probation before its rollback stops the services again)
 *
 * so the four phases always sum to the total. `wait` is the part of `probe` that is the product's
 * and the configuration's: rounds that were not all green (the product still starting, or the
 * failing release) and the probe interval slept between them. otad's own share is total − wait.
 *
 * Clocks: the differences are read on CLOCK_MONOTONIC (process.hrtime), which is system-wide on
 * Linux, so a run that crosses an otad restart (SIGKILL, crash) within one boot is still measured
 * on the monotonic clock; it is flagged `acrossRestart`. Across a reboot (a power cut) the
 * monotonic clock starts over: the time since the last mark is taken from the wall clock and the
 * measure says `clock: 'wall-clock'`. A wall clock that went backwards across the reboot leaves
 * the total null with the reason in `note`; a run that ended without a green round too.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Database from 'better-sqlite3';

export type DowntimeMark = 'stop' | 'stopped' | 'switched' | 'started' | 'green';
export type DowntimePhase = 'stop' | 'switch' | 'start' | 'probe';
export const DOWNTIME_PHASES: readonly DowntimePhase[] = ['stop', 'switch', 'start', 'probe'];

/** What the interfaces show of a run's downtime (milliseconds). */
export interface Downtime {
  /** Stop to first green; null while the services are down or not yet proved healthy, or when it cannot be measured (see note). */
  totalMs: number | null;
  stopMs: number;
  switchMs: number;
  startMs: number;
  probeMs: number;
  /** Part of probeMs: rounds that were not all green and the probe interval between them (the product's start-up, the configuration). */
  waitMs: number;
  /** totalMs − waitMs: what otad itself spent (stopping, switching, starting, its bookkeeping, the green round). */
  otadMs: number | null;
  /** 'monotonic': every difference read on CLOCK_MONOTONIC; 'wall-clock': a reboot came in between, that part is wall-clock time. */
  clock: 'monotonic' | 'wall-clock';
  /** The run crossed an otad restart (crash, kill, power cut) while the services were down. */
  acrossRestart: boolean;
  /** Wall-clock time of the first stop (ms since the epoch). */
  stoppedAt: number;
  /** Wall-clock time of the first green round (null: not yet, or never). */
  greenAt: number | null;
  /** Which release came back green: the new one (validate), the old one (rollback). */
  greenOn: 'new' | 'old' | null;
  /** The phase in progress while the run has not come back green (null once it has). */
  open: DowntimePhase | null;
  /** Why totalMs is null (a run ended without a green round, a clock that went backwards); null otherwise. */
  note: string | null;
}

/** The readings a mark takes; injectable for tests of the restart and reboot cases. */
export interface DowntimeClock {
  wall(): number;
  /** CLOCK_MONOTONIC in ms: comparable between processes of one boot. */
  monotonic(): number;
  /** The kernel's boot id (null: unknown, every restart is then treated as a reboot). */
  bootId(): string | null;
  /** This otad process. */
  instance: string;
}

let bootIdCache: string | null | undefined;
function readBootId(): string | null {
  if (bootIdCache === undefined) {
    try {
      bootIdCache = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootIdCache = null;
    }
  }
  return bootIdCache;
}

export const systemDowntimeClock: DowntimeClock = {
  wall: () => Date.now(),
  monotonic: () => Number(process.hrtime.bigint()) / 1e6,
  bootId: readBootId,
  instance: `${process.pid}-${randomUUID()}`,
};

/** Migration 4 (see migrations.ts). */
export const DOWNTIME_MIGRATION = `
  CREATE TABLE downtime (
    run_id TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    stopped_at INTEGER NOT NULL,
    last_mark TEXT NOT NULL,
    last_wall INTEGER NOT NULL,
    last_mono REAL NOT NULL,
    boot_id TEXT,
    instance TEXT NOT NULL,
    stop_ms REAL NOT NULL DEFAULT 0,
    switch_ms REAL NOT NULL DEFAULT 0,
    start_ms REAL NOT NULL DEFAULT 0,
    probe_ms REAL NOT NULL DEFAULT 0,
    wait_ms REAL NOT NULL DEFAULT 0,
    clock TEXT NOT NULL DEFAULT 'monotonic',
    across_restart INTEGER NOT NULL DEFAULT 0,
    green_at INTEGER,
    green_on TEXT,
    note TEXT
  );
  CREATE INDEX downtime_product ON downtime(product, stopped_at);
`;

export interface DowntimeRow {
  run_id: string;
  product: string;
  stopped_at: number;
  last_mark: DowntimeMark;
  last_wall: number;
  last_mono: number;
  boot_id: string | null;
  instance: string;
  stop_ms: number;
  switch_ms: number;
  start_ms: number;
  probe_ms: number;
  wait_ms: number;
  clock: 'monotonic' | 'wall-clock';
  across_restart: number;
  green_at: number | null;
  green_on: 'new' | 'old' | null;
  note: string | null;
}

const PHASE_AFTER: Record<DowntimeMark, DowntimePhase | null> = { stop: 'stop', stopped: 'switch', switched: 'start', started: 'probe', green: null };
const round3 = (n: number): number => Math.round(n * 1000) / 1000;

/** The row as the interfaces show it; `runEnded`: the run settled, so an open measure will never close. */
export function downtimeOf(r: DowntimeRow, runEnded: boolean): Downtime {
  const sum = r.stop_ms + r.switch_ms + r.start_ms + r.probe_ms;
  const green = r.green_at !== null;
  let note = r.note;
  if (note === null && !green && runEnded) note = 'the run ended without a round in which every health probe was green';
  const total = green && r.note === null ? round3(sum) : null;
  return {
    totalMs: total,
    stopMs: round3(r.stop_ms),
    switchMs: round3(r.switch_ms),
    startMs: round3(r.start_ms),
    probeMs: round3(r.probe_ms),
    waitMs: round3(r.wait_ms),
    otadMs: total === null ? null : round3(sum - r.wait_ms),
    clock: r.clock,
    acrossRestart: r.across_restart === 1,
    stoppedAt: r.stopped_at,
    greenAt: r.green_at,
    greenOn: r.green_on,
    open: green || runEnded ? null : PHASE_AFTER[r.last_mark],
    note,
  };
}

export interface MarkOptions {
  /** green: which release answered. */
  on?: 'new' | 'old';
  /** green: how much of the time since `started` was rounds not all green and the interval between them. */
  waitMs?: number;
}

/** Writes the marks of the steps into the store; every mark is its own committed transaction. */
export class DowntimeRecorder {
  constructor(
    private readonly db: Database.Database,
    private readonly clock: DowntimeClock = systemDowntimeClock,
  ) {}

  /**
   * A boundary reached. `stop` opens the measure (or reopens one that came back green: a rollback
   * after a passed validation is downtime again); the others only count while it is open.
   */
  mark(runId: string, product: string, mark: DowntimeMark, options: MarkOptions = {}): void {
    const wall = this.clock.wall();
    const mono = this.clock.monotonic();
    const bootId = this.clock.bootId();
    const instance = this.clock.instance;
    this.db.transaction(() => {
      const row = this.db.prepare('SELECT * FROM downtime WHERE run_id = ?').get(runId) as DowntimeRow | undefined;
      if (row === undefined || (row.green_at !== null && mark === 'stop')) {
        if (mark !== 'stop') return;
        this.db
          .prepare(
            `INSERT INTO downtime (run_id, product, stopped_at, last_mark, last_wall, last_mono, boot_id, instance)
             VALUES (?, ?, ?, 'stop', ?, ?, ?, ?)
             ON CONFLICT(run_id) DO UPDATE SET stopped_at = excluded.stopped_at, last_mark = 'stop', last_wall = excluded.last_wall,
               last_mono = excluded.last_mono, boot_id = excluded.boot_id, instance = excluded.instance, stop_ms = 0, switch_ms = 0,
               start_ms = 0, probe_ms = 0, wait_ms = 0, clock = 'monotonic', across_restart = 0, green_at = NULL, green_on = NULL, note = NULL`,
          )
          .run(runId, product, wall, wall, mono, bootId, instance);
        return;
      }
      if (row.green_at !== null || row.note !== null) return;
      const restarted = row.instance !== instance;
      const sameBoot = bootId !== null && row.boot_id === bootId;
      let delta: number;
      let clock = row.clock;
      let note: string | null = null;
      if (!restarted || sameBoot) {
        delta = mono - row.last_mono;
      } else {
        delta = wall - row.last_wall;
        clock = 'wall-clock';
        if (delta < 0) {
          note = `the wall clock went back ${Math.round(-delta)} ms across a reboot while the services were down: the downtime cannot be measured`;
          delta = 0;
        }
      }
      delta = Math.max(0, delta);
      const phase = PHASE_AFTER[row.last_mark];
      const add = { stop: 0, switch: 0, start: 0, probe: 0, wait: 0 };
      if (phase !== null) add[phase] = delta;
      // A failing release's probation before its rollback stops the services: the product's, not otad's.
      if (mark === 'stop' && row.last_mark === 'started') add.wait = delta;
      if (mark === 'green') add.wait = Math.min(delta, Math.max(0, options.waitMs ?? 0));
      this.db
        .prepare(
          `UPDATE downtime SET last_mark = ?, last_wall = ?, last_mono = ?, boot_id = ?, instance = ?,
             stop_ms = stop_ms + ?, switch_ms = switch_ms + ?, start_ms = start_ms + ?, probe_ms = probe_ms + ?, wait_ms = wait_ms + ?,
             clock = ?, across_restart = across_restart | ?, green_at = ?, green_on = ?, note = ?
           WHERE run_id = ?`,
        )
        .run(
          mark,
          wall,
          mono,
          bootId,
          instance,
          add.stop,
          add.switch,
          add.start,
          add.probe,
          add.wait,
          clock,
          restarted ? 1 : 0,
          mark === 'green' ? wall : null,
          mark === 'green' ? (options.on ?? 'new') : null,
          note,
          runId,
        );
    })();
  }

  /** Whether the run's services are down or not yet proved healthy (a `green` mark is due). */
  isOpen(runId: string): boolean {
    const row = this.db.prepare('SELECT green_at, note FROM downtime WHERE run_id = ?').get(runId) as { green_at: number | null; note: string | null } | undefined;
    return row !== undefined && row.green_at === null && row.note === null;
  }
}

export interface DowntimeSummary {
  /** Runs with a measured total among those asked about. */
  count: number;
  lastMs: number | null;
  medianMs: number | null;
  maxMs: number | null;
}

/** Last (the newest run's), median and max of the measured totals; runs newest first. */
export function summariseDowntime(runs: ReadonlyArray<{ downtime: Downtime | null }>): DowntimeSummary {
  const totals = runs.map((r) => r.downtime?.totalMs ?? null).filter((t): t is number => t !== null);
  if (totals.length === 0) return { count: 0, lastMs: null, medianMs: null, maxMs: null };
  const sorted = [...totals].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  return { count: totals.length, lastMs: totals[0] as number, medianMs: round3(median), maxMs: sorted.at(-1) as number };
}

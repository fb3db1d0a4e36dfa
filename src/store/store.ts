/**
 * The daemon's SQLite store (better-sqlite3). WAL with synchronous=FULL: a committed transaction
 * survives a power cut. Writes that belong together (a transition, its snapshot and the run it
 * belongs to) are one transaction, so the database never shows one without the other.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { OtaError } from '../core/errors.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';
import { downtimeOf, summariseDowntime, type Downtime, type DowntimeRow, type DowntimeSummary } from './downtime.js';
import type { AuditEvent } from '../core/logger.js';
import type { ErrorInfo, Offer, RunOutcome } from '../../machines/types.js';

export interface SnapshotRow {
  product: string;
  machineVersion: number;
  state: string;
  runId: string | null;
  snapshot: unknown;
  updatedAt: number;
}

export interface TransitionRecord {
  seq: number;
  product: string;
  runId: string | null;
  from: string;
  to: string;
  eventType: string;
  event: unknown;
  at: number;
  machineVersion: number;
  /** The persisted snapshot right after this transition (for export and replay). */
  snapshot?: unknown;
}

/** A run's install window (Store.installWindow). */
export interface InstallWindow {
  /** The window began in the install slot (scheduled → preCheck on the slot's TICK), not at an UPDATE_NOW. */
  fromScheduled: boolean;
  startedAt: number;
  endedAt: number | null;
  /** From preCheck to the end of the run (null while it runs). */
  ms: number | null;
  /** Of which in the staging step. */
  stagingMs: number;
  /** The run used a release staged ahead of the slot (download ahead) instead of downloading. */
  stagedAhead: boolean;
}

export interface RunRecord {
  runId: string;
  product: string;
  kind: string;
  startedAt: number;
  endedAt: number | null;
  fromVersion: string | null;
  toVersion: string | null;
  state: string;
  outcome: RunOutcome | null;
  error: ErrorInfo | null;
  /** From the first service stop to the first all-green probe round (null: the run never stopped a service). */
  downtime: Downtime | null;
  /** Filled in by the daemon's history (the transition log): its install window. */
  window?: InstallWindow | null;
}

export interface ReleaseRecord {
  product: string;
  version: string;
  channel: string;
  notes: string;
  releasedAt: number;
  foundAt: number;
  offer: Offer;
  notified: boolean;
  acknowledgedAt: number | null;
  badAt: number | null;
  badReason: string | null;
  /** 'automatic' (a failed apply or validation, a rejected package, a crash loop) or 'operator'; null when not bad or recorded before this was kept. */
  badBy: BadMark['by'] | null;
  /** The operator (token name, D-Bus caller, user) or 'otad'. */
  badActor: string | null;
  badRunId: string | null;
}

/** Why a release is kept away from this robot: what the interfaces show, and what `unmark` undoes. */
export interface BadMark {
  reason: string;
  at: number;
  by: 'automatic' | 'operator';
  actor: string | null;
  runId: string | null;
}

/** How much finished history the store keeps (config `history`). */
export interface RetentionPolicy {
  /** Finished runs kept per product, newest first. */
  keepRuns: number;
  /** Finished runs that ended longer ago than this are dropped (0: no age limit). */
  maxAgeMs: number;
  /** Audit entries kept, newest first (absent: no count limit). */
  auditKeep?: number;
  /** Audit entries older than this are dropped (0 or absent: no age limit). */
  auditMaxAgeMs?: number;
}

export interface PruneResult {
  runs: number;
  transitions: number;
  audit: number;
}

export interface AuditRecord extends AuditEvent {
  id: number;
  at: number;
}

export interface InhibitRecord {
  holder: string;
  reason: string;
  since: number;
  expiresAt: number;
}

/** Everything one machine transition writes, applied in one transaction. */
export interface TransitionWrite {
  product: string;
  machineVersion: number;
  snapshot: unknown;
  state: string;
  runId: string | null;
  at: number;
  /** Absent when only the context changed (no new row in the transition log). */
  transition?: { from: string; to: string; eventType: string; event: unknown };
  run?: {
    kind: string;
    startedAt: number;
    fromVersion: string | null;
    toVersion: string | null;
    outcome: RunOutcome | null;
    endedAt: number | null;
    error: ErrorInfo | null;
  };
  choice?: { choice: string; source: string; at: number };
}

export interface PageQuery {
  product?: string;
  runId?: string;
  limit?: number;
  /** For transitions: return rows with seq greater than this. */
  afterSeq?: number;
  offset?: number;
  /** For transitions: include each row's snapshot. */
  withSnapshots?: boolean;
}

const json = (v: unknown): string => JSON.stringify(v);
const PRUNED_THROUGH_KEY = 'transitions:prunedThrough';
const parse = <T>(v: string | null): T | null => (v === null ? null : (JSON.parse(v) as T));

export class Store {
  readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  static open(path: string, extraMigrations: readonly string[] = []): Store {
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Created 0600 before SQLite sees it: SQLite gives the -wal and -shm files the mode of the
      // database, so the run history stays readable by otad alone.
      if (!existsSync(path)) closeSync(openSync(path, 'a', 0o600));
    }
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (cause) {
      throw new OtaError('STORE_FAILED', `cannot open the state database at ${path}`, { cause });
    }
    // Incremental auto-vacuum lets pruned history give its pages back to the filesystem. It can
    // only be switched on an empty database or by one VACUUM; a database from before it gets that
    // VACUUM once, here. A VACUUM that cannot run (a full disk: it needs room for a copy) is left
    // for a later start: pruned pages are still reused, the file only does not shrink.
    if ((db.pragma('auto_vacuum', { simple: true }) as number) !== 2) {
      db.pragma('auto_vacuum = INCREMENTAL');
      if ((db.pragma('page_count', { simple: true }) as number) > 0) {
        try {
          db.exec('VACUUM');
        } catch {
          // Next start tries again.
        }
      }
    }
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const store = new Store(db);
    store.migrate();
    // Tables that other modules own (the scheduler's tasks) are created idempotently here too.
    for (const sql of extraMigrations) db.exec(sql);
    return store;
  }

  private migrate(): void {
    const current = this.db.pragma('user_version', { simple: true }) as number;
    if (current > SCHEMA_VERSION) {
      throw new OtaError(
        'STORE_SCHEMA_TOO_NEW',
        `the state database has schema version ${current}, newer than this otad understands (${SCHEMA_VERSION}); refusing to touch it`,
        { details: { found: current, supported: SCHEMA_VERSION } },
      );
    }
    for (let v = current; v < SCHEMA_VERSION; v++) {
      const sql = MIGRATIONS[v] as string;
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  // ----- snapshots and transitions ---------------------------------------------------------

  loadSnapshot(product: string): SnapshotRow | null {
    const row = this.db
      .prepare('SELECT product, machine_version, state, run_id, snapshot, updated_at FROM snapshots WHERE product = ?')
      .get(product) as
      | { product: string; machine_version: number; state: string; run_id: string | null; snapshot: string; updated_at: number }
      | undefined;
    if (!row) return null;
    let snapshot: unknown;
    try {
      snapshot = JSON.parse(row.snapshot);
    } catch {
      snapshot = null;
    }
    return {
      product: row.product,
      machineVersion: row.machine_version,
      state: row.state,
      runId: row.run_id,
      snapshot,
      updatedAt: row.updated_at,
    };
  }

  /** The one write path of the lifecycle: snapshot, transition row, run and choice, atomically. */
  writeTransition(w: TransitionWrite): number | null {
    let seq: number | null = null;
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO snapshots (product, machine_version, state, run_id, snapshot, updated_at) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(product) DO UPDATE SET machine_version = excluded.machine_version, state = excluded.state,
             run_id = excluded.run_id, snapshot = excluded.snapshot, updated_at = excluded.updated_at`,
        )
        .run(w.product, w.machineVersion, w.state, w.runId, json(w.snapshot), w.at);
      if (w.transition) {
        const info = this.db
          .prepare(
            `INSERT INTO transitions (product, run_id, from_state, to_state, event_type, event, at, machine_version, snapshot)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            w.product,
            w.runId,
            w.transition.from,
            w.transition.to,
            w.transition.eventType,
            json(w.transition.event),
            w.at,
            w.machineVersion,
            json(w.snapshot),
          );
        seq = Number(info.lastInsertRowid);
      }
      if (w.run && w.runId) {
        this.db
          .prepare(
            `INSERT INTO runs (run_id, product, kind, started_at, ended_at, from_version, to_version, state, outcome, error)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(run_id) DO UPDATE SET
               -- A settled run (idle or failed) stays ended when a later write only changes the
               -- context (a version detected, a policy reloaded, a restart): retention and history
               -- rely on its end. Moving on (failed → rollback) clears it.
               ended_at = CASE WHEN excluded.state IN ('idle', 'failed') AND runs.ended_at IS NOT NULL THEN runs.ended_at ELSE excluded.ended_at END,
               outcome = CASE WHEN excluded.state IN ('idle', 'failed') AND excluded.outcome IS NULL THEN runs.outcome ELSE excluded.outcome END,
               from_version = COALESCE(runs.from_version, excluded.from_version),
               to_version = COALESCE(runs.to_version, excluded.to_version),
               state = excluded.state, error = excluded.error`,
          )
          .run(
            w.runId,
            w.product,
            w.run.kind,
            w.run.startedAt,
            w.run.endedAt,
            w.run.fromVersion,
            w.run.toVersion,
            w.state,
            w.run.outcome,
            w.run.error === null ? null : json(w.run.error),
          );
      }
      if (w.choice) {
        this.db
          .prepare('INSERT INTO choices (product, run_id, choice, source, at) VALUES (?, ?, ?, ?, ?)')
          .run(w.product, w.runId, w.choice.choice, w.choice.source, w.choice.at);
      }
    })();
    return seq;
  }

  transitions(q: PageQuery = {}): TransitionRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.product) (where.push('product = ?'), args.push(q.product));
    if (q.runId) (where.push('run_id = ?'), args.push(q.runId));
    if (q.afterSeq !== undefined) (where.push('seq > ?'), args.push(q.afterSeq));
    const sql = `SELECT * FROM transitions ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY seq ASC LIMIT ? OFFSET ?`;
    args.push(q.limit ?? 100, q.offset ?? 0);
    const rows = this.db.prepare(sql).all(...args) as Array<{
      seq: number;
      product: string;
      run_id: string | null;
      from_state: string;
      to_state: string;
      event_type: string;
      event: string;
      at: number;
      machine_version: number;
      snapshot: string | null;
    }>;
    return rows.map((r) => ({
      ...(q.withSnapshots && r.snapshot ? { snapshot: JSON.parse(r.snapshot) as unknown } : {}),
      seq: r.seq,
      product: r.product,
      runId: r.run_id,
      from: r.from_state,
      to: r.to_state,
      eventType: r.event_type,
      event: JSON.parse(r.event) as unknown,
      at: r.at,
      machineVersion: r.machine_version,
    }));
  }

  /** The snapshot written with the product's last transition before `seq` (the start of a run). */
  snapshotBefore(product: string, seq: number): unknown {
    const row = this.db
      .prepare('SELECT snapshot FROM transitions WHERE product = ? AND seq < ? AND snapshot IS NOT NULL ORDER BY seq DESC LIMIT 1')
      .get(product, seq) as { snapshot: string } | undefined;
    return row ? (JSON.parse(row.snapshot) as unknown) : null;
  }

  lastSeq(): number {
    const row = this.db.prepare('SELECT MAX(seq) AS seq FROM transitions').get() as { seq: number | null };
    return row.seq ?? 0;
  }

  /**
   * The retained range of the transition log (MIN and MAX of the primary key: two index lookups,
   * never a scan). `oldest` is null when the log is empty; `latest` is the highest seq ever
   * handed out (AUTOINCREMENT never reuses one, even after pruning); `prunedThrough` the highest
   * one retention removed (rows of old runs go from anywhere below the runs kept).
   */
  seqRange(): { oldest: number | null; latest: number; prunedThrough: number } {
    const row = this.db.prepare('SELECT MIN(seq) AS oldest, MAX(seq) AS latest FROM transitions').get() as { oldest: number | null; latest: number | null };
    const issued = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'").get() as { seq: number } | undefined;
    return { oldest: row.oldest, latest: Math.max(row.latest ?? 0, issued?.seq ?? 0), prunedThrough: this.prunedThrough() };
  }

  /** The highest seq retention has removed (0: none): a reader resuming at or below it missed rows. */
  prunedThrough(): number {
    return Number(this.getValue(PRUNED_THROUGH_KEY) ?? 0);
  }

  // ----- retention -------------------------------------------------------------------------

  /**
   * Drops finished runs beyond the policy, with their transitions, choices and restore counters,
   * and hands the freed pages back to the filesystem (incremental auto-vacuum).
   *
   * Never dropped: a run still in flight (no end), the run each product's saved snapshot belongs
   * to (recovery and the crash-loop counter read it), and each product's newest finished run (its
   * last outcome). Transitions without a run (a daemon start) go once they are older than the
   * oldest run kept for their product, except the one transition right before that run.
   */
  pruneHistory(policy: RetentionPolicy, now: number): PruneResult {
    let result: PruneResult = { runs: 0, transitions: 0, audit: 0 };
    this.db.transaction(() => {
      const cutoff = policy.maxAgeMs > 0 ? now - policy.maxAgeMs : null;
      const doomed = this.db
        .prepare(
          `SELECT run_id FROM (
             SELECT run_id, ended_at, ROW_NUMBER() OVER (PARTITION BY product ORDER BY started_at DESC, rowid DESC) AS rank
             FROM runs WHERE ended_at IS NOT NULL
           )
           WHERE rank > 1 AND (rank > ? OR (? IS NOT NULL AND ended_at < ?))
             AND run_id NOT IN (SELECT run_id FROM snapshots WHERE run_id IS NOT NULL)`,
        )
        .pluck()
        .all(policy.keepRuns, cutoff, cutoff) as string[];
      const products = this.db.prepare('SELECT product FROM runs WHERE run_id = ?').pluck();
      const touched = new Set(doomed.map((runId) => products.get(runId) as string));
      const delChoices = this.db.prepare('DELETE FROM choices WHERE run_id = ?');
      const delRestores = this.db.prepare('DELETE FROM restores WHERE run_id = ?');
      const delRun = this.db.prepare('DELETE FROM runs WHERE run_id = ?');
      const delDowntime = this.db.prepare('DELETE FROM downtime WHERE run_id = ?');
      for (const runId of doomed) {
        delChoices.run(runId);
        delDowntime.run(runId);
        delRestores.run(runId);
        delRun.run(runId);
      }
      // Per product, every row below its oldest kept run goes (rows of removed runs, a daemon
      // start's row of no run), but the last of them: the snapshot before the oldest kept run,
      // which its export starts from. Rows of removed runs above that line go too.
      const boundaryOf = this.db.prepare('SELECT MIN(t.seq) FROM transitions t JOIN runs r ON r.run_id = t.run_id WHERE t.product = ?').pluck();
      const keepOf = this.db.prepare('SELECT MAX(seq) FROM transitions WHERE product = ? AND seq < ?').pluck();
      const doomedRows = this.db.prepare(
        `SELECT seq FROM transitions WHERE product = @product AND seq <> @keep
           AND (seq < @boundary OR (run_id IS NOT NULL AND run_id NOT IN (SELECT run_id FROM runs)))`,
      ).pluck();
      const delSeq = this.db.prepare('DELETE FROM transitions WHERE seq = ?');
      let prunedThrough = this.prunedThrough();
      let transitions = 0;
      for (const product of touched) {
        // No kept run with transitions: only the rows of removed runs go.
        const boundary = (boundaryOf.get(product) as number | null) ?? -1;
        const keep = boundary < 0 ? -1 : ((keepOf.get(product, boundary) as number | null) ?? -1);
        for (const seq of doomedRows.all({ product, keep, boundary }) as number[]) {
          transitions += delSeq.run(seq).changes;
          prunedThrough = Math.max(prunedThrough, seq);
        }
      }
      if (transitions > 0) this.setValue(PRUNED_THROUGH_KEY, String(prunedThrough));
      // The audit trail is bounded on its own terms (it is the security record: kept longer than runs).
      let audit = 0;
      if (policy.auditKeep !== undefined) {
        audit += this.db.prepare('DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)').run(policy.auditKeep).changes;
      }
      if (policy.auditMaxAgeMs !== undefined && policy.auditMaxAgeMs > 0) {
        audit += this.db.prepare('DELETE FROM audit WHERE at < ?').run(now - policy.auditMaxAgeMs).changes;
      }
      result = { runs: doomed.length, transitions, audit };
    })();
    if (result.runs > 0 || result.transitions > 0 || result.audit > 0) this.db.pragma('incremental_vacuum');
    return result;
  }

  // ----- runs ------------------------------------------------------------------------------

  /**
   * The install window of a run, from the transition log: from its first entry into preCheck (the
   * slot, or the moment it was asked for) to its end, the time spent in staging within it, and
   * whether it used a release staged ahead (the stage step's audit record). Null: it never got there.
   */
  installWindow(runId: string, usedAhead?: ReadonlySet<string>): InstallWindow | null {
    const rows = this.db.prepare('SELECT from_state AS fromState, to_state AS toState, event_type AS eventType, at FROM transitions WHERE run_id = ? ORDER BY seq').all(runId) as Array<{ fromState: string; toState: string; eventType: string; at: number }>;
    const first = rows.findIndex((r) => r.toState === 'preCheck' && r.fromState !== 'preCheck');
    if (first < 0) return null;
    const start = rows[first] as { fromState: string; eventType: string; at: number };
    let end: number | null = null;
    let stagingMs = 0;
    let stagingFrom: number | null = null;
    for (const r of rows.slice(first + 1)) {
      if (r.toState === 'staging' && r.fromState !== 'staging') stagingFrom = r.at;
      else if (r.fromState === 'staging' && r.toState !== 'staging' && stagingFrom !== null) {
        stagingMs += r.at - stagingFrom;
        stagingFrom = null;
      }
      if (r.toState === 'idle' || r.toState === 'failed') {
        end = r.at;
        break;
      }
    }
    const used = (usedAhead ?? this.runsUsingStagedAhead()).has(runId);
    return { fromScheduled: start.fromState === 'scheduled' && start.eventType === 'TICK', startedAt: start.at, endedAt: end, ms: end === null ? null : end - start.at, stagingMs, stagedAhead: used };
  }

  /** The runs whose stage step used a release staged ahead (one read of the audit trail). */
  runsUsingStagedAhead(): Set<string> {
    const rows = this.db.prepare(`SELECT DISTINCT run_id AS runId FROM audit WHERE kind = 'staged-ahead' AND run_id IS NOT NULL AND details LIKE '%"action":"used"%'`).all() as Array<{ runId: string }>;
    return new Set(rows.map((r) => r.runId));
  }

  runs(q: PageQuery = {}): RunRecord[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.product) (where.push('product = ?'), args.push(q.product));
    if (q.runId) (where.push('run_id = ?'), args.push(q.runId));
    const sql = `SELECT * FROM runs ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY started_at DESC, rowid DESC LIMIT ? OFFSET ?`;
    args.push(q.limit ?? 50, q.offset ?? 0);
    const rows = this.db.prepare(sql).all(...args) as Array<{
      run_id: string;
      product: string;
      kind: string;
      started_at: number;
      ended_at: number | null;
      from_version: string | null;
      to_version: string | null;
      state: string;
      outcome: RunOutcome | null;
      error: string | null;
    }>;
    return rows.map((r) => ({
      runId: r.run_id,
      product: r.product,
      kind: r.kind,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      fromVersion: r.from_version,
      toVersion: r.to_version,
      state: r.state,
      outcome: r.outcome,
      error: parse<ErrorInfo>(r.error),
      downtime: this.downtime(r.run_id, r.ended_at !== null),
    }));
  }

  /** A run's downtime as measured so far (`runEnded`: an open measure is then final, with its reason). */
  downtime(runId: string, runEnded: boolean): Downtime | null {
    const row = this.db.prepare('SELECT * FROM downtime WHERE run_id = ?').get(runId) as DowntimeRow | undefined;
    return row === undefined ? null : downtimeOf(row, runEnded);
  }

  /** Last, median and max downtime over every retained run (of one product, when given). */
  downtimeSummary(product?: string): DowntimeSummary {
    const rows = this.db
      .prepare(
        `SELECT d.*, r.ended_at AS run_ended_at FROM downtime d LEFT JOIN runs r ON r.run_id = d.run_id
         ${product === undefined ? '' : 'WHERE d.product = ?'} ORDER BY d.stopped_at DESC, d.rowid DESC`,
      )
      .all(...(product === undefined ? [] : [product])) as Array<DowntimeRow & { run_ended_at: number | null }>;
    return summariseDowntime(rows.map((r) => ({ downtime: downtimeOf(r, r.run_ended_at !== null) })));
  }

  /** The product's newest run that stopped its services, and that run's downtime. */
  lastDowntime(product: string): ({ runId: string } & Downtime) | null {
    const row = this.db
      .prepare('SELECT d.*, r.ended_at AS run_ended_at FROM downtime d LEFT JOIN runs r ON r.run_id = d.run_id WHERE d.product = ? ORDER BY d.stopped_at DESC, d.rowid DESC LIMIT 1')
      .get(product) as (DowntimeRow & { run_ended_at: number | null }) | undefined;
    return row === undefined ? null : { runId: row.run_id, ...downtimeOf(row, row.run_ended_at !== null) };
  }

  run(runId: string): RunRecord | null {
    return this.runs({ runId, limit: 1 })[0] ?? null;
  }

  /** The crash-loop guard's counter: how many times this run was restored in this state. */
  countRestore(runId: string, state: string, at: number): number {
    this.db
      .prepare(
        `INSERT INTO restores (run_id, state, count, last_at) VALUES (?, ?, 1, ?)
         ON CONFLICT(run_id, state) DO UPDATE SET count = count + 1, last_at = excluded.last_at`,
      )
      .run(runId, state, at);
    const row = this.db.prepare('SELECT count FROM restores WHERE run_id = ? AND state = ?').get(runId, state) as { count: number };
    return row.count;
  }

  choices(product: string, limit = 20): Array<{ runId: string | null; choice: string; source: string; at: number }> {
    return (
      this.db.prepare('SELECT run_id, choice, source, at FROM choices WHERE product = ? ORDER BY id DESC LIMIT ?').all(product, limit) as Array<{
        run_id: string | null;
        choice: string;
        source: string;
        at: number;
      }>
    ).map((r) => ({ runId: r.run_id, choice: r.choice, source: r.source, at: r.at }));
  }

  // ----- releases, notes and notifications ------------------------------------------------

  /** Records a found release; a new version raises the notification flag, a known one keeps its state. */
  recordRelease(offer: Offer, foundAt: number): { isNew: boolean } {
    const info = this.db
      .prepare(
        `INSERT INTO releases (product, version, channel, notes, released_at, found_at, offer, notified)
         VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT(product, version) DO NOTHING`,
      )
      .run(offer.product, offer.version, offer.channel, offer.notes, offer.releasedAt, foundAt, json(offer));
    return { isNew: info.changes > 0 };
  }

  release(product: string, version: string): ReleaseRecord | null {
    const r = this.db.prepare('SELECT * FROM releases WHERE product = ? AND version = ?').get(product, version) as ReleaseRow | undefined;
    return r ? toRelease(r) : null;
  }

  /** Releases found and not yet acknowledged: what the interfaces show as "update available". */
  pendingNotifications(product?: string): ReleaseRecord[] {
    const rows = (
      product
        ? this.db.prepare('SELECT * FROM releases WHERE notified = 1 AND acknowledged_at IS NULL AND product = ? ORDER BY found_at DESC').all(product)
        : this.db.prepare('SELECT * FROM releases WHERE notified = 1 AND acknowledged_at IS NULL ORDER BY found_at DESC').all()
    ) as ReleaseRow[];
    return rows.map(toRelease);
  }

  acknowledgeRelease(product: string, version: string | null, at: number): number {
    const info =
      version === null
        ? this.db.prepare('UPDATE releases SET acknowledged_at = ? WHERE product = ? AND acknowledged_at IS NULL').run(at, product)
        : this.db.prepare('UPDATE releases SET acknowledged_at = ? WHERE product = ? AND version = ? AND acknowledged_at IS NULL').run(at, product, version);
    return info.changes;
  }

  markBad(product: string, version: string, mark: BadMark): void {
    this.db
      .prepare(
        `INSERT INTO releases (product, version, channel, notes, released_at, found_at, offer, notified, bad_at, bad_reason, bad_by, bad_actor, bad_run_id)
         VALUES (?, ?, '', '', 0, ?, 'null', 0, ?, ?, ?, ?, ?)
         ON CONFLICT(product, version) DO UPDATE SET bad_at = excluded.bad_at, bad_reason = excluded.bad_reason,
           bad_by = excluded.bad_by, bad_actor = excluded.bad_actor, bad_run_id = excluded.bad_run_id`,
      )
      .run(product, version, mark.at, mark.at, mark.reason, mark.by, mark.actor, mark.runId);
  }

  /** Clears a bad mark; returns the release as it was (null when it was not marked bad). */
  unmarkBad(product: string, version: string): ReleaseRecord | null {
    const before = this.release(product, version);
    if (before === null || before.badAt === null) return null;
    this.db
      .prepare('UPDATE releases SET bad_at = NULL, bad_reason = NULL, bad_by = NULL, bad_actor = NULL, bad_run_id = NULL WHERE product = ? AND version = ?')
      .run(product, version);
    return before;
  }

  /** Every release the store knows for a product: found by a check, or marked bad. */
  knownReleases(product: string): ReleaseRecord[] {
    return (this.db.prepare('SELECT * FROM releases WHERE product = ? ORDER BY found_at DESC, version DESC').all(product) as ReleaseRow[]).map(toRelease);
  }

  isBad(product: string, version: string): boolean {
    const row = this.db.prepare('SELECT bad_at FROM releases WHERE product = ? AND version = ?').get(product, version) as { bad_at: number | null } | undefined;
    return row?.bad_at != null;
  }

  // ----- audit -----------------------------------------------------------------------------

  audit(event: AuditEvent, at: number): void {
    this.db
      .prepare('INSERT INTO audit (at, kind, message, product, run_id, actor, details) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(at, event.kind, event.message, event.product ?? null, event.runId ?? null, event.actor ?? null, event.details ? json(event.details) : null);
  }

  auditTrail(limit = 100): AuditRecord[] {
    const rows = this.db.prepare('SELECT * FROM audit ORDER BY id DESC LIMIT ?').all(limit) as Array<{
      id: number;
      at: number;
      kind: AuditEvent['kind'];
      message: string;
      product: string | null;
      run_id: string | null;
      actor: string | null;
      details: string | null;
    }>;
    return rows.map((r) => {
      const rec: AuditRecord = { id: r.id, at: r.at, kind: r.kind, message: r.message };
      if (r.product !== null) rec.product = r.product;
      if (r.run_id !== null) rec.runId = r.run_id;
      if (r.actor !== null) rec.actor = r.actor;
      if (r.details !== null) rec.details = JSON.parse(r.details) as Record<string, unknown>;
      return rec;
    });
  }

  // ----- inhibits --------------------------------------------------------------------------

  holdInhibit(rec: InhibitRecord): void {
    this.db
      .prepare(
        `INSERT INTO inhibits (holder, reason, since, expires_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(holder) DO UPDATE SET reason = excluded.reason, expires_at = excluded.expires_at`,
      )
      .run(rec.holder, rec.reason, rec.since, rec.expiresAt);
  }

  releaseInhibit(holder: string): boolean {
    return this.db.prepare('DELETE FROM inhibits WHERE holder = ?').run(holder).changes > 0;
  }

  /** Inhibits still in force at `now`; expired ones are dropped (a hold has a maximum time). */
  activeInhibits(now: number): InhibitRecord[] {
    this.db.prepare('DELETE FROM inhibits WHERE expires_at <= ?').run(now);
    return (this.db.prepare('SELECT * FROM inhibits ORDER BY since').all() as Array<{ holder: string; reason: string; since: number; expires_at: number }>).map(
      (r) => ({ holder: r.holder, reason: r.reason, since: r.since, expiresAt: r.expires_at }),
    );
  }

  // ----- key/value -------------------------------------------------------------------------

  getValue(key: string): string | null {
    const row = this.db.prepare('SELECT value FROM kv WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value ?? null;
  }

  setValue(key: string, value: string): void {
    this.db.prepare('INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }
}

interface ReleaseRow {
  product: string;
  version: string;
  channel: string;
  notes: string;
  released_at: number;
  found_at: number;
  offer: string;
  notified: number;
  acknowledged_at: number | null;
  bad_at: number | null;
  bad_reason: string | null;
  bad_by: string | null;
  bad_actor: string | null;
  bad_run_id: string | null;
}

function toRelease(r: ReleaseRow): ReleaseRecord {
  return {
    product: r.product,
    version: r.version,
    channel: r.channel,
    notes: r.notes,
    releasedAt: r.released_at,
    foundAt: r.found_at,
    offer: JSON.parse(r.offer) as Offer,
    notified: r.notified === 1,
    acknowledgedAt: r.acknowledged_at,
    badAt: r.bad_at,
    badReason: r.bad_reason,
    badBy: r.bad_by === 'automatic' || r.bad_by === 'operator' ? r.bad_by : null,
    badActor: r.bad_actor,
    badRunId: r.bad_run_id,
  };
}

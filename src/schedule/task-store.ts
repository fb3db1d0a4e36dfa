/**
 * Where scheduled tasks live between runs of the daemon. A TaskRecord is plain JSON; the spec is
 * stored as a JSON string. SqliteTaskStore owns its one table and creates it itself; the store's
 * migrations may include SCHEDULE_TASKS_SQL too (it is idempotent).
 */
import type { Database, Statement } from 'better-sqlite3';
import { OtaError } from '../core/errors.js';
import type { TaskKind } from './catch-up.js';
import type { TaskSpec } from './spec.js';

export interface TaskRecord {
  id: string;
  product: string;
  kind: TaskKind;
  spec: TaskSpec;
  /** The slot the next run serves and the instant it runs (epoch ms); null when nothing is left. */
  nextSlotAt: number | null;
  nextRunAt: number | null;
  /** The slot the last run served (never served again), when it fired, and what came of it. */
  lastSlotAt: number | null;
  lastRunAt: number | null;
  lastResult: string | null;
}

export interface TaskStore {
  load(): TaskRecord[];
  save(record: TaskRecord): void;
  remove(id: string): void;
}

export class MemoryTaskStore implements TaskStore {
  private readonly records = new Map<string, TaskRecord>();

  load(): TaskRecord[] {
    return [...this.records.values()].map((r) => structuredClone(r));
  }

  save(record: TaskRecord): void {
    this.records.set(record.id, structuredClone(record));
  }

  remove(id: string): void {
    this.records.delete(id);
  }
}

export const SCHEDULE_TASKS_SQL = `CREATE TABLE IF NOT EXISTS schedule_tasks (
  id           TEXT PRIMARY KEY,
  product      TEXT NOT NULL,
  kind         TEXT NOT NULL CHECK (kind IN ('check', 'install')),
  spec         TEXT NOT NULL,
  next_slot_at INTEGER,
  next_run_at  INTEGER,
  last_slot_at INTEGER,
  last_run_at  INTEGER,
  last_result  TEXT
)`;

interface Row {
  id: string;
  product: string;
  kind: string;
  spec: string;
  next_slot_at: number | null;
  next_run_at: number | null;
  last_slot_at: number | null;
  last_run_at: number | null;
  last_result: string | null;
}

export class SqliteTaskStore implements TaskStore {
  private readonly selectAll: Statement<[], Row>;
  private readonly upsert: Statement<Row>;
  private readonly deleteOne: Statement<[string]>;

  constructor(private readonly db: Database) {
    try {
      db.exec(SCHEDULE_TASKS_SQL);
      this.selectAll = db.prepare<[], Row>('SELECT * FROM schedule_tasks ORDER BY id');
      this.upsert = db.prepare<Row>(
        `INSERT INTO schedule_tasks (id, product, kind, spec, next_slot_at, next_run_at, last_slot_at, last_run_at, last_result)
         VALUES (@id, @product, @kind, @spec, @next_slot_at, @next_run_at, @last_slot_at, @last_run_at, @last_result)
         ON CONFLICT(id) DO UPDATE SET product = excluded.product, kind = excluded.kind, spec = excluded.spec,
           next_slot_at = excluded.next_slot_at, next_run_at = excluded.next_run_at, last_slot_at = excluded.last_slot_at,
           last_run_at = excluded.last_run_at, last_result = excluded.last_result`,
      );
      this.deleteOne = db.prepare<[string]>('DELETE FROM schedule_tasks WHERE id = ?');
    } catch (cause) {
      throw new OtaError('STORE_FAILED', `could not prepare the schedule_tasks table: ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * Rows whose spec is not JSON or whose kind is unknown are skipped, not fatal: the daemon
   * re-declares its tasks from configuration on start, which overwrites them.
   */
  load(): TaskRecord[] {
    const records: TaskRecord[] = [];
    for (const row of this.run(() => this.selectAll.all(), 'read')) {
      let spec: TaskSpec;
      try {
        spec = JSON.parse(row.spec) as TaskSpec;
      } catch {
        continue;
      }
      if (row.kind !== 'check' && row.kind !== 'install') continue;
      records.push({
        id: row.id,
        product: row.product,
        kind: row.kind,
        spec,
        nextSlotAt: row.next_slot_at,
        nextRunAt: row.next_run_at,
        lastSlotAt: row.last_slot_at,
        lastRunAt: row.last_run_at,
        lastResult: row.last_result,
      });
    }
    return records;
  }

  save(record: TaskRecord): void {
    this.run(
      () =>
        this.upsert.run({
          id: record.id,
          product: record.product,
          kind: record.kind,
          spec: JSON.stringify(record.spec),
          next_slot_at: record.nextSlotAt,
          next_run_at: record.nextRunAt,
          last_slot_at: record.lastSlotAt,
          last_run_at: record.lastRunAt,
          last_result: record.lastResult,
        }),
      'write',
    );
  }

  remove(id: string): void {
    this.run(() => this.deleteOne.run(id), 'delete');
  }

  private run<T>(fn: () => T, what: string): T {
    try {
      return fn();
    } catch (cause) {
      throw new OtaError('STORE_FAILED', `could not ${what} schedule_tasks: ${(cause as Error).message}`, { cause });
    }
  }
}

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { Scheduler } from '../../../src/schedule/scheduler.js';
import type { DueInfo, TaskInput } from '../../../src/schedule/scheduler.js';
import { deviceDelayMs } from '../../../src/schedule/spread.js';
import { SCHEDULE_TASKS_SQL, SqliteTaskStore } from '../../../src/schedule/task-store.js';
import { ManualTimers } from '../../../src/schedule/timers.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const DEVICE = 'robot-7f3a';
const iso = (t: number): string => new Date(t).toISOString();
const spec = { time: '03:00', timeZone: 'Europe/Berlin', windowMs: 30 * MIN };
const check: TaskInput = { id: 'robot-ai/check', product: 'robot-ai', kind: 'check', spec };
const install: TaskInput = { id: 'robot-ai/install', product: 'robot-ai', kind: 'install', spec };
const dCheck = deviceDelayMs(DEVICE, 'robot-ai/check', 30 * MIN);
const dInstall = deviceDelayMs(DEVICE, 'robot-ai/install', 30 * MIN);
const SLOT = Date.parse('2026-06-02T01:00:00Z'); // 03:00 CEST

let dir: string;
let dbPath: string;
const open: Database.Database[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'otad-schedule-'));
  dbPath = join(dir, 'otad.db');
});
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One run of the daemon: a fresh database handle on the same file, a fresh clock and scheduler. */
function daemon(start: number) {
  const db = new Database(dbPath);
  open.push(db);
  const clock = new ManualClock(start);
  const timers = new ManualTimers(clock);
  const fired: Array<{ id: string } & DueInfo> = [];
  const scheduler = new Scheduler({
    clock, timers, store: new SqliteTaskStore(db), deviceId: DEVICE,
    onDue: (task, info) => { fired.push({ id: task.id, ...info }); },
  });
  scheduler.upsert(check);
  scheduler.upsert(install);
  scheduler.start();
  const down = () => { scheduler.stop(); db.close(); };
  return { db, clock, timers, scheduler, fired, down };
}

describe('Scheduler restart on the same SQLite file', () => {
  it('down across 03:00: the check is caught up once at now + device delay, the install (1 h window) waits for the next 03:00', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.timers.advance(HOUR);
    first.down();
    const restartAt = Date.parse('2026-06-02T03:30:00Z'); // 05:30 CEST
    const second = daemon(restartAt);
    expect(second.fired).toEqual([]);
    second.timers.advance(dCheck);
    expect(second.fired).toEqual([{ id: 'robot-ai/check', scheduledAt: SLOT, dueAt: restartAt + dCheck, firedAt: restartAt + dCheck, catchUp: true }]);
    expect(second.scheduler.get('robot-ai/install')?.nextRunAt).toBe(SLOT + DAY + dInstall);
    second.timers.advance(DAY);
    expect(second.fired.map((f) => `${f.id} ${iso(f.firedAt)}`)).toEqual([
      `robot-ai/check ${iso(restartAt + dCheck)}`,
      `robot-ai/check ${iso(SLOT + DAY + dCheck)}`,
      `robot-ai/install ${iso(SLOT + DAY + dInstall)}`,
    ].sort((a, b) => a.split(' ')[1]!.localeCompare(b.split(' ')[1]!)));
  });

  it('down across 03:00 but back within an hour: both are caught up', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.down();
    const restartAt = SLOT + 30 * MIN + 40 * MIN; // 04:10 CEST: both runs (03:00 + delay < 03:30) missed by < 1 h
    const second = daemon(restartAt);
    second.timers.advance(30 * MIN);
    expect(second.fired.map((f) => [f.id, f.catchUp, f.scheduledAt])).toEqual(
      expect.arrayContaining([['robot-ai/check', true, SLOT], ['robot-ai/install', true, SLOT]]),
    );
    expect(second.fired).toHaveLength(2);
  });

  it('down before 03:00 and back before it: fires on time at 03:00 + device delay', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.down();
    const second = daemon(Date.parse('2026-06-02T00:00:00Z'));
    second.timers.advance(2 * HOUR);
    expect(second.fired.map((f) => [f.id, f.firedAt, f.catchUp])).toEqual(
      [['robot-ai/check', SLOT + dCheck, false], ['robot-ai/install', SLOT + dInstall, false]].sort((a, b) => (a[1] as number) - (b[1] as number)),
    );
  });

  it('restarted right after a run: the served slot is not run again', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.timers.advance(6 * HOUR);
    expect(first.fired).toHaveLength(2);
    first.down();
    const second = daemon(Date.parse('2026-06-02T02:10:00Z'));
    second.timers.advance(12 * HOUR);
    expect(second.fired).toEqual([]);
    expect(second.scheduler.get('robot-ai/check')).toMatchObject({ lastSlotAt: SLOT, lastResult: 'ok', nextRunAt: SLOT + DAY + dCheck });
  });

  it('restarted while a catch-up is pending: it fires once, at the instant first planned', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.down();
    const restartAt = Date.parse('2026-06-02T05:00:00Z');
    const second = daemon(restartAt);
    second.timers.advance(Math.floor(dCheck / 2));
    second.down();
    const third = daemon(restartAt + Math.floor(dCheck / 2) + 1_000);
    third.timers.advance(DAY - 2 * HOUR);
    const checks = [...second.fired, ...third.fired].filter((f) => f.id === 'robot-ai/check');
    expect(checks.map((f) => [f.firedAt, f.catchUp])).toEqual([[restartAt + dCheck, true], [SLOT + DAY + dCheck, false]]);
  });

  it('keeps its own table, created idempotently, with the spec as JSON', () => {
    const first = daemon(Date.parse('2026-06-01T20:00:00Z'));
    first.db.exec(SCHEDULE_TASKS_SQL);
    const rows = first.db.prepare('SELECT id, kind, spec, next_slot_at, next_run_at FROM schedule_tasks ORDER BY id').all();
    expect(rows).toEqual([
      { id: 'robot-ai/check', kind: 'check', spec: JSON.stringify(spec), next_slot_at: SLOT, next_run_at: SLOT + dCheck },
      { id: 'robot-ai/install', kind: 'install', spec: JSON.stringify(spec), next_slot_at: SLOT, next_run_at: SLOT + dInstall },
    ]);
  });
});

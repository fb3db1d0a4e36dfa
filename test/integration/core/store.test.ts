import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../../src/store/store.js';
import { SCHEMA_VERSION } from '../../../src/store/migrations.js';
import { fakeOffer } from '../../support/fake-steps.js';

const dirs: string[] = [];
function dbPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'otad-store-'));
  dirs.push(d);
  return join(d, 'state', 'otad.db');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the store', () => {
  it('creates the schema by migrations, in WAL mode with synchronous FULL', () => {
    const s = Store.open(dbPath());
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('synchronous', { simple: true })).toBe(2);
    s.close();
  });

  it('re-opens an existing database without migrating twice', () => {
    const p = dbPath();
    Store.open(p).close();
    const s = Store.open(p);
    expect(s.schemaVersion()).toBe(SCHEMA_VERSION);
    s.close();
  });

  it('refuses a database from a newer otad instead of touching it', () => {
    const p = dbPath();
    Store.open(p).close();
    const raw = new Database(p);
    raw.pragma(`user_version = ${SCHEMA_VERSION + 5}`);
    raw.close();
    expect(() => Store.open(p)).toThrow(expect.objectContaining({ code: 'STORE_SCHEMA_TOO_NEW' }));
  });

  it('keeps a settled run ended when a later write in idle only changes the context, and clears the end when the run moves on', () => {
    const s = Store.open(dbPath());
    const run = (outcome: 'committed' | 'failed' | null, endedAt: number | null) => ({ kind: 'update', startedAt: 1, fromVersion: '1.0.0', toVersion: '2.0.0', outcome, endedAt, error: null });
    s.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'idle', runId: 'r1', at: 10, run: run('committed', 10) });
    // DETECTED while idle: the same run id, no end of its own.
    s.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'idle', runId: 'r1', at: 20, run: run(null, null) });
    // A restart re-announces the end: the first end stays.
    s.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'idle', runId: 'r1', at: 30, run: run('committed', 30) });
    expect(s.run('r1')).toMatchObject({ outcome: 'committed', endedAt: 10, state: 'idle' });
    // failed → rollback (a manual rollback of the same run): in flight again.
    s.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'failed', runId: 'r2', at: 40, run: run('failed', 40) });
    s.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'rollback', runId: 'r2', at: 50, run: run(null, null) });
    expect(s.run('r2')).toMatchObject({ outcome: null, endedAt: null, state: 'rollback' });
    s.close();
  });

  it('writes a transition, its snapshot, its run and a choice in one transaction', () => {
    const s = Store.open(dbPath());
    const seq = s.writeTransition({
      product: 'robot-ai',
      machineVersion: 1,
      snapshot: { value: 'preCheck', context: {} },
      state: 'preCheck',
      runId: 'r1',
      at: 1000,
      transition: { from: 'awaitingChoice', to: 'preCheck', eventType: 'UPDATE_NOW', event: { type: 'UPDATE_NOW' } },
      run: { kind: 'update', startedAt: 900, fromVersion: '1.0.0', toVersion: '2.0.0', outcome: null, endedAt: null, error: null },
      choice: { choice: 'UPDATE_NOW', source: 'rest', at: 1000 },
    });
    expect(seq).toBe(1);
    expect(s.loadSnapshot('robot-ai')).toMatchObject({ state: 'preCheck', runId: 'r1', machineVersion: 1 });
    expect(s.transitions({ runId: 'r1' })).toEqual([
      expect.objectContaining({ seq: 1, from: 'awaitingChoice', to: 'preCheck', eventType: 'UPDATE_NOW' }),
    ]);
    expect(s.run('r1')).toMatchObject({ state: 'preCheck', fromVersion: '1.0.0', toVersion: '2.0.0', outcome: null });
    expect(s.choices('robot-ai')).toEqual([{ runId: 'r1', choice: 'UPDATE_NOW', source: 'rest', at: 1000 }]);
    s.close();
  });

  it('rolls back every part of a transition write that fails half-way', () => {
    const s = Store.open(dbPath());
    s.db.exec('CREATE TRIGGER no_choices BEFORE INSERT ON choices BEGIN SELECT RAISE(ABORT, \'disk said no\'); END;');
    expect(() =>
      s.writeTransition({
        product: 'robot-ai',
        machineVersion: 1,
        snapshot: {},
        state: 'preCheck',
        runId: 'r1',
        at: 1,
        transition: { from: 'a', to: 'b', eventType: 'E', event: {} },
        choice: { choice: 'UPDATE_NOW', source: 'rest', at: 1 },
      }),
    ).toThrow(/disk said no/);
    expect(s.loadSnapshot('robot-ai')).toBeNull();
    expect(s.transitions()).toEqual([]);
    s.close();
  });

  it('keeps release notes with a notification flag until acknowledged, and remembers bad versions', () => {
    const s = Store.open(dbPath());
    expect(s.recordRelease(fakeOffer('robot-ai', '2.0.0'), 5)).toEqual({ isNew: true });
    expect(s.recordRelease(fakeOffer('robot-ai', '2.0.0'), 6)).toEqual({ isNew: false });
    expect(s.pendingNotifications('robot-ai').map((r) => r.version)).toEqual(['2.0.0']);
    expect(s.acknowledgeRelease('robot-ai', '2.0.0', 7)).toBe(1);
    expect(s.pendingNotifications()).toEqual([]);
    s.markBad('robot-ai', '2.0.0', { reason: 'health check failed', at: 8, by: 'automatic', actor: 'otad', runId: 'r1' });
    expect(s.isBad('robot-ai', '2.0.0')).toBe(true);
    expect(s.isBad('robot-ai', '2.0.1')).toBe(false);
    expect(s.release('robot-ai', '2.0.0')).toMatchObject({ badAt: 8, badReason: 'health check failed', badBy: 'automatic', badActor: 'otad', badRunId: 'r1' });
    // Unmarking returns the mark it cleared, and the release may be offered again.
    expect(s.unmarkBad('robot-ai', '2.0.0')).toMatchObject({ badBy: 'automatic' });
    expect(s.isBad('robot-ai', '2.0.0')).toBe(false);
    expect(s.unmarkBad('robot-ai', '2.0.0')).toBeNull();
    expect(s.knownReleases('robot-ai').map((r) => r.version)).toEqual(['2.0.0']);
    s.close();
  });

  it('counts restores per run and state for the crash-loop guard', () => {
    const s = Store.open(dbPath());
    expect(s.countRestore('r1', 'backup', 1)).toBe(1);
    expect(s.countRestore('r1', 'backup', 2)).toBe(2);
    expect(s.countRestore('r1', 'staging', 3)).toBe(1);
    s.close();
  });

  it('drops inhibits when their maximum hold time has passed', () => {
    const s = Store.open(dbPath());
    s.holdInhibit({ holder: 'robot-ai', reason: 'mission', since: 0, expiresAt: 100 });
    expect(s.activeInhibits(50).map((i) => i.holder)).toEqual(['robot-ai']);
    expect(s.activeInhibits(100)).toEqual([]);
    s.close();
  });
});

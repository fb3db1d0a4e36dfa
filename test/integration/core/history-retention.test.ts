/**
 * History retention on a real SQLite file through the store's own write path: every update cycle
 * writes the transitions (with their snapshots) and the run of a real exported run
 * (test/fixtures/replay/committed-run.json), as the daemon does.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store, type RetentionPolicy } from '../../../src/store/store.js';
import type { RunExport } from '../../../src/daemon/control.js';

const FIXTURE = JSON.parse(readFileSync(resolve(import.meta.dirname, '../../fixtures/replay/committed-run.json'), 'utf8')) as RunExport;
const DAY = 86_400_000;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'otad-retention-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** One update cycle of the fixture's run, as run `runId` starting at `at`; `finished: false` leaves it in flight. */
function writeCycle(store: Store, runId: string, at: number, opts: { product?: string; finished?: boolean } = {}): void {
  const product = opts.product ?? 'robot-ai';
  const base = FIXTURE.transitions[0]?.at ?? 0;
  const rows = opts.finished === false ? FIXTURE.transitions.slice(0, 4) : FIXTURE.transitions;
  rows.forEach((t, i) => {
    const last = i === FIXTURE.transitions.length - 1;
    const when = at + (t.at - base);
    store.writeTransition({
      product,
      machineVersion: t.machineVersion,
      snapshot: t.snapshot,
      state: t.to,
      runId,
      at: when,
      transition: { from: t.from, to: t.to, eventType: t.eventType, event: t.event },
      run: { kind: 'update', startedAt: at, fromVersion: '1.0.0', toVersion: '2.1.0', outcome: last ? 'committed' : null, endedAt: last ? when : null, error: null },
      ...(t.eventType === 'UPDATE_NOW' ? { choice: { choice: 'UPDATE_NOW', source: 'rest', at: when } } : {}),
    });
  });
}

function count(store: Store, table: string): number {
  return store.db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
}

/** The database file's size once the WAL is folded back into it. */
function fileSize(store: Store, path: string): number {
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  return statSync(path).size;
}

describe('history retention', () => {
  it('keeps the row counts and the file size bounded over 300 update cycles, where an unbounded store grows tenfold', () => {
    const policy: RetentionPolicy = { keepRuns: 20, maxAgeMs: 0 };
    const path = join(dir, 'bounded.db');
    const bounded = Store.open(path);
    const unboundedPath = join(dir, 'unbounded.db');
    const unbounded = Store.open(unboundedPath);
    // Sizes do not depend on fsync; skipping it keeps 600 cycles quick on a shared machine.
    for (const s of [bounded, unbounded]) s.db.pragma('synchronous = OFF');
    let sizeAt100 = 0;
    for (let i = 1; i <= 300; i++) {
      const at = Date.UTC(2026, 0, 1) + i * 3_600_000;
      writeCycle(bounded, `run-${i}`, at);
      writeCycle(unbounded, `run-${i}`, at);
      bounded.pruneHistory(policy, at + 3_600_000);
      if (i === 100) sizeAt100 = fileSize(bounded, path);
    }
    expect(count(bounded, 'runs')).toBe(20);
    // The 20 runs' rows, and the one before the oldest of them (the snapshot its export starts from).
    expect(count(bounded, 'transitions')).toBe(20 * FIXTURE.transitions.length + 1);
    expect(count(bounded, 'choices')).toBeLessThanOrEqual(20);
    // The 20 newest runs are the ones kept.
    expect(bounded.runs({ limit: 100 }).map((r) => r.runId)).toEqual(Array.from({ length: 20 }, (_, k) => `run-${300 - k}`));
    const sizeAt300 = fileSize(bounded, path);
    const unboundedSize = fileSize(unbounded, unboundedPath);
    // Pages freed by pruning go back to the filesystem: 200 more cycles leave the file where it was.
    expect(sizeAt300).toBeLessThanOrEqual(sizeAt100 * 1.1);
    expect(unboundedSize).toBeGreaterThan(sizeAt300 * 10);
    expect(bounded.db.pragma('auto_vacuum', { simple: true })).toBe(2);
    bounded.close();
    unbounded.close();
  });

  it('never removes a run in flight, the run the saved state belongs to, or the newest finished run, whatever their age', () => {
    const store = Store.open(join(dir, 'otad.db'));
    const now = Date.UTC(2026, 5, 1);
    // A run left in flight long ago (the daemon was stopped in the middle of it), then 30 finished runs.
    writeCycle(store, 'in-flight', now - 400 * DAY, { finished: false });
    for (let i = 1; i <= 30; i++) writeCycle(store, `old-${i}`, now - (300 - i) * DAY);
    // The other product's machine stays on a run that ended in failed: recovery reads it.
    writeCycle(store, 'vacuum-failed', now - 350 * DAY, { product: 'vacuum' });
    for (let i = 1; i <= 5; i++) writeCycle(store, `vacuum-${i}`, now - (200 - i) * DAY, { product: 'vacuum' });
    store.db.prepare("UPDATE snapshots SET run_id = 'vacuum-failed' WHERE product = 'vacuum'").run();

    const result = store.pruneHistory({ keepRuns: 3, maxAgeMs: 90 * DAY }, now);
    const kept = (product: string) => store.runs({ product, limit: 100 }).map((r) => r.runId).sort();
    // Every finished robot-ai run is older than 90 days: only the newest stays, beside the one in flight.
    expect(kept('robot-ai')).toEqual(['in-flight', 'old-30'].sort());
    expect(kept('vacuum')).toEqual(['vacuum-5', 'vacuum-failed'].sort());
    expect(result.runs).toBe(29 + 4);
    expect(store.transitions({ runId: 'in-flight', limit: 100 })).toHaveLength(4);
    expect(store.transitions({ runId: 'vacuum-failed', limit: 100 })).toHaveLength(FIXTURE.transitions.length);
    expect(store.transitions({ runId: 'old-29', limit: 100 })).toEqual([]);
    store.close();
  });

  it('bounds the audit trail by count and by age, newest kept', () => {
    const store = Store.open(join(dir, 'otad.db'));
    const now = Date.UTC(2026, 5, 1);
    for (let i = 0; i < 300; i++) store.audit({ kind: 'upload', message: `event ${i}` }, now - (300 - i) * DAY);
    const byCount = store.pruneHistory({ keepRuns: 100, maxAgeMs: 0, auditKeep: 200 }, now);
    expect(byCount.audit).toBe(100);
    expect(store.auditTrail(1000).map((e) => e.message)).toEqual(Array.from({ length: 200 }, (_, i) => `event ${299 - i}`));
    const byAge = store.pruneHistory({ keepRuns: 100, maxAgeMs: 0, auditKeep: 200, auditMaxAgeMs: 50 * DAY }, now);
    // Entries 250 … 299 are at most 50 days old.
    expect(byAge.audit).toBe(150);
    expect(store.auditTrail(1000)).toHaveLength(50);
    expect(store.pruneHistory({ keepRuns: 100, maxAgeMs: 0, auditKeep: 200, auditMaxAgeMs: 50 * DAY }, now).audit).toBe(0);
    store.close();
  });

  it('drops runs past the age limit but keeps the recent ones up to the count', () => {
    const store = Store.open(join(dir, 'otad.db'));
    const now = Date.UTC(2026, 5, 1);
    for (let i = 9; i >= 0; i--) writeCycle(store, `day-${i}`, now - i * 10 * DAY);
    store.pruneHistory({ keepRuns: 100, maxAgeMs: 35 * DAY }, now);
    expect(store.runs({ limit: 100 }).map((r) => r.runId)).toEqual(['day-0', 'day-1', 'day-2', 'day-3']);
    store.close();
  });

  it('records how far it pruned, and keeps only the one transition right before the oldest run it keeps', () => {
    const store = Store.open(join(dir, 'otad.db'));
    const now = Date.UTC(2026, 5, 1);
    // A daemon start writes a transition outside any run.
    store.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'idle', runId: null, at: now - 50 * DAY, transition: { from: '(none)', to: 'idle', eventType: 'xstate.init', event: {} } });
    for (let i = 1; i <= 5; i++) writeCycle(store, `r-${i}`, now - (40 - i) * DAY);
    const before = store.seqRange();
    expect(before).toMatchObject({ oldest: 1, prunedThrough: 0 });
    const removedMax = Math.max(...store.transitions({ runId: 'r-3', limit: 100 }).map((t) => t.seq));
    store.pruneHistory({ keepRuns: 2, maxAgeMs: 0 }, now);
    const after = store.seqRange();
    expect(after.latest).toBe(before.latest);
    expect(after.prunedThrough).toBe(removedMax - 1);
    expect(after.oldest).toBe(removedMax);
    // The daemon start's row and r-1 … r-3 are gone but r-3's last row: r-4's export starts from its snapshot.
    expect(store.transitions({ limit: 100 }).filter((t) => t.runId === null || t.runId === 'r-3').map((t) => t.seq)).toEqual([removedMax]);
    const firstOfR4 = store.transitions({ runId: 'r-4', limit: 1 })[0]?.seq as number;
    expect(store.snapshotBefore('robot-ai', firstOfR4)).toEqual(FIXTURE.transitions.at(-1)?.snapshot);
    store.close();
  });

  it('switches a database from before auto-vacuum over once, keeping its rows', () => {
    const path = join(dir, 'old.db');
    const first = Store.open(path);
    first.db.pragma('auto_vacuum = NONE');
    first.db.exec('VACUUM');
    writeCycle(first, 'r-1', Date.UTC(2026, 0, 1));
    expect(first.db.pragma('auto_vacuum', { simple: true })).toBe(0);
    first.close();
    const again = Store.open(path);
    expect(again.db.pragma('auto_vacuum', { simple: true })).toBe(2);
    expect(again.runs().map((r) => r.runId)).toEqual(['r-1']);
    again.close();
  });
});

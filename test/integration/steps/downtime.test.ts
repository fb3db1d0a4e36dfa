/**
 * Downtime of a run, measured by the real apply, validate and rollback steps (real processes,
 * real SQLite), and the recorder's handling of a restart and a reboot inside the downtime. No
 * wall-clock figure is asserted: only that the figures exist, are ordered and add up.
 */
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RollbackInput } from '../../../machines/types.js';
import { DowntimeRecorder, type Downtime, type DowntimeClock } from '../../../src/store/downtime.js';
import { Store } from '../../../src/store/store.js';
import { createApply } from '../../../src/steps/apply.js';
import { createRollback } from '../../../src/steps/rollback.js';
import { createValidate } from '../../../src/steps/validate.js';
import { createWorld, offer, waitForVersion, type World } from './execution-world.js';

let world: World;
const signal = new AbortController().signal;

beforeEach(async () => {
  world = await createWorld();
});
afterEach(async () => {
  await world.close();
});

function expectConsistent(d: Downtime): void {
  expect(d.totalMs).not.toBeNull();
  for (const v of [d.stopMs, d.switchMs, d.startMs, d.probeMs, d.waitMs]) expect(v).toBeGreaterThanOrEqual(0);
  expect(d.stopMs + d.switchMs + d.startMs + d.probeMs).toBeCloseTo(d.totalMs as number, 2);
  expect(d.waitMs).toBeLessThanOrEqual(d.probeMs + 0.001);
  expect(d.otadMs).toBeCloseTo((d.totalMs as number) - d.waitMs, 2);
  expect(d.greenAt as number).toBeGreaterThanOrEqual(d.stoppedAt);
  expect(d.open).toBeNull();
  expect(d.note).toBeNull();
}

describe('downtime measured by the steps', () => {
  it('apply then validate: stop → switch → start → first green round, on the monotonic clock, adding up to the total', async () => {
    const ports = world.ports({ downtime: new DowntimeRecorder(world.db.db) });
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1');
    const out = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    const during = world.db.downtime('r1', false) as Downtime;
    expect(during).toMatchObject({ totalMs: null, open: 'probe', greenAt: null });
    expect(during.stopMs + during.switchMs + during.startMs).toBeGreaterThan(0);

    await createValidate(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    const d = world.db.downtime('r1', true) as Downtime;
    expectConsistent(d);
    expect(d).toMatchObject({ greenOn: 'new', clock: 'monotonic', acrossRestart: false });
    expect(world.db.lastDowntime('robot-ai')).toMatchObject({ runId: 'r1', totalMs: d.totalMs });
  });

  it('a failed validation and its rollback: one downtime from the first stop to green on the old release', async () => {
    const ports = world.ports({ downtime: new DowntimeRecorder(world.db.db), rollbackProbation: { windowMs: 100, intervalMs: 30, failureThreshold: 60 } });
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1', { broken: true });
    const out = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(await waitForVersion(world)).toBe('2.0.0');
    const input: RollbackInput = { product: 'robot-ai', runId: 'r1', reason: 'validation failed', cause: 'failure', offer: offer('2.0.0'), applied: out, backup: null, installedVersion: '1.0.0', markBad: false, requestedBy: null, failure: null };
    await createRollback(ports)(input, signal);
    const d = world.db.downtime('r1', true) as Downtime;
    expectConsistent(d);
    expect(d.greenOn).toBe('old');
    // The broken release's time before the rollback stopped it is the product's, not otad's.
    expect(d.waitMs).toBeGreaterThan(0);
  });

  it('a run that ends without a green round has no total, and says why', async () => {
    const ports = world.ports({ downtime: new DowntimeRecorder(world.db.db) });
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1');
    await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(world.db.downtime('r1', true)).toMatchObject({ totalMs: null, otadMs: null, open: null, note: expect.stringContaining('without a round') });
  });
});

describe('the downtime recorder across restarts', () => {
  /** A clock moved by hand: `boot` and `instance` say which boot and which otad process reads it. */
  function clock(state: { wall: number; mono: number; boot: string; instance: string }): DowntimeClock {
    return { wall: () => state.wall, monotonic: () => state.mono, bootId: () => state.boot, get instance() { return state.instance; } };
  }

  it('an otad restart within one boot keeps the monotonic clock and is flagged; a reboot falls back to the wall clock and says so', () => {
    const file = path.join(world.stateDir, 'restart.db');
    const t = { wall: 1_000_000, mono: 50, boot: 'boot-a', instance: 'otad-1' };
    let store = Store.open(file);
    new DowntimeRecorder(store.db, clock(t)).mark('r1', 'robot-ai', 'stop');
    t.wall += 10; t.mono += 10;
    new DowntimeRecorder(store.db, clock(t)).mark('r1', 'robot-ai', 'stopped');
    store.close();

    // otad killed and started again in the same boot: the wall clock jumped, the monotonic did not.
    store = Store.open(file);
    t.instance = 'otad-2'; t.wall += 999_000; t.mono += 20;
    new DowntimeRecorder(store.db, clock(t)).mark('r1', 'robot-ai', 'switched');
    let d = store.downtime('r1', false) as Downtime;
    expect(d).toMatchObject({ stopMs: 10, switchMs: 20, acrossRestart: true, clock: 'monotonic', open: 'start' });
    store.close();

    // A power cut: new boot, the monotonic clock starts over; the wall clock measures the gap.
    store = Store.open(file);
    t.instance = 'otad-3'; t.boot = 'boot-b'; t.mono = 5; t.wall += 30_000;
    const r = new DowntimeRecorder(store.db, clock(t));
    r.mark('r1', 'robot-ai', 'started');
    t.wall += 40; t.mono += 40;
    r.mark('r1', 'robot-ai', 'green', { on: 'new', waitMs: 25 });
    d = store.downtime('r1', true) as Downtime;
    expect(d).toMatchObject({ stopMs: 10, switchMs: 20, startMs: 30_000, probeMs: 40, waitMs: 25, totalMs: 30_070, otadMs: 30_045, clock: 'wall-clock', acrossRestart: true, greenOn: 'new' });
    store.close();
  });

  it('a wall clock that went back across a reboot leaves the total null with the reason; later marks change nothing', () => {
    const store = Store.open(path.join(world.stateDir, 'back.db'));
    const t = { wall: 1_000_000, mono: 50, boot: 'boot-a', instance: 'otad-1' };
    new DowntimeRecorder(store.db, clock(t)).mark('r1', 'robot-ai', 'stop');
    t.instance = 'otad-2'; t.boot = 'boot-b'; t.wall -= 5000; t.mono = 1;
    const r = new DowntimeRecorder(store.db, clock(t));
    r.mark('r1', 'robot-ai', 'stopped');
    r.mark('r1', 'robot-ai', 'green', { on: 'new' });
    expect(store.downtime('r1', true)).toMatchObject({ totalMs: null, greenAt: null, note: expect.stringContaining('wall clock went back') });
    store.close();
  });

  it('history keeps the downtime with its run and summarises last, median and max', () => {
    const store = Store.open(path.join(world.stateDir, 'summary.db'));
    const t = { wall: 1_000_000, mono: 0, boot: 'boot-a', instance: 'otad-1' };
    const r = new DowntimeRecorder(store.db, clock(t));
    for (const [i, ms] of [30, 10, 20].entries()) {
      const runId = `r${i}`;
      store.writeTransition({ product: 'robot-ai', machineVersion: 1, snapshot: {}, state: 'idle', runId, at: t.wall, run: { kind: 'update', startedAt: t.wall, fromVersion: '1', toVersion: '2', outcome: 'committed', endedAt: t.wall + 1, error: null } });
      r.mark(runId, 'robot-ai', 'stop');
      t.wall += ms; t.mono += ms;
      r.mark(runId, 'robot-ai', 'green', { on: 'new' });
      t.wall += 1000; t.mono += 1000;
    }
    expect(store.runs({ product: 'robot-ai' }).map((x) => x.downtime?.totalMs)).toEqual([20, 10, 30]);
    expect(store.downtimeSummary('robot-ai')).toEqual({ count: 3, lastMs: 20, medianMs: 20, maxMs: 30 });
    store.close();
  });
});

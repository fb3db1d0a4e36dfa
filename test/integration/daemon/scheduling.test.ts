/**
 * Scheduling in the daemon with an injected clock: the daily check at 03:00 local time, its task
 * kept in SQLite across restarts, catch-up after a restart across the scheduled time, a missed
 * install slot, timeouts across a restart, and wall-clock jumps.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { ManualTimers } from '../../../src/schedule/timers.js';
import { fakeStepProvider } from '../../support/fake-steps.js';
import { waitUntil } from '../../support/otad-process.js';

const HOUR = 3_600_000;
const DEVICE = 'mac-0242ac110002';
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function world(raw: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'otad-sched-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const config = buildConfig({
    paths: { stateDir: join(dir, 'state') },
    schedule: { checkAt: '03:00', installAt: '03:00', timeZone: 'Europe/Berlin', window: '30m' },
    decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '2h' },
    products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') }],
    ...raw,
  });
  let daemon: Daemon | null = null;
  const clock = new ManualClock('2026-06-10T12:00:00Z');
  let timers = new ManualTimers(clock);
  return {
    clock,
    get timers() {
      return timers;
    },
    get daemon() {
      return daemon as Daemon;
    },
    async start() {
      timers = new ManualTimers(clock);
      const logging = createLogging({ level: 'debug', stdout: false });
      daemon = new Daemon({ config, logging, clock, deviceId: DEVICE, stepProvider: fakeStepProvider({}), timers, schedulerTimers: timers, uncleanStart: false });
      await daemon.start();
      const d = daemon;
      cleanups.push(() => d.stop(0));
      return d;
    },
    async stop() {
      await daemon?.stop(0);
    },
    /** Let `ms` pass: timers fire in order; steps (real promises) get to run in between. */
    async pass(ms: number, stepMs = 60_000) {
      for (let left = ms; left > 0; left -= stepMs) {
        timers.advance(Math.min(stepMs, left));
        for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
      }
    },
    product() {
      return (daemon as Daemon).status().products[0]!;
    },
  };
}

const berlin = (t: number) =>
  new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', dateStyle: 'short', timeStyle: 'short', hourCycle: 'h23' }).format(t);

describe('scheduling in the daemon', () => {
  it('checks daily at 03:00 Berlin time plus this device’s delay, and keeps the task in SQLite', async () => {
    const w = world({ decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '2h' } });
    const d = await w.start();
    const next = w.product().nextCheckAt!;
    expect(berlin(next)).toMatch(/^11\/06\/2026, 03:(0\d|1\d|2\d)$/);
    await w.pass(next - w.clock.now() - 1000);
    expect(w.product().state).toBe('idle');
    await w.pass(2000);
    await waitUntil(() => w.product().state === 'awaitingChoice');
    const row = d.store.db.prepare("SELECT * FROM schedule_tasks WHERE id = 'check:robot-ai'").get() as Record<string, unknown>;
    expect(row).toMatchObject({ product: 'robot-ai', kind: 'check', last_result: expect.stringMatching(/^check started/) });
    expect(row.next_run_at as number).toBeGreaterThan(next + 23 * HOUR);
  });

  it('catches up a check missed while otad was down (restart across the scheduled time)', async () => {
    const w = world();
    await w.start();
    const next = w.product().nextCheckAt!;
    await w.stop();
    w.clock.advance(next - w.clock.now() + 2 * HOUR); // otad was off over 03:00
    await w.start();
    await w.pass(31 * 60_000);
    await waitUntil(() => w.product().state === 'awaitingChoice');
    expect(w.daemon.history()[0]).toMatchObject({ state: 'awaitingChoice' });
  });

  it('installs at the scheduled slot, and after a restart within the catch-up window still does', async () => {
    const w = world();
    await w.start();
    await w.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => w.product().state === 'awaitingChoice');
    await w.daemon.dispatch({ type: 'SCHEDULE_3AM', source: 'rest' });
    const at = w.product().deadlines.scheduledAt!;
    expect(berlin(at)).toMatch(/^11\/06\/2026, 03:[0-2]\d$/);
    await w.stop();
    w.clock.advance(at - w.clock.now() + 20 * 60_000);
    await w.start();
    await w.pass(1000, 1000);
    await waitUntil(() => w.product().lastOutcome === 'committed');
  });

  it('moves a scheduled install missed by hours to the next night instead of running it mid-day', async () => {
    const w = world();
    await w.start();
    await w.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => w.product().state === 'awaitingChoice');
    await w.daemon.dispatch({ type: 'SCHEDULE_3AM', source: 'rest' });
    const at = w.product().deadlines.scheduledAt!;
    await w.stop();
    w.clock.advance(at - w.clock.now() + 6 * HOUR);
    await w.start();
    await w.pass(1000, 1000);
    expect(w.product().state).toBe('scheduled');
    const moved = w.product().deadlines.scheduledAt!;
    expect(moved - at).toBeGreaterThan(20 * HOUR);
    expect(berlin(moved)).toMatch(/^12\/06\/2026, 03:[0-2]\d$/);
  });

  it('applies the default choice when the choice timeout passes during a restart', async () => {
    const w = world();
    await w.start();
    await w.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => w.product().state === 'awaitingChoice');
    await w.stop();
    w.clock.advance(3 * HOUR);
    await w.start();
    expect(w.product().state).toBe('awaitingChoice');
    await w.pass(1000, 1000);
    expect(w.product().state).toBe('scheduled');
    expect(w.product().choice).toMatchObject({ choice: 'SCHEDULE_3AM', source: 'timer' });
  });

  it('lets an UPDATE_NOW confirmation lapse across a restart', async () => {
    const w = world({ decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '2h', confirmTimeout: '5m' } });
    await w.start();
    await w.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => w.product().state === 'awaitingChoice');
    await w.daemon.dispatch({ type: 'UPDATE_NOW', source: 'dbus' });
    expect(w.product().state).toBe('confirming');
    await w.stop();
    w.clock.advance(10 * 60_000);
    await w.start();
    await w.pass(1000, 1000);
    expect(w.product().state).toBe('awaitingChoice');
    await expect(w.daemon.dispatch({ type: 'CONFIRM', source: 'dbus' })).rejects.toMatchObject({ code: 'API_EVENT_NOT_ALLOWED' });
  });

  it('recomputes a scheduled install when the wall clock jumps back by years (a robot without RTC)', async () => {
    const w = world();
    await w.start();
    await w.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => w.product().state === 'awaitingChoice');
    await w.daemon.dispatch({ type: 'SCHEDULE_3AM', source: 'rest' });
    w.clock.jumpTo('2021-01-01T12:00:00Z');
    await w.pass(2 * 60_000);
    const at = w.product().deadlines.scheduledAt!;
    expect(berlin(at)).toMatch(/^02\/01\/2021, 03:[0-2]\d$/);
    expect(w.product().state).toBe('scheduled');
  });

  it('fires a check once, not a burst, after the clock jumps forward by days', async () => {
    const w = world();
    await w.start();
    w.clock.jumpTo('2026-06-15T02:30:00Z'); // 04:30 in Berlin, five days on: inside the catch-up window
    await w.pass(40 * 60_000);
    await waitUntil(() => w.product().state === 'awaitingChoice');
    expect(w.daemon.history().length).toBe(1);
  });
});

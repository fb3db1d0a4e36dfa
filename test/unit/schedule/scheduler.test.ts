import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { Scheduler } from '../../../src/schedule/scheduler.js';
import type { DueInfo, OnDue, TaskInput } from '../../../src/schedule/scheduler.js';
import { deviceDelayMs } from '../../../src/schedule/spread.js';
import { MemoryTaskStore } from '../../../src/schedule/task-store.js';
import type { TaskStore } from '../../../src/schedule/task-store.js';
import { ManualTimers } from '../../../src/schedule/timers.js';
import type { TimerPort } from '../../../src/schedule/timers.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const iso = (t: number): string => new Date(t).toISOString();
const DEVICE = 'robot-0042';

const berlinCheck: TaskInput = { id: 'robot-ai/check', product: 'robot-ai', kind: 'check', spec: { time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0 } };
const berlinInstall: TaskInput = { id: 'robot-ai/install', product: 'robot-ai', kind: 'install', spec: { time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0 } };

interface Fired { id: string; scheduledAt: string; dueAt: string; firedAt: string; catchUp: boolean }

function harness(opts: { start: string; tasks: TaskInput[]; store?: TaskStore; onDue?: OnDue }) {
  const clock = new ManualClock(opts.start);
  const timers = new ManualTimers(clock);
  const sleeps: number[] = [];
  const spyTimers: TimerPort = {
    setTimeout: (fn, ms) => { sleeps.push(ms); return timers.setTimeout(fn, ms); },
    clearTimeout: (h) => timers.clearTimeout(h),
  };
  const store = opts.store ?? new MemoryTaskStore();
  const fired: Fired[] = [];
  const jumps: number[] = [];
  const scheduler = new Scheduler({
    clock, timers: spyTimers, store, deviceId: DEVICE,
    onDue: (task, info: DueInfo) => {
      fired.push({ id: task.id, scheduledAt: iso(info.scheduledAt), dueAt: iso(info.dueAt), firedAt: iso(info.firedAt), catchUp: info.catchUp });
      return opts.onDue?.(task, info);
    },
    onClockJump: (ms) => jumps.push(ms),
  });
  for (const t of opts.tasks) scheduler.upsert(t);
  scheduler.start();
  return { clock, timers, scheduler, store, fired, sleeps, jumps };
}

describe('Scheduler: daily local slots', () => {
  it('fires at local 03:00 every day, across the spring-forward day in Europe/Berlin', () => {
    const h = harness({ start: '2026-03-27T12:00:00Z', tasks: [berlinCheck] });
    h.timers.advance(4 * DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual([
      '2026-03-28T02:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T01:00:00.000Z', '2026-03-31T01:00:00.000Z',
    ]);
    expect(h.fired.every((f) => f.firedAt === f.scheduledAt && !f.catchUp)).toBe(true);
  });

  it('fires a 02:30 slot once on the fall-back day (first occurrence), in Berlin and Sydney', () => {
    const berlin = harness({ start: '2026-10-24T12:00:00Z', tasks: [{ ...berlinCheck, spec: { time: '02:30', timeZone: 'Europe/Berlin', windowMs: 0 } }] });
    berlin.timers.advance(2 * DAY);
    expect(berlin.fired.map((f) => f.firedAt)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
    const sydney = harness({ start: '2026-04-04T00:00:00Z', tasks: [{ ...berlinCheck, spec: { time: '02:30', timeZone: 'Australia/Sydney', windowMs: 0 } }] });
    sydney.timers.advance(2 * DAY);
    expect(sydney.fired.map((f) => f.firedAt)).toEqual(['2026-04-04T15:30:00.000Z', '2026-04-05T16:30:00.000Z']);
  });

  it('fires in the Pacific/Chatham spring gap at the jump instant (03:45 +13:45)', () => {
    const h = harness({ start: '2026-09-26T00:00:00Z', tasks: [{ ...berlinCheck, spec: { time: '03:00', timeZone: 'Pacific/Chatham', windowMs: 0 } }] });
    h.timers.advance(2 * DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-09-26T14:00:00.000Z', '2026-09-27T13:15:00.000Z']);
  });

  it('adds the device delay inside the jitter window to each slot', () => {
    const spec = { time: '03:00', timeZone: 'Europe/Berlin', windowMs: HOUR };
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [{ ...berlinCheck, spec }] });
    const delay = deviceDelayMs(DEVICE, 'robot-ai/check', HOUR);
    expect(delay).toBeGreaterThan(0);
    h.timers.advance(2 * DAY);
    expect(h.fired).toEqual([
      { id: 'robot-ai/check', scheduledAt: '2026-06-02T01:00:00.000Z', dueAt: iso(Date.parse('2026-06-02T01:00:00Z') + delay), firedAt: iso(Date.parse('2026-06-02T01:00:00Z') + delay), catchUp: false },
      { id: 'robot-ai/check', scheduledAt: '2026-06-03T01:00:00.000Z', dueAt: iso(Date.parse('2026-06-03T01:00:00Z') + delay), firedAt: iso(Date.parse('2026-06-03T01:00:00Z') + delay), catchUp: false },
    ]);
    expect(h.scheduler.get('robot-ai/check')?.nextRunAt).toBe(Date.parse('2026-06-04T01:00:00Z') + delay);
  });

  it('never sleeps longer than 60 s, so a clock jump is noticed within a minute', () => {
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [berlinCheck] });
    h.timers.advance(DAY);
    expect(h.sleeps.length).toBeGreaterThan(1000);
    expect(Math.max(...h.sleeps)).toBeLessThanOrEqual(60_000);
    expect(h.timers.pending()).toBe(1);
  });
});

describe('Scheduler: wall-clock jumps', () => {
  it('jump forward by hours before the slot: recomputes and fires once at local 03:00, not hours late', () => {
    const h = harness({ start: '2026-06-01T18:00:00Z', tasks: [berlinCheck] });
    h.timers.advance(MIN);
    h.clock.jumpTo('2026-06-01T23:30:00Z'); // +5.5 h: 01:30 CEST
    h.timers.advance(3 * HOUR);
    expect(h.jumps).toHaveLength(1);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-06-02T01:00:00.000Z']);
    h.timers.advance(DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-06-02T01:00:00.000Z', '2026-06-03T01:00:00.000Z']);
  });

  it('jump back by hours before the slot: does not fire early, fires at local 03:00', () => {
    const h = harness({ start: '2026-06-02T00:30:00Z', tasks: [berlinCheck] }); // 02:30 CEST, 30 min to go
    h.timers.advance(MIN);
    h.clock.jumpTo('2026-06-01T20:00:00Z'); // back 4.5 h
    h.timers.advance(HOUR);
    expect(h.fired).toEqual([]);
    h.timers.advance(5 * HOUR);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-06-02T01:00:00.000Z']);
  });

  it('jump back by hours over a slot already served: never fires it twice', () => {
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [berlinCheck, berlinInstall] });
    h.timers.advance(13 * HOUR + 30 * MIN); // past 2026-06-02 03:00 CEST
    expect(h.fired.map((f) => f.id)).toEqual(['robot-ai/check', 'robot-ai/install']);
    h.clock.jumpTo('2026-06-01T22:00:00Z'); // back to midnight before the slot
    h.timers.advance(2 * DAY);
    const check = h.fired.filter((f) => f.id === 'robot-ai/check').map((f) => f.scheduledAt);
    // The clock passes 2026-06-02 03:00 CEST a second time (3 h after the jump): nothing fires then.
    expect(check).toEqual(['2026-06-02T01:00:00.000Z', '2026-06-03T01:00:00.000Z']);
    expect(h.fired.filter((f) => f.id === 'robot-ai/install')).toHaveLength(2);
  });

  it('jump forward by years: one catch-up for a check inside its window, a skip for an install, no burst of missed days', () => {
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [berlinCheck, berlinInstall] });
    h.timers.advance(MIN);
    h.clock.jumpTo('2031-06-01T12:00:00Z'); // 14:00 CEST: the 03:00 slot was 11 h ago
    h.timers.advance(MIN);
    expect(h.fired).toEqual([
      { id: 'robot-ai/check', scheduledAt: '2031-06-01T01:00:00.000Z', dueAt: '2031-06-01T12:01:00.000Z', firedAt: '2031-06-01T12:01:00.000Z', catchUp: true },
    ]);
    h.timers.advance(DAY);
    expect(h.fired.slice(1).map((f) => `${f.id} ${f.firedAt}`)).toEqual([
      'robot-ai/check 2031-06-02T01:00:00.000Z', 'robot-ai/install 2031-06-02T01:00:00.000Z',
    ]);
  });

  it('jump back by years (a clock that had been wrong in the future): runs at the next real 03:00, not years later', () => {
    const h = harness({ start: '2040-06-01T12:00:00Z', tasks: [berlinCheck] });
    h.timers.advance(DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2040-06-02T01:00:00.000Z']);
    h.clock.jumpTo('2026-06-01T12:00:00Z');
    h.timers.advance(DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2040-06-02T01:00:00.000Z', '2026-06-02T01:00:00.000Z']);
  });

  it('a robot that boots with its clock at 1970 and then syncs NTP keeps the slot it served before the reboot', () => {
    const store = new MemoryTaskStore();
    const before = harness({ start: '2026-05-31T12:00:00Z', tasks: [berlinCheck], store });
    before.timers.advance(DAY); // served 2026-06-01 03:00 CEST
    before.scheduler.stop();
    // Reboot the same evening; the clock starts at the epoch until NTP syncs.
    const after = harness({ start: '1970-01-01T00:00:05Z', tasks: [berlinCheck], store });
    after.timers.advance(MIN);
    after.clock.jumpTo('2026-06-01T20:00:00Z');
    after.timers.advance(DAY);
    expect(after.fired.map((f) => `${f.firedAt} ${f.catchUp}`)).toEqual(['2026-06-02T01:00:00.000Z false']);
  });

  it('a robot that was off over 03:00 and boots at 1970 catches the missed check up once after the NTP sync', () => {
    const store = new MemoryTaskStore();
    const before = harness({ start: '2026-05-31T12:00:00Z', tasks: [berlinCheck], store });
    before.timers.advance(DAY);
    before.scheduler.stop();
    const after = harness({ start: '1970-01-01T00:00:05Z', tasks: [berlinCheck], store });
    after.timers.advance(MIN);
    after.clock.jumpTo('2026-06-02T07:00:00Z'); // 09:00 CEST: the 03:00 check was missed 6 h ago
    after.timers.advance(MIN);
    expect(after.fired.map((f) => `${f.scheduledAt} ${f.catchUp}`)).toEqual(['2026-06-02T01:00:00.000Z true']);
    after.timers.advance(DAY);
    expect(after.fired).toHaveLength(2);
  });
});

describe('Scheduler: tasks', () => {
  it('a once task (SCHEDULE_3AM) fires at the next local 03:00 and then is done', () => {
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [{ ...berlinInstall, id: 'robot-ai/scheduled-install', spec: { time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0, once: true } }] });
    h.timers.advance(3 * DAY);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-06-02T01:00:00.000Z']);
    expect(h.scheduler.get('robot-ai/scheduled-install')).toMatchObject({ nextRunAt: null, nextSlotAt: null, lastResult: 'ok' });
  });

  it('an absolute instant fires once, and not again when the clock goes back over it', () => {
    const at = Date.parse('2026-06-01T14:00:00Z');
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [{ ...berlinInstall, spec: { at } }] });
    h.timers.advance(3 * HOUR);
    h.clock.jumpTo('2026-06-01T13:00:00Z');
    h.timers.advance(3 * HOUR);
    expect(h.fired.map((f) => f.firedAt)).toEqual(['2026-06-01T14:00:00.000Z']);
  });

  it('re-declaring a task with the same spec keeps its plan; a new spec replans; remove stops it', () => {
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [berlinCheck] });
    const planned = h.scheduler.get(berlinCheck.id);
    h.scheduler.upsert({ ...berlinCheck, spec: { windowMs: 0, timeZone: 'Europe/Berlin', time: '03:00' } });
    expect(h.scheduler.get(berlinCheck.id)).toEqual(planned);
    h.scheduler.upsert({ ...berlinCheck, spec: { time: '04:00', timeZone: 'Europe/Berlin', windowMs: 0 } });
    expect(h.scheduler.get(berlinCheck.id)?.nextRunAt).toBe(Date.parse('2026-06-02T02:00:00Z'));
    expect(h.scheduler.remove(berlinCheck.id)).toBe(true);
    h.timers.advance(2 * DAY);
    expect(h.fired).toEqual([]);
    expect(h.store.load()).toEqual([]);
  });

  it('records what onDue returned, resolved or threw as lastResult', async () => {
    const results: Array<() => unknown> = [() => undefined, () => 'no update', () => Promise.resolve('installed 2.4.0'), () => { throw new Error('boom'); }, () => Promise.reject(new Error('late boom'))];
    let i = 0;
    const h = harness({ start: '2026-06-01T12:00:00Z', tasks: [berlinCheck], onDue: () => results[i++]!() as string });
    const seen: Array<string | null | undefined> = [];
    for (let day = 0; day < results.length; day++) {
      h.timers.advance(DAY);
      await Promise.resolve();
      await Promise.resolve();
      seen.push(h.scheduler.get(berlinCheck.id)?.lastResult);
    }
    expect(seen).toEqual(['ok', 'no update', 'installed 2.4.0', 'error: INTERNAL: boom', 'error: INTERNAL: late boom']);
    expect(h.store.load()[0]?.lastResult).toBe('error: INTERNAL: late boom');
  });

  it('a task added after its slot has passed today waits for tomorrow (no catch-up for a run never planned)', () => {
    const h = harness({ start: '2026-06-01T08:00:00Z', tasks: [berlinCheck] });
    h.timers.advance(HOUR);
    expect(h.fired).toEqual([]);
    expect(h.scheduler.get(berlinCheck.id)?.nextRunAt).toBe(Date.parse('2026-06-02T01:00:00Z'));
  });

  it('rejects an invalid spec with CONFIG_INVALID', () => {
    const h = harness({ start: '2026-06-01T08:00:00Z', tasks: [] });
    expect(() => h.scheduler.upsert({ ...berlinCheck, spec: { time: '3am', timeZone: 'Europe/Berlin', windowMs: 0 } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => h.scheduler.upsert({ ...berlinCheck, spec: { time: '03:00', timeZone: 'Europe/Berlin', windowMs: 2 * DAY } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('Scheduler: missed one-shot runs', () => {
  it('an absolute install missed by more than its window is marked missed, and a check within it is caught up', () => {
    const store = new MemoryTaskStore();
    const at = Date.parse('2026-06-01T14:00:00Z');
    const first = harness({ start: '2026-06-01T12:00:00Z', store, tasks: [{ ...berlinInstall, spec: { at } }, { ...berlinCheck, id: 'robot-ai/check-now', spec: { at } }] });
    first.scheduler.stop();
    const second = harness({ start: '2026-06-01T17:00:00Z', store, tasks: [] });
    second.timers.advance(MIN);
    expect(second.fired.map((f) => `${f.id} ${f.catchUp}`)).toEqual(['robot-ai/check-now true']);
    expect(second.scheduler.get(berlinInstall.id)).toMatchObject({ lastResult: 'missed', nextRunAt: null, lastSlotAt: null });
  });
});

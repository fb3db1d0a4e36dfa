import { describe, expect, it } from 'vitest';
import { latestSlotInRange, planTask } from '../../../src/schedule/plan.js';
import type { PlanOptions, PlanState } from '../../../src/schedule/plan.js';
import { parseTaskSpec } from '../../../src/schedule/spec.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const daily = parseTaskSpec({ time: '03:00', timeZone: 'Europe/Berlin', windowMs: HOUR });
const SLOT = Date.parse('2026-06-02T01:00:00Z');
const d = 20 * MIN;
const none: PlanState = { nextSlotAt: null, nextRunAt: null, lastSlotAt: null };
const opts = (now: number, over: Partial<PlanOptions> = {}): PlanOptions => ({
  now, delayMs: d, catchUpWindowMs: 12 * HOUR, lateToleranceMs: MIN, futureGuardMs: 48 * HOUR, ...over,
});

describe('planTask', () => {
  it('plans a new task at the next slot plus the delay', () => {
    expect(planTask(daily, none, opts(SLOT - HOUR))).toEqual({ action: 'wait', slotAt: SLOT, runAt: SLOT + d, catchUp: false });
    // Between the slot and its delayed run, the run for today is still ahead.
    expect(planTask(daily, none, opts(SLOT + MIN))).toEqual({ action: 'wait', slotAt: SLOT, runAt: SLOT + d, catchUp: false });
  });

  it('fires a planned run that came due, within the late tolerance', () => {
    const state = { nextSlotAt: SLOT, nextRunAt: SLOT + d, lastSlotAt: SLOT - DAY };
    expect(planTask(daily, state, opts(SLOT + d + 30_000))).toEqual({ action: 'fire', slotAt: SLOT, runAt: SLOT + d, catchUp: false });
  });

  it('keeps a pending catch-up instant instead of moving it on every replan', () => {
    const state = { nextSlotAt: SLOT, nextRunAt: SLOT + 5 * HOUR + d, lastSlotAt: SLOT - DAY };
    expect(planTask(daily, state, opts(SLOT + 5 * HOUR + MIN))).toEqual({ action: 'wait', slotAt: SLOT, runAt: SLOT + 5 * HOUR + d, catchUp: true });
    expect(planTask(daily, state, opts(SLOT + 5 * HOUR + d))).toMatchObject({ action: 'fire', slotAt: SLOT, catchUp: true });
  });

  it('drops a pending catch-up once the next regular slot has begun', () => {
    const state = { nextSlotAt: SLOT, nextRunAt: SLOT + DAY + 10 * MIN, lastSlotAt: SLOT - DAY };
    expect(planTask(daily, state, opts(SLOT + DAY + MIN))).toEqual({ action: 'wait', slotAt: SLOT + DAY, runAt: SLOT + DAY + d, catchUp: false });
  });

  it('makes up only the latest of several missed days', () => {
    const state = { nextSlotAt: SLOT, nextRunAt: SLOT + d, lastSlotAt: SLOT - DAY };
    const now = SLOT + 6 * DAY + 2 * HOUR;
    expect(planTask(daily, state, opts(now))).toEqual({ action: 'wait', slotAt: SLOT + 6 * DAY, runAt: now + d, catchUp: true });
  });

  it('does not serve a slot at or before lastSlotAt, unless lastSlotAt is implausibly far in the future', () => {
    expect(planTask(daily, { ...none, lastSlotAt: SLOT }, opts(SLOT - HOUR))).toMatchObject({ slotAt: SLOT + DAY });
    expect(planTask(daily, { ...none, lastSlotAt: SLOT + 365 * DAY }, opts(SLOT - HOUR))).toMatchObject({ slotAt: SLOT });
  });

  it('ends a once task after its run and an absolute instant after it passed', () => {
    const once = parseTaskSpec({ time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0, once: true });
    expect(planTask(once, { ...none, lastSlotAt: SLOT }, opts(SLOT + HOUR))).toEqual({ action: 'done' });
    const at = parseTaskSpec({ at: SLOT });
    expect(planTask(at, none, opts(SLOT + 13 * HOUR, { delayMs: 0 }))).toEqual({ action: 'done' });
  });

  it('plans cron specs with the same rule', () => {
    const cron = parseTaskSpec({ cron: '0 3 * * 1-5', timeZone: 'Europe/Berlin', windowMs: 0 });
    // Friday 2026-06-05 12:00 → Monday 2026-06-08 03:00 CEST.
    expect(planTask(cron, none, opts(Date.parse('2026-06-05T12:00:00Z'), { delayMs: 0 }))).toMatchObject({ slotAt: Date.parse('2026-06-08T01:00:00Z') });
  });
});

describe('latestSlotInRange', () => {
  it('finds the latest slot of a minute-level cron and of a daily slot with few lookups', () => {
    const everyFive = parseTaskSpec({ cron: '*/5 * * * *', timeZone: 'UTC', windowMs: 0 });
    expect(latestSlotInRange(everyFive, 0, Date.parse('2026-06-02T01:07:00Z'))).toBe(Date.parse('2026-06-02T01:05:00Z'));
    expect(latestSlotInRange(daily, Date.parse('2026-05-01T00:00:00Z'), SLOT + HOUR)).toBe(SLOT);
    expect(latestSlotInRange(daily, SLOT, SLOT + HOUR)).toBeNull();
  });
});

describe('parseTaskSpec', () => {
  it('accepts the three shapes and returns a clean copy', () => {
    expect(parseTaskSpec({ time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0 })).toEqual({ time: '03:00', timeZone: 'Europe/Berlin', windowMs: 0 });
    expect(parseTaskSpec({ cron: '0 3 * * *', timeZone: 'UTC', windowMs: 5, catchUpWindowMs: 7 })).toEqual({ cron: '0 3 * * *', timeZone: 'UTC', windowMs: 5, catchUpWindowMs: 7 });
    expect(parseTaskSpec({ at: 1_780_000_000_000 })).toEqual({ at: 1_780_000_000_000 });
  });
  it.each([
    [{}],
    [{ time: '03:00', cron: '0 3 * * *', timeZone: 'UTC', windowMs: 0 }],
    [{ time: '03:00', timeZone: 'UTC' }],
    [{ time: '03:00', timeZone: 'Nowhere/Else', windowMs: 0 }],
    [{ time: '03:00', timeZone: 'UTC', windowMs: -5 }],
    [{ time: '03:00', timeZone: 'UTC', windowMs: 0, colour: 'red' }],
    [{ at: 'tomorrow' }],
    [{ at: 5, timeZone: 'UTC' }],
    [{ cron: '61 * * * *', timeZone: 'UTC', windowMs: 0 }],
    ['03:00'],
  ])('rejects %j with CONFIG_INVALID', (bad) => {
    expect(() => parseTaskSpec(bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

/**
 * What a scheduled task's timing is, as JSON (it is stored in schedule_tasks.spec):
 *
 * - daily  `{ time: 'HH:MM', timeZone, windowMs }`: every day at local HH:MM, plus the device delay;
 * - cron   `{ cron: '0 3 * * 1-5', timeZone, windowMs }`: an optional cron expression from config;
 * - at     `{ at: epochMs }`: one absolute instant (a person's "install at 14:00", a deadline).
 *
 * `once: true` on a daily or cron spec means "the next slot only" (SCHEDULE_3AM: install at the
 * next 03:00). It is recomputed from the real time like any slot, which an absolute instant
 * computed on a robot whose clock was still wrong would not be.
 */
import { OtaError } from '../core/errors.js';
import { assertCronExpression, assertTimeZone, nextCronSlot, nextLocalSlot, parseLocalTime } from './slot.js';

export interface DailySpec {
  time: string;
  timeZone: string;
  windowMs: number;
  catchUpWindowMs?: number;
  once?: boolean;
}

export interface CronSpec {
  cron: string;
  timeZone: string;
  windowMs: number;
  catchUpWindowMs?: number;
  once?: boolean;
}

export interface AtSpec {
  at: number;
  windowMs?: number;
  catchUpWindowMs?: number;
}

export type TaskSpec = DailySpec | CronSpec | AtSpec;

/** The jitter window is at most 12 h: with a daily slot, slot + delay then never reaches the next slot, even on a 23-hour day. */
export const MAX_WINDOW_MS = 12 * 3_600_000;

export function isAtSpec(spec: TaskSpec): spec is AtSpec {
  return 'at' in spec;
}

export function isCronSpec(spec: TaskSpec): spec is CronSpec {
  return 'cron' in spec;
}

function invalid(message: string, value: unknown): OtaError {
  return new OtaError('CONFIG_INVALID', message, { details: { spec: value } });
}

function optionalMs(obj: Record<string, unknown>, key: string, max: number, whole: unknown): number | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
    throw invalid(`schedule spec field ${key} is ${JSON.stringify(v)}; expected milliseconds from 0 to ${max}`, whole);
  }
  return v;
}

function optionalBool(obj: Record<string, unknown>, key: string, whole: unknown): boolean | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw invalid(`schedule spec field ${key} is ${JSON.stringify(v)}; expected true or false`, whole);
  return v;
}

const KNOWN_KEYS = new Set(['time', 'cron', 'at', 'timeZone', 'windowMs', 'catchUpWindowMs', 'once']);

/**
 * Validates an untrusted spec (from configuration, an API call or the database) and returns a
 * clean copy. Throws CONFIG_INVALID naming the field.
 */
export function parseTaskSpec(value: unknown): TaskSpec {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`schedule spec ${JSON.stringify(value)} is not an object`, value);
  }
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KNOWN_KEYS.has(key)) throw invalid(`schedule spec has unknown field ${JSON.stringify(key)}`, value);
  }
  const kinds = ['time', 'cron', 'at'].filter((k) => obj[k] !== undefined);
  if (kinds.length !== 1) {
    throw invalid(`schedule spec must have exactly one of time, cron or at; it has ${kinds.length === 0 ? 'none' : kinds.join(', ')}`, value);
  }
  const catchUpWindowMs = optionalMs(obj, 'catchUpWindowMs', Number.MAX_SAFE_INTEGER, value);
  if (obj.at !== undefined) {
    if (typeof obj.at !== 'number' || !Number.isSafeInteger(obj.at)) {
      throw invalid(`schedule spec field at is ${JSON.stringify(obj.at)}; expected an epoch-milliseconds integer`, value);
    }
    if (obj.timeZone !== undefined || obj.once !== undefined) {
      throw invalid('schedule spec with at takes no timeZone or once: it is one absolute instant', value);
    }
    const spec: AtSpec = { at: obj.at };
    const windowMs = optionalMs(obj, 'windowMs', MAX_WINDOW_MS, value);
    if (windowMs !== undefined) spec.windowMs = windowMs;
    if (catchUpWindowMs !== undefined) spec.catchUpWindowMs = catchUpWindowMs;
    return spec;
  }
  if (typeof obj.timeZone !== 'string') throw invalid('schedule spec needs timeZone, an IANA zone name such as Europe/Berlin', value);
  assertTimeZone(obj.timeZone);
  const windowMs = optionalMs(obj, 'windowMs', MAX_WINDOW_MS, value);
  if (windowMs === undefined) throw invalid('schedule spec needs windowMs, the jitter window in milliseconds (0 for none)', value);
  const once = optionalBool(obj, 'once', value);
  let spec: DailySpec | CronSpec;
  if (obj.time !== undefined) {
    if (typeof obj.time !== 'string') throw invalid(`schedule spec field time is ${JSON.stringify(obj.time)}; expected 'HH:MM'`, value);
    parseLocalTime(obj.time);
    spec = { time: obj.time, timeZone: obj.timeZone, windowMs };
  } else {
    if (typeof obj.cron !== 'string') throw invalid(`schedule spec field cron is ${JSON.stringify(obj.cron)}; expected a cron expression`, value);
    assertCronExpression(obj.cron, obj.timeZone);
    spec = { cron: obj.cron, timeZone: obj.timeZone, windowMs };
  }
  if (catchUpWindowMs !== undefined) spec.catchUpWindowMs = catchUpWindowMs;
  if (once !== undefined) spec.once = once;
  return spec;
}

/** The first slot of the spec strictly after `after`, or null when there is none. */
export function slotAfter(spec: TaskSpec, after: number): number | null {
  if (isAtSpec(spec)) return spec.at > after ? spec.at : null;
  if (isCronSpec(spec)) return nextCronSlot(spec.cron, after, spec.timeZone);
  return nextLocalSlot({ after, time: spec.time, timeZone: spec.timeZone });
}

export function specWindowMs(spec: TaskSpec): number {
  return spec.windowMs ?? 0;
}

export function isOnce(spec: TaskSpec): boolean {
  return isAtSpec(spec) || spec.once === true;
}

/** Key-order-independent equality of two specs (both already parsed). */
export function sameSpec(a: TaskSpec, b: TaskSpec): boolean {
  return canonical(a) === canonical(b);
}

function canonical(spec: TaskSpec): string {
  const obj = spec as unknown as Record<string, unknown>;
  return JSON.stringify(Object.keys(obj).sort().map((k) => [k, obj[k]]));
}

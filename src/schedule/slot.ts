/**
 * Local wall-clock slots ("03:00 in Europe/Berlin") as UTC instants. The occurrence arithmetic is
 * croner's: for a fixed-time pattern it implements exactly our documented daylight-saving rule
 * (verified against Intl in test/unit/schedule/slot.test.ts):
 *
 * - HH:MM does not exist that day (spring-forward gap): the slot is the first instant after the
 *   gap, the moment the clocks jump (02:30 Europe/Berlin on the spring day → 03:00 CEST).
 * - HH:MM happens twice (fall-back): the slot is the first occurrence only; the repeated one is
 *   never a slot, so a daily task never runs twice on one local date.
 *
 * Everything here is pure: `after` is an input, never read from a clock.
 */
import { Cron } from 'croner';
import { OtaError } from '../core/errors.js';

export interface LocalTime {
  hour: number;
  minute: number;
}

const TIME_RE = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Parses 'HH:MM' (24-hour, two digits each). Throws CONFIG_INVALID otherwise. */
export function parseLocalTime(time: string): LocalTime {
  const m = typeof time === 'string' ? TIME_RE.exec(time) : null;
  if (m === null) {
    throw new OtaError('CONFIG_INVALID', `schedule time ${JSON.stringify(time)} is not a 24-hour 'HH:MM' time (00:00 to 23:59)`, {
      details: { time },
    });
  }
  return { hour: Number(m[1]), minute: Number(m[2]) };
}

/** Throws CONFIG_INVALID unless `timeZone` is an IANA zone name this Node's ICU knows. */
export function assertTimeZone(timeZone: string): void {
  let ok = typeof timeZone === 'string' && timeZone.length > 0;
  if (ok) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone });
    } catch {
      ok = false;
    }
  }
  if (!ok) {
    throw new OtaError('CONFIG_INVALID', `schedule time zone ${JSON.stringify(timeZone)} is not a known IANA time zone (for example 'Europe/Berlin')`, {
      details: { timeZone },
    });
  }
}

function assertInstant(after: number): void {
  if (!Number.isFinite(after)) {
    throw new OtaError('INTERNAL', `slot search start ${String(after)} is not a finite epoch-milliseconds number`, {
      details: { after },
    });
  }
}

/**
 * croner counts a pattern as "fixed-time" (first occurrence only, gap → first instant after it)
 * when seconds, minutes and hours have no wildcard or step. 'no-wildcard' extends that to lists and
 * ranges such as `30 2,14 * * *`, so a configured list of times follows the same rule as HH:MM.
 *
 * Parsed patterns are memoised: a Cron without a callback is an immutable description (it arms no
 * timer), and the scheduler asks for the same few patterns on every replan.
 */
const cronMemo = new Map<string, Cron>();
const CRON_MEMO_MAX = 64;

function cronFor(pattern: string, timeZone: string): Cron {
  // croner treats a missing zone as the host's zone; a robot's schedule must never depend on that.
  if (typeof timeZone !== 'string' || timeZone === '') assertTimeZone(timeZone);
  const key = `${timeZone}\u0000${pattern}`;
  const cached = cronMemo.get(key);
  if (cached !== undefined) return cached;
  let cron: Cron;
  try {
    cron = new Cron(pattern, { timezone: timeZone, fixedTimeRule: 'no-wildcard' });
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `schedule cron expression ${JSON.stringify(pattern)} is not valid: ${(cause as Error).message}`, {
      details: { cron: pattern, timeZone },
      cause,
    });
  }
  if (cronMemo.size >= CRON_MEMO_MAX) cronMemo.clear();
  cronMemo.set(key, cron);
  return cron;
}

function nextFrom(cron: Cron, after: number, timeZone: string): number | null {
  let next: Date | null;
  try {
    // croner strips milliseconds and searches strictly after the given second.
    next = cron.nextRun(new Date(after));
  } catch (cause) {
    // croner reads the zone lazily: an unknown zone surfaces here.
    assertTimeZone(timeZone);
    throw cause;
  }
  return next === null ? null : next.getTime();
}

/**
 * The next instant strictly after `after` at local wall time `time` ('HH:MM') in `timeZone`,
 * following the daylight-saving rule above.
 */
export function nextLocalSlot(opts: { after: number; time: string; timeZone: string }): number {
  const { hour, minute } = parseLocalTime(opts.time);
  assertInstant(opts.after);
  const next = nextFrom(cronFor(`0 ${minute} ${hour} * * *`, opts.timeZone), opts.after, opts.timeZone);
  if (next === null) throw new OtaError('INTERNAL', `no daily slot at ${opts.time} ${opts.timeZone} after ${opts.after}`);
  return next;
}

/**
 * The next instant strictly after `after` matched by a cron expression (5 fields, or 6 with
 * seconds) read in `timeZone`. Expressions whose seconds, minutes and hours hold single values,
 * lists or ranges follow the same daylight-saving rule as nextLocalSlot; expressions with a wildcard
 * or a step there are interval jobs (they run in both copies of a repeated hour and skip times in a
 * gap), as in Vixie cron. Returns null when the expression has no further occurrence.
 */
export function nextCronSlot(expr: string, after: number, timeZone: string): number | null {
  if (typeof expr !== 'string' || expr.trim() === '') {
    throw new OtaError('CONFIG_INVALID', `schedule cron expression ${JSON.stringify(expr)} is empty; expected for example '0 3 * * *'`, {
      details: { cron: expr },
    });
  }
  assertInstant(after);
  return nextFrom(cronFor(expr, timeZone), after, timeZone);
}

/** Throws CONFIG_INVALID when `expr` does not parse; used to validate configuration early. */
export function assertCronExpression(expr: string, timeZone: string): void {
  assertTimeZone(timeZone);
  nextCronSlot(expr, 0, timeZone);
}

/**
 * The catch-up rule, for a run whose time passed while the daemon was not there to take it (it was
 * stopped, the robot was off, or the wall clock jumped past it):
 *
 * - not yet due → wait for it;
 * - due within the late tolerance (a timer that woke a little late) → run now, on time;
 * - missed, but now is within the catch-up window after it → run once, now plus the device's
 *   delay, so a fleet that powers up together still spreads its requests;
 * - missed by more than the window → skip it; the caller waits for the next slot.
 *
 * Only ever the one most recent missed slot is considered: a robot that was off for a week
 * catches up at most once, never in a burst of missed days.
 */
import { OtaError } from '../core/errors.js';

export type TaskKind = 'check' | 'install';

const HOUR = 3_600_000;

/**
 * Default windows: a missed check is harmless to make up later in the day; a missed install is
 * not, because 03:00 was chosen so the robot is idle, so it is made up only shortly after.
 */
export const DEFAULT_CATCH_UP_WINDOW_MS: Readonly<Record<TaskKind, number>> = Object.freeze({
  check: 12 * HOUR,
  install: 1 * HOUR,
});

/** A timer that fires this late is still on time (event-loop lag, the 60 s wake cap). */
export const DEFAULT_LATE_TOLERANCE_MS = 60_000;

export interface CatchUpInput {
  /** The instant the run was due (its slot plus the device delay). */
  scheduledAt: number;
  now: number;
  catchUpWindowMs: number;
  /** The device's delay, added to a catch-up run so a fleet does not stampede (default 0). */
  delayMs?: number;
  lateToleranceMs?: number;
}

export type CatchUpDecision =
  | { action: 'wait'; runAt: number }
  | { action: 'run'; runAt: number; catchUp: boolean; missedByMs: number }
  | { action: 'skip'; missedByMs: number };

export function decideCatchUp(input: CatchUpInput): CatchUpDecision {
  const { scheduledAt, now, catchUpWindowMs } = input;
  const delayMs = input.delayMs ?? 0;
  const lateToleranceMs = input.lateToleranceMs ?? DEFAULT_LATE_TOLERANCE_MS;
  for (const [name, value] of Object.entries({ catchUpWindowMs, delayMs, lateToleranceMs })) {
    if (!Number.isFinite(value) || value < 0) {
      throw new OtaError('CONFIG_INVALID', `catch-up ${name} is ${String(value)}; expected 0 or more milliseconds`, {
        details: { [name]: value },
      });
    }
  }
  if (now < scheduledAt) return { action: 'wait', runAt: scheduledAt };
  const missedByMs = now - scheduledAt;
  if (missedByMs <= lateToleranceMs) return { action: 'run', runAt: now, catchUp: false, missedByMs };
  if (missedByMs <= catchUpWindowMs) return { action: 'run', runAt: now + delayMs, catchUp: true, missedByMs };
  return { action: 'skip', missedByMs };
}

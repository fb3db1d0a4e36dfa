/**
 * The pure planner: from a task's spec, what it last served and what it planned, decide the next
 * run at `now`. The Scheduler calls it at start, after a wall-clock jump, when a run comes due and
 * after each run; it never sleeps or reads a clock.
 *
 * Invariants it protects:
 * - a slot is served at most once (`lastSlotAt` is a floor: only later slots are eligible), so a
 *   clock that goes back over a served 03:00 does not run it again;
 * - a `lastSlotAt` further in the future than `futureGuardMs` was recorded under a wrong clock (a
 *   robot that booted in 2040 and then synced NTP) and is ignored, so the task is not frozen for years;
 * - a stored plan that lies beyond the next slot was made under a wrong clock and is replaced;
 * - at most one missed slot is caught up (the latest), following decideCatchUp, and a catch-up is
 *   dropped once the next regular slot has begun, so two runs never crowd one another.
 */
import { decideCatchUp } from './catch-up.js';
import { isAtSpec, isOnce, slotAfter } from './spec.js';
import type { TaskSpec } from './spec.js';

export interface PlanState {
  /** The slot the stored plan serves, and when it runs (slot + delay, or a catch-up instant). */
  nextSlotAt: number | null;
  nextRunAt: number | null;
  /** The slot the last run served. */
  lastSlotAt: number | null;
}

export interface PlanOptions {
  now: number;
  /** This device's delay after each slot (deviceDelayMs). */
  delayMs: number;
  catchUpWindowMs: number;
  lateToleranceMs: number;
  futureGuardMs: number;
}

export type Plan =
  | { action: 'fire'; slotAt: number; runAt: number; catchUp: boolean }
  | { action: 'wait'; slotAt: number; runAt: number; catchUp: boolean }
  | { action: 'done' };

/** How far back the slot search goes for a catch-up at most (larger windows are capped here). */
const MAX_LOOKBACK_MS = 400 * 86_400_000;

export function planTask(spec: TaskSpec, state: PlanState, opts: PlanOptions): Plan {
  const { now, delayMs: d, lateToleranceMs } = opts;
  if (isOnce(spec) && state.lastSlotAt !== null) return { action: 'done' };
  const floor = state.lastSlotAt !== null && state.lastSlotAt <= now + opts.futureGuardMs ? state.lastSlotAt : Number.NEGATIVE_INFINITY;
  // The first slot whose run (slot + d) is still ahead and that was not served.
  const next = slotAfter(spec, Math.max(floor, now - d));

  const s = state.nextSlotAt;
  const r = state.nextRunAt;
  if (s !== null && r !== null && s > floor && !(next !== null && s > next)) {
    // A catch-up run is the only kind whose run time is not its slot plus the delay.
    const isCatchUp = r !== s + d;
    if (r > now) {
      if (!isCatchUp) return { action: 'wait', slotAt: s, runAt: r, catchUp: false };
      const following = slotAfter(spec, s);
      if (following === null || following > now) return { action: 'wait', slotAt: s, runAt: r, catchUp: true };
      // The next regular slot has begun: its run replaces the pending catch-up.
    } else if (now - r <= lateToleranceMs) {
      return { action: 'fire', slotAt: s, runAt: r, catchUp: isCatchUp };
    }
  }
  // Only a task that had a run planned and saw it pass can have missed something: a task added at
  // 10:00 does not make up the 03:00 it never had. The plan may have been made under a wrong clock
  // (1970 at boot); what is made up is then the latest real slot after the last one served.
  const missedAPlannedRun = s !== null && r !== null && r <= now;

  const lookback = Math.min(Math.max(opts.catchUpWindowMs, lateToleranceMs), MAX_LOOKBACK_MS);
  const missed = latestSlotInRange(spec, Math.max(floor, now - d - lookback - 1), now - d);
  if (missed !== null) {
    const decision = decideCatchUp({
      scheduledAt: missed + d,
      now,
      catchUpWindowMs: opts.catchUpWindowMs,
      delayMs: d,
      lateToleranceMs,
    });
    if (decision.action === 'run') {
      if (!decision.catchUp) return { action: 'fire', slotAt: missed, runAt: missed + d, catchUp: false };
      // Made up only while the next regular slot has not begun: two runs never crowd one another.
      if (missedAPlannedRun && (next === null || next > now)) {
        return { action: decision.runAt <= now ? 'fire' : 'wait', slotAt: missed, runAt: decision.runAt, catchUp: true };
      }
    }
  }
  if (next === null) return { action: 'done' };
  return { action: 'wait', slotAt: next, runAt: next + d, catchUp: false };
}

/**
 * The latest slot s with notAfter >= s > notBefore, or null. Searches backwards from notAfter with
 * a doubling window, so a daily slot costs a few lookups and a minute-level cron does not walk a
 * whole day of minutes.
 */
export function latestSlotInRange(spec: TaskSpec, notBefore: number, notAfter: number): number | null {
  if (notAfter <= notBefore) return null;
  if (isAtSpec(spec)) return spec.at > notBefore && spec.at <= notAfter ? spec.at : null;
  for (let span = 60_000; ; span *= 2) {
    const start = Math.max(notBefore, notAfter - span);
    let candidate = slotAfter(spec, start);
    if (candidate !== null && candidate <= notAfter) {
      for (let following = slotAfter(spec, candidate); following !== null && following <= notAfter; following = slotAfter(spec, following)) {
        candidate = following;
      }
      return candidate;
    }
    if (start === notBefore || span > MAX_LOOKBACK_MS) return null;
  }
}

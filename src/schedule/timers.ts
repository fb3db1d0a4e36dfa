/**
 * The timer port: the only way the scheduler waits. The daemon passes systemTimers; tests pass
 * ManualTimers, which fires timers as a ManualClock's monotonic time passes, so no test sleeps.
 */
import type { ManualClock } from '../core/clock.js';

export type TimerHandle = unknown;

export interface TimerPort {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Real timers. Unreferenced: a pending wake-up alone does not keep the process alive. */
export const systemTimers: TimerPort = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

interface PendingTimer {
  id: number;
  due: number;
  fn: () => void;
}

/**
 * Timers driven by a ManualClock. Timers are due on the monotonic clock, as real timers are: a
 * wall-clock jump (clock.jumpTo) does not make them fire.
 */
export class ManualTimers implements TimerPort {
  private pendingTimers: PendingTimer[] = [];
  private nextId = 1;

  constructor(private readonly clock: ManualClock) {}

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.pendingTimers.push({ id, due: this.clock.monotonic() + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: TimerHandle): void {
    this.pendingTimers = this.pendingTimers.filter((t) => t.id !== handle);
  }

  /** How many timers are armed. */
  pending(): number {
    return this.pendingTimers.length;
  }

  /**
   * Let `ms` of time pass on both clocks, firing every timer that comes due, in order, with the
   * clock set to its due time first. Throws if timers keep re-arming at the same instant.
   */
  advance(ms: number): void {
    const target = this.clock.monotonic() + ms;
    let firedAtSameInstant = 0;
    let lastDue = Number.NaN;
    for (;;) {
      const next = this.earliest();
      if (next === undefined || next.due > target) break;
      this.pendingTimers = this.pendingTimers.filter((t) => t !== next);
      const step = next.due - this.clock.monotonic();
      if (step > 0) this.clock.advance(step);
      firedAtSameInstant = next.due === lastDue ? firedAtSameInstant + 1 : 0;
      lastDue = next.due;
      if (firedAtSameInstant > 10_000) throw new Error('ManualTimers: timers keep re-arming at the same instant');
      next.fn();
    }
    const rest = target - this.clock.monotonic();
    if (rest > 0) this.clock.advance(rest);
  }

  private earliest(): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const t of this.pendingTimers) if (best === undefined || t.due < best.due || (t.due === best.due && t.id < best.id)) best = t;
    return best;
  }
}

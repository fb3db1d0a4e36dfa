/**
 * The daemon's heartbeat: one timer, armed for the earliest stored deadline of any product (and
 * never longer than maxSleepMs, so a wall-clock jump is noticed). Deadlines live in the machines'
 * context; this only wakes the daemon to look at them.
 */
import type { Clock } from '../core/clock.js';

export interface TimerFns {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimerFns: TimerFns = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };

export interface DeadlineDriverOptions {
  clock: Clock;
  timers?: TimerFns;
  /** Longest single sleep (default 30 s). */
  maxSleepMs?: number;
  /** The earliest deadline any product waits on (null: none). */
  earliest(): number | null;
  /** Called when the timer fires; the driver re-arms itself afterwards. */
  onDue(now: number): void;
}

export class DeadlineDriver {
  private timer: unknown = null;
  private stopped = false;
  private readonly timers: TimerFns;

  constructor(private readonly opts: DeadlineDriverOptions) {
    this.timers = opts.timers ?? systemTimerFns;
  }

  /** (Re)arm for the earliest deadline: called after every transition. */
  arm(): void {
    if (this.stopped) return;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    const now = this.opts.clock.now();
    const earliest = this.opts.earliest() ?? Number.POSITIVE_INFINITY;
    const delay = Math.max(0, Math.min(earliest - now, this.opts.maxSleepMs ?? 30_000));
    // Not unref'd: this timer is the daemon's heartbeat and keeps the process alive on its own.
    this.timer = this.timers.setTimeout(() => this.fire(), delay);
  }

  /** Look at the deadlines now (the timer's callback; tests and replays call it directly). */
  fire(): void {
    if (this.stopped) return;
    this.timer = null;
    this.opts.onDue(this.opts.clock.now());
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }
}

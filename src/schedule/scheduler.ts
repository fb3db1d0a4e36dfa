/**
 * The Scheduler holds the daemon's named timed tasks (daily checks, scheduled installs), keeps
 * one timer armed for the earliest run, and calls onDue when a run comes due. Deadlines are stored,
 * not slept on: every plan is persisted through the TaskStore before anything fires, and the sleep
 * is capped (60 s by default) so that on each wake a wall-clock jump is noticed (wall and monotonic
 * deltas disagree) and every deadline is recomputed from the real local time.
 *
 * Guarantees (each tested in test/unit/schedule/scheduler.test.ts):
 * - a slot fires at most once, even when the clock goes back over it or the daemon restarts;
 * - after a jump forward or a restart, at most the latest missed slot is caught up (catch-up.ts);
 * - a run fires at slot + the device delay, where the slot follows the daylight-saving rule (slot.ts).
 *
 * The scheduler only triggers: what a check or an install does, and whether one may run now, is
 * the daemon's business in onDue.
 */
import type { Clock } from '../core/clock.js';
import { OtaError, toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { DEFAULT_CATCH_UP_WINDOW_MS, DEFAULT_LATE_TOLERANCE_MS } from './catch-up.js';
import type { TaskKind } from './catch-up.js';
import { DEFAULT_JUMP_TOLERANCE_MS, detectClockJump, readClock } from './clock-jump.js';
import type { ClockReading } from './clock-jump.js';
import { planTask } from './plan.js';
import type { Plan } from './plan.js';
import { isOnce, parseTaskSpec, sameSpec, specWindowMs } from './spec.js';
import type { TaskSpec } from './spec.js';
import { deviceDelayMs } from './spread.js';
import type { TaskRecord, TaskStore } from './task-store.js';
import type { TimerHandle, TimerPort } from './timers.js';

export interface TaskInput {
  id: string;
  product: string;
  kind: TaskKind;
  spec: TaskSpec;
}

export interface DueInfo {
  /** The slot this run serves: the local-time instant (03:00), or the absolute `at`. */
  scheduledAt: number;
  /** When it was planned to fire: the slot plus the device delay, or the catch-up instant. */
  dueAt: number;
  /** Wall-clock time it fired. */
  firedAt: number;
  /** True when this run makes up a slot missed while the daemon was down or the clock jumped. */
  catchUp: boolean;
}

/**
 * Called when a run is due. Its outcome becomes the task's lastResult: 'ok' (or the string it
 * returns or resolves to), or 'error: <CODE>: <message>' when it throws or rejects.
 */
export type OnDue = (task: Readonly<TaskRecord>, info: DueInfo) => void | string | Promise<void | string>;

export interface SchedulerOptions {
  clock: Clock;
  timers: TimerPort;
  store: TaskStore;
  /** The stable device id: it seeds each task's delay inside its jitter window. */
  deviceId: string;
  onDue: OnDue;
  logger?: Logger;
  /** Called after a wall-clock jump was detected and every deadline recomputed. */
  onClockJump?: (jumpMs: number) => void;
  /** Longest single sleep; bounds how late a clock jump is noticed (default 60 s). */
  maxSleepMs?: number;
  jumpToleranceMs?: number;
  lateToleranceMs?: number;
  /** A lastSlotAt further ahead than this was recorded under a wrong clock and is ignored (default 48 h). */
  futureGuardMs?: number;
  /** Catch-up windows per kind, for specs that do not set catchUpWindowMs. */
  catchUpWindowMs?: Partial<Record<TaskKind, number>>;
}

/** The result recorded while onDue has not finished (or the daemon died during it). */
export const RESULT_RUNNING = 'running';
/** The result of a one-shot task whose only run was missed by more than its catch-up window. */
export const RESULT_MISSED = 'missed';

export class Scheduler {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly log: Logger;
  private readonly maxSleepMs: number;
  private readonly jumpToleranceMs: number;
  private readonly lateToleranceMs: number;
  private readonly futureGuardMs: number;
  private readonly catchUpWindows: Record<TaskKind, number>;
  private timer: TimerHandle | null = null;
  private lastReading: ClockReading | null = null;
  private started = false;
  private waking = false;
  private loaded = false;
  private wakeAgain = false;

  constructor(private readonly opts: SchedulerOptions) {
    if (typeof opts.deviceId !== 'string' || opts.deviceId.length === 0) {
      throw new OtaError('CONFIG_INVALID', 'scheduler needs a non-empty device id to spread its runs');
    }
    this.log = (opts.logger ?? silentLogger).child({ component: 'scheduler' });
    this.maxSleepMs = opts.maxSleepMs ?? 60_000;
    this.jumpToleranceMs = opts.jumpToleranceMs ?? DEFAULT_JUMP_TOLERANCE_MS;
    this.lateToleranceMs = opts.lateToleranceMs ?? DEFAULT_LATE_TOLERANCE_MS;
    this.futureGuardMs = opts.futureGuardMs ?? 48 * 3_600_000;
    this.catchUpWindows = { ...DEFAULT_CATCH_UP_WINDOW_MS, ...opts.catchUpWindowMs };
    if (!(this.maxSleepMs > 0)) throw new OtaError('CONFIG_INVALID', `scheduler maxSleepMs ${this.maxSleepMs} must be positive`);
  }

  /**
   * Loads the stored tasks, recomputes every plan from the current time (a run missed while the
   * daemon was down follows the catch-up rule), fires what is due and arms the timer.
   */
  start(): void {
    if (this.started) return;
    this.ensureLoaded();
    this.started = true;
    this.lastReading = readClock(this.opts.clock);
    this.wake(true);
  }

  /** Reads the store once, before the first upsert or start, so re-declared tasks keep their history. */
  private ensureLoaded(): void {
    if (this.loaded) return;
    this.loaded = true;
    for (const record of this.opts.store.load()) {
      try {
        const spec = parseTaskSpec(record.spec);
        this.tasks.set(record.id, { ...record, spec });
      } catch (error) {
        this.log.warn('dropping a stored schedule task with an invalid spec', { taskId: record.id, error: toErrorData(error) });
      }
    }
  }

  stop(): void {
    this.started = false;
    this.disarm();
  }

  /**
   * Adds a task or replaces one with the same id. Re-declaring a task with the same product, kind and
   * spec keeps its plan and history (the daemon does this from configuration on every start); a
   * changed spec is planned afresh, keeping lastSlotAt so a slot already served is not served again.
   */
  upsert(input: TaskInput): TaskRecord {
    const spec = parseTaskSpec(input.spec);
    if (typeof input.id !== 'string' || input.id === '' || typeof input.product !== 'string' || input.product === '') {
      throw new OtaError('CONFIG_INVALID', `schedule task needs a non-empty id and product; got id ${JSON.stringify(input.id)}, product ${JSON.stringify(input.product)}`);
    }
    if (input.kind !== 'check' && input.kind !== 'install') {
      throw new OtaError('CONFIG_INVALID', `schedule task kind ${JSON.stringify(input.kind)} is not 'check' or 'install'`);
    }
    this.ensureLoaded();
    const existing = this.tasks.get(input.id);
    const unchanged = existing !== undefined && existing.product === input.product && existing.kind === input.kind && sameSpec(existing.spec, spec);
    const record: TaskRecord = unchanged
      ? existing
      : {
          id: input.id,
          product: input.product,
          kind: input.kind,
          spec,
          nextSlotAt: null,
          nextRunAt: null,
          // A one-shot task re-declared with a new spec is a new request: it has served nothing yet.
          lastSlotAt: existing !== undefined && !isOnce(spec) ? existing.lastSlotAt : null,
          lastRunAt: existing?.lastRunAt ?? null,
          lastResult: existing?.lastResult ?? null,
        };
    this.tasks.set(record.id, record);
    if (!unchanged) this.opts.store.save(record);
    // Before start() nothing is planned or fired: start() plans every task from the store.
    if (this.started) this.wake(true);
    return structuredClone(record);
  }

  remove(id: string): boolean {
    this.ensureLoaded();
    const had = this.tasks.delete(id);
    if (had) this.opts.store.remove(id);
    if (this.started) this.arm();
    return had;
  }

  get(id: string): TaskRecord | undefined {
    this.ensureLoaded();
    const record = this.tasks.get(id);
    return record === undefined ? undefined : structuredClone(record);
  }

  list(): TaskRecord[] {
    this.ensureLoaded();
    return [...this.tasks.values()].map((r) => structuredClone(r));
  }

  /** The device delay this scheduler adds to a task's slots. */
  delayFor(task: Pick<TaskRecord, 'product' | 'kind' | 'spec'>): number {
    return deviceDelayMs(this.opts.deviceId, `${task.product}/${task.kind}`, specWindowMs(task.spec));
  }

  /**
   * Recompute every plan now, as after a clock jump. The daemon may call it when it learns the
   * clock was set (for example when timesyncd reports a sync).
   */
  recheck(): void {
    if (this.started) this.wake(true);
  }

  private wake(replanAll: boolean): void {
    if (this.waking) {
      // onDue called upsert, remove or recheck: the running wake goes round once more.
      this.wakeAgain = true;
      return;
    }
    this.waking = true;
    try {
      for (let round = 0; round < 10; round++) {
        this.wakeAgain = false;
        this.wakeOnce(replanAll || round > 0);
        if (!this.wakeAgain) break;
      }
    } finally {
      this.waking = false;
    }
    if (this.started) this.arm();
  }

  private wakeOnce(replanAll: boolean): void {
    this.disarm();
    const reading = readClock(this.opts.clock);
    const jumpMs = this.lastReading === null ? 0 : detectClockJump(this.lastReading, reading, this.jumpToleranceMs);
    this.lastReading = reading;
    if (jumpMs !== 0) {
      this.log.warn('wall clock jumped; recomputing every scheduled run', { jumpMs });
    }
    const now = reading.wall;
    // Earliest first, so runs that come due together fire in the order they were planned.
    const ordered = [...this.tasks.values()].sort((a, b) => (a.nextRunAt ?? Infinity) - (b.nextRunAt ?? Infinity));
    for (const task of ordered) {
      if (this.tasks.get(task.id) !== task) continue;
      if (replanAll || jumpMs !== 0 || task.nextSlotAt === null || (task.nextRunAt !== null && task.nextRunAt <= now)) {
        this.replan(task, now);
      }
    }
    if (jumpMs !== 0) this.opts.onClockJump?.(jumpMs);
  }

  /** Plans one task at `now`; fires it if due, then plans its next run. */
  private replan(task: TaskRecord, now: number): void {
    let plan = this.plan(task, now);
    if (plan.action === 'fire') {
      this.fire(task, plan, now);
      // onDue may have replaced or removed this task; the new record is planned on its own.
      if (this.tasks.get(task.id) !== task) return;
      plan = this.plan(task, now);
      if (plan.action === 'fire') {
        // Cannot happen (the floor moved past the slot just served); refuse to loop.
        this.log.error('scheduler planned a second run for the same instant; waiting instead', { taskId: task.id });
        plan = { action: 'wait', slotAt: plan.slotAt, runAt: now + this.maxSleepMs, catchUp: plan.catchUp };
      }
    }
    const nextSlotAt = plan.action === 'done' ? null : plan.slotAt;
    const nextRunAt = plan.action === 'done' ? null : plan.runAt;
    const skipped = task.nextSlotAt !== null && task.nextRunAt !== null && task.nextRunAt < now && nextSlotAt !== task.nextSlotAt && task.lastSlotAt !== task.nextSlotAt;
    if (skipped) {
      this.log.warn('a missed run was skipped: it is past its catch-up window', { taskId: task.id, slotAt: task.nextSlotAt, dueAt: task.nextRunAt });
      // A one-shot task that ends this way never ran: say so where the daemon and operators look.
      if (plan.action === 'done') task.lastResult = RESULT_MISSED;
    }
    if (nextSlotAt !== task.nextSlotAt || nextRunAt !== task.nextRunAt || skipped) {
      task.nextSlotAt = nextSlotAt;
      task.nextRunAt = nextRunAt;
      this.opts.store.save(task);
      if (plan.action === 'wait' && plan.catchUp) {
        this.log.info('a run was missed; catching it up', { taskId: task.id, slotAt: plan.slotAt, runAt: plan.runAt });
      }
    }
  }

  private plan(task: TaskRecord, now: number): Plan {
    return planTask(task.spec, task, {
      now,
      delayMs: this.delayFor(task),
      catchUpWindowMs: task.spec.catchUpWindowMs ?? this.catchUpWindows[task.kind],
      lateToleranceMs: this.lateToleranceMs,
      futureGuardMs: this.futureGuardMs,
    });
  }

  private fire(task: TaskRecord, plan: Extract<Plan, { action: 'fire' }>, now: number): void {
    // Recorded before onDue runs: if the daemon dies inside it, the slot still counts as served.
    task.lastSlotAt = plan.slotAt;
    task.lastRunAt = now;
    task.lastResult = RESULT_RUNNING;
    task.nextSlotAt = null;
    task.nextRunAt = null;
    this.opts.store.save(task);
    const info: DueInfo = { scheduledAt: plan.slotAt, dueAt: plan.runAt, firedAt: now, catchUp: plan.catchUp };
    this.log.info('scheduled run due', { taskId: task.id, product: task.product, kind: task.kind, ...info });
    const settle = (result: string): void => {
      // A later run may have started meanwhile: only record the outcome of this one.
      const current = this.tasks.get(task.id);
      if (current === undefined || current.lastRunAt !== now || current.lastSlotAt !== plan.slotAt) return;
      current.lastResult = result;
      this.opts.store.save(current);
    };
    const failed = (error: unknown): void => {
      const data = toErrorData(error);
      this.log.error('scheduled run failed', { taskId: task.id, error: data });
      settle(`error: ${data.code}: ${data.message}`);
    };
    try {
      const out = this.opts.onDue(structuredClone(task), info);
      if (out instanceof Promise) {
        out.then((value) => settle(typeof value === 'string' ? value : 'ok'), failed);
      } else {
        settle(typeof out === 'string' ? out : 'ok');
      }
    } catch (error) {
      failed(error);
    }
  }

  private arm(): void {
    this.disarm();
    if (!this.started) return;
    let earliest = Infinity;
    for (const task of this.tasks.values()) if (task.nextRunAt !== null && task.nextRunAt < earliest) earliest = task.nextRunAt;
    const now = this.opts.clock.now();
    // Always wake at least every maxSleepMs, even with nothing to run, to notice clock jumps.
    const ms = Math.max(0, Math.min(this.maxSleepMs, earliest - now));
    this.timer = this.opts.timers.setTimeout(() => {
      this.timer = null;
      this.wake(false);
    }, ms);
  }

  private disarm(): void {
    if (this.timer !== null) {
      this.opts.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }
}

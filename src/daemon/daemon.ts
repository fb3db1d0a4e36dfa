/**
 * The daemon: one ProductRunner per configured product, the store, the event bus, the timer that
 * turns stored deadlines into TICK events, and the DaemonControl surface the edges use.
 *
 * Invariants: at most one product is in an executing state (backup … rollback) at a time; every
 * control action is validated against an allow-list and the current state, and audited.
 */
import { randomBytes } from 'node:crypto';
import { MACHINE_VERSION, PUBLIC_EVENTS, CHOICES, type EventSource, type MachinePolicy, type PublicEventType, type Steps, type UpdateEvent } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { AuditEvent, AuditSink, Logger } from '../core/logger.js';
import type { Logging } from '../core/logging.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { PageQuery } from '../store/store.js';
import { Store } from '../store/store.js';
import { detectProduct } from '../products/registry.js';
import { nextLocalSlot, nextCronSlot } from '../schedule/slot.js';
import { deviceDelayMs } from '../schedule/spread.js';
import { decideCatchUp } from '../schedule/catch-up.js';
import { Scheduler, type DueInfo } from '../schedule/scheduler.js';
import { SqliteTaskStore, type TaskRecord } from '../schedule/task-store.js';
import { systemTimers, type TimerPort } from '../schedule/timers.js';
import type { TaskSpec } from '../schedule/spec.js';
import type { DaemonControl, DaemonStatus, DispatchRequest, DispatchResult, InhibitRequest, ProductStatus, RunExport } from './control.js';
import { EventBus, type ProgressMessage } from './event-bus.js';
import { OTAD_VERSION } from '../core/version.js';
import { EXECUTION_STATES, ProductRunner } from './product-runner.js';
import { createRepositoryMonitor, isSuccessfulCheckEnd, productDefinition, type ProductDefinition, type RepositoryStatus } from './repository-status.js';
import type { JournalVerdict } from './recovery-policy.js';


/** What the daemon needs from the outside world for one product's steps. */
export interface StepContext {
  product: ProductConfig;
  config: Config;
  deviceId: string;
  store: Store;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  bus: EventBus;
  /** Report progress of a long step (download, backup) to the bus. */
  progress(message: Omit<ProgressMessage, 'product'>): void;
  /** Inhibits currently held by the robot's app (checked by pre-check). */
  inhibits(): Array<{ holder: string; reason: string; expiresAt: number }>;
}

export interface StepProvider {
  /** False when no real steps are wired (the daemon says so instead of pretending to update). */
  readonly real: boolean;
  steps(ctx: StepContext): Steps;
  journalVerdict(product: ProductConfig, config: Config): Promise<JournalVerdict>;
  /** The newest network snapshot, for status (providers without a network view leave it out). */
  network?(): unknown;
}

export interface DaemonOptions {
  config: Config;
  logging: Logging;
  clock: Clock;
  deviceId: string;
  stepProvider: StepProvider;
  /** False after a clean shutdown was recorded. */
  uncleanStart?: boolean;
  timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(handle: unknown): void };
  /** Longest single sleep: wall-clock jumps are noticed at least this often. */
  maxSleepMs?: number;
  /** Timers of the scheduler of daily checks (tests pass ManualTimers). */
  schedulerTimers?: TimerPort;
}

export function policyFor(p: ProductConfig): MachinePolicy {
  return {
    choiceTimeoutMs: p.decision.choiceTimeout,
    defaultChoice: p.decision.defaultChoice,
    confirmTimeoutMs: p.decision.confirmTimeout,
    preCheckRetryMs: p.precheck.retryInterval,
  };
}

export function resolveTimeZone(tz: string): string {
  return tz === 'local' ? Intl.DateTimeFormat().resolvedOptions().timeZone : tz;
}

export class Daemon implements DaemonControl {
  readonly bus = new EventBus();
  readonly store: Store;
  private config: Config;
  private readonly runners = new Map<string, ProductRunner>();
  private readonly progress = new Map<string, ProgressMessage>();
  /** The daily checks: registered tasks with their last run, result and next run, kept in SQLite. */
  private readonly scheduler: Scheduler;
  private timer: unknown = null;
  /** The product allowed to touch the robot now (from a passed pre-check until its run settles). */
  private slotHolder: string | null = null;
  private readonly startedAt: number;
  private readonly logger: Logger;
  private readonly timers: NonNullable<DaemonOptions['timers']>;
  private closed = false;

  constructor(private readonly opts: DaemonOptions) {
    this.config = opts.config;
    this.logger = opts.logging.logger;
    this.startedAt = opts.clock.now();
    this.timers = opts.timers ?? { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout) };
    this.store = Store.open(opts.config.paths.database);
    this.scheduler = new Scheduler({
      clock: opts.clock,
      timers: opts.schedulerTimers ?? systemTimers,
      store: new SqliteTaskStore(this.store.db),
      deviceId: opts.deviceId,
      logger: this.logger.child({ component: 'scheduler' }),
      onDue: (task, info) => this.onCheckDue(task, info),
      onClockJump: (jumpMs) => this.onClockJump(jumpMs, opts.clock.now()),
    });
    opts.logging.onLine((line) => this.bus.publish('log', line));
    this.bus.subscribe('transition', (t) => {
      if (isSuccessfulCheckEnd(t)) this.store.setValue(`lastSuccessfulCheck:${t.product}`, String(t.at));
    });
    this.repositoryMonitor = createRepositoryMonitor({
      config: () => this.config,
      clock: opts.clock,
      lastSuccessfulCheckAt: (product) => {
        const v = this.store.getValue(`lastSuccessfulCheck:${product}`);
        return v === null ? null : Number(v);
      },
    });
  }

  private readonly repositoryMonitor: ReturnType<typeof createRepositoryMonitor>;

  productDefinitions(): ProductDefinition[] {
    return this.config.products.map((p) => productDefinition(p, this.config));
  }

  repositories(): Promise<RepositoryStatus[]> {
    return this.repositoryMonitor.repositories();
  }

  get deviceId(): string {
    return this.opts.deviceId;
  }

  get currentConfig(): Config {
    return this.config;
  }

  runner(product: string): ProductRunner {
    const r = this.runners.get(product);
    if (!r) {
      throw new OtaError('PRODUCT_UNKNOWN', `unknown product "${product}"; this robot manages: ${[...this.runners.keys()].join(', ') || 'none'}`, {
        details: { product, known: [...this.runners.keys()] },
      });
    }
    return r;
  }

  /** Restore every product's lifecycle, then start the timer. */
  async start(): Promise<void> {
    const { config } = this.opts;
    if (!this.opts.stepProvider.real) {
      this.logger.warn('no real update steps are configured: otad will report state and accept events, but every check or update fails with STEP_NOT_CONFIGURED');
    }
    if (config.simulation) {
      this.logger.warn('SIMULATION MODE: backups are not written and services are not stopped or started', { simulation: true });
    }
    for (const product of config.products) {
      const runner = this.createRunner(product);
      this.runners.set(product.name, runner);
      await runner.start();
      if (EXECUTION_STATES.has(runner.state)) this.slotHolder = product.name;
    }
    this.registerChecks(config.products);
    this.scheduler.start();
    this.store.setValue('cleanShutdown', '0');
    this.arm();
  }

  private createRunner(product: ProductConfig): ProductRunner {
    const { clock, logging } = this.opts;
    const stepCtx: StepContext = {
      product,
      config: this.config,
      deviceId: this.opts.deviceId,
      store: this.store,
      clock,
      logger: logging.logger.child({ product: product.name }),
      audit: this.auditSink(),
      bus: this.bus,
      progress: (m) => {
        const message: ProgressMessage = { ...m, product: product.name };
        this.progress.set(product.name, message);
        this.bus.publish('progress', message);
      },
      inhibits: () => this.store.activeInhibits(clock.now()),
    };
    const steps = this.guardExecutionSlot(product.name, this.opts.stepProvider.steps(stepCtx));
    return new ProductRunner({
      product: product.name,
      policy: policyFor(product),
      steps,
      store: this.store,
      clock,
      logger: logging.logger,
      audit: logging.audit,
      bus: this.bus,
      journalVerdict: () => this.opts.stepProvider.journalVerdict(product, this.config),
      detectVersion: async () => (await detectProduct(product)).version,
      maxRestores: this.config.recovery.maxRestoresPerState,
      uncleanStart: this.opts.uncleanStart ?? true,
      onTransition: (r, _from, to) => {
        if (!EXECUTION_STATES.has(to) && to !== 'preCheck') {
          this.progress.delete(r.product);
          if (this.slotHolder === r.product) this.slotHolder = null;
        }
        this.arm();
      },
    });
  }

  /**
   * At most one product touches the robot at a time. The claim is made synchronously when a
   * pre-check passes, so two products can never both pass into backup.
   */
  private guardExecutionSlot(product: string, steps: Steps): Steps {
    return {
      ...steps,
      preCheck: async (input, signal) => {
        const busy = () => (this.slotHolder !== null && this.slotHolder !== product ? this.slotHolder : null);
        const before = busy();
        if (before) {
          return { ok: false, reasons: [{ code: 'ANOTHER_UPDATE_RUNNING', message: `${before} is being updated; one update at a time` }] };
        }
        const result = await steps.preCheck(input, signal);
        const after = busy();
        if (result.ok && after) {
          return { ok: false, reasons: [{ code: 'ANOTHER_UPDATE_RUNNING', message: `${after} is being updated; one update at a time` }] };
        }
        if (result.ok) this.slotHolder = product;
        return result;
      },
    };
  }

  // ----- timers ----------------------------------------------------------------------------

  /** One daily check task per product; re-registering an unchanged spec keeps its plan and history. */
  private registerChecks(products: ProductConfig[]): void {
    const wanted = new Set(products.map((p) => `check:${p.name}`));
    for (const task of this.scheduler.list()) if (task.kind === 'check' && !wanted.has(task.id)) this.scheduler.remove(task.id);
    for (const p of products) {
      const timeZone = resolveTimeZone(p.schedule.timeZone);
      const spec: TaskSpec = p.schedule.checkCron
        ? { cron: p.schedule.checkCron, timeZone, windowMs: p.schedule.window, catchUpWindowMs: p.schedule.catchUp }
        : { time: p.schedule.checkAt, timeZone, windowMs: p.schedule.window, catchUpWindowMs: p.schedule.catchUp };
      this.scheduler.upsert({ id: `check:${p.name}`, product: p.name, kind: 'check', spec });
    }
  }

  /** The daily check is due: start one if the product is idle; the result is kept with the task. */
  private onCheckDue(task: Readonly<TaskRecord>, info: DueInfo): string {
    const runner = this.runners.get(task.product);
    if (!runner) return 'skipped: product no longer configured';
    if (runner.state !== 'idle') {
      this.logger.info('daily check skipped: a run is in progress', { product: task.product, state: runner.state });
      return `skipped: ${runner.state}`;
    }
    const now = this.opts.clock.now();
    const runId = newRunId(now);
    runner.send({ type: 'CHECK_NOW', now, source: 'schedule', runId });
    return `check started (run ${runId}${info.catchUp ? ', catch-up' : ''})`;
  }

  /** The next install slot for SCHEDULE_3AM: local installAt plus this device's delay. */
  nextInstallSlot(product: ProductConfig, now: number): number {
    const tz = resolveTimeZone(product.schedule.timeZone);
    const delay = deviceDelayMs(this.opts.deviceId, `${product.name}:install`, product.schedule.window);
    return nextLocalSlot({ after: now - delay, time: product.schedule.installAt, timeZone: tz }) + delay;
  }

  private arm(): void {
    if (this.closed) return;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    const now = this.opts.clock.now();
    let earliest = Number.POSITIVE_INFINITY;
    for (const r of this.runners.values()) {
      const d = r.nextDeadline();
      if (d !== null) earliest = Math.min(earliest, d);
    }
    const delay = Math.max(0, Math.min(earliest - now, this.opts.maxSleepMs ?? 30_000));
    // Not unref'd: this timer is the daemon's heartbeat and keeps the process alive on its own.
    this.timer = this.timers.setTimeout(() => this.onTimer(), delay);
  }

  /** Turns stored deadlines into events. A missed install slot follows the catch-up rule. */
  onTimer(): void {
    if (this.closed) return;
    this.timer = null;
    const now = this.opts.clock.now();
    for (const product of this.config.products) {
      const runner = this.runners.get(product.name);
      if (!runner) continue;
      const deadline = runner.nextDeadline();
      if (deadline === null || now < deadline) continue;
      if (runner.state === 'scheduled') {
        const decision = decideCatchUp({ scheduledAt: deadline, now, catchUpWindowMs: product.schedule.installCatchUp });
        if (decision.action === 'skip') {
          // Installing hours late could interrupt the robot's working day: wait for the next slot.
          const at = this.nextInstallSlot(product, now);
          this.logger.warn('missed the scheduled install slot: rescheduled to the next one', { product: product.name, missedByMs: decision.missedByMs, at });
          this.sendInternal(runner, { type: 'RESCHEDULE', now, source: 'timer', at });
          continue;
        }
      }
      this.sendInternal(runner, { type: 'TICK', now, source: 'timer', nextSlotAt: this.nextInstallSlot(product, now) });
    }
    this.arm();
  }

  /** A wall-clock jump: recompute every slot from the real time. Absolute deadlines stay as they are. */
  private onClockJump(jumpMs: number, now: number): void {
    this.logger.warn('the wall clock jumped: recomputing scheduled times', { jumpMs });
    for (const product of this.config.products) {
      const runner = this.runners.get(product.name);
      if (runner?.state === 'scheduled') {
        this.sendInternal(runner, { type: 'RESCHEDULE', now, source: 'timer', at: this.nextInstallSlot(product, now) });
      }
    }
  }

  private sendInternal(runner: ProductRunner, event: UpdateEvent): void {
    try {
      runner.send(event);
    } catch (error) {
      this.logger.error('an internal event failed', { product: runner.product, event: event.type, error: String(error) });
    }
  }

  // ----- DaemonControl ---------------------------------------------------------------------

  async dispatch(req: DispatchRequest): Promise<DispatchResult> {
    const { clock } = this.opts;
    if (!(PUBLIC_EVENTS as readonly string[]).includes(req.type)) {
      throw new OtaError(
        'API_INVALID_EVENT',
        `"${String(req.type)}" is not an event otad accepts; the choices are ${CHOICES.join(' and ')}, and the other events are ${PUBLIC_EVENTS.filter((e) => !(CHOICES as readonly string[]).includes(e)).join(', ')}`,
        { details: { event: req.type, choices: [...CHOICES], allowed: [...PUBLIC_EVENTS] } },
      );
    }
    const type = req.type as PublicEventType;
    const productName = req.product ?? this.defaultProduct();
    const runner = this.runner(productName);
    const product = this.config.products.find((p) => p.name === productName) as ProductConfig;
    const now = clock.now();
    const event = this.buildEvent(type, product, req, now);
    if (!runner.can(event)) {
      const allowed = runner.allowedEvents(PUBLIC_EVENTS, now, req.source);
      throw new OtaError('API_EVENT_NOT_ALLOWED', `${type} is not allowed while ${productName} is in state ${runner.state}; allowed now: ${allowed.join(', ') || 'none'}`, {
        details: { product: productName, state: runner.state, event: type, allowed },
      });
    }
    this.auditAction({
      kind: 'api-control',
      message: `${type} for ${productName} from ${req.source}${req.actor ? ` (${req.actor})` : ''}`,
      product: productName,
      ...(req.actor ? { actor: req.actor } : {}),
      details: { event: type, source: req.source, state: runner.state, ...(req.reason ? { reason: req.reason } : {}) },
    });
    runner.send(event);
    return { product: productName, event: type, state: runner.state, runId: runner.context.runId };
  }

  private buildEvent(type: PublicEventType, product: ProductConfig, req: DispatchRequest, now: number): UpdateEvent {
    const base = { now, source: req.source };
    switch (type) {
      case 'CHECK_NOW':
        return { type, ...base, runId: newRunId(now) };
      case 'ROLLBACK':
        return { type, ...base, runId: newRunId(now), ...(req.reason ? { reason: req.reason } : {}) };
      case 'SCHEDULE_3AM':
        return { type, ...base, at: this.nextInstallSlot(product, now) };
      default:
        return { type, ...base };
    }
  }

  private defaultProduct(): string {
    const names = [...this.runners.keys()];
    if (names.length === 1) return names[0] as string;
    throw new OtaError('PRODUCT_UNKNOWN', `name a product: this robot manages ${names.join(', ') || 'none'}`, { details: { known: names } });
  }

  status(): DaemonStatus {
    const now = this.opts.clock.now();
    return {
      deviceId: this.opts.deviceId,
      otadVersion: OTAD_VERSION,
      machineVersion: MACHINE_VERSION,
      environment: this.config.environment,
      simulation: this.config.simulation,
      startedAt: this.startedAt,
      now,
      stepsConfigured: this.opts.stepProvider.real,
      products: [...this.runners.values()].map((r) => this.productStatus(r, now)),
      inhibits: this.store.activeInhibits(now),
      network: (this.opts.stepProvider.network?.() as Record<string, unknown> | null | undefined) ?? this.storedNetwork(),
    };
  }

  /** The last network snapshot a check stored, so status has it across restarts. */
  private storedNetwork(): Record<string, unknown> | null {
    for (const p of this.config.products) {
      const v = this.store.getValue(`network:${p.name}`);
      if (v) return JSON.parse(v) as Record<string, unknown>;
    }
    return null;
  }

  private productStatus(r: ProductRunner, now: number): ProductStatus {
    const c = r.context;
    const pending = this.store.pendingNotifications(r.product)[0];
    return {
      product: r.product,
      state: r.state,
      runId: c.runId,
      runKind: c.runKind,
      installedVersion: c.installedVersion,
      offeredVersion: c.offer?.version ?? null,
      offer: c.offer,
      releaseNotes: c.offer?.notes ?? null,
      choice: c.choice,
      allowedEvents: r.allowedEvents(PUBLIC_EVENTS, now, 'daemon'),
      deadlines: { choice: c.choiceDeadline, confirm: c.confirmDeadline, scheduledAt: c.scheduledAt, preCheckRetryAt: c.preCheckRetryAt },
      nextCheckAt: this.scheduler.get(`check:${r.product}`)?.nextRunAt ?? null,
      preCheckReasons: c.preCheckReasons,
      progress: this.progress.get(r.product) ?? null,
      lastCheckAt: c.lastCheckAt,
      lastOutcome: c.lastOutcome,
      error: c.error,
      notification: pending ? { version: pending.version, notes: pending.notes, foundAt: pending.foundAt } : null,
      recovery: r.recovery ? { action: r.recovery.action, reason: r.recovery.reason } : null,
    };
  }

  history(q: PageQuery = {}) {
    return this.store.runs(q);
  }

  transitions(q: PageQuery = {}) {
    return this.store.transitions(q);
  }

  logs(q: { level?: string; limit?: number; since?: number; contains?: string } = {}) {
    return this.opts.logging.tail(q);
  }

  audit(limit = 100) {
    return this.store.auditTrail(limit);
  }

  releases(product?: string) {
    return this.store.pendingNotifications(product);
  }

  acknowledge(product: string, version: string | null, source: EventSource, actor?: string): number {
    this.runner(product);
    const n = this.store.acknowledgeRelease(product, version, this.opts.clock.now());
    this.auditAction({ kind: 'api-control', message: `release notification acknowledged for ${product} from ${source}`, product, ...(actor ? { actor } : {}) });
    return n;
  }

  holdInhibit(req: InhibitRequest) {
    const now = this.opts.clock.now();
    if (!/^[\w.@:-]{1,64}$/.test(req.holder)) {
      throw new OtaError('API_INVALID_REQUEST', `inhibit holder "${req.holder}" must be 1-64 characters of letters, digits and . _ @ : -`);
    }
    const max = this.config.inhibit.maxHold;
    const duration = Math.min(req.durationMs ?? max, max);
    const record = { holder: req.holder, reason: req.reason.slice(0, 200), since: now, expiresAt: now + duration };
    this.store.holdInhibit(record);
    this.auditAction({ kind: 'api-control', message: `inhibit held by ${req.holder} for ${duration} ms: ${record.reason}`, ...(req.actor ? { actor: req.actor } : {}) });
    return record;
  }

  releaseInhibit(holder: string, source: EventSource, actor?: string): boolean {
    const released = this.store.releaseInhibit(holder);
    if (released) this.auditAction({ kind: 'api-control', message: `inhibit released by ${holder} from ${source}`, ...(actor ? { actor } : {}) });
    return released;
  }

  exportRun(runId: string): RunExport {
    const run = this.store.run(runId);
    if (!run) throw new OtaError('API_NOT_FOUND', `no run with id "${runId}"`, { details: { runId } });
    const transitions = this.store.transitions({ runId, limit: 100_000, withSnapshots: true });
    const first = transitions[0];
    const initialSnapshot = first ? this.store.snapshotBefore(run.product, first.seq) : null;
    return {
      format: 'otad-run/1',
      exportedAt: this.opts.clock.now(),
      deviceId: this.opts.deviceId,
      machineVersion: MACHINE_VERSION,
      run,
      initialSnapshot,
      transitions,
    };
  }

  health() {
    return {
      ok: !this.closed,
      products: [...this.runners.values()].map((r) => ({ product: r.product, state: r.state })),
      uptimeMs: this.opts.clock.now() - this.startedAt,
    };
  }

  private auditSink(): AuditSink {
    return { audit: (e) => this.auditAction(e) };
  }

  private auditAction(event: AuditEvent): void {
    this.opts.logging.audit.audit(event);
    try {
      this.store.audit(event, this.opts.clock.now());
    } catch (error) {
      this.logger.error('could not write an audit event', { error: String(error) });
    }
  }

  // ----- configuration and shutdown --------------------------------------------------------

  /** SIGHUP: apply a new configuration's policies; changes that need a restart are reported. */
  applyConfig(next: Config, changed: string[]): { applied: string[]; needsRestart: string[] } {
    const needsRestart = changed.filter((k) => /^(paths|api|dbus)\b/.test(k) || /^products\b/.test(k) && !this.sameProducts(next));
    this.config = next;
    const now = this.opts.clock.now();
    for (const product of next.products) {
      const runner = this.runners.get(product.name);
      if (!runner) continue;
      this.sendInternal(runner, { type: 'CONFIGURE', now, source: 'daemon', policy: policyFor(product) });
    }
    this.registerChecks(next.products.filter((p) => this.runners.has(p.name)));
    this.opts.logging.setLevel(next.logging.level);
    this.arm();
    return { applied: changed.filter((k) => !needsRestart.includes(k)), needsRestart };
  }

  private sameProducts(next: Config): boolean {
    const a = [...this.runners.keys()].sort().join(',');
    const b = next.products.map((p) => p.name).sort().join(',');
    return a === b;
  }

  /** Critical steps (apply, rollback) are given time to finish before the process stops. */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.closed) return;
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && [...this.runners.values()].some((r) => r.state === 'apply' || r.state === 'rollback')) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.closed = true;
    this.scheduler.stop();
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    for (const r of this.runners.values()) r.stop();
    try {
      this.store.setValue('cleanShutdown', '1');
      this.store.db.pragma('wal_checkpoint(TRUNCATE)');
    } finally {
      this.store.close();
    }
  }
}

export function newRunId(now: number): string {
  return `${new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

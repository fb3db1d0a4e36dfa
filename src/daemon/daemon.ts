/**
 * The daemon: one ProductRunner per configured product with the step set its next run uses, the
 * store, the event bus, and the DaemonControl surface the edges use. The deadline timer
 * (deadline-driver.ts), the one-update-at-a-time slot (execution-slot.ts), the schedule
 * (product-schedule.ts), public events (public-events.ts) and the reload plan
 * (src/config/reload.ts) live in their own modules.
 *
 * Invariants: at most one product is in an executing state (backup … rollback) at a time; every
 * control action is validated against an allow-list and the current state, and audited.
 */
import { join } from 'node:path';
import { MACHINE_VERSION, PUBLIC_EVENTS, type EventSource, type MachinePolicy, type Steps, type UpdateEvent } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError, toErrorData } from '../core/errors.js';
import { OTAD_VERSION } from '../core/version.js';
import type { AuditEvent, AuditSink, Logger } from '../core/logger.js';
import type { Logging } from '../core/logging.js';
import type { Config } from '../config/load.js';
import { planReload } from '../config/reload.js';
import type { ProductConfig } from '../config/schema.js';
import type { PageQuery } from '../store/store.js';
import { Store } from '../store/store.js';
import type { DeviceFleet } from '../fleet/device-fleet.js';
import { createFleetGate, withFleetGate } from '../fleet/fleet-gate.js';
import { detectProduct } from '../products/registry.js';
import { Scheduler, type DueInfo } from '../schedule/scheduler.js';
import { SqliteTaskStore, type TaskRecord } from '../schedule/task-store.js';
import { systemTimers, type TimerPort } from '../schedule/timers.js';
import type { BadMarkInfo, DaemonControl, DaemonStatus, DispatchRequest, DispatchResult, FdInhibitRequest, HeldInhibit, InhibitRequest, ProductStatus, ReleaseEntry, ReleaseHistory, RollbackTarget, RunExport, SourceRequest, UnmarkRequest } from './control.js';
import type { ReleaseRecord } from '../store/store.js';
import { DeadlineDriver, type TimerFns } from './deadline-driver.js';
import { EventBus, type ProgressMessage } from './event-bus.js';
import { ExecutionSlot } from './execution-slot.js';
import { checkTask, eventForDeadline, nextInstallSlot, type CheckTask } from './product-schedule.js';
import { EXECUTION_STATES, ProductRunner } from './product-runner.js';
import { MaintenanceWindows } from './maintenance.js';
import { RobotState, withRobotStateGate, type AppReport } from './robot-state.js';
import { createUPowerAdapter } from '../adapters/system/upower.js';
import { createTimedatedAdapter } from '../adapters/system/timedated.js';
import { createCommandRunner } from '../adapters/system/check-commands.js';
import { DownloadAhead } from './download-ahead.js';
import { rehearsalBusy, runRehearsal, type RehearsalReport } from './rehearsal.js';
import { unknownMeteredSource } from '../net/metered.js';
import { buildPublicEvent, newRunId, publicEventType } from './public-events.js';
import { createRepositoryMonitor, isSuccessfulCheckEnd, productDefinition, type ProductDefinition, type RepositoryStatus } from './repository-status.js';
import type { StepContext, StepProvider } from './step-provider.js';
import type { RollbackPreview } from '../steps/rollback-preview.js';
import { compareReleaseNames } from '../release/layout.js';
import { channelChoices, parseStoredSource, productSource, repositoryChoices, SOURCE_KEY, staleReason, withSource, type ProductSource, type StoredSource } from './source-selection.js';

/** A daemon without real steps has no view of the link. */
const NO_METERED_SOURCE = unknownMeteredSource('this otad has no real steps, so no metered-link reading (NetworkManager is not asked)');

/** What a reload did: every changed key is in exactly one of applied and needsRestart. */
export interface ReloadReport {
  changed: string[];
  /** Keys the next run uses (and the scheduler and logger at once). */
  applied: string[];
  /** Keys that keep their running value until otad is restarted. */
  needsRestart: string[];
}

export interface DaemonOptions {
  config: Config;
  logging: Logging;
  clock: Clock;
  deviceId: string;
  stepProvider: StepProvider;
  /** False after a clean shutdown was recorded. */
  uncleanStart?: boolean;
  timers?: TimerFns;
  /** Longest single sleep: wall-clock jumps are noticed at least this often. */
  maxSleepMs?: number;
  /** Timers of the scheduler of daily checks (tests pass ManualTimers). */
  schedulerTimers?: TimerPort;
  /** The robot's side of the fleet server, made once the store is open (halts are kept in it). */
  fleet?: (store: Store) => DeviceFleet;
}

export function policyFor(p: ProductConfig): MachinePolicy {
  return {
    choiceTimeoutMs: p.decision.choiceTimeout,
    defaultChoice: p.decision.defaultChoice,
    confirmTimeoutMs: p.decision.confirmTimeout,
    preCheckRetryMs: p.precheck.retryInterval,
  };
}

export class Daemon implements DaemonControl {
  readonly bus = new EventBus();
  readonly store: Store;
  private config: Config;
  private readonly runners = new Map<string, ProductRunner>();
  /** Each product's step set for its next run (rebuilt by a reload). */
  private readonly steps = new Map<string, Steps>();
  private readonly progress = new Map<string, ProgressMessage>();
  /** The daily checks: registered tasks with their last run, result and next run, kept in SQLite. */
  private readonly scheduler: Scheduler;
  /** The product allowed to touch the robot now (from a passed pre-check until its run settles). */
  private readonly slot = new ExecutionSlot();
  /** The mission lease: maintenance windows asked for before installs (maintenance.ts). */
  readonly maintenance: MaintenanceWindows;
  /** The robot-state gates (robotState.gates) and what the app reports for them. */
  readonly robotState: RobotState;
  /** Download ahead of the install slot (download-ahead.ts). */
  readonly ahead: DownloadAhead;
  /** The rehearsal in flight (one at a time): stopped when a run of any product starts executing. */
  private rehearsing: { product: string; controller: AbortController } | null = null;
  private readonly deadlines: DeadlineDriver;
  private readonly startedAt: number;
  private readonly logger: Logger;
  private closed = false;
  /** Each product's rollback preview as of its last state change: status reads it without touching the disk. */
  private readonly rollbackPreviews = new Map<string, RollbackPreview>();

  constructor(private readonly opts: DaemonOptions) {
    this.config = opts.config;
    this.logger = opts.logging.logger;
    this.startedAt = opts.clock.now();
    this.deadlines = new DeadlineDriver({
      clock: opts.clock,
      ...(opts.timers ? { timers: opts.timers } : {}),
      ...(opts.maxSleepMs === undefined ? {} : { maxSleepMs: opts.maxSleepMs }),
      earliest: () => this.earliestDeadline(),
      onDue: (now) => this.onDeadlines(now),
    });
    this.store = Store.open(opts.config.paths.database);
    this.ahead = new DownloadAhead({
      clock: opts.clock,
      logger: this.logger,
      // Asked at each decision: a reload may have changed networkManager.bus.
      metered: {
        read: () => (this.opts.stepProvider.meteredSource?.(this.config, opts.clock, this.logger) ?? NO_METERED_SOURCE).read(),
      },
      product: (name) => {
        const p = this.config.products.find((x) => x.name === name);
        return p === undefined ? undefined : this.effectiveProduct(p);
      },
      machine: (name) => {
        const r = this.runners.get(name);
        if (!r) return null;
        try {
          return { state: r.state, context: r.context };
        } catch {
          return null;
        }
      },
      onSettled: (name) => {
        const r = this.runners.get(name);
        if (r && !EXECUTION_STATES.has(r.state)) this.progress.delete(name);
      },
    });
    this.fleet = opts.fleet ? opts.fleet(this.store) : null;
    this.maintenance = new MaintenanceWindows({
      policy: () => this.config.maintenance,
      clock: opts.clock,
      bus: this.bus,
      audit: this.auditSink(),
      logger: this.logger.child({ component: 'maintenance' }),
    });
    this.robotState = new RobotState({
      config: () => this.config.robotState,
      clock: opts.clock,
      logger: this.logger.child({ component: 'robot-state' }),
      upower: (c) => createUPowerAdapter({ bus: c.upower.bus, timeoutMs: c.upower.timeout, now: () => opts.clock.now() }),
      timedated: (c) => createTimedatedAdapter({ bus: c.timedated.bus, timeoutMs: c.timedated.timeout, now: () => opts.clock.now() }),
      commands: createCommandRunner(),
    });
    if (this.fleet) {
      const fleet = this.fleet;
      // Every run end (committed, rolled back, failed, cancelled) returns the lease its pre-check took.
      this.bus.subscribe('notification', (n) => {
        if (n.kind === 'run-ended') void fleet.leases.release(n.product);
      });
    }
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
    for (const p of opts.config.products) {
      const stored = parseStoredSource(this.store.getValue(SOURCE_KEY(p.name)));
      if (stored) this.sources.set(p.name, stored);
    }
    this.repositoryMonitor = createRepositoryMonitor({
      config: () => ({ ...this.config, products: this.config.products.map((p) => this.effectiveProduct(p)) }),
      clock: opts.clock,
      choices: (product) => {
        const p = this.config.products.find((x) => x.name === product);
        return p ? repositoryChoices(p) : [];
      },
      lastSuccessfulCheckAt: (product) => {
        const v = this.store.getValue(`lastSuccessfulCheck:${product}`);
        return v === null ? null : Number(v);
      },
    });
  }

  private readonly repositoryMonitor: ReturnType<typeof createRepositoryMonitor>;
  /** Each product's channel and repository chosen by an operator (source-selection.ts), as stored. */
  private readonly sources = new Map<string, StoredSource>();

  /** The product as its steps use it: the operator's channel and repository when that choice still applies. */
  private effectiveProduct(p: ProductConfig): ProductConfig {
    const s = this.sources.get(p.name);
    return s !== undefined && staleReason(p, s) === null ? withSource(p, s) : p;
  }

  private configuredProduct(name: string): ProductConfig {
    this.runner(name);
    return this.config.products.find((p) => p.name === name) as ProductConfig;
  }

  productSource(product: string): ProductSource {
    const p = this.configuredProduct(product);
    return productSource(p, this.config, this.sources.get(product) ?? null);
  }

  /**
   * An operator's choice of channel and repository: validated against the configured choices,
   * refused when the product's policy forbids switching or a run is in flight, then kept in the
   * store and used from the product's next check on (audited).
   */
  selectSource(req: SourceRequest): ProductSource & { changed: boolean } {
    const p = this.configuredProduct(req.product);
    const runner = this.runner(req.product);
    if (!p.allowSourceSwitch) {
      throw new OtaError('SOURCE_SWITCH_FORBIDDEN', `${p.name} follows channel ${p.channel} of repository ${p.repository.name} by configuration (allowSourceSwitch: false); nothing changed`, {
        details: { product: p.name },
      });
    }
    const now = this.productSource(p.name);
    const channel = req.channel ?? now.channel;
    const repository = req.repository ?? now.repository;
    if (!channelChoices(p).includes(channel)) {
      throw new OtaError('SOURCE_UNKNOWN', `channel "${channel}" is not configured for ${p.name}; choose one of: ${channelChoices(p).join(', ')} (products[].channel and channels)`, {
        details: { product: p.name, channel, channels: channelChoices(p) },
      });
    }
    const repositories = repositoryChoices(p).map((r) => r.name);
    if (!repositories.includes(repository)) {
      throw new OtaError('SOURCE_UNKNOWN', `repository "${repository}" is not configured for ${p.name}; choose one of: ${repositories.join(', ')} (products[].repository and repositories)`, {
        details: { product: p.name, repository, repositories },
      });
    }
    if (channel === now.channel && repository === now.repository) return { ...now, changed: false };
    if (runner.state !== 'idle') {
      throw new OtaError('SOURCE_SWITCH_BUSY', `${p.name} is in state ${runner.state}: its channel and repository can be switched only while it is idle (a run in flight keeps the source it started with); nothing changed`, {
        details: { product: p.name, state: runner.state },
      });
    }
    const stored: StoredSource = { channel, repository, at: this.opts.clock.now(), actor: req.actor ?? null, via: req.source };
    // The new steps are built before anything is kept: a repository they refuse changes nothing.
    const steps = this.buildSteps(withSource(p, stored), this.config);
    this.store.setValue(SOURCE_KEY(p.name), JSON.stringify(stored));
    this.sources.set(p.name, stored);
    this.steps.set(p.name, steps);
    this.auditAction({
      kind: 'api-control',
      message: `${p.name} switched from ${req.source}${req.actor ? ` (${req.actor})` : ''} to channel ${channel} of repository ${repository} (was channel ${now.channel} of repository ${now.repository}); the next check uses it`,
      product: p.name,
      ...(req.actor ? { actor: req.actor } : {}),
      details: { action: 'select-source', source: req.source, from: { channel: now.channel, repository: now.repository }, to: { channel, repository } },
    });
    this.bus.publish('notification', { product: p.name, kind: 'source-changed', version: null });
    return { ...this.productSource(p.name), changed: true };
  }
  /** Null when otad runs without a device key (embedded test daemons). */
  readonly fleet: DeviceFleet | null;

  productDefinitions(): ProductDefinition[] {
    return this.config.products.map((p) => productDefinition(this.effectiveProduct(p), this.config));
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
      const stored = this.sources.get(product.name);
      const stale = stored === undefined ? null : staleReason(product, stored);
      if (stored !== undefined && stale !== null) {
        this.logger.warn('the channel and repository an operator chose no longer apply: the configured ones are used', { product: product.name, channel: stored.channel, repository: stored.repository, why: stale });
      }
      const runner = this.createRunner(product);
      this.runners.set(product.name, runner);
      await runner.start();
      // A restored snapshot carries the policy it was saved with: the configuration's applies from
      // its next run.
      runner.configure(policyFor(product));
      if (EXECUTION_STATES.has(runner.state)) this.slot.claim(product.name);
      // A release staged ahead before the restart is verified again (or discarded), in the background.
      void this.ahead.evaluate(product.name);
      await this.rollbackPreview(product.name).catch((error: unknown) => this.logger.warn('could not tell where a rollback would go', { product: product.name, error: String(error) }));
    }
    this.pruneHistory();
    this.registerChecks(config.products.map(checkTask));
    this.scheduler.start();
    try {
      this.store.setValue('cleanShutdown', '0');
    } catch (error) {
      // Started on a full or failing disk: the lifecycle still runs and retries its own saves.
      this.logger.warn('could not record that otad is running: a crash before the next clean stop may be taken for a clean one', { error: toErrorData(error) });
    }
    this.arm();
  }

  private createRunner(product: ProductConfig): ProductRunner {
    const { clock, logging } = this.opts;
    this.steps.set(product.name, this.buildSteps(this.effectiveProduct(product), this.config));
    return new ProductRunner({
      product: product.name,
      policy: policyFor(product),
      steps: () => this.currentSteps(product.name),
      store: this.store,
      clock,
      logger: logging.logger,
      audit: logging.audit,
      bus: this.bus,
      journalVerdict: () => this.opts.stepProvider.journalVerdict(product, this.config),
      detectVersion: async () => (await detectProduct(product)).version,
      maxRestores: this.config.recovery.maxRestoresPerState,
      uncleanStart: this.opts.uncleanStart ?? true,
      onTransition: (r, from, to) => {
        // A run settles in idle or failed: the moment its history is complete and older runs may go.
        if ((to === 'idle' || to === 'failed') && from !== to) this.pruneHistory();
        if (!EXECUTION_STATES.has(to) && to !== 'preCheck') {
          this.progress.delete(r.product);
          this.slot.release(r.product);
          this.maintenance.close(r.product, `the run reached ${to}`);
        }
        // The disk moves during the executing steps; where a rollback would go is read once they settle.
        if (!EXECUTION_STATES.has(to) || to === 'validate') {
          void this.rollbackPreview(r.product).catch((error: unknown) => this.logger.warn('could not tell where a rollback would go', { product: r.product, error: String(error) }));
        }
        this.arm();
        void this.ahead.evaluate(r.product);
        if (this.rehearsing && (EXECUTION_STATES.has(to) || to === 'preCheck')) {
          this.rehearsing.controller.abort(new OtaError('REHEARSAL_INTERRUPTED', `the rehearsal of ${this.rehearsing.product} stopped: ${r.product} entered ${to} (an update run comes first)`, { details: { product: this.rehearsing.product, busyProduct: r.product, state: to } }));
        }
      },
    });
  }

  /**
   * Build the step set a product's next run will use, from the running configuration. A run in
   * flight keeps the set it started with (ProductRunner pins it), so this never changes one.
   */
  private buildSteps(product: ProductConfig, config: Config): Steps {
    const { clock, logging } = this.opts;
    const stepCtx: StepContext = {
      product,
      config,
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
      inhibits: () => this.heldInhibits(),
      onAhead: (ops) => this.ahead.setOps(product.name, ops),
    };
    const steps = this.opts.stepProvider.steps(stepCtx);
    // Every provider's pre-check passes through the fleet gate: halts and the lease are otad's, not a step's.
    const fleet = this.fleet;
    // The robot-state gates come before the fleet gate: a robot that is not ready takes no lease.
    const robotGated = { ...steps, preCheck: withRobotStateGate(steps.preCheck, this.robotState, stepCtx.logger) };
    const gated = fleet ? { ...robotGated, preCheck: withFleetGate(robotGated.preCheck, createFleetGate(fleet, config, stepCtx.logger)) } : robotGated;
    const guarded = this.slot.guard(product.name, gated);
    return {
      ...guarded,
      // The run's own staging: a download ahead still in flight stops first (its partial download is resumed).
      stage: async (input, signal) => {
        await this.ahead.settle(product.name, `the install of run ${input.runId} is staging now`);
        return guarded.stage(input, signal);
      },
      preCheck: async (input, signal) => {
        let result = await guarded.preCheck(input, signal);
        // Last, once every gate passed: the mission side is asked for its maintenance window.
        if (result.ok) result = await this.maintenance.ask(input, signal);
        // A lease granted to a pre-check that still did not pass (another product took the slot meanwhile, or the window was denied) goes back at once.
        if (!result.ok && fleet) await fleet.leases.release(product.name);
        return result;
      },
    };
  }

  private currentSteps(product: string): Steps {
    const steps = this.steps.get(product);
    if (!steps) throw new OtaError('INTERNAL', `no steps were built for product ${product}`);
    return steps;
  }

  // ----- timers ----------------------------------------------------------------------------

  /** Re-registering an unchanged spec keeps its plan and history. */
  private registerChecks(tasks: CheckTask[]): void {
    const wanted = new Set(tasks.map((t) => t.id));
    for (const task of this.scheduler.list()) if (task.kind === 'check' && !wanted.has(task.id)) this.scheduler.remove(task.id);
    for (const t of tasks) this.scheduler.upsert(t);
  }

  /** The daily check is due: start one if the product is idle; the result is kept with the task. */
  private onCheckDue(task: Readonly<TaskRecord>, info: DueInfo): string {
    const runner = this.runners.get(task.product);
    if (!runner) return 'skipped: product no longer configured';
    if (runner.state !== 'idle') {
      this.logger.info('daily check skipped: a run is in progress', { product: task.product, state: runner.state });
      return `skipped: ${runner.state}`;
    }
    const unsaved = runner.saveFailure();
    if (unsaved !== null) {
      this.logger.info('daily check skipped: the last move is not saved yet', { product: task.product, state: runner.state, to: unsaved.to });
      return `skipped: the move to ${unsaved.to} is not saved yet`;
    }
    const now = this.opts.clock.now();
    const runId = newRunId(now);
    runner.send({ type: 'CHECK_NOW', now, source: 'schedule', runId });
    return `check started (run ${runId}${info.catchUp ? ', catch-up' : ''})`;
  }

  private nextInstallSlot(product: ProductConfig, now: number): number {
    return nextInstallSlot(product, this.opts.deviceId, now);
  }

  private earliestDeadline(): number | null {
    let earliest: number | null = null;
    for (const r of this.runners.values()) {
      const d = r.nextDeadline();
      if (d !== null) earliest = earliest === null ? d : Math.min(earliest, d);
    }
    return earliest;
  }

  private arm(): void {
    if (!this.closed) this.deadlines.arm();
  }

  /** Turns stored deadlines into events now (the timer does this; tests and replays call it). */
  onTimer(): void {
    this.deadlines.fire();
  }

  private onDeadlines(now: number): void {
    for (const product of this.config.products) {
      const runner = this.runners.get(product.name);
      if (!runner) continue;
      const due = eventForDeadline({ product, deviceId: this.opts.deviceId, state: runner.state, deadline: runner.nextDeadline(), now });
      if (due === null) continue;
      if (due.missed) this.logger.warn('missed the scheduled install slot: rescheduled to the next one', { product: product.name, ...due.missed });
      this.sendInternal(runner, due.event);
    }
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
    const type = publicEventType(req.type);
    const productName = req.product ?? this.defaultProduct();
    const runner = this.runner(productName);
    const product = this.config.products.find((p) => p.name === productName) as ProductConfig;
    const now = clock.now();
    if (req.markBad !== undefined && type !== 'ROLLBACK') {
      throw new OtaError('API_INVALID_REQUEST', `markBad belongs to ROLLBACK only, not ${type}`, { details: { event: type } });
    }
    const event = buildPublicEvent(type, req, now, () => this.nextInstallSlot(product, now));
    const refuseIfNotAllowed = () => {
      if (runner.can(event)) return;
      const allowed = this.allowedEvents(runner, now, req.source);
      throw new OtaError('API_EVENT_NOT_ALLOWED', `${type} is not allowed while ${productName} is in state ${runner.state}; allowed now: ${allowed.join(', ') || 'none'}`, {
        details: { product: productName, state: runner.state, event: type, allowed },
      });
    };
    // A move the database does not hold yet comes first: the machine must not run ahead of it.
    runner.refuseWhileUnsaved();
    refuseIfNotAllowed();
    let target: RollbackTarget | null = null;
    if (type === 'ROLLBACK') {
      // Read fresh from disk: a rollback with nothing to go back to is refused before the machine
      // moves, so it can never end with the robot's files on disk and "installed: none" recorded.
      const preview = await this.rollbackPreview(productName).catch((error: unknown) => {
        this.logger.warn('could not tell where a rollback would go; the rollback step decides', { product: productName, error: String(error) });
        return null;
      });
      if (preview !== null && preview.target === null) {
        throw new OtaError('ROLLBACK_NOTHING_TO_UNDO', `nothing to roll back to for ${productName}: ${preview.why ?? 'no previous release and no backup'}; nothing changed`, {
          details: { product: productName, state: runner.state, live: preview.live, previous: preview.previous, onDisk: preview.onDisk, backups: preview.backups },
        });
      }
      target = preview?.target ?? null;
      refuseIfNotAllowed();
    }
    this.auditAction({
      kind: 'api-control',
      message: `${type} for ${productName} from ${req.source}${req.actor ? ` (${req.actor})` : ''}${target ? ` to ${target.version ?? 'nothing (first install undone)'}${req.markBad ? `, marking ${target.leaves ?? 'the release it leaves'} bad` : ''}` : ''}`,
      product: productName,
      ...(req.actor ? { actor: req.actor } : {}),
      details: {
        event: type,
        source: req.source,
        state: runner.state,
        ...(req.reason ? { reason: req.reason } : {}),
        ...(type === 'ROLLBACK' ? { markBad: req.markBad === true, target } : {}),
      },
    });
    runner.send(event);
    return { product: productName, event: type, state: runner.state, runId: runner.context.runId };
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
      inhibits: this.heldInhibits(now),
      network: (this.opts.stepProvider.network?.() as Record<string, unknown> | null | undefined) ?? this.storedNetwork(),
      deviceKey: this.fleet ? { publicKey: this.fleet.key.publicKey, fingerprint: this.fleet.fingerprint } : null,
      fleetHalts: this.fleet ? this.fleet.halts.all() : [],
      robotState: this.robotState.status(),
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
      allowedEvents: this.allowedEvents(r, now, 'daemon'),
      deadlines: { choice: c.choiceDeadline, confirm: c.confirmDeadline, scheduledAt: c.scheduledAt, preCheckRetryAt: c.preCheckRetryAt },
      nextCheckAt: this.scheduler.get(`check:${r.product}`)?.nextRunAt ?? null,
      preCheckReasons: c.preCheckReasons,
      progress: this.progress.get(r.product) ?? null,
      lastCheckAt: c.lastCheckAt,
      lastOutcome: c.lastOutcome,
      lastDowntime: this.store.lastDowntime(r.product),
      error: c.error,
      notification: pending ? { version: pending.version, notes: pending.notes, foundAt: pending.foundAt } : null,
      recovery: r.recovery ? { action: r.recovery.action, reason: r.recovery.reason } : null,
      saveFailure: r.saveFailure(),
      rollbackTarget: this.rollbackPreviews.get(r.product)?.target ?? null,
      maintenance: this.maintenance.status(r.product),
      downloadAhead: this.ahead.status(r.product),
    };
  }

  /** The machine's allowed events, without ROLLBACK when the disk shows nothing to go back to. */
  private allowedEvents(r: ProductRunner, now: number, source: EventSource) {
    const allowed = r.allowedEvents(PUBLIC_EVENTS, now, source);
    const preview = this.rollbackPreviews.get(r.product);
    return preview !== undefined && preview.target === null ? allowed.filter((e) => e !== 'ROLLBACK') : allowed;
  }

  /** Where a rollback would go now (null: this provider has no view of the disk); refreshes the cached one. */
  private async rollbackPreview(product: string): Promise<RollbackPreview | null> {
    const provider = this.opts.stepProvider;
    if (provider.previewRollback === undefined) return null;
    const runner = this.runner(product);
    const config = this.config.products.find((p) => p.name === product) as ProductConfig;
    const c = runner.context;
    // From idle a manual rollback starts a fresh run; in validate or failed it undoes the run in flight.
    const inRun = runner.state !== 'idle';
    const applied = inRun ? (c.artifacts.applied ?? null) : null;
    const preview = await provider.previewRollback(config, this.config, {
      attempted: inRun ? (applied?.version ?? c.offer?.version ?? null) : null,
      applied: applied === null ? null : { version: applied.version, fromRelease: applied.fromRelease },
    });
    const before = this.rollbackPreviews.get(product);
    this.rollbackPreviews.set(product, preview);
    if (before !== undefined && JSON.stringify(before.target) !== JSON.stringify(preview.target)) {
      this.bus.publish('notification', { product, kind: 'releases-changed', version: preview.target?.version ?? null });
    }
    return preview;
  }

  history(q: PageQuery = {}) {
    const runs = this.store.runs(q);
    const usedAhead = this.store.runsUsingStagedAhead();
    return runs.map((run) => ({ ...run, window: this.store.installWindow(run.runId, usedAhead) }));
  }

  /**
   * Rehearse an update of a product (rehearsal.ts): the real check, pre-check, download and staging
   * into a scratch folder, never the install path or the services; the machine gets no event.
   */
  async rehearse(request: { product?: string; source: EventSource; actor?: string }): Promise<RehearsalReport> {
    const name = request.product ?? this.defaultProduct();
    const runner = this.runner(name);
    const product = this.config.products.find((p) => p.name === name) as ProductConfig;
    const provider = this.opts.stepProvider;
    if (!provider.rehearsal) {
      throw new OtaError('REHEARSAL_UNAVAILABLE', 'this otad runs without real steps (a test wiring): there is nothing real to rehearse', { details: { product: name } });
    }
    if (this.rehearsing) throw rehearsalBusy(name, 'rehearsing', this.rehearsing.product);
    for (const [other, r] of this.runners) {
      if (EXECUTION_STATES.has(r.state) || r.state === 'preCheck' || r.state === 'checking') throw rehearsalBusy(name, r.state, other);
    }
    const controller = new AbortController();
    this.rehearsing = { product: name, controller };
    const effective = this.effectiveProduct(product);
    const scratchDir = join(this.config.paths.cacheDir, 'rehearsal', name);
    const logger = this.opts.logging.logger.child({ product: name, rehearsal: true });
    this.auditSink().audit({ kind: 'rehearsal', message: `rehearsal of ${name} started (${request.source}${request.actor ? `, ${request.actor}` : ''})`, product: name, ...(request.actor ? { actor: request.actor } : {}), details: { source: request.source } });
    try {
      // Its own step context: progress and ahead operations go nowhere (the product's status is not a rehearsal's).
      const ctx: StepContext = {
        product: effective,
        config: this.config,
        deviceId: this.opts.deviceId,
        store: this.store,
        clock: this.opts.clock,
        logger,
        audit: this.auditSink(),
        bus: this.bus,
        progress: () => {},
        inhibits: () => this.heldInhibits(),
      };
      const steps = provider.rehearsal(ctx, scratchDir);
      const report = await runRehearsal({ product: effective, config: this.config, steps, scratchDir, installedVersion: runner.context.installedVersion, store: this.store, clock: this.opts.clock, logger, signal: controller.signal, robotState: this.robotState });
      if (controller.signal.aborted && report.error !== null) {
        const reason = controller.signal.reason as OtaError;
        report.error = { code: reason.code, message: reason.message };
      }
      const pre = report.preCheck;
      const preCheckSaid = pre === null ? '' : pre.ok ? '; the pre-check would pass' : `; the pre-check would block on ${[...new Set(pre.reasons.map((r) => r.code))].join(', ')}`;
      this.auditSink().audit({
        kind: 'rehearsal',
        message: `rehearsal of ${name} finished${report.stoppedAt ? ` early at ${report.stoppedAt} (${report.error?.code})` : ''}: ${report.available ? `${report.version}, ${report.download?.bytes ?? 0} bytes to download` : 'nothing newer on offer'}${preCheckSaid}`,
        product: name,
        details: {
          version: report.version,
          stoppedAt: report.stoppedAt,
          error: report.error?.code ?? null,
          downloadBytes: report.download?.bytes ?? null,
          diskBytes: report.disk?.totalBytes ?? null,
          preCheckReasons: report.preCheck?.reasons.map((r) => r.code) ?? null,
        },
      });
      return report;
    } finally {
      this.rehearsing = null;
    }
  }

  downtimeSummary(product?: string) {
    return this.store.downtimeSummary(product);
  }

  transitions(q: PageQuery = {}) {
    return this.store.transitions(q);
  }

  transitionRange() {
    return this.store.seqRange();
  }

  /** Applies config `history` (runs kept, maximum age). Never fails the caller: a full disk must not stop a run ending. */
  private pruneHistory(): void {
    try {
      const r = this.store.pruneHistory(
        {
          keepRuns: this.config.history.keepRuns,
          maxAgeMs: this.config.history.maxAge,
          auditKeep: this.config.history.auditKeep,
          auditMaxAgeMs: this.config.history.auditMaxAge,
        },
        this.opts.clock.now(),
      );
      if (r.runs > 0 || r.transitions > 0 || r.audit > 0) this.logger.info('old history pruned', { ...r, keepRuns: this.config.history.keepRuns, maxAgeMs: this.config.history.maxAge });
    } catch (error) {
      this.logger.warn('could not prune old history', { error: String(error) });
    }
  }

  logs(q: { level?: string; limit?: number; since?: number; contains?: string; product?: string } = {}) {
    return this.opts.logging.tail(q);
  }

  audit(limit = 100) {
    return this.store.auditTrail(limit);
  }

  releases(product?: string) {
    return this.store.pendingNotifications(product);
  }

  async releaseHistory(product: string): Promise<ReleaseHistory> {
    const runner = this.runner(product);
    const preview = await this.rollbackPreview(product);
    const installed = runner.context.installedVersion;
    const known = new Map<string, ReleaseRecord>(this.store.knownReleases(product).map((r) => [r.version, r]));
    const versions = new Set<string>([...known.keys(), ...(preview?.onDisk ?? []), ...(preview?.backups ?? []), ...(installed === null ? [] : [installed])]);
    const target = preview?.target ?? null;
    const releases: ReleaseEntry[] = [...versions].sort((a, b) => compareReleaseNames(b, a)).map((version) => {
      const r = known.get(version);
      const found = r !== undefined && r.offer !== null;
      return {
        version,
        installed: version === installed,
        previous: target !== null && target.version === version,
        onDisk: preview?.onDisk.includes(version) ?? false,
        backup: preview?.backups.includes(version) ?? false,
        channel: found ? r.channel : null,
        releasedAt: found ? r.releasedAt : null,
        foundAt: found ? r.foundAt : null,
        bad: r === undefined ? null : badMarkOf(r),
      };
    });
    return { product, installedVersion: installed, rollbackTarget: target, rollbackUnavailable: preview?.why ?? null, releases };
  }

  unmarkRelease(req: UnmarkRequest): { product: string; version: string; cleared: BadMarkInfo } {
    this.runner(req.product);
    const before = this.store.unmarkBad(req.product, req.version);
    const cleared = before === null ? null : badMarkOf(before);
    if (cleared === null) {
      throw new OtaError('API_NOT_FOUND', `${req.product} ${req.version} is not marked bad`, { details: { product: req.product, version: req.version } });
    }
    this.auditAction({
      kind: 'api-control',
      message: `bad mark of ${req.product} ${req.version} cleared from ${req.source}${req.actor ? ` (${req.actor})` : ''}: it may be offered again (it was marked ${cleared.by ?? 'bad'}${cleared.actor ? ` by ${cleared.actor}` : ''}: ${cleared.reason})`,
      product: req.product,
      ...(req.actor ? { actor: req.actor } : {}),
      details: { action: 'unmark-bad', version: req.version, source: req.source, cleared },
    });
    this.bus.publish('notification', { product: req.product, kind: 'releases-changed', version: req.version });
    return { product: req.product, version: req.version, cleared };
  }

  acknowledge(product: string, version: string | null, source: EventSource, actor?: string): number {
    this.runner(product);
    const n = this.store.acknowledgeRelease(product, version, this.opts.clock.now());
    this.auditAction({ kind: 'api-control', message: `release notification acknowledged for ${product} from ${source}`, product, ...(actor ? { actor } : {}) });
    return n;
  }

  /** The app's robot state (docked, charging, battery, stationary) for the robot-state gates. */
  reportRobotState(report: AppReport, source: EventSource, actor: string) {
    const r = this.robotState.report(report, `${actor} (${source})`);
    this.logger.debug('robot state reported', { source, actor, report });
    return r;
  }

  answerMaintenance(req: { product: string; requestId: string; grant: boolean; reason: string | null; source: EventSource; actor: string }) {
    this.runner(req.product);
    return this.maintenance.answer(req.product, req.requestId, req.grant, req.reason, req.source, req.actor);
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

  renewInhibit(holder: string, durationMs: number | undefined, source: EventSource, actor?: string) {
    const now = this.opts.clock.now();
    const held = this.store.activeInhibits(now).find((i) => i.holder === holder);
    if (!held) return null;
    const duration = Math.min(durationMs ?? this.config.inhibit.leaseTtl, this.config.inhibit.maxHold);
    const record = { ...held, expiresAt: now + duration };
    this.store.holdInhibit(record);
    this.logger.debug('inhibit lease renewed', { holder, source, ...(actor ? { actor } : {}), expiresAt: record.expiresAt });
    return record;
  }

  /** File-descriptor inhibitors (D-Bus Inhibit): in memory only, they end with the holder's fd (and with otad). */
  private readonly fdInhibits = new Map<string, HeldInhibit & { mode: string }>();
  private fdInhibitSeq = 0;

  holdFdInhibit(req: FdInhibitRequest) {
    const who = req.who.trim();
    if (who.length < 1 || who.length > 64) throw new OtaError('API_INVALID_REQUEST', 'inhibit: who must be 1-64 characters (the application taking the inhibitor)');
    if (req.why.trim().length < 1) throw new OtaError('API_INVALID_REQUEST', 'inhibit: why must say why updates must wait (1-200 characters)');
    if (req.mode !== 'block') throw new OtaError('API_INVALID_REQUEST', `inhibit: mode "${req.mode}" is not supported; use "block" (no install starts while the inhibitor is held)`, { details: { mode: req.mode } });
    const id = `fd-${++this.fdInhibitSeq}`;
    const rec = { holder: who, reason: req.why.slice(0, 200), since: this.opts.clock.now(), expiresAt: null, kind: 'fd' as const, mode: req.mode };
    this.fdInhibits.set(id, rec);
    this.auditAction({ kind: 'api-control', message: `inhibitor taken by ${who} from ${req.source} (held while its file descriptor is open): ${rec.reason}`, ...(req.actor ? { actor: req.actor } : {}) });
    return {
      id,
      release: (why: string) => {
        if (!this.fdInhibits.delete(id)) return;
        this.auditAction({ kind: 'api-control', message: `inhibitor of ${who} released: ${why}`, ...(req.actor ? { actor: req.actor } : {}) });
      },
    };
  }

  heldInhibits(now = this.opts.clock.now()): HeldInhibit[] {
    const leases: HeldInhibit[] = this.store.activeInhibits(now).map((i) => ({ ...i, kind: 'lease' as const }));
    const fds: HeldInhibit[] = [...this.fdInhibits.values()].map(({ mode: _mode, ...i }) => i);
    return [...leases, ...fds].sort((a, b) => a.since - b.since);
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

  /**
   * SIGHUP: run on a newly loaded configuration. Keys that need a restart keep their running
   * values (see src/config/reload.ts); everything else is used from the next run on: each
   * product's steps are rebuilt (repository and HTTP client, pre-check, services, health checks,
   * probation, channel), its policy waits for the run in flight to end, the daily checks are
   * re-planned and the log level changes at once.
   */
  reload(next: Config): ReloadReport {
    const plan = planReload(this.config, next);
    if (plan.applied.length > 0) {
      // Every product's new steps and daily checks are built before any is used: a configuration
      // one of them refuses (a repository URL that is not a URL, a bad cron expression) is refused
      // whole, and nothing changes.
      const built = new Map<string, Steps>();
      for (const product of plan.effective.products) {
        if (this.runners.has(product.name)) built.set(product.name, this.buildSteps(this.effectiveProduct(product), plan.effective));
      }
      const checks = plan.effective.products.filter((p) => this.runners.has(p.name)).map(checkTask);
      this.config = plan.effective;
      for (const product of this.config.products) {
        const steps = built.get(product.name);
        if (steps === undefined) continue;
        this.steps.set(product.name, steps);
        this.runners.get(product.name)?.configure(policyFor(product));
      }
      this.registerChecks(checks);
      this.opts.logging.setLevel(this.config.logging.level);
      this.arm();
    } else {
      this.config = plan.effective;
    }
    return { changed: plan.changed, applied: plan.applied, needsRestart: plan.needsRestart };
  }

  /** Critical steps (apply, rollback) are given time to finish before the process stops. */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.closed) return;
    const deadline = Date.now() + graceMs;
    // A step waiting for its move to be saved is not running: there is nothing to wait for.
    while (Date.now() < deadline && [...this.runners.values()].some((r) => (r.state === 'apply' || r.state === 'rollback') && r.saveFailure() === null)) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.closed = true;
    await this.ahead.stop();
    this.scheduler.stop();
    this.deadlines.stop();
    // A lease held by a run in flight stays on the server until its TTL: the run resumes after the restart.
    this.fleet?.stop();
    for (const r of this.runners.values()) r.stop();
    // Its D-Bus connections (NetworkManager's Metered reading) end with the daemon.
    this.opts.stepProvider.close?.();
    try {
      this.store.setValue('cleanShutdown', '1');
      this.store.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (error) {
      // A full or failing disk: the next start is taken for an unclean one, which is the safe side.
      this.logger.warn('could not record the clean stop', { error: toErrorData(error) });
    } finally {
      this.store.close();
    }
  }
}

function badMarkOf(r: ReleaseRecord): BadMarkInfo | null {
  if (r.badAt === null) return null;
  return { at: r.badAt, reason: r.badReason ?? '', by: r.badBy, actor: r.badActor, runId: r.badRunId };
}

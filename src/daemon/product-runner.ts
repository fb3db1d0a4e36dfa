/**
 * One product's lifecycle at run time: the machine actor, its persistence and its recovery.
 *
 * Invariants this file protects:
 * - every transition is written (snapshot, transition row, run, choice, release) in one SQLite
 *   transaction before the step it enters starts (the step actors yield once before doing anything);
 * - on start, the saved state is restored, re-run or ended exactly as the recovery policy says;
 * - nothing thrown by a step reaches the process: it becomes StepFailure data in the machine;
 * - notifications and audit events come from what the machine announces (its emitted events),
 *   published only after the transition that announced them is written;
 * - what this runner reports (state, context, transitions, announcements) is what the database
 *   holds: a transition that cannot be written (ENOSPC, EIO, SQLITE_FULL) is held back, retried
 *   with a bounded backoff, and published once it is saved. Until then the step it enters waits,
 *   no event is accepted, and a restart recovers from the state that was saved.
 */
import { transitionCause } from './transition-cause.js';
import { createActor, fromPromise, type Actor, type InspectionEvent } from 'xstate';
import { updateMachine, type UpdateMachine } from '../../machines/update-machine.js';
import {
  MACHINE_VERSION,
  type Announcement,
  STEP_NAMES,
  type EventSource,
  type MachineInput,
  type MachinePolicy,
  type PublicEventType,
  type StepDone,
  type StepFailure,
  type StepName,
  type Steps,
  type UpdateContext,
  type UpdateEvent,
} from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError, toErrorData } from '../core/errors.js';
import type { AuditEvent, AuditSink, Logger } from '../core/logger.js';
import type { Store } from '../store/store.js';
import type { EventBus } from './event-bus.js';
import { decideRecovery, isStateName, type JournalVerdict, type RecoveryDecision } from './recovery-policy.js';

export interface ProductRunnerDeps {
  product: string;
  policy: MachinePolicy;
  /**
   * The steps a run that starts now would use. A run keeps the set it started with to its end (a
   * reload rebuilds the set for the next run, never under a run in flight).
   */
  steps: () => Steps;
  store: Store;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  bus: EventBus;
  /** The apply journal's verdict for this product, read from disk. */
  journalVerdict: () => Promise<JournalVerdict>;
  /** The installed version as detected on disk. */
  detectVersion: () => Promise<string | null>;
  maxRestores: number;
  /** False after a clean shutdown: restores then do not count towards the crash-loop guard. */
  uncleanStart: boolean;
  /** Called after every persisted transition (the daemon re-arms its timer, frees the execution slot). */
  onTransition?: (runner: ProductRunner, from: string, to: string) => void;
}

/** States in which a step of this product touches the robot: at most one product at a time. */
export const EXECUTION_STATES: ReadonlySet<string> = new Set(['backup', 'staging', 'apply', 'validate', 'commit', 'rollback']);

/** The retry of a transition that could not be saved: first after 200 ms, doubling, at most every 5 s. */
export const SAVE_RETRY_FIRST_MS = 200;
export const SAVE_RETRY_MAX_MS = 5_000;
/** While retries run at the longest interval, one log line per this many attempts (about a minute). */
const SAVE_RETRY_LOG_EVERY = 12;

/** A move of the machine that is not in the database yet (see ProductRunner.save). */
interface PendingSave {
  /** What the machine announced since the last saved transition: published once this is saved. */
  announced: Announcement[];
  eventType: string;
  recordedEvent: unknown;
  source: string | undefined;
  /** When the machine moved. */
  at: number;
  attempts: number;
  error: ReturnType<typeof toErrorData> | null;
  /** The raw code of the last failure (ENOSPC, SQLITE_FULL, SQLITE_IOERR_WRITE, ...). */
  errno: string | null;
  nextAttemptAt: number | null;
  timer: NodeJS.Timeout | null;
}

/** What status shows while a move cannot be saved (ProductStatus.saveFailure). */
export interface SaveFailure {
  /** The state the machine moved to; the reported state stays the saved one until this is written. */
  to: string;
  error: ReturnType<typeof toErrorData>;
  attempts: number;
  since: number;
  nextAttemptAt: number | null;
}

/** States between runs: a reloaded policy and step set apply here. */
const OUTSIDE_A_RUN: ReadonlySet<string> = new Set(['idle', 'failed', '(none)', 'boot']);

export type Snapshot = ReturnType<Actor<UpdateMachine>['getSnapshot']>;

export class ProductRunner {
  readonly product: string;
  private actor: Actor<UpdateMachine> | null = null;
  private lastState: string | null = null;
  /** The state of the last transition written to the store: the log's next row starts from it. */
  private savedState: string | null = null;
  /** The context last written to the store (null: none yet from this machine). */
  private lastContextJson: string | null = null;
  /** The context the database held when this runner started (what status shows until a first save). */
  private startContext: UpdateContext | null = null;
  private stopping = false;
  /** A move not written yet: no step starts and no event is accepted until it is (see save). */
  private pending: PendingSave | null = null;
  /** Steps waiting for the pending move to be saved. */
  private savedWaiters: Array<() => void> = [];
  /** The steps of the current run, taken when the run started. */
  private pinned: { runId: string; steps: Steps } | null = null;
  /** A policy from a reload, waiting for the run in flight to end (see configure). */
  private pendingPolicy: MachinePolicy | null = null;
  /**
   * What the machine announced during the step being processed. XState delivers emitted events
   * before the snapshot, so they wait here until the transition is written, then are published.
   */
  private announced: Announcement[] = [];
  recovery: RecoveryDecision | null = null;
  /**
   * A run restored in apply (after the switch) or validate: its apply and validate steps are told
   * so (their input's `resumed`), so the validation starts the services again and gives them their
   * start-up allowance from then before it judges the release. Cleared once validate has started.
   */
  private resumed: { runId: string; interruptedIn: 'apply' | 'validate'; restoredAt: number } | null = null;

  constructor(private readonly deps: ProductRunnerDeps) {
    this.product = deps.product;
  }

  get state(): string {
    return this.lastState ?? 'idle';
  }

  /** The context as saved: while a move is not written yet, the one the database holds. */
  get context(): UpdateContext {
    if (!this.actor) throw new OtaError('INTERNAL', `product ${this.product} is not started`);
    if (this.pending) {
      const saved = this.lastContextJson ? (JSON.parse(this.lastContextJson) as UpdateContext) : this.startContext;
      if (saved) return saved;
    }
    return this.actor.getSnapshot().context;
  }

  /** The move that could not be saved yet, with the last failure (null: everything is saved). */
  saveFailure(): SaveFailure | null {
    const p = this.pending;
    if (!p || !p.error || !this.actor) return null;
    return { to: String(this.actor.getSnapshot().value), error: p.error, attempts: p.attempts, since: p.at, nextAttemptAt: p.nextAttemptAt };
  }

  /** Refuse an event while a move is not saved: the machine must not run ahead of the database. */
  refuseWhileUnsaved(): void {
    const failure = this.saveFailure();
    if (failure === null && !this.pending) return;
    const to = failure?.to ?? 'its next state';
    const why = failure ? `${this.pending?.errno ?? failure.error.code}: ${failure.error.message}` : 'the save is in progress';
    throw new OtaError('STATE_NOT_SAVED', `${this.product} moved from ${this.state} to ${to} but the move could not be saved yet (${why}); otad retries the save on its own, then accepts events again`, {
      details: { product: this.product, state: this.state, to, attempts: failure?.attempts ?? 0, error: failure?.error ?? null },
    });
  }

  snapshot(): Snapshot {
    if (!this.actor) throw new OtaError('INTERNAL', `product ${this.product} is not started`);
    return this.actor.getSnapshot();
  }

  /** Restore or start the machine, as the recovery policy decides. */
  async start(): Promise<RecoveryDecision> {
    const { store, clock } = this.deps;
    const row = store.loadSnapshot(this.product);
    const now = clock.now();
    let compatible = false;
    let savedContext: Partial<UpdateContext> | null = null;
    if (row) {
      const snap = row.snapshot as { value?: unknown; context?: Partial<UpdateContext>; status?: string } | null;
      compatible =
        row.machineVersion === MACHINE_VERSION &&
        snap !== null &&
        typeof snap === 'object' &&
        snap.status === 'active' &&
        snap.value === row.state &&
        isStateName(row.state) &&
        typeof snap.context === 'object';
      savedContext = snap && typeof snap === 'object' && snap.context && typeof snap.context === 'object' ? snap.context : null;
    }
    const restoreCount = row && row.runId && this.deps.uncleanStart && row.state !== 'idle' ? this.countRestore(row.runId, row.state, now) : 0;
    const journal: JournalVerdict = row?.state === 'apply' ? await this.deps.journalVerdict().catch(() => 'none' as const) : 'none';
    const decision = decideRecovery({
      state: row?.state ?? null,
      compatible,
      restoreCount,
      maxRestores: this.deps.maxRestores,
      journal,
    });
    this.recovery = decision;
    const log = this.deps.logger.child({ product: this.product });

    if (row && (decision.action === 'resume' || decision.action === 'rerun')) {
      try {
        this.lastState = row.state;
        this.savedState = row.state;
        this.lastContextJson = JSON.stringify(savedContext);
        this.startContext = savedContext as UpdateContext | null;
        if (decision.action === 'rerun' && row.runId && (row.state === 'apply' || row.state === 'validate')) {
          this.resumed = { runId: row.runId, interruptedIn: row.state, restoredAt: now };
        }
        this.actor = this.createActor({ snapshot: row.snapshot });
        this.actor.start();
        log.info('restored saved state', { state: row.state, action: decision.action, reason: decision.reason, runId: row.runId });
        this.afterStart(decision, row.runId);
        return decision;
      } catch (error) {
        // A snapshot XState refuses is treated as one from another machine version.
        log.error('the saved snapshot could not be restored', { error: toErrorData(error) });
        this.actor = null;
        const fallback = decideRecovery({ state: row.state, compatible: false, restoreCount, maxRestores: this.deps.maxRestores, journal });
        return this.startFresh(fallback, row.state, row.runId, null);
      }
    }
    return this.startFresh(decision, row?.state ?? null, row?.runId ?? null, compatible ? savedContext : null);
  }

  /**
   * Count this restore for the crash-loop guard. When the count cannot be saved (disk full) this
   * restore still counts, in memory: the guard sees at least as many restores as happened.
   */
  private countRestore(runId: string, state: string, now: number): number {
    const { store } = this.deps;
    try {
      return store.countRestore(runId, state, now);
    } catch (error) {
      const count = store.restoreCount(runId, state) + 1;
      this.deps.logger.warn('could not save the restore count: this restore is counted in memory only', { product: this.product, runId, state, count, error: toErrorData(error) });
      return count;
    }
  }

  private async startFresh(
    decision: RecoveryDecision,
    savedState: string | null,
    savedRunId: string | null,
    saved: Partial<UpdateContext> | null,
  ): Promise<RecoveryDecision> {
    const compatibleSnapshot = saved !== null;
    this.recovery = decision;
    const installedVersion = await this.deps.detectVersion().catch(() => null);
    const input: MachineInput = {
      product: this.product,
      policy: this.deps.policy,
      installedVersion: installedVersion ?? saved?.installedVersion ?? null,
      now: this.deps.clock.now(),
    };
    if (decision.action === 'rollback' || decision.action === 'abort' || decision.action === 'fail') {
      const crashLoop = decision.reason.startsWith('crash loop');
      input.recovery = {
        mode: decision.action,
        reason: decision.reason,
        cause: crashLoop ? 'crash-loop' : 'interrupted',
        runId: savedRunId,
        offer: saved?.offer ?? null,
        artifacts: saved?.artifacts ?? {},
        error: {
          code: crashLoop ? 'RECOVERY_CRASH_LOOP' : compatibleSnapshot ? 'RECOVERY_INTERRUPTED' : 'RECOVERY_FOREIGN_SNAPSHOT',
          category: 'internal',
          retryable: false,
          message: decision.reason,
        },
      };
      if (saved?.installedVersion !== undefined) input.installedVersion = installedVersion ?? saved.installedVersion;
    }
    this.lastState = savedState ?? '(none)';
    this.savedState = this.lastState;
    this.lastContextJson = null;
    this.startContext = saved as UpdateContext | null;
    this.actor = this.createActor({ input });
    this.actor.start();
    this.deps.logger.child({ product: this.product }).info('started the lifecycle', {
      state: this.state,
      savedState,
      action: decision.action,
      reason: decision.reason,
    });
    this.afterStart(decision, savedRunId);
    return decision;
  }

  private afterStart(decision: RecoveryDecision, runId: string | null): void {
    if (decision.action !== 'resume' && decision.action !== 'fresh') {
      const event = { kind: 'recovery' as const, message: `recovery: ${decision.action} (${decision.reason})`, product: this.product };
      this.deps.audit.audit(runId ? { ...event, runId } : event);
      try {
        this.deps.store.audit(runId ? { ...event, runId } : event, this.deps.clock.now());
      } catch (error) {
        // The audit sink above has it; the database gets the recovery's transition once it can be saved.
        this.deps.logger.warn('could not write the recovery audit event to the database', { product: this.product, error: toErrorData(error) });
      }
    }
  }

  private createActor(opts: { snapshot: unknown } | { input: MachineInput }): Actor<UpdateMachine> {
    const machine = updateMachine.provide({ actors: this.stepActors() });
    const inspect = (ev: InspectionEvent): void => {
      if (ev.type !== '@xstate.snapshot' || ev.actorRef !== actorRef) return;
      this.onSnapshot(ev.event as { type: string }, ev.snapshot as Snapshot);
    };
    let actorRef: Actor<UpdateMachine>;
    if ('snapshot' in opts) {
      actorRef = createActor(machine, { snapshot: opts.snapshot as never, input: undefined as never, inspect });
    } else {
      actorRef = createActor(machine, { input: opts.input, inspect });
    }
    actorRef.on('*', (announcement) => {
      this.announced.push(announcement);
    });
    return actorRef;
  }

  private stepActors() {
    const make = <K extends StepName>(name: K) =>
      fromPromise<StepDone<Awaited<ReturnType<Steps[K]>>>, Parameters<Steps[K]>[0]>(async ({ input, signal }) => {
        // The transition into this step is written synchronously by the inspector; yielding once
        // guarantees it is durable before the step touches anything.
        await new Promise<void>((resolve) => setImmediate(resolve));
        // Touching the robot in a state the database does not know would break recovery: a step
        // whose transition could not be written waits until the retry has written it.
        await this.untilSaved(signal);
        const step = this.stepsOf((input as { runId: string }).runId)[name] as (i: typeof input, s: AbortSignal) => Promise<Awaited<ReturnType<Steps[K]>>>;
        const stepInput = this.withResumed(name, input);
        try {
          const result = await step(stepInput, signal);
          return { result, at: this.deps.clock.now() };
        } catch (error) {
          const failure: StepFailure = { error: toErrorData(error), at: this.deps.clock.now() };
          this.deps.logger.child({ product: this.product }).warn(`step ${name} failed`, { error: failure.error, runId: (input as { runId?: string }).runId });
          throw failure;
        }
      });
    const actors: Record<string, ReturnType<typeof make>> = {};
    for (const name of STEP_NAMES) actors[name] = make(name);
    return actors as never;
  }

  /** The input of apply or validate in a run restored after otad's restart carries `resumed`. */
  private withResumed<I>(name: StepName, input: I): I {
    const resumed = this.resumed;
    if (resumed === null || (name !== 'apply' && name !== 'validate')) return input;
    if ((input as { runId?: string }).runId !== resumed.runId) {
      this.resumed = null;
      return input;
    }
    // The validation that follows a resumed apply is the restarted one too; after it, none.
    if (name === 'validate') this.resumed = null;
    return { ...input, resumed: { interruptedIn: resumed.interruptedIn, restoredAt: resumed.restoredAt } };
  }

  /** The steps of run `runId`: the set pinned when it started, or (a restored run) the current one. */
  private stepsOf(runId: string): Steps {
    if (this.pinned?.runId !== runId) this.pinned = { runId, steps: this.deps.steps() };
    return this.pinned.steps;
  }

  /**
   * A reloaded policy (decision and pre-check retry) applies from the next run: a run in flight
   * keeps the deadlines and default choice it was offered with. Outside a run it applies at once.
   */
  configure(policy: MachinePolicy): void {
    this.pendingPolicy = policy;
    this.flushPolicy();
  }

  private flushPolicy(): void {
    if (this.pendingPolicy === null || !this.actor || this.stopping || this.pending || !OUTSIDE_A_RUN.has(this.state)) return;
    const policy = this.pendingPolicy;
    this.pendingPolicy = null;
    if (JSON.stringify(policy) === JSON.stringify(this.context.policy)) return;
    this.actor.send({ type: 'CONFIGURE', policy, now: this.deps.clock.now(), source: 'daemon' });
  }

  private onSnapshot(event: { type: string }, snap: Snapshot): void {
    const announced = this.announced;
    this.announced = [];
    if (this.stopping || snap.status !== 'active') return;
    // A new run takes the steps current when it starts, before its first step is invoked.
    if (snap.context.runId !== null && !OUTSIDE_A_RUN.has(String(snap.value))) this.stepsOf(snap.context.runId);
    if (this.pending) {
      // Another move while one is not saved (a step already running finished): it is written
      // together with it, as one row from the last saved state.
      this.pending.announced.push(...announced);
      if (this.pending.timer === null) this.save(snap);
      return;
    }
    const state = String(snap.value);
    const from = this.lastState ?? '(none)';
    if (state === from && JSON.stringify(snap.context) === this.lastContextJson && announced.length === 0) return;
    // A machine started by the recovery policy moves from the saved state without an event of its own.
    const recovered = event.type === 'xstate.init' && state !== from && from !== '(none)' && this.recovery !== null;
    const eventType = recovered ? 'otad.recovery' : event.type;
    this.pending = {
      announced,
      eventType,
      recordedEvent: recovered ? { type: eventType, action: this.recovery?.action, reason: this.recovery?.reason } : this.recordableEvent(event),
      source: (event as { source?: string }).source,
      at: this.deps.clock.now(),
      attempts: 0,
      error: null,
      errno: null,
      nextAttemptAt: null,
      timer: null,
    };
    this.save(snap);
  }

  /**
   * Write the pending move (snapshot, transition row, run, choice, releases, audit) in one
   * transaction, then publish it. A failed write publishes nothing: the reported state stays the
   * saved one, and the write is retried with a bounded backoff until it succeeds.
   */
  private save(snap: Snapshot | null = null): void {
    const p = this.pending;
    if (!p || !this.actor || this.stopping) return;
    if (p.timer !== null) clearTimeout(p.timer);
    p.timer = null;
    const current = snap ?? this.actor.getSnapshot();
    const state = String(current.value);
    const ctx = current.context;
    const contextJson = JSON.stringify(ctx);
    const from = this.lastState ?? '(none)';
    const changedState = state !== from;
    // The log goes on from the last state it holds, so it never has a gap.
    const savedFrom = this.savedState ?? from;
    const logRow = state !== savedFrom;
    const prev = this.lastContextJson ? (JSON.parse(this.lastContextJson) as UpdateContext) : null;
    const at = p.at;
    const announced = p.announced;
    const runEnded = announced.some((a) => a.type === 'runEnded');
    // Between runs (idle, failed) only the end of a run touches its row: a policy change or a
    // detected version afterwards, or a RESET, must not reopen or re-date a finished run.
    const writeRun = ctx.runId !== null && (!OUTSIDE_A_RUN.has(state) || runEnded);
    const newChoice = ctx.choice !== null && JSON.stringify(ctx.choice) !== JSON.stringify(prev?.choice ?? null);
    const offers = announced.flatMap((a) => (a.type === 'offer' ? [a.offer] : []));
    const audits = announced.flatMap((a) => this.auditOf(a));
    let seq: number | null = null;
    try {
      this.deps.store.db.transaction(() => {
        seq = this.deps.store.writeTransition({
          product: this.product,
          machineVersion: MACHINE_VERSION,
          snapshot: this.actor ? this.actor.getPersistedSnapshot() : current,
          state,
          runId: ctx.runId,
          at,
          ...(logRow ? { transition: { from: savedFrom, to: state, eventType: p.eventType, event: p.recordedEvent } } : {}),
          ...(writeRun
            ? {
                run: {
                  kind: ctx.runKind ?? 'update',
                  startedAt: ctx.runStartedAt ?? at,
                  fromVersion: prev?.runId === ctx.runId ? (prev.installedVersion ?? null) : ctx.installedVersion,
                  // The version the run aimed at: the offer, or for a manual rollback the release it restored.
                  toVersion: ctx.offer?.version ?? (runEnded && ctx.runKind === 'manual-rollback' ? ctx.installedVersion : null),
                  outcome: runEnded || state === 'failed' ? ctx.lastOutcome : null,
                  endedAt: runEnded ? at : null,
                  error: ctx.error,
                },
              }
            : {}),
          ...(newChoice && ctx.choice ? { choice: ctx.choice } : {}),
        });
        for (const offer of offers) this.deps.store.recordRelease(offer, at);
        for (const ev of audits) this.deps.store.audit(ev, at);
      })();
    } catch (error) {
      this.saveFailed(p, state, changedState, error);
      return;
    }
    const log = this.deps.logger.child({ product: this.product });
    if (p.attempts > 0) log.info(`saved the move to ${state} after ${p.attempts} failed attempt${p.attempts === 1 ? '' : 's'}`, { state, attempts: p.attempts, runId: ctx.runId, seq });
    this.pending = null;
    this.savedState = state;
    this.lastState = state;
    this.lastContextJson = contextJson;
    if (changedState) {
      const cause = transitionCause({ from, to: state, event: p.eventType, source: p.source }, ctx);
      log.info(`${from} → ${state}: ${cause}`, { event: p.eventType, runId: ctx.runId, seq });
      this.deps.bus.publish('transition', { seq: seq ?? 0, product: this.product, runId: ctx.runId, from, to: state, event: p.eventType, cause, at });
    }
    for (const a of announced) this.publish(a);
    const waiters = this.savedWaiters.splice(0);
    for (const w of waiters) w();
    if (OUTSIDE_A_RUN.has(state)) {
      this.pinned = null;
      // Not from inside the inspector: the policy is sent once this transition is done.
      if (this.pendingPolicy !== null) queueMicrotask(() => this.flushPolicy());
    }
    if (changedState) this.deps.onTransition?.(this, from, state);
  }

  private saveFailed(p: PendingSave, state: string, changedState: boolean, error: unknown): void {
    p.attempts += 1;
    p.error = toErrorData(error);
    p.errno = (error as { code?: unknown } | null)?.code !== undefined ? String((error as { code: unknown }).code) : p.error.code;
    const delay = Math.min(SAVE_RETRY_MAX_MS, SAVE_RETRY_FIRST_MS * 2 ** (p.attempts - 1));
    p.nextAttemptAt = this.deps.clock.now() + delay;
    p.timer = setTimeout(() => this.save(), delay);
    const what = changedState ? `the move to ${state}` : `a change in ${state}`;
    const message = `cannot save ${what}: ${p.errno}; retrying`;
    const fields = { product: this.product, state: this.state, to: state, attempt: p.attempts, retryInMs: delay, error: p.error };
    // Every attempt while the backoff grows, then about one line a minute.
    const atMax = delay === SAVE_RETRY_MAX_MS && SAVE_RETRY_FIRST_MS * 2 ** (p.attempts - 2) >= SAVE_RETRY_MAX_MS;
    if (p.attempts === 1) this.deps.logger.error(message, fields);
    else if (!atMax || p.attempts % SAVE_RETRY_LOG_EVERY === 0) this.deps.logger.warn(message, fields);
  }

  /** Resolves once nothing is pending; rejects as a cancelled step if the step is stopped first. */
  private untilSaved(signal: AbortSignal): Promise<void> {
    if (!this.pending) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.savedWaiters = this.savedWaiters.filter((w) => w !== done);
        reject({ error: { code: 'CANCELLED', category: 'internal', retryable: true, message: 'the step was stopped before its state could be saved' }, at: this.deps.clock.now() } satisfies StepFailure);
      };
      const done = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.savedWaiters.push(done);
    });
  }

  /** What the transition log keeps of an event: all of it, so a run can be replayed offline. */
  private recordableEvent(event: { type: string }): unknown {
    try {
      return JSON.parse(JSON.stringify(event)) as unknown;
    } catch {
      return { type: event.type };
    }
  }

  /** The audit events an announcement records (written with its transition). */
  private auditOf(a: Announcement): AuditEvent[] {
    const product = this.product;
    const run = a.runId ? { runId: a.runId } : {};
    switch (a.type) {
      case 'committed':
        return [{ kind: 'install', message: `installed ${product} ${a.version}`, product, ...run }];
      case 'rolledBack':
        return [{ kind: 'rollback', message: `rolled back ${product} to ${a.version ?? 'nothing'} (${a.reason ?? 'rollback'})`, product, ...run }];
      default:
        return [];
    }
  }

  /** One saved announcement of the machine, to the audit sink and as bus notifications. */
  private publish(a: Announcement): void {
    const { bus, audit } = this.deps;
    const product = this.product;
    for (const ev of this.auditOf(a)) audit.audit(ev);
    switch (a.type) {
      case 'offer':
        bus.publish('notification', { product, kind: 'update-available', version: a.offer.version, notes: a.offer.notes, runId: a.runId });
        return;
      case 'committed': {
        bus.publish('notification', { product, kind: 'committed', version: a.version, runId: a.runId, outcome: 'committed' });
        return;
      }
      case 'rolledBack': {
        bus.publish('notification', { product, kind: 'rolled-back', version: a.version, runId: a.runId, outcome: 'rolled-back', error: a.error });
        return;
      }
      case 'failed':
        bus.publish('notification', { product, kind: 'failed', version: a.version, runId: a.runId, outcome: 'failed', error: a.error });
        return;
      case 'runEnded':
        if (a.runId) bus.publish('notification', { product, kind: 'run-ended', version: a.version, runId: a.runId, outcome: a.outcome, error: a.error });
        return;
    }
  }

  /** Public events are checked against the current state: not allowed now → a clear error with the state. */
  can(event: UpdateEvent): boolean {
    return this.actor && !this.pending ? this.actor.getSnapshot().can(event) : false;
  }

  allowedEvents(candidates: readonly PublicEventType[], now: number, source: EventSource): PublicEventType[] {
    return candidates.filter((type) => this.can(sampleEvent(type, now, source)));
  }

  send(event: UpdateEvent): void {
    if (!this.actor) throw new OtaError('INTERNAL', `product ${this.product} is not started`);
    this.refuseWhileUnsaved();
    // A run that starts with this event starts under the newest policy.
    this.flushPolicy();
    this.actor.send(event);
  }

  /** The earliest stored deadline the machine waits on in its current state (null: none). */
  nextDeadline(): number | null {
    // Nothing is due while a move is not saved: the retry, not a deadline, moves on from here.
    if (!this.actor || this.pending) return null;
    const ctx = this.context;
    switch (this.state) {
      case 'awaitingChoice':
        return ctx.deferralDeadline === null ? ctx.choiceDeadline : Math.min(ctx.choiceDeadline ?? Infinity, ctx.deferralDeadline);
      case 'confirming':
        return ctx.confirmDeadline;
      case 'scheduled':
        return ctx.scheduledAt;
      case 'preCheckWaiting':
        return ctx.preCheckRetryAt;
      default:
        return null;
    }
  }

  /** Stop the actor without persisting the stop: the saved state stays what it was. */
  stop(): void {
    this.stopping = true;
    if (this.pending?.timer) clearTimeout(this.pending.timer);
    this.actor?.stop();
  }
}

/** An event of the given type, for `can()` checks only. */
export function sampleEvent(type: PublicEventType, now: number, source: EventSource): UpdateEvent {
  switch (type) {
    case 'CHECK_NOW':
      return { type, now, source, runId: 'probe' };
    case 'ROLLBACK':
      return { type, now, source, runId: 'probe' };
    case 'SCHEDULE_3AM':
      return { type, now, source, at: now };
    default:
      return { type, now, source };
  }
}

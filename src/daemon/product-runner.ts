/**
 * One product's lifecycle at run time: the machine actor, its persistence and its recovery.
 *
 * Invariants this file protects:
 * - every transition is written (snapshot, transition row, run, choice, release) in one SQLite
 *   transaction before the step it enters starts (the step actors yield once before doing anything);
 * - on start, the saved state is restored, re-run or ended exactly as the recovery policy says;
 * - nothing thrown by a step reaches the process: it becomes StepFailure data in the machine;
 * - notifications and audit events come from what the machine announces (its emitted events),
 *   published only after the transition that announced them is written.
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
import type { AuditSink, Logger } from '../core/logger.js';
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

/** States between runs: a reloaded policy and step set apply here. */
const OUTSIDE_A_RUN: ReadonlySet<string> = new Set(['idle', 'failed', '(none)', 'boot']);

export type Snapshot = ReturnType<Actor<UpdateMachine>['getSnapshot']>;

export class ProductRunner {
  readonly product: string;
  private actor: Actor<UpdateMachine> | null = null;
  private lastState: string | null = null;
  /** The state of the last transition written to the store: the log's next row starts from it. */
  private savedState: string | null = null;
  private lastContextJson: string | null = null;
  private stopping = false;
  /** The last transition could not be written: no step may start until one is. */
  private unsaved: ReturnType<typeof toErrorData> | null = null;
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

  get context(): UpdateContext {
    if (!this.actor) throw new OtaError('INTERNAL', `product ${this.product} is not started`);
    return this.actor.getSnapshot().context;
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
    const restoreCount =
      row && row.runId && this.deps.uncleanStart && row.state !== 'idle' ? store.countRestore(row.runId, row.state, now) : 0;
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
      this.deps.store.audit(runId ? { ...event, runId } : event, this.deps.clock.now());
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
        if (this.unsaved) {
          // Touching the robot in a state the database does not know would break recovery.
          throw { error: { ...this.unsaved, message: `the ${name} step did not start: its state could not be saved (${this.unsaved.message})` }, at: this.deps.clock.now() } satisfies StepFailure;
        }
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
    if (this.pendingPolicy === null || !this.actor || this.stopping || !OUTSIDE_A_RUN.has(this.state)) return;
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
    const state = String(snap.value);
    const contextJson = JSON.stringify(snap.context);
    const from = this.lastState ?? '(none)';
    const changedState = state !== from;
    // After a failed write the log goes on from the last state it holds, so it never has a gap.
    const savedFrom = this.savedState ?? from;
    const logRow = state !== savedFrom;
    if (!changedState && !logRow && contextJson === this.lastContextJson && announced.length === 0) return;
    const ctx = snap.context;
    const prev = this.lastContextJson ? (JSON.parse(this.lastContextJson) as UpdateContext) : null;
    const now = this.deps.clock.now();
    const runEnded = announced.some((a) => a.type === 'runEnded');
    // Between runs (idle, failed) only the end of a run touches its row: a policy change or a
    // detected version afterwards, or a RESET, must not reopen or re-date a finished run.
    const writeRun = ctx.runId !== null && (!OUTSIDE_A_RUN.has(state) || runEnded);
    const newChoice = ctx.choice !== null && JSON.stringify(ctx.choice) !== JSON.stringify(prev?.choice ?? null);
    const offers = announced.flatMap((a) => (a.type === 'offer' ? [a.offer] : []));
    // A machine started by the recovery policy moves from the saved state without an event of its own.
    const recovered = event.type === 'xstate.init' && changedState && from !== '(none)' && this.recovery !== null;
    const eventType = recovered ? 'otad.recovery' : event.type;
    const recordedEvent = recovered ? { type: eventType, action: this.recovery?.action, reason: this.recovery?.reason } : this.recordableEvent(event);
    let seq: number | null = null;
    try {
      this.deps.store.db.transaction(() => {
        seq = this.deps.store.writeTransition({
          product: this.product,
          machineVersion: MACHINE_VERSION,
          snapshot: this.actor ? this.actor.getPersistedSnapshot() : snap,
          state,
          runId: ctx.runId,
          at: now,
          ...(logRow ? { transition: { from: savedFrom, to: state, eventType, event: recordedEvent } } : {}),
          ...(writeRun
            ? {
                run: {
                  kind: ctx.runKind ?? 'update',
                  startedAt: ctx.runStartedAt ?? now,
                  fromVersion: prev?.runId === ctx.runId ? (prev.installedVersion ?? null) : ctx.installedVersion,
                  // The version the run aimed at: the offer, or for a manual rollback the release it restored.
                  toVersion: ctx.offer?.version ?? (runEnded && ctx.runKind === 'manual-rollback' ? ctx.installedVersion : null),
                  outcome: runEnded || state === 'failed' ? ctx.lastOutcome : null,
                  endedAt: runEnded ? now : null,
                  error: ctx.error,
                },
              }
            : {}),
          ...(newChoice && ctx.choice ? { choice: ctx.choice } : {}),
        });
        for (const offer of offers) this.deps.store.recordRelease(offer, now);
      })();
      this.unsaved = null;
      this.savedState = state;
    } catch (error) {
      // The step this transition enters refuses to start (see stepActors); the next transition
      // retries the write, and a restart recovers from the last state that was saved.
      this.unsaved = toErrorData(error);
      this.deps.logger.error('could not save a transition: the step it enters will not start', { product: this.product, state, error: this.unsaved });
    }
    this.lastState = state;
    this.lastContextJson = contextJson;
    if (changedState) {
      const cause = transitionCause({ from, to: state, event: eventType, source: (event as { source?: string }).source }, ctx);
      this.deps.logger.child({ product: this.product }).info(`${from} → ${state}: ${cause}`, { event: eventType, runId: ctx.runId, seq });
      this.deps.bus.publish('transition', { seq: seq ?? 0, product: this.product, runId: ctx.runId, from, to: state, event: eventType, cause, at: now });
    }
    for (const a of announced) this.publish(a);
    if (!changedState) return;
    if (OUTSIDE_A_RUN.has(state)) {
      this.pinned = null;
      // Not from inside the inspector: the policy is sent once this transition is done.
      if (this.pendingPolicy !== null) queueMicrotask(() => this.flushPolicy());
    }
    this.deps.onTransition?.(this, from, state);
  }

  /** What the transition log keeps of an event: all of it, so a run can be replayed offline. */
  private recordableEvent(event: { type: string }): unknown {
    try {
      return JSON.parse(JSON.stringify(event)) as unknown;
    } catch {
      return { type: event.type };
    }
  }

  /** One announcement of the machine, as audit events and bus notifications. */
  private publish(a: Announcement): void {
    const { bus, audit, store, clock } = this.deps;
    const product = this.product;
    const run = a.runId ? { runId: a.runId } : {};
    switch (a.type) {
      case 'offer':
        bus.publish('notification', { product, kind: 'update-available', version: a.offer.version, notes: a.offer.notes, runId: a.runId });
        return;
      case 'committed': {
        const ev = { kind: 'install' as const, message: `installed ${product} ${a.version}`, product, ...run };
        audit.audit(ev);
        store.audit(ev, clock.now());
        bus.publish('notification', { product, kind: 'committed', version: a.version, runId: a.runId, outcome: 'committed' });
        return;
      }
      case 'rolledBack': {
        const ev = { kind: 'rollback' as const, message: `rolled back ${product} to ${a.version ?? 'nothing'} (${a.reason ?? 'rollback'})`, product, ...run };
        audit.audit(ev);
        store.audit(ev, clock.now());
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
    return this.actor ? this.actor.getSnapshot().can(event) : false;
  }

  allowedEvents(candidates: readonly PublicEventType[], now: number, source: EventSource): PublicEventType[] {
    return candidates.filter((type) => this.can(sampleEvent(type, now, source)));
  }

  send(event: UpdateEvent): void {
    if (!this.actor) throw new OtaError('INTERNAL', `product ${this.product} is not started`);
    // A run that starts with this event starts under the newest policy.
    this.flushPolicy();
    this.actor.send(event);
  }

  /** The earliest stored deadline the machine waits on in its current state (null: none). */
  nextDeadline(): number | null {
    if (!this.actor) return null;
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

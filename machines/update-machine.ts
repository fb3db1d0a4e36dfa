/**
 * The update lifecycle of one product, as an XState v5 machine.
 *
 * Pure: it imports xstate and its own types only. Every side effect is an injected promise actor
 * named after its step (`check`, `preCheck`, `backup`, `stage`, `apply`, `validate`, `commit`,
 * `rollback`); the daemon provides the real ones with `updateMachine.provide({ actors })`. Actors
 * resolve with StepDone<T> and reject with StepFailure, so the machine learns the time from data.
 * Context is JSON. Deadlines are timestamps in context, checked on TICK events, because XState does
 * not restore `after:` timers from a persisted snapshot.
 */
import { assign, emit, fromPromise, setup } from 'xstate';
import type {
  Announcement,
  ApplyInput,
  ApplyOutput,
  BackupInput,
  BackupOutput,
  CheckInput,
  CheckOutput,
  ChoiceRecord,
  CommitInput,
  CommitOutput,
  ErrorInfo,
  MachineInput,
  Offer,
  PreCheckInput,
  PreCheckOutput,
  RollbackInput,
  RollbackOutput,
  RunOutcome,
  StageInput,
  StageOutput,
  StepDone,
  StepFailure,
  UpdateContext,
  UpdateEvent,
  ValidateInput,
  ValidateOutput,
} from './types.js';

/** Placeholder for a step the daemon has not provided: fails loudly instead of pretending. */
function unprovided<I, O>(name: string) {
  return fromPromise<StepDone<O>, I>(async () => {
    const failure: StepFailure = {
      error: {
        code: 'STEP_NOT_CONFIGURED',
        category: 'config',
        retryable: false,
        message: `no implementation of the '${name}' step was provided to the machine`,
      },
      at: 0,
    };
    throw failure;
  });
}

type DoneEvent<T> = { type: string; output: StepDone<T> };
type ErrorEvent = { type: string; error: unknown };

/** A rejected actor may throw anything; the daemon's wrapper throws StepFailure, anything else is a bug. */
function failureOf(event: ErrorEvent): StepFailure {
  const e = event.error as Partial<StepFailure> | undefined;
  if (e && typeof e === 'object' && e.error && typeof e.error === 'object' && typeof e.at === 'number') {
    return e as StepFailure;
  }
  const message = event.error instanceof Error ? event.error.message : String(event.error);
  return { error: { code: 'INTERNAL', category: 'internal', retryable: false, message }, at: 0 };
}

function emptyRun(): Pick<
  UpdateContext,
  | 'offer'
  | 'choice'
  | 'choiceDeadline'
  | 'deferralDeadline'
  | 'mandatory'
  | 'confirmDeadline'
  | 'scheduledAt'
  | 'preCheckRetryAt'
  | 'preCheckAttempts'
  | 'preCheckReasons'
  | 'artifacts'
  | 'error'
  | 'rollbackReason'
  | 'rollbackCause'
  | 'rollbackMarkBad'
  | 'rollbackBy'
> {
  return {
    offer: null,
    choice: null,
    choiceDeadline: null,
    deferralDeadline: null,
    mandatory: false,
    confirmDeadline: null,
    scheduledAt: null,
    preCheckRetryAt: null,
    preCheckAttempts: 0,
    preCheckReasons: [],
    artifacts: {},
    error: null,
    rollbackReason: null,
    rollbackCause: null,
    rollbackMarkBad: false,
    rollbackBy: null,
  };
}

function initialContext(input: MachineInput): UpdateContext {
  const base: UpdateContext = {
    product: input.product,
    policy: input.policy,
    installedVersion: input.installedVersion,
    runId: null,
    runKind: null,
    ...emptyRun(),
    lastOutcome: null,
    lastCheckAt: null,
    runStartedAt: null,
    pendingRecovery: null,
  };
  const r = input.recovery;
  if (!r) return base;
  return {
    ...base,
    runId: r.runId,
    runKind: 'update',
    runStartedAt: input.now,
    offer: r.offer,
    artifacts: r.artifacts,
    error: r.error,
    rollbackReason: r.reason,
    rollbackCause: r.cause,
    pendingRecovery: r.mode,
  };
}

const offerOf = (c: UpdateContext): Offer => c.offer as Offer;

function choiceRecord(choice: ChoiceRecord['choice'], event: { source: ChoiceRecord['source']; now: number }): ChoiceRecord {
  return { choice, source: event.source, at: event.now };
}

/** What a ROLLBACK event says about marking bad: only what the operator asked, never implied. */
function manualRollbackOf(event: { markBad?: boolean; actor?: string }): Pick<UpdateContext, 'rollbackMarkBad' | 'rollbackBy'> {
  return { rollbackMarkBad: event.markBad === true, rollbackBy: event.actor ?? null };
}

/** Closing a run keeps its id and outcome for status and history; the next CHECK_NOW replaces them. */
function closeRun(outcome: RunOutcome) {
  return { lastOutcome: outcome, choiceDeadline: null, deferralDeadline: null, confirmDeadline: null, scheduledAt: null, preCheckRetryAt: null };
}

/**
 * A cancelled run also drops its offer: the robot said no to this run, so nothing is on offer
 * until the next check finds it again (the run's history keeps the version it aimed at).
 */
function cancelRun() {
  return { ...closeRun('cancelled'), offer: null };
}

/** The end of a release's deferral budget: its install-by instant, or its maximum deferral from when it was offered. */
export function deferralDeadlineOf(offer: Offer, offeredAt: number): number | null {
  const limits = [offer.installBy, offer.maxDeferralMs === undefined ? undefined : offeredAt + offer.maxDeferralMs].filter(
    (v): v is number => typeof v === 'number' && Number.isFinite(v),
  );
  return limits.length ? Math.min(...limits) : null;
}

export const updateMachine = setup({
  types: {
    context: {} as UpdateContext,
    events: {} as UpdateEvent,
    input: {} as MachineInput,
    emitted: {} as Announcement,
  },
  actors: {
    check: unprovided<CheckInput, CheckOutput>('check'),
    preCheck: unprovided<PreCheckInput, PreCheckOutput>('preCheck'),
    backup: unprovided<BackupInput, BackupOutput>('backup'),
    stage: unprovided<StageInput, StageOutput>('stage'),
    apply: unprovided<ApplyInput, ApplyOutput>('apply'),
    validate: unprovided<ValidateInput, ValidateOutput>('validate'),
    commit: unprovided<CommitInput, CommitOutput>('commit'),
    rollback: unprovided<RollbackInput, RollbackOutput>('rollback'),
  },
  guards: {
    needsConfirmation: ({ context }) => context.policy.confirmTimeoutMs > 0,
    choiceExpired: ({ context, event }) =>
      event.type === 'TICK' && context.choiceDeadline !== null && event.now >= context.choiceDeadline,
    deferralSpent: ({ context, event }) =>
      event.type === 'TICK' && context.deferralDeadline !== null && event.now >= context.deferralDeadline,
    deferrable: ({ context }) => !context.mandatory,
    defaultIsNow: ({ context }) => context.policy.defaultChoice === 'UPDATE_NOW',
    confirmExpired: ({ context, event }) =>
      event.type === 'TICK' && context.confirmDeadline !== null && event.now >= context.confirmDeadline,
    scheduleDue: ({ context, event }) =>
      event.type === 'TICK' && context.scheduledAt !== null && event.now >= context.scheduledAt,
    preCheckRetryDue: ({ context, event }) =>
      event.type === 'TICK' && context.preCheckRetryAt !== null && event.now >= context.preCheckRetryAt,
  },
  actions: {
    recordFailure: assign(({ event }) => ({ error: failureOf(event as unknown as ErrorEvent).error })),
    announceOffer: emit(({ context }) => ({ type: 'offer' as const, runId: context.runId, offer: context.offer as Offer })),
    announceCommitted: emit(({ context }) => ({ type: 'committed' as const, runId: context.runId, version: context.installedVersion })),
    announceRolledBack: emit(({ context }) => ({
      type: 'rolledBack' as const,
      runId: context.runId,
      version: context.installedVersion,
      reason: context.rollbackReason,
      error: context.error,
    })),
    announceFailed: emit(({ context }) => ({ type: 'failed' as const, runId: context.runId, version: context.installedVersion, error: context.error })),
    announceRunEnd: emit(({ context }) => ({
      type: 'runEnded' as const,
      runId: context.runId,
      version: context.installedVersion,
      outcome: context.lastOutcome,
      error: context.error,
    })),
  },
}).createMachine({
  id: 'update',
  context: ({ input }) => initialContext(input),
  initial: 'boot',
  on: {
    CONFIGURE: { actions: assign(({ event }) => ({ policy: event.policy })) },
  },
  states: {
    /**
     * Transient: a fresh machine goes to idle; one started by the recovery policy (a snapshot it
     * would not restore) goes straight to where the run must end safely.
     */
    boot: {
      always: [
        {
          guard: ({ context }) => context.pendingRecovery === 'rollback',
          target: 'rollback',
          actions: assign(() => ({ pendingRecovery: null })),
        },
        {
          guard: ({ context }) => context.pendingRecovery === 'fail',
          target: 'failed',
          actions: [assign(() => ({ pendingRecovery: null, ...closeRun('failed') })), 'announceFailed', 'announceRunEnd'],
        },
        {
          guard: ({ context }) => context.pendingRecovery === 'abort',
          target: 'idle',
          actions: [assign(() => ({ pendingRecovery: null, ...closeRun('aborted') })), 'announceRunEnd'],
        },
        { target: 'idle' },
      ],
    },

    idle: {
      on: {
        DETECTED: { actions: assign(({ event }) => ({ installedVersion: event.installedVersion })) },
        CHECK_NOW: {
          target: 'checking',
          actions: assign(({ event }) => ({
            ...emptyRun(),
            runId: event.runId,
            runKind: 'update' as const,
            runStartedAt: event.now,
            lastOutcome: null,
          })),
        },
        ROLLBACK: {
          target: 'rollback',
          actions: assign(({ event }) => ({
            ...emptyRun(),
            runId: event.runId,
            runKind: 'manual-rollback' as const,
            runStartedAt: event.now,
            lastOutcome: null,
            rollbackReason: event.reason ?? 'manual rollback requested',
            rollbackCause: 'manual' as const,
            ...manualRollbackOf(event),
          })),
        },
      },
    },

    checking: {
      invoke: {
        src: 'check',
        input: ({ context }): CheckInput => ({
          product: context.product,
          runId: context.runId as string,
          installedVersion: context.installedVersion,
        }),
        onDone: [
          {
            guard: ({ event }) => (event as DoneEvent<CheckOutput>).output.result.available,
            target: 'awaitingChoice',
            actions: [
              assign(({ context, event }) => {
                const done = (event as DoneEvent<CheckOutput>).output;
                const result = done.result as Extract<CheckOutput, { available: true }>;
                const deferralDeadline = deferralDeadlineOf(result.offer, done.at);
                return {
                  offer: result.offer,
                  installedVersion: result.installedVersion,
                  lastCheckAt: done.at,
                  choiceDeadline: done.at + context.policy.choiceTimeoutMs,
                  deferralDeadline,
                };
              }),
              'announceOffer',
            ],
          },
          {
            target: 'idle',
            actions: [
              assign(({ event }) => {
                const done = (event as DoneEvent<CheckOutput>).output;
                return { ...closeRun('up-to-date'), installedVersion: done.result.installedVersion, lastCheckAt: done.at };
              }),
              'announceRunEnd',
            ],
          },
        ],
        onError: {
          target: 'idle',
          actions: [
            'recordFailure',
            assign(({ event }) => ({ ...closeRun('failed'), lastCheckAt: failureOf(event as ErrorEvent).at })),
            'announceRunEnd',
          ],
        },
      },
      on: {
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    awaitingChoice: {
      on: {
        UPDATE_NOW: [
          {
            guard: 'needsConfirmation',
            target: 'confirming',
            actions: assign(({ context, event }) => ({ confirmDeadline: event.now + context.policy.confirmTimeoutMs })),
          },
          { target: 'preCheck', actions: assign(({ event }) => ({ choice: choiceRecord('UPDATE_NOW', event) })) },
        ],
        SCHEDULE_3AM: {
          target: 'scheduled',
          actions: assign(({ event }) => ({ choice: choiceRecord('SCHEDULE_3AM', event), scheduledAt: event.at })),
        },
        TICK: [
          {
            // The deferral budget is spent: the install is scheduled at the next slot, whatever the default.
            guard: 'deferralSpent',
            target: 'scheduled',
            actions: assign(({ event }) => ({
              choice: choiceRecord('SCHEDULE_3AM', { ...event, source: 'timer' }),
              scheduledAt: event.nextSlotAt,
              mandatory: true,
            })),
          },
          {
            guard: ({ context, event }) =>
              event.type === 'TICK' &&
              context.choiceDeadline !== null &&
              event.now >= context.choiceDeadline &&
              context.policy.defaultChoice === 'UPDATE_NOW',
            target: 'preCheck',
            actions: assign(({ event }) => ({ choice: choiceRecord('UPDATE_NOW', { ...event, source: 'timer' }) })),
          },
          {
            guard: 'choiceExpired',
            target: 'scheduled',
            actions: assign(({ event }) => ({
              choice: choiceRecord('SCHEDULE_3AM', { ...event, source: 'timer' }),
              scheduledAt: event.nextSlotAt,
            })),
          },
        ],
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    /** UPDATE_NOW was asked for and must be confirmed before the deadline, or the request lapses. */
    confirming: {
      on: {
        CONFIRM: {
          target: 'preCheck',
          actions: assign(({ event }) => ({ choice: choiceRecord('UPDATE_NOW', event), confirmDeadline: null })),
        },
        SCHEDULE_3AM: {
          target: 'scheduled',
          actions: assign(({ event }) => ({
            choice: choiceRecord('SCHEDULE_3AM', event),
            scheduledAt: event.at,
            confirmDeadline: null,
          })),
        },
        TICK: [
          // The choice deadline is older than the confirmation one: the default still applies after both.
          { guard: 'confirmExpired', target: 'awaitingChoice', actions: [assign(() => ({ confirmDeadline: null })), 'announceOffer'] },
        ],
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    scheduled: {
      on: {
        TICK: { guard: 'scheduleDue', target: 'preCheck' },
        UPDATE_NOW: { target: 'preCheck', actions: assign(({ event }) => ({ choice: choiceRecord('UPDATE_NOW', event) })) },
        SCHEDULE_3AM: { actions: assign(({ event }) => ({ choice: choiceRecord('SCHEDULE_3AM', event), scheduledAt: event.at })) },
        RESCHEDULE: { actions: assign(({ event }) => ({ scheduledAt: event.at })) },
        // A release past its deferral budget can be installed sooner, never called off.
        CANCEL: { guard: 'deferrable', target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    preCheck: {
      invoke: {
        src: 'preCheck',
        input: ({ context }): PreCheckInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
          attempt: context.preCheckAttempts + 1,
          installedVersion: context.installedVersion,
        }),
        onDone: [
          {
            guard: ({ event }) => (event as DoneEvent<PreCheckOutput>).output.result.ok,
            target: 'backup',
            actions: assign(({ context }) => ({
              preCheckAttempts: context.preCheckAttempts + 1,
              preCheckReasons: [],
              preCheckRetryAt: null,
            })),
          },
          {
            // Not safe now: wait and re-check; a failed pre-check never fails the run.
            target: 'preCheckWaiting',
            actions: assign(({ context, event }) => {
              const done = (event as DoneEvent<PreCheckOutput>).output;
              const reasons = done.result.ok ? [] : done.result.reasons;
              const retryMs = done.result.ok ? undefined : done.result.retryAfterMs;
              return {
                preCheckAttempts: context.preCheckAttempts + 1,
                preCheckReasons: reasons,
                preCheckRetryAt: done.at + (retryMs ?? context.policy.preCheckRetryMs),
              };
            }),
          },
        ],
        onError: {
          target: 'preCheckWaiting',
          actions: assign(({ context, event }) => {
            const failure = failureOf(event as ErrorEvent);
            return {
              preCheckAttempts: context.preCheckAttempts + 1,
              preCheckReasons: [{ code: failure.error.code, message: failure.error.message }],
              preCheckRetryAt: failure.at + context.policy.preCheckRetryMs,
            };
          }),
        },
      },
      on: {
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    preCheckWaiting: {
      on: {
        TICK: { guard: 'preCheckRetryDue', target: 'preCheck' },
        UPDATE_NOW: { target: 'preCheck' },
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    backup: {
      invoke: {
        src: 'backup',
        input: ({ context }): BackupInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
          installedVersion: context.installedVersion,
        }),
        onDone: {
          target: 'staging',
          actions: assign(({ context, event }) => ({
            artifacts: { ...context.artifacts, backup: (event as DoneEvent<BackupOutput>).output.result },
          })),
        },
        // Nothing on the robot has changed yet: the run fails cleanly and the next check retries.
        onError: { target: 'idle', actions: ['recordFailure', assign(() => closeRun('failed')), 'announceRunEnd'] },
      },
      on: {
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    staging: {
      invoke: {
        src: 'stage',
        input: ({ context }): StageInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
        }),
        onDone: {
          target: 'apply',
          actions: assign(({ context, event }) => ({
            artifacts: { ...context.artifacts, staged: (event as DoneEvent<StageOutput>).output.result },
          })),
        },
        onError: { target: 'idle', actions: ['recordFailure', assign(() => closeRun('failed')), 'announceRunEnd'] },
      },
      on: {
        // The last moment a run may be cancelled: from apply on, only a rollback undoes it.
        CANCEL: { target: 'idle', actions: [assign(() => cancelRun()), 'announceRunEnd'] },
      },
    },

    apply: {
      invoke: {
        src: 'apply',
        input: ({ context }): ApplyInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
          staged: context.artifacts.staged as StageOutput,
          installedVersion: context.installedVersion,
        }),
        onDone: {
          target: 'validate',
          actions: assign(({ context, event }) => ({
            artifacts: { ...context.artifacts, applied: (event as DoneEvent<ApplyOutput>).output.result },
          })),
        },
        onError: {
          target: 'rollback',
          actions: ['recordFailure', assign(() => ({ rollbackReason: 'apply failed', rollbackCause: 'failure' as const }))],
        },
      },
    },

    validate: {
      invoke: {
        src: 'validate',
        input: ({ context }): ValidateInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
          applied: context.artifacts.applied as ApplyOutput,
        }),
        onDone: {
          target: 'commit',
          actions: assign(({ context, event }) => ({
            artifacts: { ...context.artifacts, validation: (event as DoneEvent<ValidateOutput>).output.result },
          })),
        },
        onError: {
          target: 'rollback',
          actions: ['recordFailure', assign(() => ({ rollbackReason: 'validation failed', rollbackCause: 'failure' as const }))],
        },
      },
      on: {
        ROLLBACK: {
          target: 'rollback',
          actions: assign(({ event }) => ({ rollbackReason: event.reason ?? 'manual rollback during probation', rollbackCause: 'manual' as const, ...manualRollbackOf(event) })),
        },
      },
    },

    commit: {
      invoke: {
        src: 'commit',
        input: ({ context }): CommitInput => ({
          product: context.product,
          runId: context.runId as string,
          offer: offerOf(context),
          applied: context.artifacts.applied as ApplyOutput,
        }),
        onDone: {
          target: 'idle',
          actions: [
            assign(({ event }) => ({
              ...closeRun('committed'),
              installedVersion: (event as DoneEvent<CommitOutput>).output.result.version,
              offer: null,
            })),
            'announceCommitted',
            'announceRunEnd',
          ],
        },
        // The new release is running and proved healthy; what failed is bookkeeping: a person looks.
        onError: { target: 'failed', actions: ['recordFailure', assign(() => closeRun('failed')), 'announceFailed', 'announceRunEnd'] },
      },
    },

    rollback: {
      invoke: {
        src: 'rollback',
        input: ({ context }): RollbackInput => ({
          product: context.product,
          runId: context.runId as string,
          reason: context.rollbackReason ?? 'rollback',
          cause: context.rollbackCause ?? 'failure',
          offer: context.offer,
          applied: context.artifacts.applied ?? null,
          backup: context.artifacts.backup ?? null,
          installedVersion: context.installedVersion,
          markBad: context.rollbackMarkBad === true,
          requestedBy: context.rollbackBy ?? null,
          failure: context.error === null ? null : { code: context.error.code, message: context.error.message },
        }),
        onDone: {
          target: 'idle',
          actions: [
            assign(({ event }) => ({
              ...closeRun('rolled-back'),
              installedVersion: (event as DoneEvent<RollbackOutput>).output.result.restoredVersion,
              offer: null,
            })),
            'announceRolledBack',
            'announceRunEnd',
          ],
        },
        // The robot may not be on a known-good release: needs attention.
        onError: { target: 'failed', actions: ['recordFailure', assign(() => closeRun('failed')), 'announceFailed', 'announceRunEnd'] },
      },
    },

    /** Needs attention: a rollback or commit failed, or recovery gave up. */
    failed: {
      on: {
        DETECTED: { actions: assign(({ event }) => ({ installedVersion: event.installedVersion })) },
        RESET: { target: 'idle', actions: assign(() => ({ error: null, rollbackReason: null, rollbackCause: null, rollbackMarkBad: false, rollbackBy: null })) },
        ROLLBACK: {
          target: 'rollback',
          actions: assign(({ event }) => ({ rollbackReason: event.reason ?? 'manual rollback after failure', rollbackCause: 'manual' as const, ...manualRollbackOf(event) })),
        },
      },
    },
  },
});

export type UpdateMachine = typeof updateMachine;

/** Error data shape carried through the machine (re-exported for steps and the daemon). */
export type { ErrorInfo };

/**
 * Types of the update lifecycle machine: its context, its events and the input and output of every
 * step. Everything here is JSON: numbers for times (ms since the epoch), strings for paths.
 * This file imports nothing, so the machine stays pure and steps can depend on it alone.
 */

/** Bump when states, context or events change in a way an older snapshot cannot be restored into. */
export const MACHINE_VERSION = 1;

export const STATE_NAMES = [
  'idle',
  'checking',
  'awaitingChoice',
  'confirming',
  'scheduled',
  'preCheck',
  'preCheckWaiting',
  'backup',
  'staging',
  'apply',
  'validate',
  'commit',
  'rollback',
  'failed',
] as const;
export type StateName = (typeof STATE_NAMES)[number];

/** The two choices a robot's app may make, and nothing else. */
export const CHOICES = ['UPDATE_NOW', 'SCHEDULE_3AM'] as const;
export type Choice = (typeof CHOICES)[number];

/** Where an event came from: recorded with choices and in the audit log. */
export type EventSource = 'rest' | 'socket' | 'dbus' | 'cli' | 'schedule' | 'timer' | 'daemon' | 'replay' | 'test';

export interface ErrorInfo {
  code: string;
  category: string;
  retryable: boolean;
  message: string;
  details?: Record<string, unknown>;
}

export interface TargetRef {
  /** Target path in the repository, for example `robot-ai/robot-ai-2.1.0.tar.gz`. */
  name: string;
  length: number;
  sha256: string;
}

/** A release offered to this robot: what the check step found and proved genuine. */
export interface Offer {
  product: string;
  version: string;
  channel: string;
  releasedAt: number;
  notes: string;
  manifest: TargetRef;
  package: TargetRef;
  /** Phased rollout: the percentage of devices that take part (100 when absent). */
  rolloutPercent?: number;
  /** The latest instant by which this release must be installed (security fixes). */
  installBy?: number;
  /** How long, from when it was offered, the release may be deferred. */
  maxDeferralMs?: number;
  minFromVersion?: string;
  /** The signed manifest's dependencies against this robot's other products as installed at check time (reported, not enforced). */
  dependencies?: Array<{ product: string; range: string; installed: string | null; met: boolean }>;
  /** The signed manifest's requirements.minFreeBytes: the disk pre-check demands at least this where the release is staged. */
  minFreeBytes?: number;
  /** The release's signed tree index (manifest schema 1.1): every staged tree is verified against it. */
  index?: TargetRef & { entries: number; bytes: number };
  /** The delta from the installed version, when the release has one: downloaded instead of the package. */
  delta?: { fromVersion: string; target: TargetRef };
  /** What the robot downloads for this offer: the delta's length, else the package's. */
  downloadBytes?: number;
}

export interface ChoiceRecord {
  choice: Choice;
  source: EventSource;
  at: number;
}

export interface PreCheckReason {
  code: string;
  message: string;
}

export interface RunArtifacts {
  backup?: BackupOutput;
  staged?: StageOutput;
  applied?: ApplyOutput;
  validation?: ValidateOutput;
}

export type RollbackCause = 'failure' | 'manual' | 'interrupted' | 'crash-loop';

export type RunOutcome = 'up-to-date' | 'committed' | 'rolled-back' | 'cancelled' | 'failed' | 'aborted';

/** Per-product policy the daemon copies into the machine's input from configuration. */
export interface MachinePolicy {
  /** How long awaiting-choice waits before the default choice applies. */
  choiceTimeoutMs: number;
  defaultChoice: Choice;
  /** UPDATE_NOW must be confirmed within this time (0: no confirmation step). */
  confirmTimeoutMs: number;
  /** Pre-check retry interval when a check does not pass. */
  preCheckRetryMs: number;
}

export interface UpdateContext {
  product: string;
  policy: MachinePolicy;
  installedVersion: string | null;
  /** The current run: created by CHECK_NOW, closed when the machine returns to idle or fails. */
  runId: string | null;
  runKind: 'update' | 'manual-rollback' | null;
  offer: Offer | null;
  choice: ChoiceRecord | null;
  /** Deadlines and scheduled instants (ms since the epoch): stored, never slept on. */
  choiceDeadline: number | null;
  /** The release's deferral budget ends here (maxDeferralMs, installBy); after it only the scheduled install remains. */
  deferralDeadline: number | null;
  /** True once the deferral budget is spent: the scheduled install can no longer be cancelled. */
  mandatory: boolean;
  confirmDeadline: number | null;
  scheduledAt: number | null;
  preCheckRetryAt: number | null;
  preCheckAttempts: number;
  preCheckReasons: PreCheckReason[];
  artifacts: RunArtifacts;
  /** The error that ended or diverted the run. */
  error: ErrorInfo | null;
  rollbackReason: string | null;
  /**
   * Why the run rolls back: the release failed (apply or validation), a person asked, the daemon was
   * interrupted (a crash or power cut, which proves nothing against the release), or the release
   * kept crashing the daemon. Only 'interrupted' spares the release from being marked bad.
   */
  rollbackCause: RollbackCause | null;
  /**
   * A manual rollback marks the release it leaves bad only when the operator asked (ROLLBACK with
   * markBad); `rollbackBy` names who asked. Absent in snapshots saved before these existed: read as false / null.
   */
  rollbackMarkBad: boolean;
  rollbackBy: string | null;
  lastOutcome: RunOutcome | null;
  lastCheckAt: number | null;
  /** When the current run started and when the machine last moved (ms since the epoch). */
  runStartedAt: number | null;
  /** Set only by a recovery start; the transient boot state consumes it. */
  pendingRecovery: 'rollback' | 'abort' | 'fail' | null;
}

// ----- events --------------------------------------------------------------------------------

interface Stamped {
  /** When the daemon dispatched the event (clock port). */
  now: number;
  source: EventSource;
}

export type UpdateEvent =
  | ({ type: 'CHECK_NOW'; runId: string } & Stamped)
  | ({ type: 'UPDATE_NOW' } & Stamped)
  /** `at` is the next maintenance slot, computed by the daemon's scheduler. */
  | ({ type: 'SCHEDULE_3AM'; at: number } & Stamped)
  | ({ type: 'CONFIRM' } & Stamped)
  | ({ type: 'CANCEL' } & Stamped)
  | ({ type: 'ROLLBACK'; runId: string; reason?: string; markBad?: boolean; actor?: string } & Stamped)
  /** Acknowledge a failed run: the operator has looked at it. */
  | ({ type: 'RESET' } & Stamped)
  /** The timer event: the daemon sends it when a stored deadline may have passed. */
  | ({ type: 'TICK'; nextSlotAt: number } & Stamped)
  /** The wall clock jumped or the schedule changed: the scheduled instant is recomputed. */
  | ({ type: 'RESCHEDULE'; at: number } & Stamped)
  /** Configuration was reloaded: the product's policy changes in every state. */
  | ({ type: 'CONFIGURE'; policy: MachinePolicy } & Stamped)
  /** While idle or failed: the installed version as detected on disk. */
  | ({ type: 'DETECTED'; installedVersion: string | null } & Stamped);

export type UpdateEventType = UpdateEvent['type'];

/** Events that the edge (REST, Socket.IO, D-Bus, CLI) may dispatch. The others are the daemon's own. */
export const PUBLIC_EVENTS = ['CHECK_NOW', 'UPDATE_NOW', 'SCHEDULE_3AM', 'CONFIRM', 'CANCEL', 'ROLLBACK', 'RESET'] as const;
export type PublicEventType = (typeof PUBLIC_EVENTS)[number];

/**
 * What the machine announces as it moves (XState `emit`): the daemon records and publishes these
 * instead of working them out from state changes. Each carries the run and the versions as they
 * are once the transition is done.
 */
export type Announcement =
  /** A release was offered and the robot's app is asked to choose (again after a missed confirmation). */
  | { type: 'offer'; runId: string | null; offer: Offer }
  | { type: 'committed'; runId: string | null; version: string | null }
  | { type: 'rolledBack'; runId: string | null; version: string | null; reason: string | null; error: ErrorInfo | null }
  /** The run needs attention: a commit or rollback failed, or recovery gave up. */
  | { type: 'failed'; runId: string | null; version: string | null; error: ErrorInfo | null }
  /** A run is over, whatever its outcome. */
  | { type: 'runEnded'; runId: string | null; version: string | null; outcome: RunOutcome | null; error: ErrorInfo | null };

// ----- step inputs and outputs ---------------------------------------------------------------

export interface StepBase {
  product: string;
  runId: string;
}

export type CheckInput = StepBase & { installedVersion: string | null };
export type CheckOutput = { available: false; installedVersion: string | null } | { available: true; installedVersion: string | null; offer: Offer };

export type PreCheckInput = StepBase & { offer: Offer; attempt: number; installedVersion?: string | null };
/** `retryAfterMs`: when the answer came with its own retry time (the fleet server's), the next pre-check waits that long instead of the configured interval. */
export type PreCheckOutput = { ok: true } | { ok: false; reasons: PreCheckReason[]; retryAfterMs?: number };

export type BackupInput = StepBase & { offer: Offer; installedVersion: string | null };
export interface BackupOutput {
  /** Absent when the backup was skipped (simulation mode, or nothing installed yet). */
  path?: string;
  sha256?: string;
  bytes?: number;
  skipped?: string;
}

export type StageInput = StepBase & { offer: Offer };
export interface StageOutput {
  /** The complete, verified release tree, ready to be switched to. */
  releaseDir: string;
  /** The downloaded file the tree came from: the package, or the delta. */
  packagePath: string;
  /** How the tree was built: unpacked from the package, or assembled from the installed release and a delta. */
  via?: 'package' | 'delta';
  /** Set when a delta was offered but not used, and why (the full package was staged instead). */
  deltaFallback?: { code: string; message: string };
  /** Whether the staged tree was verified against the signed tree index (false: a schema 1.0 manifest). */
  indexVerified?: boolean;
  /** The tree was staged ahead of the install slot (download ahead) and verified again before this run used it. */
  stagedAhead?: boolean;
}

export type ApplyInput = StepBase & { offer: Offer; staged: StageOutput; installedVersion: string | null };
export interface ApplyOutput {
  fromRelease: string | null;
  toRelease: string;
  version: string;
}

export type ValidateInput = StepBase & { offer: Offer; applied: ApplyOutput };
export interface ValidateOutput {
  healthy: true;
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
}

export type CommitInput = StepBase & { offer: Offer; applied: ApplyOutput };
export interface CommitOutput {
  version: string;
}

export type RollbackInput = StepBase & {
  reason: string;
  cause: RollbackCause;
  offer: Offer | null;
  applied: ApplyOutput | null;
  backup: BackupOutput | null;
  installedVersion: string | null;
  /** Manual rollbacks only: mark the release left behind bad (automatic ones always do, interrupted ones never). */
  markBad: boolean;
  /** Who asked for a manual rollback (token name, D-Bus caller, user); null for automatic ones. */
  requestedBy: string | null;
  /** The error that sent the run into rollback, for the bad mark's reason. */
  failure: { code: string; message: string } | null;
};
export interface RollbackOutput {
  restoredVersion: string | null;
  method: 'previous-release' | 'backup' | 'nothing-to-undo';
}

/**
 * What an injected step actor resolves with: the step's result and the instant it finished, so that
 * the machine computes deadlines from data it was given, never from a clock of its own.
 */
export interface StepDone<T> {
  result: T;
  at: number;
}

/** What an injected step actor rejects with: the error as data and the instant it failed. */
export interface StepFailure {
  error: ErrorInfo;
  at: number;
}

/** The names of the injected promise actors, one per step. */
export const STEP_NAMES = ['check', 'preCheck', 'backup', 'stage', 'apply', 'validate', 'commit', 'rollback'] as const;
export type StepName = (typeof STEP_NAMES)[number];

export interface StepIO {
  check: [CheckInput, CheckOutput];
  preCheck: [PreCheckInput, PreCheckOutput];
  backup: [BackupInput, BackupOutput];
  stage: [StageInput, StageOutput];
  apply: [ApplyInput, ApplyOutput];
  validate: [ValidateInput, ValidateOutput];
  commit: [CommitInput, CommitOutput];
  rollback: [RollbackInput, RollbackOutput];
}

export type StepFn<K extends StepName> = (input: StepIO[K][0], signal: AbortSignal) => Promise<StepIO[K][1]>;
export type Steps = { [K in StepName]: StepFn<K> };

/** How the machine is started: fresh, or placed by the recovery policy without restoring a snapshot. */
export interface MachineInput {
  product: string;
  policy: MachinePolicy;
  installedVersion: string | null;
  now: number;
  /** Set by recovery when a snapshot is not restored but the run must still be ended safely. */
  recovery?: {
    mode: 'rollback' | 'abort' | 'fail';
    reason: string;
    cause: RollbackCause;
    runId: string | null;
    offer: Offer | null;
    artifacts: RunArtifacts;
    error: ErrorInfo | null;
  };
}

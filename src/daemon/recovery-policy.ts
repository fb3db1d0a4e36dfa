/**
 * What to do with a product's saved state when otad starts after a crash or a power cut.
 * Pure and table-driven: one row per state, each with the safety reason. The daemon gathers the
 * facts (the saved state, the machine version, the restore count, the apply journal) and obeys.
 */
import { STATE_NAMES, type StateName } from '../../machines/types.js';

export type RecoveryAction =
  /** Restore the snapshot: nothing was in flight, stored deadlines drive what comes next. */
  | 'resume'
  /** Restore the snapshot: XState re-runs the in-flight step, which is idempotent. */
  | 'rerun'
  /** Start the machine in rollback: undo what the run changed, from what is on disk. */
  | 'rollback'
  /** End the run without touching the robot: nothing had changed yet. */
  | 'abort'
  /** Stop in the failed state: a person must look. */
  | 'fail'
  /** Start a fresh machine in idle (nothing was in progress). */
  | 'fresh';

export type JournalVerdict = 'none' | 'not-switched' | 'switched';

export interface RecoveryRow {
  action: RecoveryAction | 'journal';
  /** What the crash-loop guard does when this state keeps dying. */
  onCrashLoop: RecoveryAction;
  why: string;
}

export const RECOVERY_TABLE: Readonly<Record<StateName, RecoveryRow>> = {
  idle: { action: 'resume', onCrashLoop: 'resume', why: 'nothing in flight' },
  checking: { action: 'rerun', onCrashLoop: 'abort', why: 'the check only reads: running it again is harmless' },
  awaitingChoice: {
    action: 'resume',
    onCrashLoop: 'resume',
    why: 'the offer and the choice deadline are in the snapshot; a passed deadline applies the default on the next tick',
  },
  confirming: { action: 'resume', onCrashLoop: 'resume', why: 'the confirmation deadline is in the snapshot' },
  scheduled: { action: 'resume', onCrashLoop: 'resume', why: 'the scheduled instant is in the snapshot; a missed one follows the catch-up rule' },
  preCheck: { action: 'rerun', onCrashLoop: 'abort', why: 'pre-checks only read the robot' },
  preCheckWaiting: { action: 'resume', onCrashLoop: 'resume', why: 'the retry instant is in the snapshot' },
  backup: {
    action: 'rerun',
    onCrashLoop: 'abort',
    why: 'the installed release is untouched; a backup is written under a temporary name and verified, so a second run redoes or reuses it',
  },
  staging: {
    action: 'rerun',
    onCrashLoop: 'abort',
    why: 'the installed release is untouched; the download resumes from its partial file and extraction starts in a fresh folder',
  },
  apply: {
    action: 'journal',
    onCrashLoop: 'rollback',
    why: 'the journal and the link on disk tell whether the switch happened: if not, roll back (the old release is still current); if so, finish the idempotent apply and let validation decide',
  },
  validate: { action: 'rerun', onCrashLoop: 'rollback', why: 'the probation window starts over; the previous release is kept for a fast rollback' },
  commit: { action: 'rerun', onCrashLoop: 'rollback', why: 'marking the release good and pruning are idempotent' },
  rollback: {
    action: 'rerun',
    onCrashLoop: 'fail',
    why: 'switching back to the previous release is idempotent; a rollback that keeps dying needs a person',
  },
  failed: { action: 'resume', onCrashLoop: 'resume', why: 'already waiting for a person' },
};

export interface RecoveryFacts {
  /** The saved state name, or null when there is no saved snapshot. */
  state: string | null;
  /** True when the snapshot was written by this machine version and parses. */
  compatible: boolean;
  /** How many times this run has been restored in this state, this start included (0 without a run). */
  restoreCount: number;
  maxRestores: number;
  /** The apply journal's verdict, read from disk (only consulted for apply). */
  journal: JournalVerdict;
}

export interface RecoveryDecision {
  action: RecoveryAction;
  reason: string;
}

const PRE_APPLY: ReadonlySet<string> = new Set(['checking', 'awaitingChoice', 'confirming', 'scheduled', 'preCheck', 'preCheckWaiting', 'backup', 'staging']);
const POST_SWITCH: ReadonlySet<string> = new Set(['apply', 'validate', 'commit', 'rollback']);

export function isStateName(value: string): value is StateName {
  return (STATE_NAMES as readonly string[]).includes(value);
}

export function decideRecovery(f: RecoveryFacts): RecoveryDecision {
  if (f.state === null) return { action: 'fresh', reason: 'no saved state' };

  if (!f.compatible) {
    // A snapshot we cannot trust is never restored; the run is ended by what its state name implies.
    if (f.state === 'idle') return { action: 'fresh', reason: 'saved by another machine version while idle' };
    if (f.state === 'failed') return { action: 'fail', reason: 'saved by another machine version in the failed state' };
    if (PRE_APPLY.has(f.state)) return { action: 'abort', reason: `saved by another machine version in ${f.state}, before anything changed` };
    if (POST_SWITCH.has(f.state)) return { action: 'rollback', reason: `saved by another machine version in ${f.state}: undo from what is on disk` };
    return { action: 'fail', reason: `saved state "${f.state}" is unknown to this machine version` };
  }

  if (!isStateName(f.state)) return { action: 'fail', reason: `saved state "${f.state}" is unknown` };
  const row = RECOVERY_TABLE[f.state];

  if (f.restoreCount > f.maxRestores && row.onCrashLoop !== 'resume') {
    return {
      action: row.onCrashLoop,
      reason: `crash loop: restored ${f.restoreCount} times in ${f.state} (limit ${f.maxRestores})`,
    };
  }

  if (row.action === 'journal') {
    if (f.journal === 'switched') return { action: 'rerun', reason: 'apply was interrupted after the switch: finish it, then validate' };
    return { action: 'rollback', reason: 'apply was interrupted before the switch: the old release is still current, undo the rest' };
  }
  return { action: row.action, reason: row.why };
}

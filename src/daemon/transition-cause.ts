/**
 * Why the machine moved, in words an operator reads: `check found 1.1.0`, `health check failed
 * (HEALTH_CHECK_FAILED: …)`, not XState's internal event names (`xstate.done.actor.0.update.checking`).
 * The raw event type stays in the transition log and the `event` field; this is the text the
 * demo, the log line and the stream show beside it. Pure: computed from the transition and the
 * context the machine entered the new state with.
 */
import type { UpdateContext } from '../../machines/types.js';

type CauseContext = Pick<UpdateContext, 'offer' | 'error' | 'installedVersion' | 'preCheckReasons' | 'lastOutcome'> & Partial<Pick<UpdateContext, 'artifacts'>>;

/** Events an operator or app sends, as they are named in the API. */
const SENT_EVENTS: Record<string, string> = {
  CHECK_NOW: 'check requested (CHECK_NOW)',
  UPDATE_NOW: 'update now chosen (UPDATE_NOW)',
  SCHEDULE_3AM: 'update at 3 AM chosen (SCHEDULE_3AM)',
  CANCEL: 'cancelled (CANCEL)',
  CONFIRM: 'confirmed (CONFIRM)',
  ROLLBACK: 'rollback requested (ROLLBACK)',
  RESET: 'reset requested (RESET)',
};

/** What finishing each step means when it succeeds. */
function stepDone(step: string, to: string, ctx: CauseContext): string {
  const version = ctx.offer?.version;
  switch (step) {
    case 'checking':
      if (to === 'awaitingChoice' || version) return `check found ${version ?? 'a release'}`;
      return ctx.lastOutcome === 'up-to-date' || to === 'idle' ? `check found nothing newer than ${ctx.installedVersion ?? 'the installed release'}` : 'check done';
    case 'preCheck':
      if (to === 'preCheckWaiting') {
        const reasons = ctx.preCheckReasons.map((r) => r.code);
        return `not safe to update yet${reasons.length ? ` (${reasons.join(', ')})` : ''}`;
      }
      return 'pre-checks passed';
    case 'backup':
      return 'backup taken';
    case 'staging':
      return `${version ?? 'the release'} downloaded, verified and staged`;
    case 'apply':
      return `switched to ${version ?? 'the new release'} and restarted its services`;
    case 'validate': {
      const restarted = ctx.artifacts?.validation?.restarted;
      return restarted ? `health checks passed (validation restarted after otad was interrupted in ${restarted.interruptedIn})` : 'health checks passed';
    }
    case 'commit':
      // The run is closed by now: the committed release is the installed one.
      return `${version ?? ctx.installedVersion ?? 'the release'} committed`;
    case 'rollback':
      return `rolled back to ${ctx.installedVersion ?? 'the previous release'}`;
    default:
      return `${step} done`;
  }
}

/** What a failing step means. */
function stepFailed(step: string, ctx: CauseContext): string {
  const why = ctx.error ? ` (${ctx.error.code}: ${ctx.error.message})` : '';
  switch (step) {
    case 'checking':
      return `check failed${why}`;
    case 'preCheck':
      return `pre-checks could not run${why}`;
    case 'backup':
      return `backup failed${why}`;
    case 'staging':
      return `download or staging failed${why}`;
    case 'apply':
      return `switch failed${why}`;
    case 'validate':
      return `health check failed${why}`;
    case 'commit':
      return `commit failed${why}`;
    case 'rollback':
      return `rollback failed${why}`;
    default:
      return `${step} failed${why}`;
  }
}

/** TICK: the daemon's timer found a stored deadline passed; named by what the deadline was. */
function deadlinePassed(from: string, to: string, ctx: CauseContext & { mandatory?: boolean }): string {
  switch (from) {
    case 'awaitingChoice':
      if (ctx.mandatory) return 'deferral budget spent: install scheduled for the next maintenance slot';
      return to === 'preCheck' ? 'no choice in time: the default UPDATE_NOW applies' : 'no choice in time: the default SCHEDULE_3AM applies';
    case 'confirming':
      return 'the confirmation window ended without CONFIRM';
    case 'scheduled':
      return 'scheduled time reached';
    case 'preCheckWaiting':
      return 'time to check again whether it is safe';
    default:
      return `deadline in ${from} passed`;
  }
}

export function transitionCause(t: { from: string; to: string; event: string; source?: string | undefined }, ctx: CauseContext & { mandatory?: boolean }): string {
  const { event } = t;
  if (event === 'otad.recovery') return `otad restarted mid-run and recovers (${t.from} → ${t.to})`;
  if (event === 'CHECK_NOW' && t.source === 'schedule') return 'scheduled check';
  if (event === 'TICK') return deadlinePassed(t.from, t.to, ctx);
  const sent = SENT_EVENTS[event];
  if (sent !== undefined) return t.source && t.source !== 'daemon' ? `${sent} over ${t.source}` : sent;
  // xstate.done.actor.<n>.<machine>.<state> and xstate.error.actor.<n>.<machine>.<state>
  const actor = /^xstate\.(done|error)\.actor\.[^.]+\.[^.]+\.(.+)$/.exec(event);
  if (actor) {
    const step = actor[2]!.split('.').pop()!;
    return actor[1] === 'done' ? stepDone(step, t.to, ctx) : stepFailed(step, ctx);
  }
  if (event.startsWith('xstate.done.state.')) return `${t.from} finished`;
  if (event === 'CONFIGURE') return 'configuration applied';
  return event;
}

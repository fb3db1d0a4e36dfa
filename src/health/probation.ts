/**
 * Probation: after a switch, the new release must stay healthy for a whole window before it is
 * committed. Every `intervalMs` all checks run (concurrently, each under its own deadline).
 *   - a check failing `failureThreshold` rounds in a row → HEALTH_CHECK_FAILED
 *   - a check still running at its deadline (a hang) → HEALTH_CHECK_TIMEOUT at once
 *   - the window has passed and every check's latest answer is healthy → passed
 * A check that is failing when the window ends keeps being probed until it recovers or reaches
 * the threshold: a release is never committed on a failing answer. Time comes from the injected
 * clock and sleep only.
 */
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import type { HealthProbe, ProbeOutcome } from './checks.js';
import type { Sleep } from './sleep.js';

export interface ProbationOptions {
  checks: readonly HealthProbe[];
  windowMs: number;
  intervalMs: number;
  failureThreshold: number;
  clock: Clock;
  sleep: Sleep;
  signal?: AbortSignal;
  logger?: Logger;
  /** Called after every round (progress for the UI). */
  onRound?: (round: ProbationRound) => void;
}

export interface CheckSummary {
  name: string;
  kind: string;
  runs: number;
  failures: number;
  consecutiveFailures: number;
  lastOk: boolean | null;
  lastMessage: string | null;
}

export interface ProbationRound {
  round: number;
  /** Elapsed when this round's probes were started (the rounds and interval before it: elapsedMs of the previous round plus the sleep). */
  startedMs: number;
  elapsedMs: number;
  windowMs: number;
  checks: CheckSummary[];
}

/** JSON: fit for the machine's context (validation artifacts). */
export interface ProbationResult {
  passed: true;
  rounds: number;
  startedAt: number;
  finishedAt: number;
  elapsedMs: number;
  checks: CheckSummary[];
}

const TIMED_OUT = Symbol('timed-out');
const CANCELLED = Symbol('cancelled');

export async function runProbation(options: ProbationOptions): Promise<ProbationResult> {
  const { checks, windowMs, intervalMs, failureThreshold, clock, sleep, signal } = options;
  const log = options.logger ?? silentLogger;
  if (!(windowMs >= 0) || !(intervalMs > 0) || !Number.isInteger(failureThreshold) || failureThreshold < 1) {
    throw new OtaError('CONFIG_INVALID', `probation needs windowMs >= 0, intervalMs > 0 and an integer failureThreshold >= 1; got ${windowMs}, ${intervalMs}, ${failureThreshold}`, {
      details: { windowMs, intervalMs, failureThreshold },
    });
  }

  const startedAt = clock.now();
  const startMono = clock.monotonic();
  const summaries: CheckSummary[] = checks.map((c) => ({ name: c.name, kind: c.kind, runs: 0, failures: 0, consecutiveFailures: 0, lastOk: null, lastMessage: null }));
  const elapsed = (): number => clock.monotonic() - startMono;
  const snapshot = (): CheckSummary[] => summaries.map((s) => ({ ...s }));
  const throwIfCancelled = (): void => {
    if (signal?.aborted) throw new OtaError('CANCELLED', 'probation was cancelled', { details: { elapsedMs: elapsed(), checks: snapshot() } });
  };

  let round = 0;
  for (;;) {
    throwIfCancelled();
    round += 1;
    const roundStartedMs = elapsed();
    const outcomes = await Promise.all(checks.map((probe) => runOne(probe, sleep, signal)));
    throwIfCancelled();

    for (const [i, result] of outcomes.entries()) {
      // Cancellation was handled above; only answers and timeouts remain.
      const outcome = result as ProbeOutcome | typeof TIMED_OUT;
      const probe = checks[i] as HealthProbe;
      const summary = summaries[i] as CheckSummary;
      summary.runs += 1;
      summary.lastOk = outcome !== TIMED_OUT && outcome.ok;
      summary.lastMessage = outcome === TIMED_OUT ? `no answer within ${probe.timeoutMs} ms` : outcome.message;
      if (summary.lastOk) {
        summary.consecutiveFailures = 0;
        continue;
      }
      summary.failures += 1;
      summary.consecutiveFailures += 1;
      log.warn('health check failed', { check: probe.name, round, consecutive: summary.consecutiveFailures, message: summary.lastMessage });

      const details = { check: probe.name, kind: probe.kind, round, elapsedMs: elapsed(), windowMs, checks: snapshot() };
      if (outcome === TIMED_OUT || outcome.timedOut === true) {
        throw new OtaError('HEALTH_CHECK_TIMEOUT', `health check ${probe.name} did not answer within ${probe.timeoutMs} ms (round ${round} of probation)`, {
          details: { ...details, timeoutMs: probe.timeoutMs },
        });
      }
      if (summary.consecutiveFailures >= failureThreshold) {
        throw new OtaError('HEALTH_CHECK_FAILED', `health check ${probe.name} failed ${summary.consecutiveFailures} times in a row (threshold ${failureThreshold}): ${summary.lastMessage}`, {
          details: { ...details, lastMessage: summary.lastMessage, failureThreshold, lastDetails: outcome.details ?? null },
        });
      }
    }

    options.onRound?.({ round, startedMs: roundStartedMs, elapsedMs: elapsed(), windowMs, checks: snapshot() });
    const remaining = windowMs - elapsed();
    const allHealthy = summaries.every((s) => s.lastOk === true);
    if (remaining <= 0 && allHealthy) {
      log.info('probation passed', { rounds: round, elapsedMs: elapsed() });
      return { passed: true, rounds: round, startedAt, finishedAt: clock.now(), elapsedMs: elapsed(), checks: snapshot() };
    }
    // The last round falls on the window's end; past it (a failing check), keep the interval.
    const wait = remaining > 0 ? Math.min(intervalMs, remaining) : intervalMs;
    try {
      await sleep(wait, signal);
    } catch (error) {
      throwIfCancelled();
      throw error;
    }
  }
}

/** Run one probe under its deadline; on a hang, abort it and report TIMED_OUT. */
async function runOne(probe: HealthProbe, sleep: Sleep, signal: AbortSignal | undefined): Promise<ProbeOutcome | typeof TIMED_OUT | typeof CANCELLED> {
  const probeAbort = new AbortController();
  const timerAbort = new AbortController();
  let onCancel: () => void = () => {};
  const cancelled = new Promise<typeof CANCELLED>((resolve) => {
    onCancel = () => resolve(CANCELLED);
  });
  const forward = (): void => {
    probeAbort.abort(signal?.reason);
    onCancel();
  };
  if (signal?.aborted) forward();
  else signal?.addEventListener('abort', forward, { once: true });
  const timeout = sleep(probe.timeoutMs, timerAbort.signal).then(
    (): typeof TIMED_OUT => TIMED_OUT,
    // Cancelled timer: the probe already answered (or probation was cancelled).
    () => new Promise<never>(() => {}),
  );
  const answer = probe.run(probeAbort.signal).catch((error: unknown): ProbeOutcome => ({
    ok: false,
    message: `check failed unexpectedly: ${error instanceof Error ? error.message : String(error)}`,
  }));
  try {
    const result = await Promise.race([answer, timeout, cancelled]);
    if (result === TIMED_OUT) probeAbort.abort(new Error(`health check ${probe.name} timed out`));
    return result;
  } finally {
    timerAbort.abort();
    signal?.removeEventListener('abort', forward);
  }
}

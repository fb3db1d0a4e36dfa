/**
 * The validate step: the new release is on probation. Every `probation.interval` the product's
 * health checks run, plus otad's own version check (the install path resolves to a release whose
 * marker names the offered version); the release passes once `probation.window` has passed with
 * every latest answer healthy. A failing check (threshold reached) → HEALTH_CHECK_FAILED, a hang
 * → HEALTH_CHECK_TIMEOUT; the machine rolls back on either.
 *
 * Idempotent: a re-run starts the window over. Nothing on disk changes here.
 */
import type { ValidateInput, ValidateOutput } from '../../machines/types.js';
import { OtaError } from '../core/errors.js';
import { runProbation, type CheckSummary, type ProbationRound } from '../health/probation.js';
import { releaseProbes } from '../health/release-probes.js';
import type { ProgressMessage } from '../daemon/event-bus.js';
import { markDowntime, releaseStoreOf, sleepOf, type ExecutionPorts } from './ports.js';

export type ValidateStep = (input: ValidateInput, signal: AbortSignal) => Promise<ValidateOutput>;

export interface ValidateOptions {
  /** Progress after each probation round (the daemon forwards it to the bus). */
  onRound?: (round: ProbationRound) => void;
  /** Progress messages (step `probation`: elapsed of the window, round n of about m, each check's answer). */
  progress?: (message: Omit<ProgressMessage, 'product'>) => void;
}

/** One progress message per finished round: bytes/total are elapsed/window in ms. */
export function probationProgress(runId: string, r: ProbationRound, intervalMs: number): Omit<ProgressMessage, 'product'> {
  const rounds = Math.max(r.round, Math.floor(r.windowMs / Math.max(1, intervalMs)) + 1);
  const passed = r.checks.filter((c) => c.lastOk === true).map((c) => c.name);
  const failing = r.checks.filter((c) => c.lastOk === false).map((c) => c.name);
  const message = `round ${r.round} of ${rounds}: ${passed.length} of ${r.checks.length} checks passed${passed.length ? ` (${passed.join(', ')})` : ''}${failing.length ? `; failing: ${failing.join(', ')}` : ''}`;
  return {
    runId,
    step: 'probation',
    bytes: Math.min(r.elapsedMs, r.windowMs),
    total: r.windowMs,
    rateBps: null,
    etaMs: Math.max(0, r.windowMs - r.elapsedMs),
    message,
    probation: { round: r.round, rounds, checks: r.checks.map((c) => ({ name: c.name, ok: c.lastOk })) },
  };
}

export function createValidate(ports: ExecutionPorts, options: ValidateOptions = {}): ValidateStep {
  return async function validate(input, signal) {
    const version = input.applied.version;
    if (version !== input.offer.version) {
      throw new OtaError('INTERNAL', `validate: applied version ${version} differs from the offered ${input.offer.version}`, { details: { applied: input.applied, offered: input.offer.version } });
    }
    const log = ports.logger.child({ step: 'validate', runId: input.runId, version });
    const store = releaseStoreOf(ports);
    const services = await ports.services();
    const { window, interval, failureThreshold } = ports.product.probation;
    log.info('probation started', { windowMs: window, intervalMs: interval, failureThreshold, checks: ports.product.healthChecks.length + 1 });
    let green = false;
    const result = await runProbation({
      checks: releaseProbes(ports, store, services.manager, version, true, services.units),
      windowMs: window,
      intervalMs: interval,
      failureThreshold,
      clock: ports.clock,
      sleep: sleepOf(ports),
      signal,
      logger: log,
      onRound: (r) => {
        if (!green && r.checks.every((c) => c.lastOk === true)) {
          green = true;
          markDowntime(ports, services, input.runId, 'green', { on: 'new', waitMs: r.startedMs });
        }
        options.onRound?.(r);
        options.progress?.(probationProgress(input.runId, r, interval));
      },
    });
    return { healthy: true, checks: result.checks.map(toCheckResult) };
  };
}

export function toCheckResult(summary: CheckSummary): ValidateOutput['checks'][number] {
  const detail = `${summary.lastMessage ?? 'no answer'} (${summary.runs} runs, ${summary.failures} failed)`;
  return { name: summary.name, ok: summary.lastOk === true, detail };
}

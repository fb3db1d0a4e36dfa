/**
 * The validate step: the new release is on probation. Every `probation.interval` the product's
 * health checks run, plus otad's own version check (the install path resolves to a release whose
 * marker names the offered version); the release passes once `probation.window` has passed with
 * every latest answer healthy. A failing check (threshold reached) → HEALTH_CHECK_FAILED, a hang
 * → HEALTH_CHECK_TIMEOUT; the machine rolls back on either.
 *
 * Idempotent: a re-run starts the window over. Nothing on disk changes here.
 *
 * Restarted after an interruption (input.resumed: otad stopped in apply after the switch, or in
 * validate, and the daemon runs the step again): the services may have died with otad (a power cut,
 * otad and its services SIGKILLed together), and a service that was not started yet must not get
 * its release marked bad. So first every unit of the product that is not running is started (in
 * order; those started at otad start or by systemd are left as they are), and only then does the
 * probation start, with the product's own window, interval and failure threshold counted from that
 * moment, exactly as a fresh validation right after apply. A release that then really fails its
 * checks is rolled back and marked bad as before; the output (and the error's details) say the
 * validation restarted, which services it started and when the probation started over.
 */
import type { RestartedValidation, ValidateInput, ValidateOutput } from '../../machines/types.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ResolvedServices } from '../services/choice.js';
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
    const restarted = input.resumed ? await startServicesAgain(ports, services, input, log) : undefined;
    log.info('probation started', { windowMs: window, intervalMs: interval, failureThreshold, checks: ports.product.healthChecks.length + 1, ...(restarted ? { restarted } : {}) });
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
    }).catch((error: unknown) => {
      throw restarted ? restartedError(error, restarted) : error;
    });
    return { healthy: true, checks: result.checks.map(toCheckResult), ...(restarted ? { restarted } : {}) };
  };
}

/**
 * A validation restarted after an interruption: start every unit that is not running (in start
 * order), then note the moment the probation starts over. A unit that cannot be started fails
 * the validation, as a unit that cannot start after the switch fails apply.
 */
async function startServicesAgain(ports: ExecutionPorts, services: ResolvedServices, input: ValidateInput, log: Logger): Promise<RestartedValidation> {
  const resumed = input.resumed as NonNullable<ValidateInput['resumed']>;
  const startedUnits: string[] = [];
  const runningUnits: string[] = [];
  const simulated = ports.simulation && services.units.length > 0;
  const summary = (): RestartedValidation => ({ ...resumed, startedUnits, runningUnits, probationFrom: ports.clock.now(), ...(simulated ? { simulation: true as const } : {}) });
  if (simulated) {
    log.warn(`SIMULATION MODE: NOT starting services ${services.units.join(', ')} before the restarted validation`, { simulation: true, units: services.units });
  } else {
    let unit: string | undefined;
    try {
      for (unit of services.units) {
        if (await services.manager.isActive(unit)) {
          runningUnits.push(unit);
          continue;
        }
        await services.manager.start(unit);
        startedUnits.push(unit);
        log.info('service started for the restarted validation', { unit });
      }
    } catch (error) {
      throw restartedError(toOtaError(error, 'SERVICE_FAILED', `starting the services of ${ports.product.name} ${input.applied.version} again`), summary(), `${unit ?? 'a unit'} could not be started`);
    }
  }
  const restarted = summary();
  const message = `validation of ${ports.product.name} ${input.applied.version} restarted after otad was interrupted in ${resumed.interruptedIn}: ${describeUnits(restarted)}; the probation starts over with the product's window, interval and failure threshold`;
  log.info(message, { ...restarted });
  const event = { kind: 'recovery' as const, message, product: ports.product.name, runId: input.runId, details: { ...restarted, version: input.applied.version } };
  ports.audit?.audit(event);
  return restarted;
}

function describeUnits(r: RestartedValidation): string {
  if (r.simulation) return 'simulation mode: no service was started';
  const parts: string[] = [];
  if (r.startedUnits.length > 0) parts.push(`started ${r.startedUnits.join(', ')}`);
  if (r.runningUnits.length > 0) parts.push(`${r.runningUnits.join(', ')} already running`);
  return parts.length > 0 ? parts.join('; ') : 'no services to start';
}

/** The failure of a restarted validation says so, and carries what was started and when the probation started over. */
function restartedError(error: unknown, restarted: RestartedValidation, what = describeUnits(restarted)): OtaError {
  const e = toOtaError(error, 'HEALTH_CHECK_FAILED', 'validation');
  return new OtaError(e.code, `${e.message} (validation restarted after otad was interrupted in ${restarted.interruptedIn}; ${what})`, {
    details: { ...(e.details ?? {}), restarted },
    cause: e,
    retryable: e.retryable,
  });
}

export function toCheckResult(summary: CheckSummary): ValidateOutput['checks'][number] {
  const detail = `${summary.lastMessage ?? 'no answer'} (${summary.runs} runs, ${summary.failures} failed)`;
  return { name: summary.name, ok: summary.lastOk === true, detail };
}

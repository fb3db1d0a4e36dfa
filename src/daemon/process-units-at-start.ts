/**
 * Without systemd nothing starts a product's process units when the robot boots: otad does, once,
 * when it starts, before any product's lifecycle is restored (so no step runs at the same time).
 * Under systemd the units are systemd's to start, and otad leaves them alone.
 *
 * Invariant: a unit is started only from the installed release (what the install path resolves
 * to now, always one complete release), in every saved state, as systemd starts its enabled units
 * at boot whatever otad was doing. After a power cut nothing else starts them: left to the
 * recovery, a cut in commit or idle left them down. The recovery that follows does what it does
 * with running units: stopping, switching and starting are idempotent.
 */
import type { StateName } from '../../machines/types.js';
import type { ProductConfig } from '../config/schema.js';
import { toErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { detectProduct } from '../products/registry.js';
import { isStateName } from './recovery-policy.js';
import { serviceChooser, type ResolvedServices } from '../services/choice.js';

export interface StartDecision {
  start: boolean;
  reason: string;
}

/** One row per saved state: the units of the installed release are started in every one (the reason is logged). */
const AT_START: Readonly<Record<StateName, StartDecision>> = {
  idle: { start: true, reason: 'nothing in flight' },
  checking: { start: true, reason: 'a check only reads; the installed release is live' },
  awaitingChoice: { start: true, reason: 'waiting for a choice; the installed release is live' },
  confirming: { start: true, reason: 'waiting for a confirmation; the installed release is live' },
  scheduled: { start: true, reason: 'the install is scheduled; until then the installed release is live' },
  preCheck: { start: true, reason: 'pre-checks only read the robot' },
  preCheckWaiting: { start: true, reason: 'waiting to retry the pre-checks; the installed release is live' },
  backup: { start: true, reason: 'a backup only reads the installed release' },
  staging: { start: true, reason: 'staging writes beside the installed release, never into it' },
  apply: { start: true, reason: 'a run was interrupted in apply: the installed release runs until its recovery stops, switches and starts the services' },
  validate: { start: true, reason: 'a run was interrupted in validate: the release on probation must run to be judged' },
  commit: { start: true, reason: 'a run was interrupted in commit: the validated release runs while the commit finishes' },
  rollback: { start: true, reason: 'a rollback was interrupted: the installed release runs until the rollback, re-run, restarts the services' },
  failed: { start: true, reason: 'the product is in failed (a person must look: otactl rollback or otactl reset); the installed release runs meanwhile' },
};

/** Whether to start the process units, from the state saved before otad stopped (null: never ran). */
export function decideStartAtDaemonStart(savedState: string | null): StartDecision {
  if (savedState === null) return { start: true, reason: 'first start: nothing in flight' };
  return isStateName(savedState) ? AT_START[savedState] : { start: true, reason: `saved state "${savedState}" is unknown; the installed release runs` };
}

export interface StartProcessUnitsOptions {
  products: readonly ProductConfig[];
  stateDir: string;
  simulation: boolean;
  /** The state each product's saved snapshot is in (null when it has none). */
  savedState(product: string): string | null;
  logger: Logger;
  /** Test seam: the service choice (default: the one the steps use). */
  services?: (product: ProductConfig) => () => Promise<ResolvedServices>;
}

export interface ProductStartResult {
  product: string;
  started: string[];
  alreadyRunning: string[];
  /** Set when nothing was started on purpose, or when a start failed. */
  skipped?: string;
  error?: string;
}

/**
 * Start, in order, each process unit that is not already running. Never throws: otad must come
 * up even when a unit does not (it can still roll back or install a release that fixes it).
 */
export async function startProcessUnits(options: StartProcessUnitsOptions): Promise<ProductStartResult[]> {
  const results: ProductStartResult[] = [];
  for (const product of options.products) {
    if (product.processUnits.length === 0) continue;
    const log = options.logger.child({ product: product.name, component: 'process-units-at-start' });
    const result: ProductStartResult = { product: product.name, started: [], alreadyRunning: [] };
    results.push(result);
    try {
      const services = await (options.services ?? ((p) => serviceChooser(p, { stateDir: options.stateDir, logger: options.logger })))(product)();
      // systemd starts its own units at boot.
      if (services.kind !== 'process') {
        result.skipped = `services are managed by ${services.kind === 'systemctl' ? 'systemd' : 'nobody'}`;
        continue;
      }
      const decision = decideStartAtDaemonStart(options.savedState(product.name));
      if (!decision.start) {
        result.skipped = decision.reason;
        log.warn('process units not started at otad start', { units: services.units, reason: decision.reason });
        continue;
      }
      const installed = await detectProduct(product);
      if (installed.layout === 'missing') {
        result.skipped = `nothing is installed at ${product.installPath}`;
        log.warn('process units not started at otad start: nothing is installed', { units: services.units, installPath: product.installPath });
        continue;
      }
      if (options.simulation) {
        result.skipped = 'simulation mode';
        log.warn(`SIMULATION MODE: NOT starting process units ${services.units.join(', ')} at otad start`, { simulation: true, units: services.units });
        continue;
      }
      for (const unit of services.units) {
        if (await services.manager.isActive(unit)) {
          result.alreadyRunning.push(unit);
          continue;
        }
        await services.manager.start(unit);
        result.started.push(unit);
      }
      log.info(result.started.length > 0 ? 'process units started at otad start' : 'process units already running at otad start', {
        started: result.started,
        alreadyRunning: result.alreadyRunning,
        version: installed.version,
        reason: decision.reason,
      });
    } catch (error) {
      result.error = String((error as Error).message ?? error);
      log.error('could not start the process units at otad start; otad runs on', {
        started: result.started,
        alreadyRunning: result.alreadyRunning,
        error: toErrorData(error),
      });
    }
  }
  return results;
}

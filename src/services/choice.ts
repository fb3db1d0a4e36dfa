/**
 * Which service manager runs a product's units (systemd, the process manager, or none), and
 * stopping and starting them in order, or only saying so in simulation mode.
 */
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import { createProcessServiceManager } from './process-manager.js';
import { systemctlWorks } from './resolve.js';
import { startAll, stopAll, type ServiceManager } from './service-manager.js';
import { createSystemctlServiceManager } from './systemctl.js';

export interface ResolvedServices {
  kind: 'systemctl' | 'process' | 'none';
  manager: ServiceManager;
  /** Unit names in START order. */
  units: string[];
}

export interface ServiceChoiceOptions {
  /** Process manager state: `<stateDir>/services/<product>` (pid files and logs). */
  stateDir: string;
  logger: Logger;
  /** Environment for systemctl (default: the daemon's). Tests put the stub first on its PATH. */
  env?: NodeJS.ProcessEnv;
  systemctlPath?: string;
  /** Deadline of each systemctl stop/start. */
  systemctlTimeoutMs?: number;
  /** SIGTERM → SIGKILL deadline of the process manager. */
  stopTimeoutMs?: number;
}

/**
 * Which manager runs the product's services: systemd when the product lists `services` and a
 * `systemctl` answers here; the process manager for `processUnits` (no systemd: tests, the demo);
 * no units at all when the product has neither. A product that lists systemd services on a host
 * where systemctl does not work, and has no processUnits, cannot be restarted safely: refused.
 * The answer is computed once per factory (memoised), on first use.
 */
export function serviceChooser(product: ProductConfig, options: ServiceChoiceOptions): () => Promise<ResolvedServices> {
  let choice: Promise<ResolvedServices> | null = null;
  return () => {
    choice ??= choose(product, options).catch((error: unknown) => {
      choice = null;
      throw error;
    });
    return choice;
  };
}

async function choose(product: ProductConfig, options: ServiceChoiceOptions): Promise<ResolvedServices> {
  const log = options.logger.child({ product: product.name, component: 'service-chooser' });
  if (product.services.length > 0) {
    const systemctlPath = options.systemctlPath ?? 'systemctl';
    const works = await systemctlWorks(systemctlPath, options.env);
    if (works) {
      log.info('services are managed by systemd', { units: product.services });
      return {
        kind: 'systemctl',
        units: [...product.services],
        manager: createSystemctlServiceManager({
          logger: options.logger,
          systemctlPath,
          ...(options.env === undefined ? {} : { env: options.env }),
          ...(options.systemctlTimeoutMs === undefined ? {} : { timeoutMs: options.systemctlTimeoutMs }),
        }),
      };
    }
    if (product.processUnits.length === 0) {
      throw new OtaError('SERVICE_FAILED', `product ${product.name} lists systemd services (${product.services.join(', ')}) but ${systemctlPath} does not work on this host and no processUnits are defined`, {
        details: { product: product.name, services: product.services },
      });
    }
    log.warn('systemctl does not work here; using the process service manager for processUnits', { units: product.processUnits.map((u) => u.name) });
  }
  if (product.processUnits.length > 0) {
    return {
      kind: 'process',
      units: product.processUnits.map((u) => u.name),
      manager: createProcessServiceManager({
        units: product.processUnits.map((u) => ({ name: u.name, command: u.command, env: u.env, ...(u.cwd === undefined ? {} : { cwd: u.cwd }) })),
        stateDir: path.join(options.stateDir, 'services', product.name),
        logger: options.logger,
        ...(options.stopTimeoutMs === undefined ? {} : { stopTimeoutMs: options.stopTimeoutMs }),
      }),
    };
  }
  return { kind: 'none', units: [], manager: noServices };
}

/** Stop in reverse order, or only say so in simulation mode. */
export async function stopServices(ports: { simulation: boolean }, services: ResolvedServices, log: Logger): Promise<void> {
  if (services.units.length === 0) return;
  if (ports.simulation) {
    log.warn(`SIMULATION MODE: NOT stopping services ${[...services.units].reverse().join(', ')}`, { simulation: true, units: services.units });
    return;
  }
  await stopAll(services.manager, services.units, log);
}

/** Start in order, or only say so in simulation mode. */
export async function startServices(ports: { simulation: boolean }, services: ResolvedServices, log: Logger): Promise<void> {
  if (services.units.length === 0) return;
  if (ports.simulation) {
    log.warn(`SIMULATION MODE: NOT starting services ${services.units.join(', ')}`, { simulation: true, units: services.units });
    return;
  }
  await startAll(services.manager, services.units, log);
}

const noServices: ServiceManager = {
  stop: async () => {},
  start: async () => {},
  restart: async () => {},
  isActive: async () => false,
  status: async () => ({ active: false, state: 'not-managed', restarts: null }),
};

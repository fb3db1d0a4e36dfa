/**
 * The service-manager port: how otad stops and starts a product's services around a switch and
 * asks whether they run. systemd on a robot (systemctl.ts), plain processes where there is no
 * systemd (process-manager.ts). Units are names; the product definition lists them in start order.
 */
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export interface ServiceOpOptions {
  /** Deadline for this operation (the adapter's default when absent). */
  timeoutMs?: number;
}

export interface ServiceStatus {
  active: boolean;
  /** systemd's ActiveState/SubState (e.g. "active/running"), or the process manager's own words. */
  state: string;
  /** How often the manager restarted the unit by itself (systemd NRestarts); null when unknown. */
  restarts: number | null;
}

export interface ServiceManager {
  /** Stop the unit; stopping a stopped unit succeeds. Throws SERVICE_FAILED. */
  stop(unit: string, options?: ServiceOpOptions): Promise<void>;
  /** Start the unit; starting a running unit succeeds. Throws SERVICE_FAILED. */
  start(unit: string, options?: ServiceOpOptions): Promise<void>;
  restart(unit: string, options?: ServiceOpOptions): Promise<void>;
  isActive(unit: string): Promise<boolean>;
  status(unit: string): Promise<ServiceStatus>;
}

/**
 * Unit names are passed as arguments to other programs: allow systemd's unit-name alphabet only,
 * and never a leading "-" (it would be read as an option).
 */
const UNIT_NAME = /^[A-Za-z0-9:_.@\\][A-Za-z0-9:_.@\\-]{0,254}$/;

export function assertUnitName(unit: string): void {
  if (!UNIT_NAME.test(unit)) {
    throw new OtaError('CONFIG_INVALID', `service unit name "${unit}" is not a valid unit name (letters, digits, ":_.@\\-", not starting with "-")`, {
      details: { unit },
    });
  }
}

/**
 * Stop units in REVERSE of their start order (dependents first). Stops at the first failure:
 * switching a release under a service that would not stop is never safe, so the caller aborts.
 * The error's details name the failing unit and those already stopped (to start them again).
 */
export async function stopAll(manager: ServiceManager, units: readonly string[], logger: Logger, options: ServiceOpOptions = {}): Promise<string[]> {
  const stopped: string[] = [];
  for (const unit of [...units].reverse()) {
    try {
      await manager.stop(unit, options);
    } catch (error) {
      throw wrap(error, 'stop', unit, { stopped });
    }
    logger.info('service stopped', { unit });
    stopped.push(unit);
  }
  return stopped;
}

/** Start units in order. Stops at the first failure; details name the failing unit and those already started. */
export async function startAll(manager: ServiceManager, units: readonly string[], logger: Logger, options: ServiceOpOptions = {}): Promise<string[]> {
  const started: string[] = [];
  for (const unit of units) {
    try {
      await manager.start(unit, options);
    } catch (error) {
      throw wrap(error, 'start', unit, { started });
    }
    logger.info('service started', { unit });
    started.push(unit);
  }
  return started;
}

function wrap(error: unknown, verb: string, unit: string, progress: Record<string, string[]>): OtaError {
  const details = { ...(error instanceof OtaError ? error.details : {}), unit, verb, ...progress };
  const message = error instanceof Error ? error.message : String(error);
  return new OtaError('SERVICE_FAILED', `could not ${verb} ${unit}: ${message}`, { details, cause: error });
}

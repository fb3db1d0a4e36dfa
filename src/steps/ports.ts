/**
 * The ports of the four steps that change the robot (apply, validate, commit, rollback), and
 * how the daemon's step context becomes them. Every step builds its release store and journal
 * from these ports on each call, so a step re-run after a crash sees only what is on disk.
 */
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import type { StepContext } from '../daemon/step-provider.js';
import { createBackupManager, type BackupManager } from '../backup/backup-manager.js';
import { realSleep, type Sleep } from '../health/sleep.js';
import { createApplyJournal, type ApplyJournal } from '../release/journal.js';
import { createReleaseStore, type ReleaseCheckpoint, type ReleaseStore } from '../release/layout.js';
import { serviceChooser, type ResolvedServices } from '../services/choice.js';
import type { BadMark } from '../store/store.js';
import { DowntimeRecorder, type DowntimeMark, type MarkOptions } from '../store/downtime.js';

/** Named instants inside apply and rollback; a test that throws there simulates a crash. */
export type StepCheckpoint =
  | ReleaseCheckpoint
  | 'apply:imported'
  | 'apply:prepared'
  | 'apply:hooks-run'
  | 'apply:services-stopped'
  | 'apply:switched'
  | 'apply:services-started'
  | 'apply:done'
  | 'rollback:planned'
  | 'rollback:restored'
  | 'rollback:done';

export interface ExecutionPorts {
  product: ProductConfig;
  /** Holds `<product>.apply-journal.json` and `<product>.rollback.json` (default `<stateDir>/journal`). */
  journalDir: string;
  /** Where backups are looked for when rolling back (config.paths.backupDir). */
  backupDir: string;
  /** Simulation: services are never stopped or started (logged loudly). */
  simulation: boolean;
  clock: Clock;
  logger: Logger;
  /** The product's service manager and its units in start order (see src/services/choice.ts). */
  services: () => Promise<ResolvedServices>;
  /** Probation sleeps (default realSleep). */
  sleep?: Sleep;
  /** Used by rollback to find and restore a backup when the previous release is gone. */
  backups?: BackupManager;
  /** Used by rollback to mark the failed version bad. */
  store?: { markBad(product: string, version: string, mark: BadMark): void };
  audit?: AuditSink;
  /** Records each run's downtime (stop → first green probe round) in the store. */
  downtime?: Pick<DowntimeRecorder, 'mark' | 'isOpen'>;
  /** Rollback probation of the restored release (default: the product's, window capped at 30 s). */
  rollbackProbation?: { windowMs: number; intervalMs: number; failureThreshold: number };
  /** SIGTERM → SIGKILL grace for hooks (default 2000 ms). */
  hookKillGraceMs?: number;
  /** Test seam: a throw here behaves like a crash at that instant. */
  checkpoint?: (name: StepCheckpoint) => void | Promise<void>;
}

export function journalDirFor(stateDir: string): string {
  return path.join(stateDir, 'journal');
}

/** The release store of the product, with the test checkpoint threaded through. */
export function releaseStoreOf(ports: ExecutionPorts): ReleaseStore {
  const { product } = ports;
  return createReleaseStore({
    product: product.name,
    installPath: product.installPath,
    releasesDir: releasesDirOf(product),
    logger: ports.logger,
    ...(ports.checkpoint === undefined ? {} : { checkpoint: ports.checkpoint }),
  });
}

export function releasesDirOf(product: Pick<ProductConfig, 'installPath' | 'releasesDir' | 'name'>): string {
  return product.releasesDir ?? path.join(path.dirname(path.resolve(product.installPath)), '.otad', product.name, 'releases');
}

export function applyJournalOf(ports: Pick<ExecutionPorts, 'journalDir' | 'product' | 'clock' | 'logger'>): ApplyJournal {
  return createApplyJournal({ dir: ports.journalDir, product: ports.product.name, clock: ports.clock, logger: ports.logger });
}

export async function checkpoint(ports: ExecutionPorts, name: StepCheckpoint): Promise<void> {
  await ports.checkpoint?.(name);
}

/**
 * A downtime boundary (see src/store/downtime.ts). Only when services really stop (not in
 * simulation, not for a product without units). A mark that cannot be saved costs a warning,
 * never the step: the measure is then missing that boundary, not the update.
 */
export function markDowntime(ports: ExecutionPorts, services: ResolvedServices, runId: string, mark: DowntimeMark, options: MarkOptions = {}): void {
  if (ports.downtime === undefined || ports.simulation || services.units.length === 0) return;
  try {
    ports.downtime.mark(runId, ports.product.name, mark, options);
  } catch (error) {
    ports.logger.warn('a downtime mark could not be saved', { runId, mark, error: error instanceof Error ? error.message : String(error) });
  }
}

export function sleepOf(ports: ExecutionPorts): Sleep {
  return ports.sleep ?? realSleep;
}

/** Build the ports from what the daemon hands a product's steps. */
export function executionPortsFromContext(ctx: StepContext, overrides: Partial<ExecutionPorts> = {}): ExecutionPorts {
  const logger = ctx.logger;
  return {
    product: ctx.product,
    journalDir: journalDirFor(ctx.config.paths.stateDir),
    backupDir: ctx.config.paths.backupDir,
    simulation: ctx.config.simulation,
    clock: ctx.clock,
    logger,
    services: serviceChooser(ctx.product, { stateDir: ctx.config.paths.stateDir, logger }),
    backups: createBackupManager({ clock: ctx.clock, logger, deviceId: ctx.deviceId }),
    store: ctx.store,
    audit: ctx.audit,
    downtime: new DowntimeRecorder(ctx.store.db),
    ...overrides,
  };
}

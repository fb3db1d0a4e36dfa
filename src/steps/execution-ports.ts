/**
 * What the four steps that change the robot (apply, validate, commit, rollback) share: their
 * ports, the choice of service manager, the release marker otad writes into each release, and the
 * health probes a release is judged by. Every step builds its release store and journal from
 * these ports on each call, so a step re-run after a crash sees only what is on disk.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { HealthCheckConfig, ProductConfig } from '../config/schema.js';
import type { StepContext } from '../daemon/daemon.js';
import { createBackupManager, type BackupManager } from '../backup/backup-manager.js';
import { createProbes, type HealthCheck, type HealthProbe } from '../health/checks.js';
import { realSleep, type Sleep } from '../health/sleep.js';
import { createApplyJournal, type ApplyJournal } from '../release/journal.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import type { BadMark } from '../store/store.js';
import { createReleaseStore, type ReleaseCheckpoint, type ReleaseStore } from '../release/layout.js';
import { readMarker, RELEASE_MARKER, type ReleaseMarker } from '../products/registry.js';
import { createProcessServiceManager } from '../services/process-manager.js';
import { startAll, stopAll, type ServiceManager } from '../services/service-manager.js';
import { systemctlWorks } from '../services/resolve.js';
import { createSystemctlServiceManager } from '../services/systemctl.js';

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
  /** The product's service manager and its units in start order (see resolveServices). */
  services: () => Promise<ResolvedServices>;
  /** Probation sleeps (default realSleep). */
  sleep?: Sleep;
  /** Used by rollback to find and restore a backup when the previous release is gone. */
  backups?: BackupManager;
  /** Used by rollback to mark the failed version bad. */
  store?: { markBad(product: string, version: string, mark: BadMark): void };
  audit?: AuditSink;
  /** Rollback probation of the restored release (default: the product's, window capped at 30 s). */
  rollbackProbation?: { windowMs: number; intervalMs: number; failureThreshold: number };
  /** SIGTERM → SIGKILL grace for hooks (default 2000 ms). */
  hookKillGraceMs?: number;
  /** Test seam: a throw here behaves like a crash at that instant. */
  checkpoint?: (name: StepCheckpoint) => void | Promise<void>;
}

export interface ResolvedServices {
  kind: 'systemctl' | 'process' | 'none';
  manager: ServiceManager;
  /** Unit names in START order. */
  units: string[];
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

// ----- services ------------------------------------------------------------------------------

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
export async function stopServices(ports: Pick<ExecutionPorts, 'simulation'>, services: ResolvedServices, log: Logger): Promise<void> {
  if (services.units.length === 0) return;
  if (ports.simulation) {
    log.warn(`SIMULATION MODE: NOT stopping services ${[...services.units].reverse().join(', ')}`, { simulation: true, units: services.units });
    return;
  }
  await stopAll(services.manager, services.units, log);
}

/** Start in order, or only say so in simulation mode. */
export async function startServices(ports: Pick<ExecutionPorts, 'simulation'>, services: ResolvedServices, log: Logger): Promise<void> {
  if (services.units.length === 0) return;
  if (ports.simulation) {
    log.warn(`SIMULATION MODE: NOT starting services ${services.units.join(', ')}`, { simulation: true, units: services.units });
    return;
  }
  await startAll(services.manager, services.units, log);
}

/** `systemctl show -p Version` answers only where systemd runs (not in a container without it). */
const noServices: ServiceManager = {
  stop: async () => {},
  start: async () => {},
  restart: async () => {},
  isActive: async () => false,
  status: async () => ({ active: false, state: 'not-managed', restarts: null }),
};

// ----- the release marker --------------------------------------------------------------------

/** The marker otad writes into every release it installs (detection reads product and version). */
export interface OtadReleaseMarker extends ReleaseMarker {
  /** The release that was live when this one was installed: where a manual rollback returns. */
  previousVersion: string | null;
  /** Where this release was staged from, so commit and rollback clear the run's staging. */
  staging?: { releaseDir: string; packagePath: string };
}

export async function writeReleaseMarker(releaseDir: string, marker: OtadReleaseMarker): Promise<void> {
  await atomicWriteFile(path.join(releaseDir, RELEASE_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
}

export async function readReleaseMarker(releaseDir: string): Promise<OtadReleaseMarker | null> {
  const marker = await readMarker(releaseDir);
  if (marker === null) return null;
  const m = marker as Partial<OtadReleaseMarker>;
  return { ...marker, previousVersion: typeof m.previousVersion === 'string' ? m.previousVersion : null, ...(isStaging(m.staging) ? { staging: m.staging } : {}) };
}

function isStaging(v: unknown): v is { releaseDir: string; packagePath: string } {
  return typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>).releaseDir === 'string' && typeof (v as Record<string, unknown>).packagePath === 'string';
}

/**
 * Remove what staging left for a run: the package file and the staged tree (normally already
 * renamed into the releases), and their folder when it is the run's own (named `<runId>`,
 * `<prefix>-<runId>` or `<runId>-<suffix>`). Never fails the step: a leftover costs space, not safety.
 */
export async function clearStaging(staging: OtadReleaseMarker['staging'], runId: string, logger: Logger): Promise<string[]> {
  if (staging === undefined) return [];
  const removed: string[] = [];
  const targets = new Set([staging.releaseDir, staging.packagePath]);
  for (const p of [staging.releaseDir, staging.packagePath]) {
    const parent = path.dirname(p);
    const name = path.basename(parent);
    if (runId !== '' && (name === runId || name.endsWith(`-${runId}`) || name.startsWith(`${runId}-`))) targets.add(parent);
  }
  for (const target of targets) {
    try {
      if ((await fs.lstat(target).catch(() => null)) === null) continue;
      await fs.rm(target, { recursive: true, force: true });
      removed.push(target);
    } catch (error) {
      logger.warn('could not clear staging; left in place', { path: target, error: String(error) });
    }
  }
  if (removed.length > 0) logger.info('staging cleared', { removed });
  return removed;
}

// ----- health --------------------------------------------------------------------------------

/** The product definition's checks in the shape the probes take. */
export function toHealthChecks(checks: readonly HealthCheckConfig[]): HealthCheck[] {
  return checks.map((c): HealthCheck => {
    switch (c.kind) {
      case 'unit':
        return { kind: 'unit', unit: c.unit };
      case 'http':
        return { kind: 'http', url: c.url, expectStatus: c.expectStatus, timeoutMs: c.timeout };
      case 'command':
        return { kind: 'command', command: c.command, timeoutMs: c.timeout };
      case 'version':
        return { kind: 'version', ...(c.command === undefined ? {} : { command: c.command }), ...(c.file === undefined ? {} : { file: c.file }) };
    }
  });
}

export const MARKER_CHECK_NAME = 'release-marker';

/**
 * The check every validation includes: the install path resolves to the release of `version`
 * and that release's marker says so. With `requireMarker: false` (a rollback to a release that
 * was adopted, not installed by otad) a missing marker is accepted, a different one is not.
 */
export function markerProbe(store: ReleaseStore, productName: string, version: string, requireMarker: boolean): HealthProbe {
  return {
    name: MARKER_CHECK_NAME,
    kind: 'version',
    timeoutMs: 5000,
    async run() {
      const live = await store.current();
      if (live === null) return { ok: false, message: `${store.installPath} does not resolve to a release` };
      if (live.version !== version) return { ok: false, message: `${store.installPath} resolves to release ${live.version}, expected ${version}`, details: { live: live.version } };
      const marker = await readReleaseMarker(live.dir);
      if (marker === null) {
        return requireMarker
          ? { ok: false, message: `release ${live.dir} has no ${RELEASE_MARKER}` }
          : { ok: true, message: `${store.installPath} resolves to ${version} (no marker: not installed by otad)` };
      }
      if (marker.product !== productName || marker.version !== version) {
        return { ok: false, message: `${RELEASE_MARKER} in ${live.dir} says ${marker.product} ${marker.version}, expected ${productName} ${version}` };
      }
      return { ok: true, message: `${store.installPath} resolves to ${productName} ${version}` };
    },
  };
}

/** The product's configured probes plus the marker probe, for the release of `version`. */
export function releaseProbes(
  ports: ExecutionPorts,
  store: ReleaseStore,
  services: ServiceManager,
  version: string,
  requireMarker: boolean,
  units: readonly string[] = [],
): HealthProbe[] {
  const configured = createProbes(toHealthChecks(ports.product.healthChecks), {
    services,
    // The link, not the release dir: checks judge what is live.
    releaseDir: store.installPath,
    expectedVersion: version,
  });
  if (configured.some((p) => p.name === MARKER_CHECK_NAME)) {
    throw new OtaError('CONFIG_INVALID', `health check name "${MARKER_CHECK_NAME}" is reserved for otad's own version check`, { details: { product: ports.product.name } });
  }
  // Every unit the product runs must stay up through probation, configured as a check or not: a
  // service that died at start would otherwise go unnoticed while something else answers its port.
  const watched = new Set(ports.product.healthChecks.flatMap((c) => (c.kind === 'unit' ? [c.unit] : [])));
  const running = ports.simulation ? [] : units.filter((u) => !watched.has(u)).map((u) => unitRunningProbe(services, u));
  return [...configured, ...running, markerProbe(store, ports.product.name, version, requireMarker)];
}

function unitRunningProbe(services: ServiceManager, unit: string): HealthProbe {
  return {
    name: `${unit} running`,
    kind: 'unit',
    timeoutMs: 10_000,
    async run() {
      const st = await services.status(unit);
      return st.active ? { ok: true, message: `${unit} is ${st.state}` } : { ok: false, message: `${unit} is ${st.state}, expected it running`, details: { state: st.state } };
    },
  };
}

export function sleepOf(ports: ExecutionPorts): Sleep {
  return ports.sleep ?? realSleep;
}

// ----- wiring --------------------------------------------------------------------------------

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
    ...overrides,
  };
}

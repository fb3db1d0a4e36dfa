/**
 * The backup step: before anything changes, a verified compressed tar of the current release (the
 * directory the install path resolves to; the product's preserved paths live inside it) in the
 * backup folder, through the backup manager.
 *
 * Idempotent by run id: the backup's name is chosen once per run and recorded in
 * `<backupDir>/.runs/<product>_<runId>.json` before the archive is written, so a second call for the
 * same run (a restart restored into this state) verifies and returns the same backup, or finishes
 * writing it under the same name, and never leaves a second backup behind.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BackupInput, BackupOutput } from '../../machines/types.js';
import type { BackupManager } from '../backup/backup-manager.js';
import { backupName, CHECKSUM_SUFFIX, parseBackupName } from '../backup/naming.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { ProgressMessage } from '../daemon/event-bus.js';
import type { DetectedProduct } from '../products/registry.js';

export interface BackupStepPorts {
  product: ProductConfig;
  config: Config;
  backups: BackupManager;
  /** Where the install path points now (src/products/registry.ts `detectProduct`). */
  detect(product: ProductConfig): Promise<DetectedProduct>;
  clock: Clock;
  logger: Logger;
  /** Goes into the backup's name. */
  deviceId: string;
  progress(message: Omit<ProgressMessage, 'product'>): void;
  /** Least time between two progress messages (default 250 ms, monotonic clock). */
  progressIntervalMs?: number;
}

export type BackupStep = (input: BackupInput, signal: AbortSignal) => Promise<BackupOutput>;

/** The folder, inside the backup folder, that maps run ids to backup names. */
export const RUN_RECORDS_DIR = '.runs';

interface RunRecord {
  product: string;
  runId: string;
  name: string;
}

export function createBackupStep(ports: BackupStepPorts): BackupStep {
  const { product, config } = ports;
  const log = ports.logger.child({ step: 'backup' });
  const backupDir = config.paths.backupDir;
  const intervalMs = ports.progressIntervalMs ?? 250;

  return async function backup(input, signal) {
    const fields = { runId: input.runId, product: product.name };
    if (!product.backup.enabled) {
      log.info('backup skipped: backup.enabled is false for this product', fields);
      return { skipped: `backup disabled for ${product.name} (backup.enabled: false)` };
    }
    if (config.simulation) {
      log.warn('SIMULATION MODE: NO BACKUP WAS WRITTEN. The current release is not backed up and could not be restored from a backup.', {
        ...fields,
        simulation: true,
      });
      return { skipped: 'simulation mode: no backup written' };
    }
    const detected = await ports.detect(product);
    if (detected.layout === 'missing') {
      log.info('backup skipped: nothing is installed yet', { ...fields, installPath: product.installPath });
      return { skipped: `nothing installed at ${product.installPath} yet` };
    }
    const releaseDir = detected.layout === 'managed' && detected.releaseDir !== null ? detected.releaseDir : product.installPath;
    const version = detected.version ?? input.installedVersion ?? 'unknown';

    const name = await nameForRun(input.runId, version);
    await removeLeftovers(name);

    const started = ports.clock.monotonic();
    let lastSent = -Infinity;
    // Progress counts source bytes read (what the manager reports), never the compressed size.
    let sourceTotal = 0;
    const report = (bytes: number, total: number, force: boolean): void => {
      sourceTotal = total;
      const t = ports.clock.monotonic();
      if (!force && t - lastSent < intervalMs) return;
      lastSent = t;
      const elapsed = t - started;
      const rateBps = elapsed > 0 ? Math.round((bytes * 1000) / elapsed) : null;
      const etaMs = rateBps !== null && rateBps > 0 ? Math.round(((total - bytes) * 1000) / rateBps) : null;
      ports.progress({ runId: input.runId, step: 'backup', bytes, total, rateBps, etaMs, message: `backing up ${product.name} ${version}` });
    };

    log.info('backing up the current release', { ...fields, version, releaseDir, preservedPaths: product.preservedPaths, name });
    const result = await ports.backups.create({
      product: product.name,
      version,
      sources: [{ path: releaseDir, as: 'release' }],
      backupDir,
      name,
      level: product.backup.level,
      signal,
      onProgress: (bytes, total) => report(bytes, total, bytes >= total),
    });
    report(sourceTotal, sourceTotal, true);

    await pruneKeeping(result.path, input.runId);
    return { path: result.path, sha256: result.sha256, bytes: result.bytes };
  };

  /** The name recorded for this run, or a new one recorded before any byte of the archive is written. */
  async function nameForRun(runId: string, version: string): Promise<string> {
    const file = recordPath(runId);
    const existing = await readRecord(file);
    if (existing !== null && existing.product === product.name && existing.runId === runId && parseBackupName(existing.name)?.product === product.name) {
      log.info('backup for this run was started before; continuing with its name', { runId, name: existing.name });
      return existing.name;
    }
    const name = backupName({ product: product.name, version, createdAt: ports.clock.now(), deviceId: ports.deviceId });
    const record: RunRecord = { product: product.name, runId, name };
    await atomicWriteFile(file, `${JSON.stringify(record)}\n`, { mode: 0o600 }).catch((error: unknown) => {
      throw new OtaError((error as NodeJS.ErrnoException).code === 'ENOSPC' ? 'DISK_FULL' : 'BACKUP_FAILED', `recording the backup name for run ${runId} in ${file}: ${(error as Error).message}`, {
        cause: error,
        details: { file },
      });
    });
    return name;
  }

  function recordPath(runId: string): string {
    // Run ids are timestamps plus hex; anything else is hashed rather than trusted as a file name.
    const safe = /^[A-Za-z0-9][A-Za-z0-9.-]{0,127}$/.test(runId) ? runId : createHash('sha256').update(runId).digest('hex').slice(0, 32);
    return join(backupDir, RUN_RECORDS_DIR, `${product.name}_${safe}.json`);
  }

  /** A crash while writing leaves temporary files named after the backup; only this run uses that name. */
  async function removeLeftovers(name: string): Promise<void> {
    const names = await readdir(backupDir).catch(() => [] as string[]);
    for (const n of names) {
      const archiveTmp = n.startsWith(`.${name}.`) && n.endsWith('.tmp');
      const checksumTmp = n.startsWith(`.${name}${CHECKSUM_SUFFIX}.`) && n.endsWith('.tmp');
      if (archiveTmp || checksumTmp) {
        await rm(join(backupDir, n), { force: true });
        log.info('removed a temporary file left by an interrupted backup', { file: n });
      }
    }
  }

  /**
   * Keeps product.backup.keep backups. The manager keeps the newest by the time in their names; if
   * the clock was stepped back, this run's backup could look older than the others, so pruning is
   * skipped rather than ever deleting the backup this run depends on.
   */
  async function pruneKeeping(current: string, runId: string): Promise<void> {
    const keep = product.backup.keep;
    const all = await ports.backups.list(product.name, backupDir);
    const rank = all.findIndex((b) => b.path === current);
    if (rank < 0 || rank >= keep) {
      log.warn('old backups not pruned: this run\'s backup would not be among the newest kept (was the clock stepped back?)', {
        runId,
        current,
        keep,
        newest: all.slice(0, keep).map((b) => b.name),
      });
      return;
    }
    await ports.backups.prune(product.name, backupDir, keep);
    await removeStaleRecords(runId);
  }

  /** Run records whose backup is gone (pruned) are no use to anyone. */
  async function removeStaleRecords(currentRunId: string): Promise<void> {
    const dir = join(backupDir, RUN_RECORDS_DIR);
    const current = recordPath(currentRunId);
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      if (!n.startsWith(`${product.name}_`) || !n.endsWith('.json')) continue;
      const file = join(dir, n);
      if (file === current) continue;
      const record = await readRecord(file);
      if (record !== null && record.product !== product.name) continue;
      const gone = record === null || !(await fileExists(join(backupDir, record.name)));
      if (gone) await rm(file, { force: true });
    }
  }
}

async function readRecord(file: string): Promise<RunRecord | null> {
  try {
    const doc = JSON.parse(await readFile(file, 'utf8')) as Partial<RunRecord>;
    if (typeof doc.product === 'string' && typeof doc.runId === 'string' && typeof doc.name === 'string') return doc as RunRecord;
  } catch {
    // Missing or damaged (written atomically, so only by hand): treated as no record.
  }
  return null;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

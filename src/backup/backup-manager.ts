/**
 * Backups of a product before an update: one compressed tar of the current release and the
 * product's preserved data, written atomically, verified from disk, its checksum recorded beside
 * it, the latest few kept. Restoring goes through the same safe extraction as any package.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Clock } from '../core/clock.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { createArchive, type ArchiveSource } from '../package/create.js';
import { exists, hashFile } from '../core/files.js';
import { fsyncDir, fsyncPath } from '../package/durable-fs.js';
import { extractPackage, type ExtractResult } from '../package/extract.js';
import type { PackageLimits } from '../package/limits.js';
import { scanPackage } from '../package/scan.js';
import { backupName, CHECKSUM_SUFFIX, parseBackupName } from './naming.js';

/** A backup holds whatever the product accumulated: far larger caps than a downloaded package. */
export const BACKUP_LIMITS: Readonly<PackageLimits> = Object.freeze({
  maxEntries: 5_000_000,
  maxTotalBytes: 1024 ** 4,
  maxEntryBytes: 256 * 1024 ** 3,
  // A backup holds the product's own data (sparse files, zero-filled logs): no ratio cap.
  maxCompressionRatio: 0,
  origin: 'backup',
});

export interface BackupPorts {
  clock: Clock;
  logger: Logger;
  deviceId: string;
  /** Free bytes for new files in `dir` (default: node:fs statfs, blocks available to us). */
  freeBytes?(dir: string): Promise<number>;
  /** Room kept free beyond the estimate (default: 1 MiB + 5 % of the estimate). */
  marginBytes?: number;
  limits?: Partial<PackageLimits>;
}

export interface BackupRequest {
  product: string;
  version: string;
  /** The current release and the product's preserved data paths, each stored under `as`. */
  sources: ArchiveSource[];
  backupDir: string;
  /** The name chosen for this run: a second call with it verifies and returns the existing backup. */
  name?: string;
  level?: number;
  signal?: AbortSignal;
  onProgress?(bytes: number, total: number): void;
}

export interface BackupResult {
  path: string;
  sha256: string;
  bytes: number;
}

export interface BackupVerified extends BackupResult {
  entries: number;
}

export interface BackupInfo {
  path: string;
  name: string;
  product: string;
  version: string;
  createdAt: number;
  deviceId: string;
  bytes: number;
}

export interface BackupManager {
  create(request: BackupRequest): Promise<BackupResult>;
  verify(path: string, signal?: AbortSignal): Promise<BackupVerified>;
  restore(path: string, destDir: string, signal?: AbortSignal): Promise<ExtractResult>;
  prune(product: string, backupDir: string, keep?: number): Promise<string[]>;
  list(product: string, backupDir: string): Promise<BackupInfo[]>;
}

export function createBackupManager(ports: BackupPorts): BackupManager {
  const log = ports.logger.child({ component: 'backup' });
  const limits = { ...BACKUP_LIMITS, ...(ports.limits ?? {}) };
  const freeBytes = ports.freeBytes ?? defaultFreeBytes;

  async function create(req: BackupRequest): Promise<BackupResult> {
    const name = req.name ?? backupName({ product: req.product, version: req.version, createdAt: ports.clock.now(), deviceId: ports.deviceId });
    const parsed = parseBackupName(name);
    if (parsed === null || parsed.product !== req.product) {
      throw new OtaError('CONFIG_INVALID', `backup name "${name}" is not a backup name for product ${req.product}`, { details: { name } });
    }
    const path = join(req.backupDir, name);
    await mkdir(req.backupDir, { recursive: true, mode: 0o700 }).catch((error: unknown) => {
      throw toOtaError(error, 'BACKUP_FAILED', `creating backup directory ${req.backupDir}`);
    });

    if (await exists(path)) {
      try {
        const existing = await verify(path, req.signal);
        log.info('backup already exists and verifies; reusing it', { path, sha256: existing.sha256 });
        return { path, sha256: existing.sha256, bytes: existing.bytes };
      } catch (error) {
        if (!(error instanceof OtaError && error.code === 'BACKUP_CORRUPT')) throw error;
        // A leftover from an interrupted run (no checksum yet, or damaged): start this backup over.
        log.warn('existing backup does not verify; writing it again', { path, error: (error as Error).message });
        await removeBackupFiles(path);
      }
    }

    const sources = await presentSources(req.sources);
    if (sources.length === 0) {
      throw new OtaError('BACKUP_FAILED', `nothing to back up for ${req.product}: none of the sources exist`, {
        details: { sources: req.sources.map((s) => s.path) },
        retryable: false,
      });
    }
    await ensureRoom(req, sources);

    let written: { sha256: string; bytes: number };
    try {
      const opts = { mtime: 'source' as const, origin: 'backup' as const, ...(req.level === undefined ? {} : { level: req.level }) };
      written = await createArchive(sources, path, {
        ...opts,
        ...(req.signal === undefined ? {} : { signal: req.signal }),
        ...(req.onProgress === undefined ? {} : { onProgress: req.onProgress }),
      });
      const verified = await verifyContent(path, written.sha256, req.signal);
      await writeChecksum(path, verified.sha256);
    } catch (error) {
      await removeBackupFiles(path);
      throw asBackupError(error, `backing up ${req.product} ${req.version} to ${path}`);
    }
    log.info('backup written and verified', { path, sha256: written.sha256, bytes: written.bytes, product: req.product, version: req.version });
    return { path, sha256: written.sha256, bytes: written.bytes };
  }

  /** Refuses before writing when the sources plus a margin do not fit: no half-written backup. */
  async function ensureRoom(req: BackupRequest, sources: ArchiveSource[]): Promise<void> {
    let estimate = 0;
    for (const s of sources) estimate += await treeBytes(s.path, true);
    const margin = ports.marginBytes ?? 1024 * 1024 + Math.ceil(estimate * 0.05);
    const free = await freeBytes(req.backupDir);
    if (estimate + margin > free) {
      throw new OtaError(
        'DISK_FULL',
        `backup of ${req.product} ${req.version} needs about ${estimate + margin} bytes (sources ${estimate} + margin ${margin}) but only ${free} are free in ${req.backupDir}`,
        { details: { backupDir: req.backupDir, estimate, margin, free } },
      );
    }
  }

  async function verifyContent(path: string, expected: string, signal?: AbortSignal): Promise<BackupVerified> {
    const actual = (await hashFile(path)).sha256;
    if (actual !== expected) {
      throw new OtaError('BACKUP_CORRUPT', `backup ${path} does not match its checksum: expected sha256 ${expected}, found ${actual}`, {
        details: { path, expected, actual },
      });
    }
    let entries: number;
    try {
      entries = (await scanPackage(path, limits, signal)).entries;
    } catch (error) {
      if (error instanceof OtaError && (error.code === 'CANCELLED' || error.code === 'IO_FAILED')) throw error;
      throw new OtaError('BACKUP_CORRUPT', `backup ${path} cannot be listed safely: ${(error as Error).message}`, {
        cause: error,
        details: { path, reason: error instanceof OtaError ? error.code : 'unknown' },
      });
    }
    return { path, sha256: actual, bytes: (await stat(path)).size, entries };
  }

  async function verify(path: string, signal?: AbortSignal): Promise<BackupVerified> {
    const recorded = await readChecksum(path);
    return verifyContent(path, recorded, signal);
  }

  async function restore(path: string, destDir: string, signal?: AbortSignal): Promise<ExtractResult> {
    await verify(path, signal);
    const result = await extractPackage(path, destDir, limits, signal);
    log.info('backup restored', { path, destDir, entries: result.entries });
    return result;
  }

  const list = listBackupFiles;

  async function prune(product: string, backupDir: string, keep = 2): Promise<string[]> {
    if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`keep must be a non-negative integer, got ${String(keep)}`);
    const all = await list(product, backupDir);
    const removed: string[] = [];
    for (const old of all.slice(keep)) {
      await removeBackupFiles(old.path);
      removed.push(old.path);
    }
    if (removed.length > 0) {
      await fsyncDir(backupDir);
      log.info('old backups removed', { product, keep, removed });
    }
    return removed;
  }

  return { create, verify, restore, prune, list };
}

async function readChecksum(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path + CHECKSUM_SUFFIX, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new OtaError('BACKUP_CORRUPT', `backup ${path} has no recorded checksum (${path}${CHECKSUM_SUFFIX} is missing)`, { details: { path } });
    }
    throw toOtaError(error, 'IO_FAILED', `reading the checksum of backup ${path}`);
  }
  const m = /^([0-9a-f]{64})\s/.exec(text);
  if (m === null) throw new OtaError('BACKUP_CORRUPT', `checksum file ${path}${CHECKSUM_SUFFIX} is malformed`, { details: { path } });
  return m[1] as string;
}

/** `sha256sum` format, so `sha256sum -c <name>.sha256` works by hand in the backup directory. */
async function writeChecksum(path: string, sha256: string): Promise<void> {
  const name = path.slice(dirname(path).length + 1);
  const target = path + CHECKSUM_SUFFIX;
  const tmp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, `${sha256}  ${name}\n`, { flag: 'wx', mode: 0o600 });
    await fsyncPath(tmp);
    await rename(tmp, target);
    await fsyncDir(dirname(path));
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => {});
    throw error;
  }
}

async function removeBackupFiles(path: string): Promise<void> {
  await rm(path + CHECKSUM_SUFFIX, { force: true }).catch(() => {});
  await rm(path, { force: true }).catch(() => {});
}

async function presentSources(sources: ArchiveSource[]): Promise<ArchiveSource[]> {
  const out: ArchiveSource[] = [];
  for (const s of sources) if (await exists(s.path, { follow: true })) out.push(s);
  return out;
}


/** Bytes of regular files under `path` (following only the top when `follow`). */
async function treeBytes(path: string, follow: boolean): Promise<number> {
  const st = follow ? await stat(path) : await lstat(path);
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let sum = 0;
  for (const name of await readdir(path)) sum += await treeBytes(join(path, name), false);
  return sum;
}

async function defaultFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

function asBackupError(error: unknown, what: string): OtaError {
  const e = toOtaError(error, 'BACKUP_FAILED', what);
  // Disk full, cancellation and corruption keep their meaning; anything else is a failed backup.
  if (e.code === 'DISK_FULL' || e.code === 'CANCELLED' || e.code === 'BACKUP_CORRUPT' || e.code === 'BACKUP_FAILED') return e;
  return new OtaError('BACKUP_FAILED', `${what} failed: ${e.message}`, {
    cause: e,
    details: { ...(e.details ?? {}), reason: e.code },
    retryable: e.retryable,
  });
}

/** The product's backups in `backupDir`, newest first (by the time in their names). */
export async function listBackupFiles(product: string, backupDir: string): Promise<BackupInfo[]> {
  let names: string[];
  try {
    names = await readdir(backupDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw toOtaError(error, 'IO_FAILED', `listing backups in ${backupDir}`);
  }
  const out: BackupInfo[] = [];
  for (const name of names) {
    const parts = parseBackupName(name);
    if (parts === null || parts.product !== product) continue;
    const path = join(backupDir, name);
    const st = await stat(path).catch(() => null);
    if (st === null || !st.isFile()) continue;
    out.push({ path, name, ...parts, bytes: st.size });
  }
  // Newest first; the name breaks ties so the order never depends on readdir.
  return out.sort((a, b) => b.createdAt - a.createdAt || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0));
}

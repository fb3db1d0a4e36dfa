/**
 * The stage step: bring the offered package onto the robot and unpack it into a complete release
 * tree that apply can rename into place.
 *
 *   download  <cacheDir>/<product>/packages/<sha256[0..16]>-<name> (.tar.gz or .tar.zst) (+ .partial while running)
 *   extract   <dirname(releasesDir)>/staging/<product>/<runId>/               (same filesystem as releasesDir)
 *
 * Invariants:
 * - nothing is extracted from a file that does not match the signed length and SHA-256: the
 *   download is verified, the cached package is verified again before reuse, and the extracting
 *   pass's own hash must equal the signed one (or the scan's, for a release without a tree index)
 *   before the tree is accepted: a tree from other bytes is removed whole;
 * - the staging tree is on the same filesystem as releasesDir (st_dev checked) so apply's import is
 *   a rename(2);
 * - idempotent per run id: a re-run finds a complete download (verified, not fetched again) or the
 *   partial (resumed with Range), removes any staging tree an earlier attempt left and extracts
 *   afresh, and returns the same paths;
 * - on failure no staging tree is left; a rejected (hostile) package is also dropped from the
 *   cache; a transient network failure keeps the partial download so the next attempt resumes.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { StageInput, StageOutput, TargetRef } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError, toOtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { ProgressMessage } from '../daemon/event-bus.js';
import { fsyncDir, removeTree } from '../package/durable-fs.js';
import { extractScanned, extractVerified } from '../package/extract.js';
import type { PackageLimits } from '../package/limits.js';
import { scanPackage } from '../package/scan.js';
import { assembleRelease, DELTA_FILES, DELTA_META, parseDeltaMeta, parseIndex, MAX_INDEX_BYTES, type AssembleResult, type TreeIndex } from '../package/tree-index.js';
import { stagingRootFor } from '../release/layout.js';
import type { UpdateRepository } from '../trust/update-repository.js';

export interface StagePorts {
  product: ProductConfig;
  config: Config;
  repository: UpdateRepository;
  clock: Clock;
  logger: Logger;
  /** Progress for the event bus (the daemon adds the product). */
  progress(message: Omit<ProgressMessage, 'product'>): void;
  /** package-rejected events for hostile packages (optional). */
  audit?: AuditSink;
  /**
   * Marks a release whose signed package was rejected, so it is never offered again: the same
   * signed bytes would be rejected again (PACKAGE_* codes are not retryable).
   */
  markBad?(version: string, reason: string, runId: string): void;
  /** Told when a delta fell back to the full package, so the next check offers the package (check.ts deltaFellBack). */
  onDeltaFallback?(version: string, fromVersion: string, code: string): void;
  /** Package caps (entries, bytes); defaults from src/package/limits.ts. */
  limits?: Partial<PackageLimits>;
  /** Free space kept beyond the package's unpacked size before extraction starts. Default 16 MiB. */
  reserveBytes?: number;
}

export type StageStep = (input: StageInput, signal: AbortSignal) => Promise<StageOutput>;

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_RESERVE_BYTES = 16 * 1024 * 1024;

/** Where this product's downloads are cached. */
export function packageCacheDir(cacheDir: string, product: string): string {
  return path.join(cacheDir, product, 'packages');
}

/** The cached file of one package target: content-addressed, so a partial never meets other bytes. */
export function packageCachePath(cacheDir: string, product: string, target: { name: string; sha256: string }): string {
  return path.join(packageCacheDir(cacheDir, product), `${target.sha256.slice(0, 16)}-${path.posix.basename(target.name)}`);
}

export function createStageStep(ports: StagePorts): StageStep {
  const { product, config, repository, clock } = ports;
  const reserveBytes = ports.reserveBytes ?? DEFAULT_RESERVE_BYTES;

  return async function stage(input: StageInput, signal: AbortSignal): Promise<StageOutput> {
    const log = ports.logger.child({ step: 'stage', runId: input.runId });
    const { offer, runId } = input;
    if (input.product !== product.name || offer.product !== product.name) {
      throw new OtaError('INTERNAL', `stage step for ${product.name} was given product ${input.product} and an offer for ${offer.product}`, {
        details: { expected: product.name, product: input.product, offerProduct: offer.product },
      });
    }
    if (!RUN_ID.test(runId) || runId.includes('..')) {
      throw new OtaError('INTERNAL', `run id ${JSON.stringify(runId)} cannot name a staging directory; expected [A-Za-z0-9._-]`, { details: { runId } });
    }

    // ----- the signed tree index, when the release has one (manifest schema 1.1) ----------
    const packagePath = packageCachePath(config.paths.cacheDir, product.name, offer.package);
    const cacheDir = path.dirname(packagePath);
    await mkdirp(cacheDir, 0o700);
    const deltaPath = offer.delta !== undefined ? packageCachePath(config.paths.cacheDir, product.name, offer.delta.target) : null;
    const indexPath = offer.index !== undefined ? packageCachePath(config.paths.cacheDir, product.name, offer.index) : null;
    await pruneCache(cacheDir, [packagePath, deltaPath, indexPath].filter((p): p is string => p !== null).map((p) => path.basename(p)), log);
    let index: TreeIndex | null = null;
    if (offer.index !== undefined && indexPath !== null) index = await fetchIndex(input, indexPath, signal, log);
    else log.info('the release has no tree index (manifest schema 1.0): the staged tree is checked against its package only, and no delta can be used');

    const stagingRoot = stagingRootFor(product);
    const releasesDir = path.resolve(product.releasesDir!);
    await mkdirp(stagingRoot);
    await mkdirp(releasesDir);
    await assertSameDevice(stagingRoot, releasesDir);
    const releaseDir = path.join(stagingRoot, runId);

    // ----- a delta from the installed release, when there is one ------------------------
    let deltaFallback: StageOutput['deltaFallback'];
    if (offer.delta !== undefined && index !== null && deltaPath !== null) {
      await clearStaging(stagingRoot, log);
      const viaDelta = await stageFromDelta(input, index, deltaPath, stagingRoot, releaseDir, signal, log);
      if ('releaseDir' in viaDelta) return viaDelta;
      deltaFallback = viaDelta.fallback;
    }

    // ----- download (or reuse) the verified package --------------------------------------
    if (!(await reuseDownload(packagePath, offer.package, log))) {
      await download(input, offer.package, packagePath, signal, log);
    }

    // ----- extract into a fresh staging tree on the release filesystem -------------------
    await clearStaging(stagingRoot, log);

    try {
      throwIfAborted(signal);
      const unpacked = await unpackPackage({
        packagePath,
        releaseDir,
        stagingRoot,
        target: offer.package,
        index,
        space: { version: offer.version, reserveBytes, minFreeBytes: product.precheck.minFreeBytes },
        limits: ports.limits,
        signal,
        onStart: (total, entries) => ports.progress({ runId, step: 'extract', bytes: 0, total, rateBps: null, etaMs: null, message: `unpacking ${entries} entries` }),
      });
      ports.progress({ runId, step: 'extract', bytes: unpacked.bytes, total: unpacked.bytes, rateBps: null, etaMs: null, message: index !== null ? 'unpacked and verified against the signed tree index' : 'unpacked and verified' });
      log.info('release staged', { version: offer.version, releaseDir, entries: unpacked.entries, bytes: unpacked.bytes, via: 'package', indexVerified: index !== null });
      return { releaseDir, packagePath, via: 'package', indexVerified: index !== null, ...(deltaFallback !== undefined ? { deltaFallback } : {}) };
    } catch (error) {
      const failure = toOtaError(error, 'IO_FAILED', `staging ${offer.product} ${offer.version}`, { releaseDir });
      await removeTree(releaseDir).catch(() => {});
      if (failure.category === 'package' || failure.category === 'trust') {
        // Hostile or corrupt: the same bytes would be rejected again, so do not keep them.
        await fs.rm(packagePath, { force: true });
        ports.audit?.audit({
          kind: 'package-rejected',
          message: `package ${offer.package.name} (${offer.version}) rejected: ${failure.message}`,
          product: product.name,
          runId,
          details: { code: failure.code, target: offer.package.name },
        });
        if (failure.category === 'package') ports.markBad?.(offer.version, `package rejected: ${failure.code}: ${failure.message}`, runId);
        log.error('package rejected; staging removed', { code: failure.code, error: failure.message });
      } else {
        log.warn('staging failed; staging removed', { code: failure.code, error: failure.message });
      }
      throw failure;
    }
  };

  /** Download (or reuse) and parse the signed tree index. */
  async function fetchIndex(input: StageInput, indexPath: string, signal: AbortSignal, log: Logger): Promise<TreeIndex> {
    const ref = input.offer.index!;
    if (ref.length > MAX_INDEX_BYTES) {
      throw new OtaError('RELEASE_INDEX_INVALID', `tree index ${ref.name} is ${ref.length} bytes, expected at most ${MAX_INDEX_BYTES}`, { details: { target: ref.name } });
    }
    if (!(await reuseDownload(indexPath, ref, log))) await repository.downloadTarget(ref, indexPath, { signal });
    const index = parseIndex(await fs.readFile(indexPath), ref.name, { product: product.name, version: input.offer.version });
    if (index.entries.length !== ref.entries || index.bytes !== ref.bytes) {
      throw new OtaError('RELEASE_INDEX_INVALID', `tree index ${ref.name} lists ${index.entries.length} entries and ${index.bytes} bytes; the manifest says ${ref.entries} and ${ref.bytes}`, {
        details: { target: ref.name },
      });
    }
    return index;
  }

  /**
   * Stage from the delta: download it, extract it beside the staging tree by the package rules,
   * then assemble the release from the installed one plus the delta and verify it against
   * the signed index. null when that did not work out for a reason the full package does not share
   * (a corrupt delta, a file changed locally): the caller then stages the full package. Network
   * trouble, cancellation and a full disk are thrown as for a full package (the delta resumes).
   */
  async function stageFromDelta(input: StageInput, index: TreeIndex, deltaPath: string, stagingRoot: string, releaseDir: string, signal: AbortSignal, log: Logger): Promise<StageOutput | { fallback: NonNullable<StageOutput['deltaFallback']> }> {
    const { offer, runId } = input;
    const delta = offer.delta!;
    const currentDir = await fs.realpath(product.installPath).catch(() => null);
    if (currentDir === null) {
      const message = `no installed release at ${product.installPath} to assemble from: downloading the full package`;
      log.info(message, { installPath: product.installPath });
      return { fallback: { code: 'DELTA_INVALID', message } };
    }
    try {
      if (!(await reuseDownload(deltaPath, delta.target, log))) await download(input, delta.target, deltaPath, signal, log);
      throwIfAborted(signal);
      const result = await assembleFromDelta({
        deltaPath,
        releaseDir,
        stagingRoot,
        target: delta.target,
        index,
        currentDir,
        preservedPaths: product.preservedPaths,
        ids: { product: product.name, fromVersion: delta.fromVersion, toVersion: offer.version },
        space: { version: offer.version, reserveBytes, minFreeBytes: product.precheck.minFreeBytes },
        limits: ports.limits,
        signal,
        onStart: (total) => ports.progress({ runId, step: 'extract', bytes: 0, total, rateBps: null, etaMs: null, message: `assembling from the delta from ${delta.fromVersion} and the installed release` }),
      });
      ports.progress({ runId, step: 'extract', bytes: index.bytes, total: index.bytes, rateBps: null, etaMs: null, message: 'assembled from the delta and verified against the signed tree index' });
      log.info('release staged', { version: offer.version, releaseDir, via: 'delta', method: result.method, fromVersion: delta.fromVersion, fromDelta: result.fromDelta, unchanged: result.unchanged, unchangedBytes: result.unchangedBytes, deltaBytes: delta.target.length });
      return { releaseDir, packagePath: deltaPath, via: 'delta', indexVerified: true };
    } catch (error) {
      const failure = toOtaError(error, 'IO_FAILED', `staging ${offer.product} ${offer.version} from a delta`, { releaseDir });
      await removeTree(releaseDir).catch(() => {});
      if (failure.category !== 'package' && failure.category !== 'trust') throw failure;
      // A delta that cannot give the signed tree: the full package can. Say so everywhere.
      await fs.rm(deltaPath, { force: true });
      ports.onDeltaFallback?.(offer.version, delta.fromVersion, failure.code);
      const message = `delta from ${delta.fromVersion} not used: ${failure.code}: ${failure.message}; downloading the full package (${offer.package.length} bytes) instead`;
      log.warn(message, { code: failure.code, target: delta.target.name, ...(failure.details ?? {}) });
      ports.audit?.audit({ kind: 'delta-fallback', message, product: product.name, runId, details: { code: failure.code, target: delta.target.name, fromVersion: delta.fromVersion, ...(failure.details?.path !== undefined ? { path: failure.details.path } : {}) } });
      ports.progress({ runId, step: 'download', bytes: 0, total: offer.package.length, rateBps: null, etaMs: null, message });
      return { fallback: { code: failure.code, message } };
    }
  }

  /** A complete download from an earlier attempt is reused only after its hash is checked again. */
  async function reuseDownload(packagePath: string, target: TargetRef, log: Logger): Promise<boolean> {
    const stat = await fs.stat(packagePath).catch(() => null);
    if (stat === null) return false;
    try {
      await repository.verifyFile(target, packagePath);
      log.info('package already downloaded and verified', { packagePath });
      return true;
    } catch (error) {
      log.warn('cached package does not match its signed target; downloading again', { packagePath, code: isOtaError(error) ? error.code : String(error) });
      await fs.rm(packagePath, { force: true });
      return false;
    }
  }

  async function download(input: StageInput, target: TargetRef, packagePath: string, signal: AbortSignal, log: Logger): Promise<void> {
    const { offer, runId } = input;
    const startMs = clock.monotonic();
    let startBytes: number | null = null;
    const onProgress = (p: { bytes: number; total: number; rateBps?: number; etaMs?: number | null }): void => {
      startBytes ??= p.bytes;
      const elapsed = clock.monotonic() - startMs;
      const rateBps = p.rateBps ?? (elapsed > 0 ? Math.round(((p.bytes - startBytes) * 1000) / elapsed) : null);
      const etaMs = p.etaMs !== undefined ? p.etaMs : rateBps !== null && rateBps > 0 ? Math.round(((p.total - p.bytes) * 1000) / rateBps) : null;
      ports.progress({ runId, step: 'download', bytes: p.bytes, total: p.total, rateBps, etaMs });
    };
    log.info(target.name === offer.package.name ? 'downloading package' : 'downloading delta', { target: target.name, bytes: target.length, ...(product.network.maxRateBps > 0 ? { rateCapBps: product.network.maxRateBps } : {}) });
    try {
      await repository.downloadTarget(target, packagePath, { signal, onProgress });
    } catch (error) {
      const failure = isOtaError(error) ? error : toOtaError(error, 'IO_FAILED', `downloading ${target.name}`);
      if (failure.code === 'DISK_FULL') {
        // The downloader already removed its partial; make sure nothing else is left behind.
        await Promise.all([packagePath, `${packagePath}.partial`, `${packagePath}.part`].map((f) => fs.rm(f, { force: true })));
      }
      throw failure;
    }
  }
}

/** Free space the new tree needs beyond its own size, and for which release (the DISK_FULL message). */
export interface StageSpace {
  version: string;
  reserveBytes: number;
  minFreeBytes: number;
}

/**
 * Unpacks a package into a fresh staging tree: the stage step's own work after the download (the
 * benchmark runs this function too). The package file was just verified against its signed length
 * and SHA-256 (download or reuse); the one pass that writes it hashes it again and must agree.
 *
 * With the signed tree index: one pass (extractVerified). The free space is taken from the index
 * (the exact unpacked size, signed) before anything is written; every entry is judged by the
 * package rules and held to the index before a byte of it is written (so no more than the index's
 * size is ever written), every file is hashed as it is written, the tree on disk is then walked
 * against the index, and one filesystem sync makes it durable.
 *
 * Without an index (a schema 1.0 manifest): the package is scanned first (its real unpacked size
 * for the free-space check), then written by extractScanned, which judges every entry again.
 */
export async function unpackPackage(opts: {
  packagePath: string;
  releaseDir: string;
  stagingRoot: string;
  target: { name: string; sha256: string };
  index: TreeIndex | null;
  space: StageSpace;
  limits?: Partial<PackageLimits> | undefined;
  signal: AbortSignal;
  onStart?(totalBytes: number, entries: number): void;
}): Promise<{ entries: number; bytes: number }> {
  const { packagePath, releaseDir, stagingRoot, target, index, space, limits, signal } = opts;
  if (index !== null) {
    // The index knows the real unpacked size, and the writer holds every entry to it.
    await ensureSpace(stagingRoot, index.bytes + space.reserveBytes + space.minFreeBytes, space.version, {
      unpackedBytes: index.bytes,
      reserveBytes: space.reserveBytes,
      minFreeBytes: space.minFreeBytes,
    });
    opts.onStart?.(index.bytes, index.entries.length);
    await extractVerified(packagePath, releaseDir, { sha256: target.sha256, index, releaseTree: true, limits, signal });
    return { entries: index.entries.length, bytes: index.bytes };
  }
  const scan = await scanPackage(packagePath, limits, signal);
  if (scan.sha256 !== target.sha256) {
    // The file changed after it was verified: never extract bytes nobody signed.
    throw new OtaError('TRUST_HASH_MISMATCH', `package ${packagePath} has SHA-256 ${scan.sha256} while scanning; the signed value is ${target.sha256}`, {
      details: { target: target.name, expected: target.sha256, actual: scan.sha256 },
    });
  }
  // The scan knows the real unpacked size (the pre-check could only estimate it from the
  // download): the new release stays on disk beside the kept previous release and the backups
  // already written, and the product's minFreeBytes must still be free afterwards.
  await ensureSpace(stagingRoot, scan.totalBytes + space.reserveBytes + space.minFreeBytes, space.version, {
    unpackedBytes: scan.totalBytes,
    reserveBytes: space.reserveBytes,
    minFreeBytes: space.minFreeBytes,
  });
  opts.onStart?.(scan.totalBytes, scan.entries);
  await extractScanned(packagePath, releaseDir, scan, limits, signal);
  return { entries: scan.entries, bytes: scan.totalBytes };
}

/**
 * Builds the release from a delta (already verified against its signed length and SHA-256) and the
 * installed release in `currentDir`: the stage step's own work after the download (the benchmark
 * runs this function too). The delta is written in one pass by the package rules into a scratch
 * tree beside the staging tree (its own hash must agree with the signed one; no sync of its own:
 * its files are moved into the new tree, which is made durable as a whole), its delta.json must
 * name this step, then assembleRelease builds the tree and verifies it completely against the
 * signed index. The scratch tree is always removed.
 */
export async function assembleFromDelta(opts: {
  deltaPath: string;
  releaseDir: string;
  stagingRoot: string;
  target: { name: string; sha256: string };
  index: TreeIndex;
  currentDir: string;
  preservedPaths?: string[] | undefined;
  ids: { product: string; fromVersion: string; toVersion: string };
  space: StageSpace;
  limits?: Partial<PackageLimits> | undefined;
  signal: AbortSignal;
  onStart?(totalBytes: number): void;
}): Promise<AssembleResult> {
  const { deltaPath, releaseDir, stagingRoot, target, index, space, signal } = opts;
  const deltaDir = `${releaseDir}.delta`;
  try {
    // The delta's files are renamed into the new tree; the rest is copied (or reflinked) from the
    // installed release, so the new tree needs its full size: counted as if nothing were shared.
    await ensureSpace(stagingRoot, index.bytes + space.reserveBytes + space.minFreeBytes, space.version, {
      unpackedBytes: index.bytes,
      reserveBytes: space.reserveBytes,
      minFreeBytes: space.minFreeBytes,
    });
    opts.onStart?.(index.bytes);
    const extracted = await extractVerified(deltaPath, deltaDir, { sha256: target.sha256, durable: false, limits: opts.limits, signal });
    parseDeltaMeta(await readBounded(path.join(deltaDir, DELTA_META)), opts.ids, target.name);
    const prefix = `${DELTA_FILES}/`;
    const carriedHashes = new Map<string, string>();
    for (const [p, sha256] of extracted.fileHashes) if (p.startsWith(prefix)) carriedHashes.set(p.slice(prefix.length), sha256);
    const result = await assembleRelease({
      index,
      currentDir: opts.currentDir,
      deltaFilesDir: path.join(deltaDir, DELTA_FILES),
      destDir: releaseDir,
      carriedHashes,
      signal,
      ...(opts.preservedPaths !== undefined ? { preservedPaths: opts.preservedPaths } : {}),
    });
    await fsyncDir(stagingRoot).catch(() => {});
    return result;
  } finally {
    await removeTree(deltaDir).catch(() => {});
  }
}

async function mkdirp(dir: string, mode?: number): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, ...(mode === undefined ? {} : { mode }) });
  } catch (error) {
    throw toOtaError(error, 'IO_FAILED', `creating ${dir}`, { dir });
  }
}

async function assertSameDevice(stagingRoot: string, releasesDir: string): Promise<void> {
  const [a, b] = await Promise.all([fs.stat(stagingRoot), fs.stat(releasesDir)]);
  if (a.dev !== b.dev) {
    throw new OtaError(
      'CONFIG_INVALID',
      `staging directory ${stagingRoot} and releases directory ${releasesDir} are on different filesystems (device ${a.dev} and ${b.dev}); they must share one so a staged release is moved into place by rename(2)`,
      { details: { stagingRoot, releasesDir, stagingDev: a.dev, releasesDev: b.dev } },
    );
  }
}

/** Staging trees of earlier runs (or an earlier attempt of this one) are never reused: remove them. */
async function clearStaging(stagingRoot: string, log: Logger): Promise<void> {
  const names = await fs.readdir(stagingRoot).catch(() => [] as string[]);
  for (const name of names) {
    const dir = path.join(stagingRoot, name);
    log.info('removing an earlier staging tree', { dir });
    await removeTree(dir).catch((error: unknown) => {
      throw toOtaError(error, 'IO_FAILED', `removing the earlier staging tree ${dir}`, { dir });
    });
  }
  if (names.length > 0) await fsyncDir(stagingRoot).catch(() => {});
}

/** Downloads of other releases are of no further use once a newer one is being staged. */
async function pruneCache(dir: string, keep: string[], log: Logger): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (keep.some((k) => name === k || name === `${k}.partial`)) continue;
    log.debug('removing a stale cached download', { file: name });
    await fs.rm(path.join(dir, name), { force: true, recursive: true }).catch(() => {});
  }
}

async function ensureSpace(dir: string, needed: number, version: string, parts: { unpackedBytes: number; reserveBytes: number; minFreeBytes: number }): Promise<void> {
  const stats = await fs.statfs(dir).catch(() => null);
  if (stats === null) return;
  const free = stats.bavail * stats.bsize;
  if (free < needed) {
    throw new OtaError(
      'DISK_FULL',
      `not enough space in ${dir} to unpack release ${version}: ${free} bytes free, ${needed} needed (unpacked ${parts.unpackedBytes} + reserve ${parts.reserveBytes} + precheck.minFreeBytes ${parts.minFreeBytes})`,
      { details: { dir, freeBytes: free, neededBytes: needed, ...parts } },
    );
  }
}

/** delta.json is small; a huge one is not a delta. */
async function readBounded(file: string): Promise<Buffer> {
  const st = await fs.lstat(file).catch(() => null);
  if (st === null || !st.isFile()) throw new OtaError('DELTA_INVALID', `the delta has no ${DELTA_META}`, { details: { file } });
  if (st.size > MAX_INDEX_BYTES) throw new OtaError('DELTA_INVALID', `the delta's ${DELTA_META} is ${st.size} bytes`, { details: { file } });
  return fs.readFile(file);
}

function throwIfAborted(signal: AbortSignal): void {
  if (!signal.aborted) return;
  const reason: unknown = signal.reason;
  if (isOtaError(reason)) throw reason;
  throw new OtaError('CANCELLED', 'staging was cancelled', { cause: reason });
}

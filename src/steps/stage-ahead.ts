/**
 * Download ahead: a release the robot's app scheduled for the install slot (SCHEDULE_3AM) is
 * downloaded, verified and staged during the day by the ordinary stage step, and a record of it is
 * written beside the staged tree. In the slot the stage step finds the record, verifies the tree
 * again against the signed tree index, and hands it to apply without downloading anything.
 *
 *   tree    <staging root>/<runId>/              (the stage step's own place)
 *   record  <staging root>/.staged-ahead.json    (written atomically once the tree is complete)
 *
 * Invariants:
 * - no record without a complete tree that was verified against the signed index when it was
 *   staged: the record is written last (atomic rename, fsynced), and removed first on discard;
 * - a staged-ahead tree is used only when its record names the release the run installs (version,
 *   package and index hashes) and the tree matches the signed index again at that moment; anything
 *   else discards it (said in the log and the audit trail) and the step stages normally;
 * - a release without a signed tree index (manifest schema 1.0) cannot be re-verified as a tree: only
 *   its download is kept ahead (its hash is checked again before extraction, as for any cached download).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Offer, StageInput, StageOutput, TargetRef } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { atomicWriteFile, fsyncDir } from '../core/atomic-file.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { removeTree } from '../package/durable-fs.js';
import { parseIndex, verifyTree } from '../package/tree-index.js';
import { stagingRootFor } from '../release/layout.js';
import type { UpdateRepository } from '../trust/update-repository.js';
import { packageCachePath, type StageStep } from './stage.js';

export const AHEAD_RECORD_NAME = '.staged-ahead.json';
const FORMAT = 'otad-staged-ahead/1';

/** What was staged ahead, kept beside the tree. */
export interface AheadRecord {
  format: typeof FORMAT;
  product: string;
  /** The run the tree was staged for (its directory name under the staging root). */
  runId: string;
  version: string;
  package: TargetRef;
  index: TargetRef | null;
  /** False for a release without a signed tree index: only the download was kept. */
  tree: boolean;
  releaseDir: string;
  packagePath: string;
  via: 'package' | 'delta';
  /** What was downloaded for it (delta or package length). */
  downloadBytes: number;
  stagedAt: number;
  /** How long downloading and staging took, ms. */
  stagingMs: number;
}

export interface AheadPorts {
  product: ProductConfig;
  config: Config;
  repository: UpdateRepository;
  clock: Clock;
  logger: Logger;
  audit?: AuditSink;
  /** Told of every discard (the daemon's status shows the last one). */
  events?: AheadEvents;
}

export interface AheadEvents {
  discarded?: (version: string, reason: string) => void;
  used?: (version: string) => void;
}

export function aheadRecordPath(product: ProductConfig): string {
  return path.join(stagingRootFor(product), AHEAD_RECORD_NAME);
}

/** The record on disk, or null (none, or one that cannot be read: then it is removed, with its tree). */
export async function readAheadRecord(product: ProductConfig, log?: Logger): Promise<AheadRecord | null> {
  const file = aheadRecordPath(product);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return null;
  }
  try {
    const r = JSON.parse(text) as AheadRecord;
    if (r.format !== FORMAT || r.product !== product.name || typeof r.releaseDir !== 'string' || path.dirname(r.releaseDir) !== stagingRootFor(product)) throw new Error('not a staged-ahead record of this product');
    return r;
  } catch (error) {
    log?.warn('the staged-ahead record cannot be read: it and its tree are removed', { file, error: String(error) });
    await fs.rm(file, { force: true }).catch(() => {});
    return null;
  }
}

/** Does this record describe the release of this offer? null: yes; else why not. */
export function recordMismatch(record: AheadRecord, offer: Offer): string | null {
  if (record.version !== offer.version) return `superseded by ${offer.version}`;
  if (record.package.sha256 !== offer.package.sha256) return `the signed package of ${offer.version} is not the one staged ahead`;
  if ((record.index?.sha256 ?? null) !== (offer.index?.sha256 ?? null)) return `the signed tree index of ${offer.version} is not the one staged ahead`;
  return null;
}

/** Remove the record, then the tree it names (a crash in between leaves a tree without a record: the next staging clears it). */
export async function discardAhead(ports: Pick<AheadPorts, 'product' | 'logger' | 'audit' | 'events'>, record: AheadRecord, reason: string, runId?: string): Promise<void> {
  const root = stagingRootFor(ports.product);
  await fs.rm(path.join(root, AHEAD_RECORD_NAME), { force: true });
  await fsyncDir(root).catch(() => {});
  if (record.tree) await removeTree(record.releaseDir).catch(() => {});
  const message = `staged-ahead release ${record.version} discarded: ${reason}`;
  ports.logger.warn(message, { version: record.version, releaseDir: record.releaseDir, reason, ...(runId ? { runId } : {}) });
  ports.audit?.audit({ kind: 'staged-ahead', message, product: ports.product.name, ...(runId ? { runId } : {}), details: { action: 'discarded', version: record.version, reason } });
  ports.events?.discarded?.(record.version, reason);
}

/**
 * Outside a run nothing else owns the staging place: a tree there without a record (a download
 * ahead interrupted by a crash or power cut) is removed, so a restart never keeps a half state.
 */
export async function clearAheadLeftovers(ports: Pick<AheadPorts, 'product' | 'logger'>): Promise<void> {
  const root = stagingRootFor(ports.product);
  const record = await readAheadRecord(ports.product, ports.logger);
  const names = await fs.readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    if (name === AHEAD_RECORD_NAME) continue;
    const dir = path.join(root, name);
    if (record !== null && record.tree && dir === record.releaseDir) continue;
    ports.logger.info('removing a staging tree no staged-ahead record names (an interrupted download ahead, or an earlier run)', { dir });
    await removeTree(dir).catch(() => {});
  }
}

/**
 * Verify a staged-ahead tree against the offer's signed tree index (the index file is itself
 * checked against its signed hash first). Throws the verification's error when it does not match.
 */
export async function reverifyAhead(ports: AheadPorts, record: AheadRecord, offer: Offer, signal?: AbortSignal): Promise<void> {
  const mismatch = recordMismatch(record, offer);
  if (mismatch !== null) throw new OtaError('STAGED_AHEAD_SUPERSEDED', mismatch, { details: { staged: record.version, offered: offer.version } });
  if (!record.tree || offer.index === undefined) {
    // Only the download was kept: its signed hash is checked again here (and by the stage step).
    await ports.repository.verifyFile(offer.package, record.packagePath);
    return;
  }
  const indexPath = packageCachePath(ports.config.paths.cacheDir, ports.product.name, offer.index);
  await ports.repository.verifyFile(offer.index, indexPath);
  const index = parseIndex(await fs.readFile(indexPath), offer.index.name, { product: ports.product.name, version: offer.version });
  const st = await fs.lstat(record.releaseDir).catch(() => null);
  if (st === null || !st.isDirectory()) throw new OtaError('RELEASE_TREE_MISMATCH', `the staged-ahead tree ${record.releaseDir} is missing`, { details: { path: record.releaseDir } });
  await verifyTree(record.releaseDir, index, signal, new Set(), 'none');
}

/**
 * Stage a scheduled release now, with the stage step itself, and write the record. A failure
 * leaves no record (the stage step removes its tree; a partial download stays to be resumed).
 */
export async function stageAhead(ports: AheadPorts, stage: StageStep, input: StageInput, signal: AbortSignal): Promise<AheadRecord> {
  const { product, clock } = ports;
  const root = stagingRootFor(product);
  await fs.rm(path.join(root, AHEAD_RECORD_NAME), { force: true }).catch(() => {});
  const t0 = clock.monotonic();
  const out = await stage(input, signal);
  const tree = out.indexVerified === true;
  if (!tree) {
    // Without a signed index the tree could not be verified again in the slot: keep only the download.
    await removeTree(out.releaseDir).catch(() => {});
  }
  const record: AheadRecord = {
    format: FORMAT,
    product: product.name,
    runId: input.runId,
    version: input.offer.version,
    package: input.offer.package,
    index: input.offer.index ? { name: input.offer.index.name, length: input.offer.index.length, sha256: input.offer.index.sha256 } : null,
    tree,
    releaseDir: out.releaseDir,
    packagePath: out.packagePath,
    via: out.via ?? 'package',
    downloadBytes: (out.via === 'delta' ? input.offer.delta?.target.length : undefined) ?? input.offer.package.length,
    stagedAt: clock.now(),
    stagingMs: Math.round(clock.monotonic() - t0),
  };
  await atomicWriteFile(path.join(root, AHEAD_RECORD_NAME), JSON.stringify(record), { mode: 0o600 });
  await fsyncDir(root).catch(() => {});
  const message = tree
    ? `release ${record.version} staged ahead of the install slot (${record.via}, ${record.downloadBytes} bytes downloaded, verified against the signed tree index)`
    : `release ${record.version} downloaded ahead of the install slot (${record.downloadBytes} bytes; no signed tree index, so it is unpacked in the slot)`;
  ports.logger.info(message, { runId: input.runId, version: record.version, releaseDir: record.releaseDir, stagingMs: record.stagingMs, tree });
  ports.audit?.audit({ kind: 'staged-ahead', message, product: product.name, runId: input.runId, details: { action: 'staged', version: record.version, tree, downloadBytes: record.downloadBytes } });
  return record;
}

/**
 * The stage step of a run, with download ahead: a record for this release → verify the tree again
 * and use it (renamed to this run's directory when an earlier run staged it); no record, or one
 * that fails → discard it and stage normally.
 */
export function withStagedAhead(stage: StageStep, ports: AheadPorts): StageStep {
  return async function stageUsingAhead(input, signal) {
    const log = ports.logger.child({ step: 'stage', runId: input.runId });
    const record = await readAheadRecord(ports.product, log);
    if (record === null) return stage(input, signal);
    try {
      await reverifyAhead(ports, record, input.offer, signal);
    } catch (error) {
      const e = toOtaError(error, 'IO_FAILED', `verifying the staged-ahead release ${record.version}`);
      if (e.code === 'CANCELLED') throw e;
      const reason = e.code === 'STAGED_AHEAD_SUPERSEDED' ? e.message : `it failed verification before the switch (${e.code}: ${e.message}); staged again from the signed package (downloaded again unless the cached download still matches its signed hash)`;
      await discardAhead({ ...ports, logger: log }, record, reason, input.runId);
      return stage(input, signal);
    }
    if (!record.tree) {
      log.info('using the download made ahead of the slot', { version: record.version, packagePath: record.packagePath });
      await fs.rm(aheadRecordPath(ports.product), { force: true });
      return stage(input, signal);
    }
    const root = stagingRootFor(ports.product);
    let releaseDir = record.releaseDir;
    if (path.basename(releaseDir) !== input.runId) {
      const target = path.join(root, input.runId);
      await removeTree(target).catch(() => {});
      await fs.rename(releaseDir, target);
      releaseDir = target;
    }
    // From here on the tree is this run's staged tree like any other: the record goes.
    await fs.rm(path.join(root, AHEAD_RECORD_NAME), { force: true });
    await fsyncDir(root).catch(() => {});
    const message = `using release ${record.version} staged ahead (verified again against the signed tree index just now): nothing to download`;
    log.info(message, { version: record.version, releaseDir, stagedAt: record.stagedAt, via: 'ahead' });
    ports.audit?.audit({ kind: 'staged-ahead', message, product: ports.product.name, runId: input.runId, details: { action: 'used', version: record.version } });
    ports.events?.used?.(record.version);
    const out: StageOutput = { releaseDir, packagePath: record.packagePath, via: record.via, indexVerified: true, stagedAhead: true };
    return out;
  };
}

/** What the daemon's download-ahead controller may do for one product (built with its steps). */
export interface AheadOps {
  product: string;
  stageAhead(input: StageInput, signal: AbortSignal): Promise<AheadRecord>;
  record(): Promise<AheadRecord | null>;
  reverify(record: AheadRecord, offer: Offer, signal?: AbortSignal): Promise<void>;
  discard(record: AheadRecord, reason: string, runId?: string): Promise<void>;
  clearLeftovers(): Promise<void>;
  /** The daemon listens here for discards made by the slot's stage step. */
  events: AheadEvents;
}

export function aheadOps(ports: AheadPorts, stage: StageStep): AheadOps {
  const events = ports.events ?? {};
  return {
    events,
    clearLeftovers: () => clearAheadLeftovers(ports),
    product: ports.product.name,
    stageAhead: (input, signal) => stageAhead(ports, stage, input, signal),
    record: () => readAheadRecord(ports.product, ports.logger),
    reverify: (record, offer, signal) => reverifyAhead(ports, record, offer, signal),
    discard: (record, reason, runId) => discardAhead(ports, record, reason, runId),
  };
}

/** The real steps of a rehearsal: nothing here touches the install path, the services or the machine. */
export interface RehearsalSteps {
  check: (input: import('../../machines/types.js').CheckInput, signal: AbortSignal) => Promise<import('../../machines/types.js').CheckOutput>;
  preCheck: (input: import('../../machines/types.js').PreCheckInput, signal: AbortSignal) => Promise<import('../../machines/types.js').PreCheckOutput>;
  /** Stages into the scratch folder (its own download cache and staging root). */
  stage: StageStep;
  /** The units an install would stop and start, and by which manager. */
  services(): Promise<{ kind: string; units: string[] }>;
}

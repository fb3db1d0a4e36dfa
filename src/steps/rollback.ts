/**
 * The rollback step: undo a run (automatic after a failed apply or validation, after a crash the
 * recovery policy decided to undo, or a manual ROLLBACK of the live release).
 *
 *   plan (pure, from the apply journal, the link on disk and the input) → record the plan →
 *   switch back to the previous release (stop, switch, start), or restore the latest verified
 *   backup into a fresh release and switch to it, or keep what is live → remove the failed
 *   release → clear the apply journal → mark the failed version bad → probation of the restored
 *   release (a failure there is ROLLBACK_FAILED: the machine goes to failed, a person looks).
 *
 * Idempotent, keyed by the run id: the plan is written to `<journalDir>/<product>.rollback.json`
 * before anything moves, so a re-run after a crash carries out the SAME plan (it never rolls
 * back one release further), and a finished plan returns its recorded result.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import type { RollbackInput, RollbackOutput } from '../../machines/types.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseBackupName } from '../backup/naming.js';
import { runProbation } from '../health/probation.js';
import { removeTree } from '../package/durable-fs.js';
import { readJournalFile, resolveInterrupted, type ApplyJournalEntry } from '../release/journal.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import { compareReleaseNames, stagingRootFor, type ReleaseStore } from '../release/layout.js';
import type { BadMark } from '../store/store.js';
import { isErrno } from '../release/switch.js';
import { applyJournalOf, checkpoint, markDowntime, releaseStoreOf, sleepOf, type ExecutionPorts } from './ports.js';
import { clearStaging } from '../release/staging.js';
import { readReleaseMarker } from '../release/marker.js';
import { releaseProbes } from '../health/release-probes.js';
import { startServices, stopServices } from '../services/choice.js';

export type RollbackStep = (input: RollbackInput, signal: AbortSignal) => Promise<RollbackOutput>;

// ----- the plan (pure) -----------------------------------------------------------------------

export interface RollbackFacts {
  /** The apply journal, whatever run wrote it. */
  journal: ApplyJournalEntry | null;
  /** The version the install link resolves to (null: missing or not a release). */
  live: string | null;
  /** `previousVersion` from the live release's marker. */
  livePrevious: string | null;
  /** Release versions present in the releases directory. */
  releases: readonly string[];
  /** The version the run was installing (applied, else offered), null for a manual rollback from idle. */
  attempted: string | null;
  /** `applied.fromRelease` when the run got through apply. */
  appliedFrom: string | null;
}

export type RollbackPlan =
  /** Switch the link back to `target`, a release on disk. */
  | { action: 'switch'; failed: string | null; target: string }
  /** Restore a backup (preferably of `prefer`) and switch to it; without a usable backup, `otherwise`. */
  | { action: 'restore'; failed: string | null; prefer: string | null; otherwise: 'fail' | 'keep' }
  /**
   * The link already is where it must be (or nothing was ever installed): restart, clean up.
   * `markBad` is false when the failed release never ran (apply stopped before its journal, for
   * example a power cut during the import): that proves nothing against the version.
   */
  | { action: 'keep'; failed: string | null; live: string | null; method: RollbackOutput['method']; markBad: boolean }
  /** A first install is undone: the link is removed (there was nothing before). */
  | { action: 'unlink'; failed: string };

/**
 * What to undo and where to go, from the facts alone. The journal, when there is one, is the
 * most precise account of what the interrupted or failed apply did; without one, the run either
 * never got as far as the journal (only a never-live release to clean up) or is a manual
 * rollback of the live release to the one its marker names as previous.
 */
export function planRollback(f: RollbackFacts): RollbackPlan {
  const onDisk = (v: string | null): v is string => v !== null && f.releases.includes(v);
  if (f.journal !== null) {
    const { from, to } = f.journal;
    const where = resolveInterrupted(f.journal, f.live);
    // 'complete' only says the apply finished; the link says where it stands now.
    const onFrom = where.kind === 'not-switched' || (where.kind === 'complete' && f.live === from && from !== to);
    if (onFrom) return { action: 'keep', failed: to, live: from, method: from === null ? 'nothing-to-undo' : 'previous-release', markBad: true };
    const onTo = where.kind === 'switched' || (where.kind === 'complete' && f.live === to);
    if (from === null) {
      // A first install: there is no earlier release to return to.
      return onTo ? { action: 'unlink', failed: to } : { action: 'keep', failed: to, live: f.live, method: 'nothing-to-undo', markBad: true };
    }
    if (onDisk(from)) return { action: 'switch', failed: to, target: from };
    return { action: 'restore', failed: to, prefer: from, otherwise: 'fail' };
  }
  if (f.attempted !== null && f.attempted !== f.live) {
    // Apply failed (or was killed) before its journal: the new release never went live.
    return { action: 'keep', failed: f.attempted, live: f.live, method: 'nothing-to-undo', markBad: false };
  }
  if (f.live === null) return { action: 'keep', failed: null, live: null, method: 'nothing-to-undo', markBad: false };
  const previous = f.appliedFrom ?? f.livePrevious;
  if (previous !== null && previous !== f.live && onDisk(previous)) return { action: 'switch', failed: f.live, target: previous };
  return { action: 'restore', failed: f.live, prefer: previous, otherwise: 'keep' };
}

// ----- the durable record of a rollback ------------------------------------------------------

/** A plan with every choice made (the backup picked), as recorded before anything moves. */
export type ResolvedRollback =
  | { action: 'switch'; failed: string | null; target: string }
  | { action: 'restore'; failed: string | null; backup: { path: string; version: string } }
  | { action: 'keep'; failed: string | null; live: string | null; method: RollbackOutput['method']; markBad: boolean }
  | { action: 'unlink'; failed: string };

export interface RollbackRecord {
  schema: 1;
  product: string;
  runId: string;
  reason: string;
  plan: ResolvedRollback;
  phase: 'planned' | 'restored' | 'done';
  output: RollbackOutput | null;
  updatedAt: number;
}

export function rollbackRecordFile(journalDir: string, product: string): string {
  return path.join(journalDir, `${product}.rollback.json`);
}

async function readRecord(file: string, log: Logger): Promise<RollbackRecord | null> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<RollbackRecord>;
    if (parsed.schema === 1 && typeof parsed.runId === 'string' && typeof parsed.plan === 'object' && parsed.plan !== null) return parsed as RollbackRecord;
    log.warn('rollback record is not valid; ignored', { file });
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) log.warn('rollback record unreadable; ignored', { file, error: String(error) });
  }
  return null;
}

async function writeRecord(file: string, record: RollbackRecord): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await atomicWriteFile(file, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
}

export function outputOf(plan: ResolvedRollback): RollbackOutput {
  switch (plan.action) {
    case 'switch':
      return { restoredVersion: plan.target, method: 'previous-release' };
    case 'restore':
      return { restoredVersion: plan.backup.version, method: 'backup' };
    case 'keep':
      return { restoredVersion: plan.live, method: plan.method };
    case 'unlink':
      return { restoredVersion: null, method: 'nothing-to-undo' };
  }
}

// ----- the step ------------------------------------------------------------------------------

const RESTORE_PREFIX = '.restore-';
const ROLLBACK_WINDOW_CAP_MS = 30_000;

export function createRollback(ports: ExecutionPorts): RollbackStep {
  return async function rollback(input, signal) {
    const log = ports.logger.child({ step: 'rollback', runId: input.runId });
    const store = releaseStoreOf(ports);
    const journal = applyJournalOf(ports);
    const recordFile = rollbackRecordFile(ports.journalDir, ports.product.name);
    try {
      await store.recover();
      const existing = await readRecord(recordFile, log);
      let record: RollbackRecord;
      if (existing !== null && existing.runId === input.runId && existing.product === ports.product.name) {
        record = existing;
        if (record.phase === 'done' && record.output !== null) {
          await clearJournalOf(journal, record.plan, log);
          log.info('rollback of this run already finished', { ...record.output });
          return record.output;
        }
        log.info('resuming an interrupted rollback with its recorded plan', { plan: record.plan, phase: record.phase });
      } else {
        const plan = await resolvePlan(ports, store, input, await readJournalForRollback(journal.file, log), log, signal);
        record = { schema: 1, product: ports.product.name, runId: input.runId, reason: input.reason, plan, phase: 'planned', output: null, updatedAt: ports.clock.now() };
        await writeRecord(recordFile, record);
        log.info('rollback planned', { plan, reason: input.reason });
      }
      await checkpoint(ports, 'rollback:planned');

      const output = outputOf(record.plan);
      await carryOut(ports, store, record.plan, input.runId, log, signal);
      await clearJournalOf(journal, record.plan, log);
      record = { ...record, phase: 'restored', updatedAt: ports.clock.now() };
      await writeRecord(recordFile, record);
      await checkpoint(ports, 'rollback:restored');

      const failed = record.plan.failed;
      if (failed !== null && failed !== output.restoredVersion && shouldMarkBad(input, record.plan)) {
        const mark = badMarkOf(input, ports.clock.now());
        ports.store?.markBad(ports.product.name, failed, mark);
        log.warn('version marked bad: it will not be offered again automatically', { version: failed, ...mark });
      } else if (failed !== null && failed !== output.restoredVersion) {
        log.info('the release rolled back from is not marked bad: a later check may offer it again', { version: failed, cause: input.cause });
      }
      if (output.restoredVersion !== null) await probation(ports, store, output.restoredVersion, input.runId, log, signal);

      await writeRecord(recordFile, { ...record, phase: 'done', output, updatedAt: ports.clock.now() });
      await checkpoint(ports, 'rollback:done');
      ports.audit?.audit({
        kind: 'rollback',
        message: `${ports.product.name} rolled back${failed === null ? '' : ` from ${failed}`} to ${output.restoredVersion ?? 'nothing'} (${output.method}): ${input.reason}`,
        product: ports.product.name,
        runId: input.runId,
        details: { failed, ...output, reason: input.reason },
      });
      log.info('rollback done', { ...output, failed });
      return output;
    } catch (error) {
      const e = toOtaError(error, 'ROLLBACK_FAILED', `rolling back ${ports.product.name}`, { runId: input.runId });
      if (e.code === 'ROLLBACK_FAILED' || e.code === 'CANCELLED') throw e;
      throw new OtaError('ROLLBACK_FAILED', `rollback of ${ports.product.name} did not finish: ${e.message}`, {
        cause: e,
        details: { ...(e.details ?? {}), reason: e.code, runId: input.runId },
      });
    }
  };
}

/**
 * Whether the release a rollback leaves is kept away from the robot from now on:
 * - interrupted (crash, power cut): never; that proves nothing against the release;
 * - manual: only when the operator asked (`--mark-bad`); a healthy release someone stepped back
 *   from is not condemned silently;
 * - a failure or a crash loop: yes, unless the release never ran (the plan says so).
 */
export function shouldMarkBad(input: Pick<RollbackInput, 'cause' | 'markBad'>, plan: ResolvedRollback): boolean {
  if (input.cause === 'interrupted') return false;
  if (input.cause === 'manual') return input.markBad === true;
  return plan.action !== 'keep' || plan.markBad;
}

/** The bad mark's account of why: the rollback's reason and the failure behind it, and who decided. */
export function badMarkOf(input: Pick<RollbackInput, 'cause' | 'reason' | 'failure' | 'requestedBy' | 'runId'>, at: number): BadMark {
  const why = input.failure ? `${input.reason}: ${input.failure.code}: ${input.failure.message}` : input.reason;
  return input.cause === 'manual'
    ? { reason: `marked bad by an operator on rollback: ${why}`, at, by: 'operator', actor: input.requestedBy ?? null, runId: input.runId }
    : { reason: `rolled back automatically: ${why}`, at, by: 'automatic', actor: 'otad', runId: input.runId };
}

/** A damaged journal cannot guide a rollback: a person must look (ROLLBACK_FAILED). */
async function readJournalForRollback(file: string, log: Logger): Promise<ApplyJournalEntry | null> {
  const entry = await readJournalFile(file);
  if (entry === null) return null;
  if (entry === 'damaged') throw new OtaError('ROLLBACK_FAILED', `apply journal ${file} is damaged; cannot tell what to undo`, { details: { file } });
  log.info('apply journal found', { runId: entry.runId, from: entry.from, to: entry.to, phase: entry.phase });
  return entry;
}

async function resolvePlan(
  ports: ExecutionPorts,
  store: ReleaseStore,
  input: RollbackInput,
  entry: ApplyJournalEntry | null,
  log: Logger,
  signal: AbortSignal,
): Promise<ResolvedRollback> {
  if (entry !== null && entry.runId !== input.runId) log.warn('the apply journal belongs to another run; undoing what it records', { journalRun: entry.runId });
  const live = await store.current();
  const livePrevious = live === null ? null : ((await readReleaseMarker(live.dir))?.previousVersion ?? null);
  const plan = planRollback({
    journal: entry,
    live: live?.version ?? null,
    livePrevious,
    releases: (await store.list()).map((r) => r.version),
    attempted: input.applied?.version ?? input.offer?.version ?? null,
    appliedFrom: input.applied !== null && input.applied.version === live?.version ? input.applied.fromRelease : null,
  });
  if (plan.action !== 'restore') return plan;

  const backup = await pickBackup(ports, input, plan.failed, plan.prefer, log, signal);
  if (backup !== null) return { action: 'restore', failed: plan.failed, backup };
  if (plan.otherwise === 'keep') {
    log.warn('no previous release and no usable backup: nothing to roll back to; the live release stays', { live: live?.version ?? null });
    return { action: 'keep', failed: plan.failed, live: live?.version ?? null, method: 'nothing-to-undo', markBad: false };
  }
  throw new OtaError('ROLLBACK_FAILED', `cannot roll back ${ports.product.name}: the previous release ${plan.prefer ?? ''} is gone from ${store.releasesDir} and no verified backup of it is in ${ports.backupDir}`, {
    details: { previous: plan.prefer, failed: plan.failed, backupDir: ports.backupDir },
  });
}

/**
 * Whether a backup of `version` may stand in when the release left (`failed`) names no
 * predecessor: only an older version. "Rolling back" to a newer release is an update nobody asked
 * for (the newer one may be exactly what was rolled back from before).
 */
export function backupMayReplace(version: string, failed: string | null, prefer: string | null): boolean {
  if (version === failed) return false;
  return prefer !== null || failed === null || compareReleaseNames(version, failed) < 0;
}

/**
 * The backup to restore: the run's own backup, then the newest of the preferred version, then the
 * newest of any other version except the failed one (an older one, when there is no preferred). Each candidate must verify (checksum and a
 * safe listing); a damaged one is skipped with a warning.
 */
async function pickBackup(
  ports: ExecutionPorts,
  input: RollbackInput,
  failed: string | null,
  prefer: string | null,
  log: Logger,
  signal: AbortSignal,
): Promise<{ path: string; version: string } | null> {
  if (ports.backups === undefined) return null;
  const candidates: Array<{ path: string; version: string }> = [];
  const own = input.backup?.path;
  if (own !== undefined) {
    const parts = parseBackupName(path.basename(own));
    if (parts !== null && parts.product === ports.product.name) candidates.push({ path: own, version: parts.version });
  }
  const listed = await ports.backups.list(ports.product.name, ports.backupDir);
  for (const b of listed) if (b.version === prefer) candidates.push({ path: b.path, version: b.version });
  for (const b of listed) if (b.version !== prefer && backupMayReplace(b.version, failed, prefer)) candidates.push({ path: b.path, version: b.version });
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c.path) || c.version === failed) continue;
    seen.add(c.path);
    try {
      await ports.backups.verify(c.path, signal);
      log.info('backup chosen for the rollback', { ...c, preferred: prefer });
      return c;
    } catch (error) {
      if (error instanceof OtaError && error.code === 'CANCELLED') throw error;
      log.warn('backup does not verify; skipped', { path: c.path, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return null;
}

/** Make the disk match the plan. Every action is safe to repeat. */
async function carryOut(ports: ExecutionPorts, store: ReleaseStore, plan: ResolvedRollback, runId: string, log: Logger, signal: AbortSignal): Promise<void> {
  const services = await ports.services();
  const live = (await store.current())?.version ?? null;
  switch (plan.action) {
    case 'keep':
      // A failed apply may have stopped some services before giving up; starting is idempotent.
      if (plan.live !== null) {
        await startServices(ports, services, log);
        markDowntime(ports, services, runId, 'started');
      }
      break;
    case 'switch':
      if (live !== plan.target) {
        markDowntime(ports, services, runId, 'stop');
        await stopServices(ports, services, log);
        markDowntime(ports, services, runId, 'stopped');
        await store.switchTo(plan.target);
        markDowntime(ports, services, runId, 'switched');
      }
      await startServices(ports, services, log);
      markDowntime(ports, services, runId, 'started');
      break;
    case 'restore': {
      const { version } = plan.backup;
      if (live !== version) {
        if (!(await store.has(version))) await restoreBackup(ports, store, plan.backup, runId, log, signal);
        markDowntime(ports, services, runId, 'stop');
        await stopServices(ports, services, log);
        markDowntime(ports, services, runId, 'stopped');
        await store.switchTo(version);
        markDowntime(ports, services, runId, 'switched');
      }
      await startServices(ports, services, log);
      markDowntime(ports, services, runId, 'started');
      break;
    }
    case 'unlink': {
      // The product is gone afterwards: an open downtime never comes back green (the run says why).
      markDowntime(ports, services, runId, 'stop');
      await stopServices(ports, services, log);
      const st = await fs.lstat(store.installPath).catch(() => null);
      if (st?.isSymbolicLink()) {
        await fs.rm(store.installPath);
        log.warn('first install undone: the install link was removed', { installPath: store.installPath });
      }
      break;
    }
  }
  const restored = outputOf(plan).restoredVersion;
  if (plan.failed !== null && plan.failed !== restored && (await store.has(plan.failed)) && (await store.current())?.version !== plan.failed) {
    const marker = await readReleaseMarker(store.releaseDir(plan.failed));
    await clearStaging(marker?.staging, marker?.runId ?? '', log);
    await store.remove(plan.failed);
    log.info('failed release removed', { version: plan.failed });
  }
  // A run interrupted in apply before its release was imported (a power cut before the rename out
  // of staging) still has its staged tree, under the staging folder by its run id: no marker in the
  // releases names it, so it is removed here by that name.
  const stagingRoot = stagingRootFor(ports.product);
  for (const leftover of [path.join(stagingRoot, runId), path.join(stagingRoot, `${runId}.delta`)]) {
    if ((await fs.lstat(leftover).catch(() => null)) === null) continue;
    await removeTree(leftover).catch((error: unknown) => log.warn('could not clear staging; left in place', { path: leftover, error: String(error) }));
    log.info('staging cleared', { removed: [leftover] });
  }
  // A restore killed after its import leaves an emptied work folder behind.
  for (const name of await fs.readdir(store.releasesDir).catch(() => [] as string[])) {
    if (name.startsWith(RESTORE_PREFIX)) await removeTree(path.join(store.releasesDir, name));
  }
}

/**
 * Restore a backup as release `version`: extract (verified, through the safe extractor) into a
 * hidden folder beside the releases, take its `release/` tree, put preserved data stored under
 * `data/<path>` back into it, and import it with the same atomic rename as a staged release.
 */
async function restoreBackup(
  ports: ExecutionPorts,
  store: ReleaseStore,
  backup: { path: string; version: string },
  runId: string,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  const backups = ports.backups as NonNullable<ExecutionPorts['backups']>;
  const work = path.join(store.releasesDir, `${RESTORE_PREFIX}${backup.version}-${runId.replace(/[^A-Za-z0-9._-]/g, '_')}`);
  await removeTree(work);
  await backups.restore(backup.path, work, signal);
  const release = path.join(work, 'release');
  const st = await fs.lstat(release).catch(() => null);
  if (st === null || !st.isDirectory()) {
    await removeTree(work);
    throw new OtaError('ROLLBACK_FAILED', `backup ${backup.path} holds no release/ tree to restore`, { details: { backup: backup.path } });
  }
  for (const rel of ports.product.preservedPaths) {
    const stored = path.join(work, 'data', rel);
    if ((await fs.lstat(stored).catch(() => null)) === null) continue;
    const dest = path.join(release, rel);
    await fs.rm(dest, { recursive: true, force: true });
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.rename(stored, dest);
  }
  await store.importStaged(release, backup.version);
  await removeTree(work);
  log.info('backup restored as a release', { backup: backup.path, version: backup.version });
}

async function clearJournalOf(journal: ReturnType<typeof applyJournalOf>, plan: ResolvedRollback, log: Logger): Promise<void> {
  const entry = await journal.read().catch(() => null);
  if (entry === null) return;
  // Only the journal of the apply this plan undid; a newer run's journal is not ours to clear.
  if (plan.failed === null || entry.to === plan.failed) {
    await journal.clear();
    log.info('apply journal cleared', { runId: entry.runId, to: entry.to });
  }
}

async function probation(ports: ExecutionPorts, store: ReleaseStore, version: string, runId: string, log: Logger, signal: AbortSignal): Promise<void> {
  const services = await ports.services();
  const p = ports.product.probation;
  const settings = ports.rollbackProbation ?? { windowMs: Math.min(p.window, ROLLBACK_WINDOW_CAP_MS), intervalMs: p.interval, failureThreshold: p.failureThreshold };
  log.info('probation of the restored release', { version, ...settings });
  try {
    await runProbation({
      checks: releaseProbes(ports, store, services.manager, version, false, services.units),
      ...settings,
      clock: ports.clock,
      sleep: sleepOf(ports),
      signal,
      logger: log,
      onRound: (r) => {
        if (r.checks.every((c) => c.lastOk === true)) markDowntime(ports, services, runId, 'green', { on: 'old', waitMs: r.startedMs });
      },
    });
  } catch (error) {
    if (error instanceof OtaError && error.code === 'CANCELLED') throw error;
    const e = toOtaError(error, 'ROLLBACK_FAILED', 'probation of the restored release');
    throw new OtaError('ROLLBACK_FAILED', `the restored release ${version} did not prove healthy: ${e.message}`, {
      cause: e,
      details: { ...(e.details ?? {}), reason: e.code, version },
    });
  }
}

/**
 * The apply step: make the staged release live.
 *
 *   adopt a plain install (first use) → import the staged tree as releases/<version> → write the
 *   release marker → journal `prepared` → carry preserved paths → pre-apply and migrate-config
 *   hooks (from the NEW release) → stop services (reverse order) → `services-stopped` → switch the
 *   link (rename(2)) → `switched` → start services (in order) → `services-started` → post-apply
 *   hook → `done`.
 *
 * Idempotent, keyed by the run id: a re-run (XState restarts an in-flight step after a crash)
 * reads the journal and the link on disk and carries on from where the disk stands. A failure
 * half-way leaves the journal as it is, so rollback undoes exactly what was done. The journal
 * stays at `done` until commit or rollback clears it.
 */
import type { ApplyInput, ApplyOutput } from '../../machines/types.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { runHook, type HookName } from '../hooks/run-hook.js';
import { detectProduct } from '../products/registry.js';
import { phaseIndex, resolveInterrupted, type ApplyJournal, type ApplyJournalEntry, type ApplyPhase } from '../release/journal.js';
import { assertReleaseName, type ReleaseStore } from '../release/layout.js';
import { applyJournalOf, checkpoint, markDowntime, releaseStoreOf, type ExecutionPorts } from './ports.js';
import { readReleaseMarker, writeReleaseMarker } from '../release/marker.js';
import { startServices, stopServices } from '../services/choice.js';

export type ApplyStep = (input: ApplyInput, signal: AbortSignal) => Promise<ApplyOutput>;

export function createApply(ports: ExecutionPorts): ApplyStep {
  return async function apply(input, signal) {
    const version = input.offer.version;
    const log = ports.logger.child({ step: 'apply', runId: input.runId, version });
    if (input.offer.product !== ports.product.name) {
      throw new OtaError('APPLY_FAILED', `offer is for product ${input.offer.product}, but this apply step manages ${ports.product.name}`, {
        details: { offered: input.offer.product, product: ports.product.name },
      });
    }
    assertReleaseName(version);
    const store = releaseStoreOf(ports);
    const journal = applyJournalOf(ports);
    try {
      await store.recover();
      let entry = await journal.read();
      if (entry !== null && (entry.runId !== input.runId || entry.to !== version)) {
        throw new OtaError(
          'APPLY_FAILED',
          `an apply of ${entry.to} (run ${entry.runId}) is still recorded in ${journal.file}; it must be rolled back before ${version} (run ${input.runId}) is applied`,
          { details: { journal: entry, runId: input.runId, version } },
        );
      }
      if (entry === null) entry = await prepare(ports, store, journal, input, log);
      else log.info('resuming an interrupted apply from the journal', { phase: entry.phase, from: entry.from });
      await finish(ports, store, journal, entry, input.runId, signal, log);
      log.info('apply done', { from: entry.from, to: version });
      return { fromRelease: entry.from, toRelease: store.releaseDir(version), version };
    } catch (error) {
      throw toOtaError(error, 'APPLY_FAILED', `applying ${ports.product.name} ${version}`, { runId: input.runId });
    }
  };
}

/** Everything before the journal exists: adoption, import, marker, then `prepared`. */
async function prepare(ports: ExecutionPorts, store: ReleaseStore, journal: ApplyJournal, input: ApplyInput, log: Logger): Promise<ApplyJournalEntry> {
  const version = input.offer.version;
  const state = await store.inspect();
  if (state.kind === 'plain-directory') {
    const installed = input.installedVersion ?? (await detectProduct(ports.product)).version;
    if (installed === null) {
      throw new OtaError('APPLY_FAILED', `cannot adopt the plain install at ${store.installPath}: its version is unknown (no ${ports.product.versionFile} and no release marker)`, {
        details: { installPath: store.installPath },
      });
    }
    if (installed === version) {
      throw new OtaError('APPLY_FAILED', `${ports.product.name} ${version} is already installed at ${store.installPath}; a release is never reinstalled over itself`, {
        details: { version },
      });
    }
    const adopted = await store.adopt(installed);
    log.info('plain install adopted as a release', { version: adopted.version, dir: adopted.dir });
  } else if (state.kind === 'foreign-link' || state.kind === 'other') {
    throw new OtaError(
      'APPLY_FAILED',
      `cannot apply to ${store.installPath}: it is ${state.kind === 'foreign-link' ? `a symlink to ${state.target}, outside ${store.releasesDir}` : 'neither a directory nor a release link'}`,
      { details: { installPath: store.installPath, state } },
    );
  }
  const current = await store.current();
  if (current?.version === version) {
    throw new OtaError('APPLY_FAILED', `${ports.product.name} ${version} is already the live release; a release is never reinstalled over itself`, {
      details: { version, dir: current.dir },
    });
  }
  const from = current?.version ?? null;

  // A staged tree that is already imported (a re-run) is returned as it is.
  const release = await store.importStaged(input.staged.releaseDir, version);
  await checkpoint(ports, 'apply:imported');
  const existing = await readReleaseMarker(release.dir);
  if (existing?.runId !== input.runId || existing.version !== version) {
    await writeReleaseMarker(release.dir, {
      product: ports.product.name,
      version,
      installedAt: ports.clock.now(),
      runId: input.runId,
      previousVersion: from,
      staging: { releaseDir: input.staged.releaseDir, packagePath: input.staged.packagePath },
    });
  }
  const entry = await journal.begin({ runId: input.runId, from, to: version });
  await checkpoint(ports, 'apply:prepared');
  return entry;
}

/** From the journal and the link on disk to `done`; every action is safe to repeat. */
async function finish(ports: ExecutionPorts, store: ReleaseStore, journal: ApplyJournal, entry: ApplyJournalEntry, runId: string, signal: AbortSignal, log: Logger): Promise<void> {
  const { from, to } = entry;
  let phase: ApplyPhase = entry.phase;
  const reached = (p: ApplyPhase): boolean => phaseIndex(phase) >= phaseIndex(p);
  const record = async (p: ApplyPhase): Promise<void> => {
    if (!reached(p)) phase = (await journal.write(p)).phase;
  };
  const live = (await store.current())?.version ?? null;
  const where = resolveInterrupted(entry, live);
  const hookCtx = { ports, store, from, to, signal, log };

  // 'none' cannot happen (there is an entry); treated like 'complete' only to satisfy the type.
  if (where.kind === 'complete' || where.kind === 'none') return;
  if (where.kind === 'unknown') {
    throw new OtaError('APPLY_FAILED', `${store.installPath} resolves to ${where.actual ?? 'nothing'}, neither ${from ?? '(no release)'} nor ${to}: the disk was changed outside otad`, {
      details: { journal: entry, actual: where.actual },
    });
  }

  let mustStart: boolean;
  if (where.kind === 'not-switched') {
    if (!reached('services-stopped')) {
      if (from !== null) {
        const carried = await store.preserve(ports.product.preservedPaths, store.releaseDir(from), store.releaseDir(to));
        if (carried.copied.length + carried.skipped.length > 0) log.info('preserved paths carried over', { ...carried });
      }
      await hook('pre-apply', hookCtx);
      await hook('migrate-config', hookCtx);
      await checkpoint(ports, 'apply:hooks-run');
    } else if (where.journalAhead) {
      log.warn('the journal says the switch happened but the link is still on the old release (the rename was lost); switching again', { from, to, phase });
    }
    throwIfCancelled(signal, to);
    const services = await ports.services();
    // Always stop (idempotent): a crash between the stops and the journal write leaves some down.
    markDowntime(ports, services, runId, 'stop');
    await stopServices(ports, services, log);
    markDowntime(ports, services, runId, 'stopped');
    await record('services-stopped');
    await checkpoint(ports, 'apply:services-stopped');
    await store.switchTo(to);
    await record('switched');
    markDowntime(ports, services, runId, 'switched');
    await checkpoint(ports, 'apply:switched');
    mustStart = true;
  } else {
    if (where.journalBehind) log.warn('the link is on the new release but the journal was not yet updated; recording the switch', { from, to, phase });
    await record('switched');
    mustStart = where.servicesMayBeDown;
  }

  if (mustStart) {
    const services = await ports.services();
    await startServices(ports, services, log);
    await record('services-started');
    markDowntime(ports, services, runId, 'started');
    await checkpoint(ports, 'apply:services-started');
  }
  if (!reached('done')) {
    await hook('post-apply', hookCtx);
    await record('done');
    await checkpoint(ports, 'apply:done');
  }
}

interface HookContext {
  ports: ExecutionPorts;
  store: ReleaseStore;
  from: string | null;
  to: string;
  signal: AbortSignal;
  log: Logger;
}

async function hook(name: HookName, c: HookContext): Promise<void> {
  await runHook({
    hook: name,
    product: c.ports.product.name,
    fromVersion: c.from,
    toVersion: c.to,
    releaseDir: c.store.releaseDir(c.to),
    previousReleaseDir: c.from === null ? null : c.store.releaseDir(c.from),
    timeoutMs: c.ports.product.hooks.timeout,
    ...(c.ports.hookKillGraceMs === undefined ? {} : { killGraceMs: c.ports.hookKillGraceMs }),
    logger: c.log,
    signal: c.signal,
  });
}

function throwIfCancelled(signal: AbortSignal, version: string): void {
  // Before the services stop: after that point only finishing or rolling back is safe.
  if (signal.aborted) throw new OtaError('CANCELLED', `apply of ${version} was cancelled before its services were stopped`);
}

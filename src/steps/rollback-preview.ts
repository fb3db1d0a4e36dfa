/**
 * Where a rollback would go, read from disk without changing anything: the same facts and the
 * same pure plan (planRollback) the rollback step uses, so what the interfaces offer ("Roll back
 * to 1.0.0") is what the step would do. Backups are listed, not verified (the step verifies the
 * one it picks, and falls back to keeping the live release if none does).
 */
import { readJournalFile } from '../release/journal.js';
import { createReleaseStore } from '../release/layout.js';
import type { BackupManager } from '../backup/backup-manager.js';
import type { Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import { backupMayReplace, planRollback } from './rollback.js';
import { readReleaseMarker } from '../release/marker.js';
import { applyJournalOf, releasesDirOf } from './ports.js';
import type { Clock } from '../core/clock.js';

export interface RollbackPreviewPorts {
  product: ProductConfig;
  journalDir: string;
  backupDir: string;
  backups: Pick<BackupManager, 'list'>;
  clock: Clock;
  logger: Logger;
}

/** What the run in flight (if any) had reached, from the machine's context. */
export interface RunFacts {
  /** The version the run was installing (applied, else offered); null from idle. */
  attempted: string | null;
  /** What apply reported, when the run got through it. */
  applied: { version: string; fromRelease: string | null } | null;
}

export interface RollbackPreview {
  /** The release the install link resolves to (null: missing, or a plain folder not yet adopted). */
  live: string | null;
  /** The live release's predecessor, as its marker records it. */
  previous: string | null;
  /** Release versions kept in the releases directory. */
  onDisk: string[];
  /** Versions with a backup in the backup directory. */
  backups: string[];
  /**
   * What a rollback now would do; null when there is nothing to go back to (and a manual
   * rollback is refused with ROLLBACK_NOTHING_TO_UNDO). `version` null: a first install undone.
   */
  target: { version: string | null; method: 'previous-release' | 'backup' | 'undo-first-install'; leaves: string | null } | null;
  /** Why there is no target, in words for the operator. */
  why: string | null;
}

export async function previewRollback(ports: RollbackPreviewPorts, run: RunFacts = { attempted: null, applied: null }): Promise<RollbackPreview> {
  const { product } = ports;
  const store = createReleaseStore({ product: product.name, installPath: product.installPath, releasesDir: releasesDirOf(product), logger: ports.logger });
  const live = (await store.current())?.version ?? null;
  const previous = live === null ? null : ((await readReleaseMarker(store.releaseDir(live)))?.previousVersion ?? null);
  const onDisk = (await store.list()).map((r) => r.version);
  const backups = [...new Set((await ports.backups.list(product.name, ports.backupDir).catch(() => [])).map((b) => b.version))];
  const base = { live, previous, onDisk, backups };

  const journal = await readJournalFile(applyJournalOf(ports).file).catch(() => 'damaged' as const);
  if (journal === 'damaged') {
    return { ...base, target: null, why: 'the apply journal is damaged; a rollback cannot tell what to undo (see the otad log)' };
  }
  // The same facts the step's resolvePlan gathers.
  const appliedFrom = run.applied !== null && run.applied.version === live ? run.applied.fromRelease : null;
  const plan = planRollback({ journal, live, livePrevious: previous, releases: onDisk, attempted: run.attempted, appliedFrom });
  switch (plan.action) {
    case 'switch':
      return { ...base, target: { version: plan.target, method: 'previous-release', leaves: plan.failed }, why: null };
    case 'unlink':
      return { ...base, target: { version: null, method: 'undo-first-install', leaves: plan.failed }, why: null };
    case 'restore': {
      const usable = backups.filter((v) => backupMayReplace(v, plan.failed, plan.prefer));
      const version = usable.includes(plan.prefer ?? '') ? plan.prefer : (usable[0] ?? null);
      if (version !== null) return { ...base, target: { version, method: 'backup', leaves: plan.failed }, why: null };
      return { ...base, target: null, why: `${live ?? 'the live release'} has no previous release on disk and no backup of another version` };
    }
    case 'keep':
      // Something is left to clean up (a release that failed before it went live): that is still a rollback.
      if (plan.failed !== null && plan.failed !== plan.live && plan.live !== null) {
        return { ...base, target: { version: plan.live, method: 'previous-release', leaves: plan.failed }, why: null };
      }
      return {
        ...base,
        target: null,
        why: live === null ? `${product.installPath} is not a release otad installed (nothing was installed by otad yet)` : `${live} has no previous release and no backup to go back to`,
      };
  }
}

/** Clearing what staging left for a run once the run no longer needs it (commit, rollback). */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../core/logger.js';
import type { OtadReleaseMarker } from './marker.js';

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

/** The marker otad writes into every release it installs, read back by detection, commit and rollback. */
import path from 'node:path';
import { atomicWriteFile } from '../core/atomic-file.js';
import { readMarker, RELEASE_MARKER, type ReleaseMarker } from '../products/registry.js';

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

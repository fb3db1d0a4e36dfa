/**
 * tuf-js writes each trusted metadata file it accepts with a plain `fs.writeFileSync` over the old
 * one. A power cut in the middle leaves a torn `timestamp.json` or `root.json` (or an empty one: the
 * data was never synced). Our refresh survives a torn timestamp, snapshot or targets (tuf-js then
 * downloads them again) and restores a torn root from the golden copy, but the golden copy may be
 * older than the root chain the robot had already walked. So every file tuf-js persists goes through
 * the usual discipline instead: a private temporary file in the same folder, written and fsynced,
 * renamed over the old one, and the folder fsynced. The old file or the new one survives, never a mix.
 *
 * tuf-js has no option or hook for this, so the Updater's `persistMetadata` method (synchronous,
 * called with the metadata role name and its bytes) is replaced on the instance.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';

interface PersistingUpdater {
  persistMetadata(name: string, bytes: Buffer): void;
}

/** Write `bytes` to `file` so that a crash leaves either the old or the new content, mode 0600. */
export function writeFileAtomicSync(file: string, bytes: Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (error) {
    rmSync(tmp, { force: true });
    throw error;
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/** Make this Updater persist trusted metadata atomically into `metadataDir`. */
export function persistAtomically<T extends object>(updater: T, metadataDir: string): T {
  (updater as unknown as PersistingUpdater).persistMetadata = (name: string, bytes: Buffer) => {
    writeFileAtomicSync(path.join(metadataDir, `${encodeURIComponent(name)}.json`), bytes);
  };
  return updater;
}

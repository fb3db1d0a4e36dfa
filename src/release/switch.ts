/**
 * The filesystem primitives the release store is built on: durable directory entries and the
 * atomic symlink switch. Every function here leaves the tree in a state a crash cannot corrupt:
 * either the old entry or the new one is visible, never a half-written one.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { OtaError } from '../core/errors.js';

/** The suffix of a switch-in-progress link: `<installPath>.tmp-<hex>`. Left-overs are garbage. */
export const TEMP_LINK_MARKER = '.tmp-';

/**
 * fsync a directory so that the entries created, renamed or removed in it survive a power cut.
 * rename(2) is atomic but only durable once the parent directory is synced.
 */
export { fsyncDir, fsyncPath as fsyncFile } from '../core/atomic-file.js';
import { fsyncDir, fsyncPath as fsyncFile } from '../core/atomic-file.js';

/**
 * fsync every regular file and directory under `root` (symlinks are not followed), children
 * before parents, so a tree that is about to become live is on disk before the link points at it.
 */
export async function fsyncTree(root: string): Promise<void> {
  const entries = await fs.readdir(root, { withFileTypes: true });
  for (const entry of entries) {
    const full = path.join(root, entry.name);
    if (entry.isDirectory()) await fsyncTree(full);
    else if (entry.isFile()) await fsyncFile(full);
  }
  await fsyncDir(root);
}

export function randomSuffix(): string {
  return randomBytes(6).toString('hex');
}

/**
 * Point `linkPath` at `target` atomically: a fresh symlink `<linkPath>.tmp-<random>` is renamed
 * over `linkPath`. rename(2) replaces the directory entry in one step, so every lookup of
 * `linkPath` sees either the old target or the new one. The parent is synced afterwards so the
 * switch is durable when this resolves. Fails (EISDIR) if `linkPath` is a real directory: such an
 * install must be adopted first.
 */
export async function atomicSymlink(target: string, linkPath: string, beforeRename?: () => void | Promise<void>): Promise<void> {
  const temp = `${linkPath}${TEMP_LINK_MARKER}${randomSuffix()}`;
  await fs.symlink(target, temp);
  // A crash here leaves only a stale temp link beside an untouched install (removeStaleTempLinks).
  await beforeRename?.();
  try {
    await fs.rename(temp, linkPath);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  await fsyncDir(path.dirname(linkPath));
}

/** Remove switch left-overs (`<installPath>.tmp-*` symlinks) from a crash in the middle of a switch. */
export async function removeStaleTempLinks(linkPath: string): Promise<string[]> {
  const dir = path.dirname(linkPath);
  const prefix = `${path.basename(linkPath)}${TEMP_LINK_MARKER}`;
  const removed: string[] = [];
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return removed;
    throw error;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const full = path.join(dir, name);
    const stat = await fs.lstat(full).catch(() => null);
    // Only symlinks are ours; never delete a real file or directory that happens to match.
    if (stat?.isSymbolicLink()) {
      await fs.rm(full, { force: true });
      removed.push(full);
    }
  }
  return removed;
}

/** The device id of the filesystem holding `p`, or of its nearest existing ancestor. */
export async function deviceOf(p: string): Promise<number> {
  let current = path.resolve(p);
  for (;;) {
    try {
      return (await fs.stat(current)).dev;
    } catch (error) {
      const parent = path.dirname(current);
      if (!isErrno(error, 'ENOENT') || parent === current) throw error;
      current = parent;
    }
  }
}

/** rename(2) only works within one filesystem: refuse a layout that would need a copy. */
export async function assertSameFilesystem(a: string, b: string, what: string): Promise<void> {
  const [devA, devB] = await Promise.all([deviceOf(a), deviceOf(b)]);
  if (devA !== devB) {
    throw new OtaError('CONFIG_INVALID', `${what}: ${a} and ${b} are on different filesystems; they must share one so the switch is a rename(2)`, {
      details: { a, b, devA, devB },
    });
  }
}

export function isErrno(error: unknown, code: string): boolean {
  return typeof error === 'object' && error !== null && (error as NodeJS.ErrnoException).code === code;
}

/**
 * Release trees as btrfs subvolumes, where the releases live on btrfs: a staged release is created
 * as a subvolume, so that the next delta can start from a writable snapshot of the installed
 * release (one metadata operation, whatever the number of files) instead of creating every
 * unchanged file again. Everywhere else a release is a plain directory and nothing here applies.
 *
 * The subvolume calls go through the `btrfs` command (btrfs-progs, which any machine that made a
 * btrfs filesystem has): they are ioctls (BTRFS_IOC_SUBVOL_CREATE, BTRFS_IOC_SNAP_CREATE_V2),
 * which Node cannot make without a native module, and one process start (a few milliseconds) per
 * staging is nothing beside the staging itself. Without the command, releases are plain
 * directories and deltas are assembled by copying, as on any other filesystem.
 *
 * A subvolume is removed like a directory (rm -r; rmdir(2) of an empty subvolume works since
 * Linux 4.18), and it is renamed within its filesystem like one, so the rest of the release
 * layout does not change. Two things differ, both handled where they matter: each subvolume has
 * its own st_dev (compare the parents when asking "same filesystem?"), and rename(2) between two
 * subvolumes fails with EXDEV.
 */
import { execFile } from 'node:child_process';
import { chmod, lstat, mkdir, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** statfs(2) f_type of btrfs (linux/magic.h BTRFS_SUPER_MAGIC). */
const BTRFS_SUPER_MAGIC = 0x9123683e;
/** The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID). */
const SUBVOLUME_ROOT_INO = 256;

let btrfsCommand: Promise<boolean> | undefined;

function run(args: string[]): Promise<{ ok: boolean; out: string }> {
  return new Promise((done) => {
    execFile('btrfs', args, { timeout: 60_000 }, (error, stdout, stderr) => done({ ok: error === null, out: `${stdout}${stderr}`.trim() || (error?.message ?? '') }));
  });
}

/** Whether the `btrfs` command runs here (asked once per process). */
function haveBtrfsCommand(): Promise<boolean> {
  btrfsCommand ??= run(['--version']).then((r) => r.ok);
  return btrfsCommand;
}

export async function onBtrfs(dir: string): Promise<boolean> {
  const st = await statfs(dir).catch(() => null);
  return st !== null && st.type === BTRFS_SUPER_MAGIC;
}

/** Whether `dir` is the root of a btrfs subvolume (so it can be snapshotted). */
export async function isSubvolumeRoot(dir: string): Promise<boolean> {
  const st = await lstat(dir).catch(() => null);
  return st !== null && st.isDirectory() && st.ino === SUBVOLUME_ROOT_INO && (await onBtrfs(dir));
}

/**
 * Creates the root of a new release tree at `dir` (which must not exist) with `mode`: a subvolume
 * where the parent is on btrfs and the btrfs command runs, else a directory. Fails with EEXIST (as
 * mkdir would) when `dir` exists.
 */
export async function createTreeRoot(dir: string, mode: number): Promise<'subvolume' | 'directory'> {
  const target = resolve(dir);
  if ((await onBtrfs(dirname(target))) && (await haveBtrfsCommand()) && (await lstat(target).catch(() => null)) === null) {
    const made = await run(['subvolume', 'create', target]);
    if (made.ok) {
      await chmod(target, mode);
      return 'subvolume';
    }
    // Not permitted here, say: a plain directory is a release tree too (the next delta copies).
  }
  await mkdir(target, { mode });
  return 'directory';
}

/**
 * A writable snapshot of the subvolume `source` at `dest` (which must not exist), or null with the
 * reason when it cannot be made here (not btrfs, not a subvolume, another filesystem, no btrfs
 * command): the caller then assembles by copying.
 */
export async function snapshotTree(source: string, dest: string): Promise<{ ok: true } | { ok: false; reason: string }> {
  const target = resolve(dest);
  if (!(await isSubvolumeRoot(source))) return { ok: false, reason: `${source} is not a btrfs subvolume` };
  if (!(await onBtrfs(dirname(target)))) return { ok: false, reason: `${dirname(target)} is not on btrfs` };
  if (!(await haveBtrfsCommand())) return { ok: false, reason: 'the btrfs command is not installed (btrfs-progs)' };
  const made = await run(['subvolume', 'snapshot', resolve(source), target]);
  return made.ok ? { ok: true } : { ok: false, reason: `btrfs subvolume snapshot failed: ${made.out}` };
}

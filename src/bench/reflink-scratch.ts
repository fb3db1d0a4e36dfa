/**
 * A scratch folder on a filesystem with reflinks, for the benchmark's second staging pass: an XFS
 * image (`mkfs.xfs -m reflink=1`) in a sparse file under the work folder, loop-mounted. On such a
 * filesystem the unchanged files of a delta are copied with COPYFILE_FICLONE as shared blocks, so
 * the pass shows what delta staging costs where the copies are metadata only (ext4, the work
 * folder's usual filesystem, has no reflinks).
 *
 * Needs root, mkfs.xfs (xfsprogs) and a free loop device; without them the caller gets the reason
 * and prints it as a skipped row.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type ReflinkScratch = { dir: string; unmount: () => Promise<void> } | { reason: string };

/** Sparse: the image only takes the blocks the benchmark writes. */
const IMAGE_BYTES = 2 * 2 ** 30;

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return { ok: false, out: r.error.message };
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

export async function mountReflinkScratch(work: string): Promise<ReflinkScratch> {
  if (process.getuid?.() !== 0) return { reason: 'needs root (a loop mount)' };
  if (!run('mkfs.xfs', ['-V']).ok) return { reason: 'mkfs.xfs not found (apt-get install xfsprogs)' };
  const image = join(work, 'reflink-scratch.xfs');
  const dir = join(work, 'reflink-scratch');
  rmSync(image, { force: true });
  writeFileSync(image, '');
  truncateSync(image, IMAGE_BYTES);
  const mkfs = run('mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', image]);
  if (!mkfs.ok) {
    rmSync(image, { force: true });
    return { reason: `mkfs.xfs -m reflink=1 failed: ${mkfs.out}` };
  }
  mkdirSync(dir, { recursive: true });
  const mount = run('mount', ['-o', 'loop', image, dir]);
  if (!mount.ok) {
    rmSync(image, { force: true });
    return { reason: `loop mount of an XFS image failed: ${mount.out}` };
  }
  return {
    dir,
    unmount: async () => {
      const u = run('umount', [dir]);
      if (!u.ok) throw new Error(`umount ${dir}: ${u.out}`);
      rmSync(dir, { recursive: true, force: true });
      rmSync(image, { force: true });
    },
  };
}

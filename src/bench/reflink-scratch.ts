/**
 * Scratch folders on other filesystems, for the benchmark's extra staging passes, each an image in
 * a sparse file under the work folder, loop-mounted:
 *
 * - XFS with reflinks (`mkfs.xfs -m reflink=1`): the unchanged files of a delta are copied with
 *   COPYFILE_FICLONE as shared blocks, so the pass shows what delta staging costs where the copies
 *   are metadata only (ext4, the work folder's usual filesystem, has no reflinks);
 * - btrfs: releases are subvolumes and a delta starts from a snapshot of the installed release
 *   (src/package/btrfs.ts), so its unchanged files are not created at all.
 *
 * Needs root, the filesystem's mkfs and a free loop device; without them the caller gets the
 * reason and prints it as a skipped row.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type ScratchMount = { dir: string; unmount: () => Promise<void> } | { reason: string };

/** Sparse: the image only takes the blocks the benchmark writes. */
const IMAGE_BYTES = 2 * 2 ** 30;

function run(cmd: string, args: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return { ok: false, out: r.error.message };
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

const MKFS: Record<ScratchFs, { cmd: string; version: string[]; args: string[]; pkg: string }> = {
  xfs: { cmd: 'mkfs.xfs', version: ['-V'], args: ['-q', '-f', '-m', 'reflink=1'], pkg: 'xfsprogs' },
  btrfs: { cmd: 'mkfs.btrfs', version: ['--version'], args: ['-q', '-f'], pkg: 'btrfs-progs' },
};

export type ScratchFs = 'xfs' | 'btrfs';

export async function mountScratchFs(work: string, kind: ScratchFs = 'xfs'): Promise<ScratchMount> {
  const mkfsTool = MKFS[kind];
  if (process.getuid?.() !== 0) return { reason: 'needs root (a loop mount)' };
  if (!run(mkfsTool.cmd, mkfsTool.version).ok) return { reason: `${mkfsTool.cmd} not found (apt-get install ${mkfsTool.pkg})` };
  const image = join(work, `scratch.${kind}`);
  const dir = join(work, `scratch-${kind}`);
  rmSync(image, { force: true });
  writeFileSync(image, '');
  truncateSync(image, IMAGE_BYTES);
  const mkfs = run(mkfsTool.cmd, [...mkfsTool.args, image]);
  if (!mkfs.ok) {
    rmSync(image, { force: true });
    return { reason: `${mkfsTool.cmd} ${mkfsTool.args.join(' ')} failed: ${mkfs.out}` };
  }
  mkdirSync(dir, { recursive: true });
  const mount = run('mount', ['-o', 'loop', image, dir]);
  if (!mount.ok) {
    rmSync(image, { force: true });
    return { reason: `loop mount of a ${kind} image failed: ${mount.out}` };
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

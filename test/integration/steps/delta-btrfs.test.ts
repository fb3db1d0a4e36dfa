/**
 * Deltas on btrfs: the robot's releases on a real btrfs filesystem (a loop-mounted image), so a
 * fully staged release is a subvolume and a delta starts from a writable snapshot of the installed
 * release instead of copying its unchanged files. The snapshot holds whatever the installed release
 * holds (local files, local modes, local edits): the assembled tree must still be exactly the
 * signed index, or the full package is used. The releases are published by the real publisher and
 * served by a real ota-server, as in delta-stage.test.ts.
 *
 * Needs root, mkfs.btrfs (btrfs-progs), the btrfs kernel module and a free loop device; skipped with
 * the reason otherwise.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, promises as fs, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSubvolumeRoot } from '../../../src/package/btrfs.js';
import { createReleaseStore } from '../../../src/release/layout.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';
import { createSandbox, editSameSize, offerFor, publishRelease, treeHashes, unmount, type Sandbox } from './check-stage-harness.js';

function btrfsScratch(): { dir: string; image: string } | { reason: string } {
  if (process.getuid?.() !== 0) return { reason: 'needs root (a loop mount)' };
  if (spawnSync('mkfs.btrfs', ['--version']).status !== 0) return { reason: 'mkfs.btrfs not found (apt-get install btrfs-progs)' };
  const base = mkdtempSync(path.join(tmpdir(), 'otad-btrfs-'));
  const image = path.join(base, 'image');
  const dir = path.join(base, 'mnt');
  writeFileSync(image, '');
  truncateSync(image, 1024 * 1024 * 1024);
  const mkfs = spawnSync('mkfs.btrfs', ['-q', '-f', image], { encoding: 'utf8' });
  if (mkfs.status !== 0) return { reason: `mkfs.btrfs failed: ${mkfs.stderr.trim()}` };
  execFileSync('mkdir', ['-p', dir]);
  const mount = spawnSync('mount', ['-o', 'loop', image, dir], { encoding: 'utf8' });
  if (mount.status !== 0) {
    rmSync(base, { recursive: true, force: true });
    return { reason: `loop mount of a btrfs image failed (no btrfs module?): ${mount.stderr.trim()}` };
  }
  return { dir, image };
}

const scratch = btrfsScratch();
const skip = 'reason' in scratch ? scratch.reason : null;
if (skip !== null) console.warn(`skipping the btrfs delta tests: ${skip}`);

/** 200 small files, a config and a model: a 1 % change is two small files (and VERSION). */
function releaseFiles(version: string, opts: { changed?: number[]; drop?: number[] } = {}): Record<string, string | Buffer> {
  const files: Record<string, string | Buffer> = { VERSION: `${version}\n`, 'config/robot.yaml': 'speed: 2\n', 'models/planner.bin': MODEL };
  for (let i = 0; i < 200; i += 1) {
    if (opts.drop?.includes(i) === true) continue;
    const seed = opts.changed?.includes(i) === true ? `${version}-${i}` : `base-${i}`;
    files[`lib/mod${i}.py`] = createHash('sha256').update(seed).digest('hex').repeat(40);
  }
  return files;
}
const MODEL = Buffer.alloc(300_000, 7);
const signal = () => new AbortController().signal;


describe.skipIf(skip !== null)('delta updates on btrfs: releases are subvolumes, a delta starts from a snapshot', () => {
  const mnt = 'dir' in scratch ? scratch.dir : '';
  let repo: TestRepo;
  let robot: Sandbox;
  let n = 0;
  afterAll(() => {
    if ('dir' in scratch) {
      unmount(scratch.dir);
      rmSync(path.dirname(scratch.dir), { recursive: true, force: true });
    }
  });
  beforeEach(async () => {
    n += 1;
    repo = await createTestRepo();
    robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir: path.join(mnt, `robot-${n}`), product: { preservedPaths: ['config'] } });
  });
  afterEach(async () => {
    await robot.close();
    await repo.close();
  });

  /** Full staging of 1.0.0 (from nothing installed), imported as apply does and made the install path. */
  async function installFirst(): Promise<string> {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-0', offer: await offerFor(robot, '0.9.0') }, signal());
    expect(out.via).toBe('package');
    expect(await isSubvolumeRoot(out.releaseDir), 'a fully staged release is a subvolume').toBe(true);
    const store = createReleaseStore({ product: 'robot-ai', installPath: robot.product.installPath, releasesDir: robot.product.releasesDir!, logger: robot.logger });
    // The staged subvolume has an st_dev of its own: the import compares the parents.
    const { dir } = await store.importStaged(out.releaseDir, '1.0.0');
    await fs.writeFile(path.join(dir, '.ota-release.json'), JSON.stringify({ version: '1.0.0' }));
    await fs.mkdir(path.dirname(robot.product.installPath), { recursive: true });
    await fs.symlink(dir, robot.product.installPath);
    return dir;
  }

  it('a 1 % delta is assembled on a snapshot of the installed release: local files, modes and owners do not survive, the tree is the index', async () => {
    const current = await installFirst();
    await publishRelease(repo, '1.1.0', { files: { ...releaseFiles('1.1.0', { changed: [7, 8], drop: [9] }), 'lib/new.py': 'print("new")\n' } });
    // What a robot does to its install path: a file of its own, a changed mode, a changed owner.
    await fs.writeFile(path.join(current, 'lib/cache.tmp'), 'local\n');
    await fs.mkdir(path.join(current, 'lib/__pycache__'));
    await fs.writeFile(path.join(current, 'lib/__pycache__/mod1.pyc'), 'x');
    await fs.chmod(path.join(current, 'lib/mod5.py'), 0o600);
    await fs.chown(path.join(current, 'lib/mod6.py'), 1234, 1234);
    const offer = await offerFor(robot, '1.0.0');
    expect(offer.delta?.fromVersion).toBe('1.0.0');

    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('delta');
    expect(out.deltaFallback).toBeUndefined();
    const staged = robot.logger.lines.find((l) => l.message === 'release staged' && l.fields?.via === 'delta');
    expect(staged?.fields).toMatchObject({ method: 'snapshot', fromDelta: 4, unchanged: 199 });
    expect(await isSubvolumeRoot(out.releaseDir), 'the delta-staged release is a subvolume too (the next delta snapshots it)').toBe(true);
    // The snapshot was made in a folder only otad's user can enter, and that folder is gone.
    expect(await fs.readdir(path.dirname(out.releaseDir))).toEqual([path.basename(out.releaseDir)]);
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
    const st5 = await fs.stat(path.join(out.releaseDir, 'lib/mod5.py'));
    expect(st5.mode & 0o777).toBe(0o644);
    const st6 = await fs.stat(path.join(out.releaseDir, 'lib/mod6.py'));
    expect([st6.uid, st6.gid]).toEqual([0, 0]);
    expect((await fs.stat(out.releaseDir)).mode & 0o777).toBe(0o755);
    // The installed release is untouched by all of it.
    expect((await fs.stat(path.join(current, 'lib/mod5.py'))).mode & 0o777).toBe(0o600);
    expect(await fs.readFile(path.join(current, 'lib/cache.tmp'), 'utf8')).toBe('local\n');
    expect(await fs.readFile(path.join(current, 'lib/mod9.py'), 'utf8')).toHaveLength(2560);
    // And the new release moves into the releases folder like any other.
    const store = createReleaseStore({ product: 'robot-ai', installPath: robot.product.installPath, releasesDir: robot.product.releasesDir!, logger: robot.logger });
    const { dir } = await store.importStaged(out.releaseDir, '1.1.0');
    expect(await isSubvolumeRoot(dir)).toBe(true);
  });

  it('an installed release that is a plain directory (restored from a backup, say): assembled by copying, into a subvolume, the delta cloned in across the subvolume boundary', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const dir = path.join(robot.product.releasesDir!, '1.0.0');
    await fs.cp(path.join(repo.dir, 'src-1.0.0'), dir, { recursive: true });
    await fs.mkdir(path.dirname(robot.product.installPath), { recursive: true });
    await fs.symlink(dir, robot.product.installPath);
    expect(await isSubvolumeRoot(dir)).toBe(false);
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer: await offerFor(robot, '1.0.0') }, signal());
    expect(out.via).toBe('delta');
    const staged = robot.logger.lines.find((l) => l.message === 'release staged' && l.fields?.via === 'delta');
    expect(staged?.fields).toMatchObject({ method: 'copy', fromDelta: 2 });
    expect(await isSubvolumeRoot(out.releaseDir), 'the next delta can start from a snapshot of it').toBe(true);
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
  });

  it('a file edited locally in the installed release: the snapshot carries the edit, verification finds it, the full package is staged', async () => {
    const current = await installFirst();
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const victim = path.join(current, 'lib/mod3.py');
    await editSameSize(victim);
    const offer = await offerFor(robot, '1.0.0');

    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.deltaFallback?.code).toBe('RELEASE_TREE_MISMATCH');
    expect(out.deltaFallback?.message).toContain('lib/mod3.py');
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
    expect(await isSubvolumeRoot(out.releaseDir)).toBe(true);
    // Nothing of the snapshot is left in the staging folder.
    expect((await fs.readdir(path.dirname(out.releaseDir))).sort()).toEqual([path.basename(out.releaseDir)]);
  });
});

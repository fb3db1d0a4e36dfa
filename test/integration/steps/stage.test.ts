import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckOutput, Offer } from '../../../machines/types.js';
import { packageCacheDir, packageCachePath } from '../../../src/steps/stage.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';
import { writeTarGz } from '../../support/tar-fixtures.js';
import { createSandbox, exists, publishRelease, treeHashes, tryMountTmpfs, unmount, writeTree, type Sandbox } from './check-stage-harness.js';

const RELEASE_FILES = {
  VERSION: '1.1.0\n',
  'bin/robot-ai': '#!/bin/sh\necho robot\n',
  'config/default.yaml': 'speed: 2\n',
  'lib/model.bin': Buffer.alloc(300_000, 7),
};

async function offerFor(robot: Sandbox, installed: string | null = '1.0.0'): Promise<Offer> {
  const out: CheckOutput = await robot.check({ product: 'robot-ai', runId: 'run-1', installedVersion: installed }, new AbortController().signal);
  if (!out.available) throw new Error('expected an offer');
  return out.offer;
}

/** A live release 1.0.0 behind the install symlink, as apply leaves it. */
async function installCurrent(robot: Sandbox): Promise<string> {
  const current = path.join(robot.product.releasesDir!, '1.0.0');
  await writeTree(current, { VERSION: '1.0.0\n', 'bin/robot-ai': 'old\n' });
  await fs.mkdir(path.dirname(robot.product.installPath), { recursive: true });
  await fs.symlink(current, robot.product.installPath);
  return current;
}

const signal = () => new AbortController().signal;

describe('stage step against a real ota-server', () => {
  let repo: TestRepo;
  let robot: Sandbox;
  beforeEach(async () => {
    repo = await createTestRepo();
    robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'robot') });
  });
  afterEach(async () => {
    await robot.close();
    await repo.close();
  });

  it('downloads, verifies and unpacks the offered release beside the releases directory', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());

    expect(out.releaseDir).toBe(path.join(robot.stagingRoot, 'run-1'));
    expect(path.dirname(path.dirname(path.dirname(out.releaseDir)))).toBe(path.dirname(robot.product.releasesDir!));
    expect(out.packagePath).toBe(packageCachePath(robot.config.paths.cacheDir, 'robot-ai', offer.package));
    expect((await fs.stat(out.packagePath)).size).toBe(offer.package.length);
    await robot.repository.verifyFile(offer.package, out.packagePath);
    const src = await treeHashes(path.join(repo.dir, 'src-1.1.0'));
    expect(await treeHashes(out.releaseDir)).toEqual(src);
    expect((await fs.stat(out.releaseDir)).dev).toBe((await fs.stat(robot.product.releasesDir!)).dev);

    const downloads = robot.progress.filter((p) => p.step === 'download');
    expect(downloads.length).toBeGreaterThan(0);
    expect(downloads.at(-1)).toMatchObject({ runId: 'run-1', bytes: offer.package.length, total: offer.package.length });
    for (const p of downloads) expect(p).toHaveProperty('rateBps');
    expect(robot.progress.at(-1)).toMatchObject({ step: 'extract', message: 'unpacked and verified against the signed tree index' });
  });

  it('re-run with the same run id reuses the verified download, re-extracts and returns the same output', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    const first = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    const inode = (await fs.stat(first.packagePath)).ino;
    // What a crash in the middle of extraction leaves: a half tree with stray content.
    await fs.rm(path.join(first.releaseDir, 'lib'), { recursive: true });
    await fs.writeFile(path.join(first.releaseDir, 'stray'), 'half-written');
    robot.progress.length = 0;

    const second = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(second).toEqual(first);
    expect((await fs.stat(second.packagePath)).ino).toBe(inode);
    expect(robot.progress.some((p) => p.step === 'download')).toBe(false);
    expect(await treeHashes(second.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
  });

  it('downloads again when the cached package was damaged on disk', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    const first = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    const bytes = await fs.readFile(first.packagePath);
    bytes[100] = (bytes[100] ?? 0) ^ 0x01;
    await fs.writeFile(first.packagePath, bytes);
    const second = await robot.stage({ product: 'robot-ai', runId: 'run-2', offer }, signal());
    await robot.repository.verifyFile(offer.package, second.packagePath);
    expect(robot.logger.lines.some((l) => l.message.includes('does not match its signed target'))).toBe(true);
    // The earlier run's staging tree is gone: only the new run is staged.
    expect(await fs.readdir(robot.stagingRoot)).toEqual(['run-2']);
  });

  it('rejects a target whose served bytes have one bit flipped: nothing cached, nothing staged', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    const served = await repo.targetFile(offer.package.name);
    const bytes = await fs.readFile(served);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0x04;
    await fs.writeFile(served, bytes);
    await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({ code: 'TRUST_HASH_MISMATCH' });
    expect((await fs.readdir(packageCacheDir(robot.config.paths.cacheDir, 'robot-ai'))).filter((n) => !n.endsWith('.index.json'))).toEqual([]); // the verified tree index may stay
    expect(await exists(path.join(robot.stagingRoot, 'run-1'))).toBe(false);
    expect(robot.audit.events.some((e) => e.kind === 'trust-failure' && e.details?.code === 'TRUST_HASH_MISMATCH')).toBe(true);
  });

  const hostile: Array<[string, Parameters<typeof writeTarGz>[1], string]> = [
    ['an entry that climbs out with ..', [{ name: 'VERSION', content: 'x' }, { name: '../../etc/cron.d/x', content: 'evil' }], 'PACKAGE_UNSAFE_PATH'],
    ['an absolute path', [{ name: '/etc/passwd', content: 'evil' }], 'PACKAGE_UNSAFE_PATH'],
    ['a symlink leaving the tree then a file through it', [{ name: 'escape', type: 'symlink', linkname: '../../../../' }, { name: 'escape/owned', content: 'evil' }], 'PACKAGE_UNSAFE_LINK'],
    ['a FIFO', [{ name: 'pipe', type: 'fifo' }], 'PACKAGE_UNSAFE_TYPE'],
    ['a setuid file', [{ name: 'bin/su', content: 'x', mode: 0o4755 }], 'PACKAGE_UNSAFE_MODE'],
    ['a duplicate name', [{ name: 'a', content: '1' }, { name: 'a', content: '2' }], 'PACKAGE_DUPLICATE_ENTRY'],
  ];
  for (const [what, entries, code] of hostile) {
    it(`rejects a signed package with ${what} (${code}): staging and cached package removed, live release untouched`, async () => {
      const current = await installCurrent(robot);
      const before = await treeHashes(current);
      const file = await writeTarGz(path.join(repo.dir, 'hostile.tar.gz'), entries);
      await publishRelease(repo, '1.1.0', { packageFile: file });
      const offer = await offerFor(robot);
      await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({ code });
      expect(await fs.readdir(robot.stagingRoot)).toEqual([]);
      expect(await fs.readdir(packageCacheDir(robot.config.paths.cacheDir, 'robot-ai'))).toEqual([]);
      expect(await treeHashes(current)).toEqual(before);
      expect(await fs.readlink(robot.product.installPath)).toBe(current);
      expect(await exists(path.join(robot.dir, 'etc', 'cron.d'))).toBe(false);
      expect(robot.audit.events.some((e) => e.kind === 'package-rejected' && e.details?.code === code)).toBe(true);
    });
  }

  it('rejects a truncated package with PACKAGE_CORRUPT and removes the staging tree', async () => {
    const src = path.join(repo.dir, 'trunc.tar.gz');
    await writeTarGz(src, [{ name: 'big', content: randomBytes(200_000) }]);
    const full = await fs.readFile(src);
    await fs.writeFile(src, full.subarray(0, Math.floor(full.length / 2)));
    await publishRelease(repo, '1.1.0', { packageFile: src });
    const offer = await offerFor(robot);
    await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({ code: 'PACKAGE_CORRUPT' });
    expect(await fs.readdir(robot.stagingRoot)).toEqual([]);
  });

  it('refuses an offer for another product and a run id that is not a path component', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    await expect(robot.stage({ product: 'robot-ai', runId: '../x', offer }, signal())).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer: { ...offer, product: 'vacuum' } }, signal())).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('stops with CANCELLED when the run is cancelled before extraction', async () => {
    await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
    const offer = await offerFor(robot);
    const abort = new AbortController();
    abort.abort();
    await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, abort.signal)).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await exists(path.join(robot.stagingRoot, 'run-1'))).toBe(false);
  });
});

describe('stage step on constrained filesystems (tmpfs; needs root)', () => {
  let repo: TestRepo;
  const mounts: string[] = [];
  beforeEach(async () => {
    repo = await createTestRepo();
  });
  afterEach(async () => {
    for (const m of mounts.splice(0)) unmount(m);
    await repo.close();
  });

  async function mountAt(dir: string, size: string): Promise<boolean> {
    await fs.mkdir(dir, { recursive: true });
    if (!tryMountTmpfs(dir, size)) return false;
    mounts.push(dir);
    return true;
  }

  it('fails with CONFIG_INVALID when the staging area and releasesDir are on different filesystems', async (context) => {
    const dir = path.join(repo.dir, 'robot');
    const releasesDir = path.join(dir, 'opt', '.otad', 'robot-ai', 'releases');
    if (!(await mountAt(releasesDir, '4m'))) return context.skip('mounting a tmpfs needs root');
    const robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir, product: { releasesDir } });
    try {
      await publishRelease(repo, '1.1.0', { files: RELEASE_FILES });
      const offer = await offerFor(robot);
      await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining('different filesystems'),
      });
      expect(await fs.readdir(robot.stagingRoot)).toEqual([]);
    } finally {
      await robot.close();
    }
  });

  it('fails with DISK_FULL and leaves no partial download when the cache fills up', async (context) => {
    const dir = path.join(repo.dir, 'robot');
    const cacheDir = path.join(dir, 'small-cache');
    if (!(await mountAt(cacheDir, '512k'))) return context.skip('mounting a tmpfs needs root');
    const robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir, paths: { cacheDir } });
    try {
      await publishRelease(repo, '1.1.0', { files: { VERSION: '1.1.0\n', 'noise.bin': randomBytes(1024 * 1024) } });
      const offer = await offerFor(robot);
      await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({ code: 'DISK_FULL' });
      expect((await fs.readdir(packageCacheDir(cacheDir, 'robot-ai'))).filter((n) => !n.endsWith('.index.json'))).toEqual([]); // the verified tree index may stay
      expect(await exists(path.join(robot.stagingRoot, 'run-1'))).toBe(false);
    } finally {
      await robot.close();
    }
  });

  it('refuses with DISK_FULL before writing when the unpacked release would not fit', async (context) => {
    const dir = path.join(repo.dir, 'robot');
    const otad = path.join(dir, 'opt', '.otad', 'robot-ai');
    if (!(await mountAt(otad, '1m'))) return context.skip('mounting a tmpfs needs root');
    const robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir });
    try {
      await publishRelease(repo, '1.1.0', { files: { VERSION: '1.1.0\n', 'a.bin': Buffer.alloc(2_000_000, 1) } });
      const offer = await offerFor(robot);
      await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({
        code: 'DISK_FULL',
        message: expect.stringContaining('not enough space'),
      });
      expect(await fs.readdir(robot.stagingRoot)).toEqual([]);
    } finally {
      await robot.close();
    }
  });

  it('fails with DISK_FULL and removes the staging tree when the release filesystem fills up during extraction', async (context) => {
    const dir = path.join(repo.dir, 'robot');
    const otad = path.join(dir, 'opt', '.otad', 'robot-ai');
    if (!(await mountAt(otad, '1m'))) return context.skip('mounting a tmpfs needs root');
    // Hundreds of tiny files: their declared bytes pass the space check, but each takes a whole
    // page on tmpfs, so the writes themselves run into ENOSPC.
    const robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir, stage: { reserveBytes: 0 } });
    try {
      const current = await installCurrent(robot);
      const before = await treeHashes(current);
      const files: Record<string, string> = { VERSION: '1.1.0\n' };
      for (let i = 0; i < 400; i += 1) files[`data/f${i}`] = `file ${i}`;
      await publishRelease(repo, '1.1.0', { files });
      const offer = await offerFor(robot);
      await expect(robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal())).rejects.toMatchObject({ code: 'DISK_FULL' });
      expect(robot.logger.lines.some((l) => l.message.includes('not enough space'))).toBe(false);
      expect(await fs.readdir(robot.stagingRoot)).toEqual([]);
      expect(await treeHashes(current)).toEqual(before);
    } finally {
      await robot.close();
    }
  });
});

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { evaluateOffer, toOffer } from '../../../src/manifest/offer.js';
import { createLocalFolderRepository } from '../../../src/trust/local-folder-repository.js';
import { createTestRepo, detectAndDownload, listDir, sha256, type TestRepo } from '../../support/tuf-repo.js';
import { silentLogger } from '../../../src/core/logger.js';

describe('robot TUF client against a real ota-server', () => {
  let repo: TestRepo;
  beforeEach(async () => {
    repo = await createTestRepo();
  });
  afterEach(async () => {
    await repo.close();
  });

  it('detects the newest release, downloads its package and verifies it', async () => {
    await repo.release('robot-ai', '1.0.0');
    const { bytes } = await repo.release('robot-ai', '1.2.0', { notes: 'faster planner' });
    await repo.release('robot-ai', '1.3.0-rc.1', { channel: 'stable' });
    const robot = await repo.robot();
    await robot.repo.refresh();
    const latest = await robot.repo.latestRelease('robot-ai');
    expect(latest?.manifest.version).toBe('1.2.0');
    expect(latest?.manifest.notes).toBe('faster planner');
    expect(latest?.manifestTarget.name).toBe('robot-ai/robot-ai-1.2.0.manifest.json');
    const file = await detectAndDownload(robot, 'robot-ai');
    expect(sha256(await fs.readFile(file))).toBe(sha256(bytes));
    expect(await listDir(robot.downloadDir)).toEqual(['robot-ai-1.2.0.tar.gz']);
    const withRc = await robot.repo.latestRelease('robot-ai', { allowPrerelease: true });
    expect(withRc?.manifest.version).toBe('1.3.0-rc.1');
  });

  it('holds the downloader to the signed length and hash without reading the file again, and removes what it left', async () => {
    const { bytes } = await repo.release('robot-ai', '1.2.0');
    const robot = await repo.robot({
      // A downloader that breaks its contract: it writes the file and says it is something else.
      wrapDownloader: (real) => ({
        async download(request) {
          const result = await real.download(request);
          return { ...result, sha256: '0'.repeat(64) };
        },
      }),
    });
    const release = (await robot.repo.latestRelease('robot-ai'))!;
    const pkg = release.manifest.package;
    const dest = path.join(robot.downloadDir, 'pkg.tar.gz');
    const ref = { name: pkg.target, length: pkg.length, sha256: pkg.sha256 };
    await expect(robot.repo.downloadTarget(ref, dest)).rejects.toMatchObject({ code: 'TRUST_HASH_MISMATCH' });
    expect(await listDir(robot.downloadDir)).toEqual([]);
    expect(pkg.length).toBe(bytes.length);
  });

  it('maps a verified manifest to the machine offer and offers it over an older install', async () => {
    await repo.release('robot-ai', '2.0.0', { minFromVersion: '1.0.0' });
    const robot = await repo.robot();
    const latest = (await robot.repo.latestRelease('robot-ai'))!;
    const decision = evaluateOffer({ manifest: latest.manifest, product: 'robot-ai', installedVersion: '1.4.0', channelAllowsPrerelease: false, allowDowngrade: false });
    expect(decision).toEqual({ offered: true });
    const offer = toOffer(latest.manifest, latest.manifestTarget);
    expect(offer.package.name).toBe('robot-ai/robot-ai-2.0.0.tar.gz');
    expect(offer.minFromVersion).toBe('1.0.0');
    expect(typeof offer.releasedAt).toBe('number');
  });

  it('answers null when the product has no release', async () => {
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot();
    expect(await robot.repo.latestRelease('vacuum')).toBeNull();
  });

  it('only offers releases of the requested channel', async () => {
    await repo.release('robot-ai', '1.0.0');
    await repo.release('robot-ai', '1.1.0', { channel: 'beta' });
    const robot = await repo.robot();
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');
    expect((await robot.repo.latestRelease('robot-ai', { channel: 'beta' }))?.manifest.version).toBe('1.1.0');
  });

  it('follows root key rotations 1 → 2 → 3 and then trusts only the new keys', async () => {
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot();
    await robot.repo.refresh();
    await repo.publisher.rotateKey({ role: 'timestamp' });
    await repo.publisher.rotateKey({ role: 'root' });
    await repo.release('robot-ai', '1.1.0');
    await robot.repo.refresh();
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.1.0');
    const cached = JSON.parse(await fs.readFile(path.join(robot.metadataDir, 'root.json'), 'utf8')) as { signed: { version: number } };
    expect(cached.signed.version).toBe(3);
  });

  it('reads the same signed repository from a local folder (USB stick) and verifies it the same way', async () => {
    const { bytes } = await repo.release('robot-ai', '1.0.0');
    const robotDir = path.join(repo.dir, 'usb-robot');
    await fs.mkdir(robotDir);
    const golden = path.join(robotDir, 'root.json');
    await fs.copyFile(repo.metadataPath('1.root.json'), golden);
    const local = createLocalFolderRepository(repo.repoDir, {
      metadataDir: path.join(robotDir, 'metadata'),
      trustedRootPath: golden,
      clock: new ManualClock(Date.now()),
      logger: silentLogger,
    });
    const latest = (await local.latestRelease('robot-ai'))!;
    const pkg = latest.manifest.package;
    const dest = path.join(robotDir, 'pkg.tar.gz');
    await local.downloadTarget({ name: pkg.target, length: pkg.length, sha256: pkg.sha256 }, dest);
    expect(sha256(await fs.readFile(dest))).toBe(sha256(bytes));
  });

  it('rejects a local folder whose package was swapped, leaving nothing behind', async () => {
    await repo.release('robot-ai', '1.0.0');
    const file = await repo.targetFile('robot-ai/robot-ai-1.0.0.tar.gz');
    const original = await fs.readFile(file);
    original[10] = original[10]! ^ 0x01;
    await fs.writeFile(file, original);
    const robotDir = path.join(repo.dir, 'usb-robot');
    await fs.mkdir(path.join(robotDir, 'dl'), { recursive: true });
    const local = createLocalFolderRepository(repo.repoDir, {
      metadataDir: path.join(robotDir, 'metadata'),
      trustedRootPath: repo.metadataPath('1.root.json'),
      clock: new ManualClock(Date.now()),
      logger: silentLogger,
    });
    const pkg = (await local.latestRelease('robot-ai'))!.manifest.package;
    await expect(local.downloadTarget({ name: pkg.target, length: pkg.length, sha256: pkg.sha256 }, path.join(robotDir, 'dl', 'p.tar.gz'))).rejects.toMatchObject({
      code: 'TRUST_HASH_MISMATCH',
    });
    expect(await listDir(path.join(robotDir, 'dl'))).toEqual([]);
  });
});

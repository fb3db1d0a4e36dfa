import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { verifyRepository } from '../../../src/repo/verify.js';
import { silentLogger } from '../../../src/core/logger.js';
import { fakePackage, makeTempDir } from '../../support/tuf-repo.js';

describe('publisher library', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
  });

  async function setup(expiryMs?: Record<string, number>, start: number | string = '2026-03-01T00:00:00Z') {
    dir = await makeTempDir('otad-pub-');
    const clock = new ManualClock(start);
    const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock });
    await publisher.init(expiryMs ? { expiryMs } : {});
    await fs.writeFile(path.join(dir, 'p.tar.gz'), fakePackage('p'));
    return { publisher, clock, pkg: path.join(dir, 'p.tar.gz'), dir };
  }

  it('writes version 1 of every role with the default expiry periods and consistent snapshots', async () => {
    const { publisher } = await setup();
    const s = await publisher.loadState();
    expect(s.root.signed.consistentSnapshot).toBe(true);
    expect([s.root.signed.version, s.targets.signed.version, s.snapshot.signed.version, s.timestamp.signed.version]).toEqual([1, 1, 1, 1]);
    expect(s.root.signed.expires).toBe('2027-03-01T00:00:00Z');
    expect(s.targets.signed.expires).toBe('2026-05-30T00:00:00Z');
    expect(s.snapshot.signed.expires).toBe('2026-03-08T00:00:00Z');
    expect(s.timestamp.signed.expires).toBe('2026-03-02T00:00:00Z');
    await expect(publisher.init()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('bumps targets, snapshot and timestamp on publish, and only the timestamp on refresh', async () => {
    const { publisher, pkg, clock } = await setup({ timestamp: 3_600_000 });
    await publisher.add({ product: 'robot-ai', version: '1.0.0', packageFile: pkg });
    expect(await publisher.listTargets()).toEqual([]); // staged, not signed yet
    expect(await publisher.publish()).toMatchObject({ targetsVersion: 2, snapshotVersion: 2, timestampVersion: 2 });
    clock.advance(30 * 60_000);
    expect(await publisher.refreshTimestamp({ onlyIfExpiringWithinMs: 10 * 60_000 })).toMatchObject({ refreshed: false, version: 2 });
    expect(await publisher.refreshTimestamp()).toMatchObject({ refreshed: true, version: 3, expires: '2026-03-01T01:30:00Z' });
    const s = await publisher.loadState();
    expect([s.targets.signed.version, s.snapshot.signed.version]).toEqual([2, 2]);
  });

  it('stores targets under consistent-snapshot names and produces the same manifest bytes for the same input', async () => {
    const { publisher, pkg, dir: d } = await setup();
    const a = await publisher.add({ product: 'robot-ai', version: '1.0.0', packageFile: pkg, notes: 'n' });
    const file = path.join(d, 'repo', 'targets', 'robot-ai', `${a.packageTarget.sha256}.robot-ai-1.0.0.tar.gz`);
    expect((await fs.stat(file)).size).toBe(a.packageTarget.length);
    await expect(publisher.add({ product: 'robot-ai', version: '1.0.0', packageFile: pkg })).rejects.toThrow(/already exists/);
  });

  it('signs the release channel into both target entries, the manifest and the package, as docs/repository.md says', async () => {
    const { publisher, pkg } = await setup();
    await publisher.add({ product: 'robot-ai', version: '2.0.0-beta.1', packageFile: pkg, channel: 'beta' });
    await publisher.publish();
    const targets = (await publisher.loadState()).targets.signed.targets;
    const custom = (name: string) => (targets[name]?.unrecognizedFields['custom'] as { otad: unknown } | undefined)?.otad;
    expect(custom('robot-ai/robot-ai-2.0.0-beta.1.manifest.json')).toEqual({ kind: 'manifest', product: 'robot-ai', version: '2.0.0-beta.1', channel: 'beta' });
    expect(custom('robot-ai/robot-ai-2.0.0-beta.1.tar.gz')).toEqual({ kind: 'package', product: 'robot-ai', version: '2.0.0-beta.1', channel: 'beta' });
  });

  it('refuses to sign when the role key is not present (offline targets key)', async () => {
    const { publisher, pkg, dir: d } = await setup();
    await fs.rename(path.join(d, 'keys', 'targets'), path.join(d, 'offline-targets'));
    await publisher.add({ product: 'robot-ai', version: '1.0.0', packageFile: pkg });
    await expect(publisher.publish()).rejects.toThrow(/cannot sign targets/);
    // The online roles still work without it.
    await expect(publisher.refreshTimestamp()).resolves.toMatchObject({ refreshed: true });
  });

  it('rotates the root key: the new root is signed by old and new root keys and the repository still verifies', async () => {
    // tuf-js judges expiry by the system clock: publish "now" for the verification step.
    const { publisher, pkg, clock } = await setup(undefined, Date.now());
    await publisher.add({ product: 'robot-ai', version: '1.0.0', packageFile: pkg });
    await publisher.publish();
    const before = (await publisher.loadState()).root.signed.roles.root!.keyIDs;
    const rotated = await publisher.rotateKey({ role: 'root' });
    const root = (await publisher.loadState()).root;
    expect(Object.keys(root.signatures).sort()).toEqual([...before, rotated.addedKeyId].sort());
    expect(root.signed.roles.root!.keyIDs).toEqual([rotated.addedKeyId]);
    const report = await verifyRepository({ repoDir: publisher.repoDir, clock, logger: silentLogger });
    expect(report.ok).toBe(true);
    expect(report.rootVersion).toBe(2);
  });

  it('packages a source directory reproducibly: the same tree twice gives the same package hash', async () => {
    const { publisher, dir: d } = await setup();
    await fs.mkdir(path.join(d, 'src-dir', 'bin'), { recursive: true });
    await fs.writeFile(path.join(d, 'src-dir', 'bin', 'robot-ai'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    await fs.writeFile(path.join(d, 'src-dir', 'VERSION'), '1.0.0\n');
    const a = await publisher.add({ product: 'robot-ai', version: '1.0.0', sourceDir: path.join(d, 'src-dir') });
    const b = await publisher.add({ product: 'robot-ai', version: '1.0.1', sourceDir: path.join(d, 'src-dir') });
    expect(b.packageTarget.sha256).toBe(a.packageTarget.sha256);
    await expect(publisher.add({ product: 'robot-ai', version: '1.0.2', sourceDir: path.join(d, 'missing') })).rejects.toThrow(/not a directory/);
  });
});

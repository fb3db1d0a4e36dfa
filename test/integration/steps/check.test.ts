import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { releaseCachePath } from '../../../src/steps/check.js';
import { createTestRepo, foreignKey, signWith, withSigned, type TestRepo } from '../../support/tuf-repo.js';
import { createSandbox, exists, publishRelease, type Sandbox } from './check-stage-harness.js';

const input = (installedVersion: string | null) => ({ product: 'robot-ai', runId: 'run-check-1', installedVersion });

describe('check step against a real ota-server', () => {
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

  it('detects a release published with the publisher and caches its verified manifest', async () => {
    await publishRelease(repo, '1.0.0', { files: { 'VERSION': '1.0.0\n' } });
    await publishRelease(repo, '1.1.0', { files: { 'VERSION': '1.1.0\n' } }, { notes: 'faster planner', maxDeferralHours: 24 });
    const out = await robot.check(input('1.0.0'), new AbortController().signal);
    expect(out).toMatchObject({ available: true, offer: { version: '1.1.0', notes: 'faster planner', maxDeferralMs: 86_400_000, package: { name: 'robot-ai/robot-ai-1.1.0.tar.gz' } } });
    const cached = JSON.parse(await fs.readFile(releaseCachePath(robot.config.paths.cacheDir, 'robot-ai'), 'utf8'));
    expect(cached.manifest.notes).toBe('faster planner');
    expect(cached.manifestTarget.name).toBe('robot-ai/robot-ai-1.1.0.manifest.json');
    // The TUF metadata cache lives under the state dir, per product.
    expect(await exists(path.join(robot.config.paths.stateDir, 'tuf', 'robot-ai', 'timestamp.json'))).toBe(true);
  });

  it('does not offer the installed version, an older one, or one outside the rollout', async () => {
    await publishRelease(repo, '1.0.0', { files: { 'VERSION': '1.0.0\n' } });
    expect(await robot.check(input('1.0.0'), new AbortController().signal)).toEqual({ available: false, installedVersion: '1.0.0' });
    expect(await robot.check(input('2.0.0'), new AbortController().signal)).toEqual({ available: false, installedVersion: '2.0.0' });
    expect(robot.logger.lines.some((l) => l.fields.code === 'RELEASE_DOWNGRADE')).toBe(true);
    await publishRelease(repo, '1.1.0', { files: { 'VERSION': '1.1.0\n' } }, { rolloutPercent: 0 });
    expect(await robot.check(input('1.0.0'), new AbortController().signal)).toEqual({ available: false, installedVersion: '1.0.0' });
    expect(robot.logger.lines.some((l) => l.fields.reason === 'rollout')).toBe(true);
  });

  it('stops offering a release whose rollout the operator lowers, and offers it again when raised', async () => {
    await publishRelease(repo, '1.1.0', { files: { 'VERSION': '1.1.0\n' } }, { rolloutPercent: 100 });
    expect(await robot.check(input('1.0.0'), new AbortController().signal)).toMatchObject({ available: true, offer: { version: '1.1.0', rolloutPercent: 100 } });
    await repo.publisher.setRollout({ product: 'robot-ai', version: '1.1.0', percent: 0 });
    await repo.publisher.publish();
    expect(await robot.check(input('1.0.0'), new AbortController().signal)).toEqual({ available: false, installedVersion: '1.0.0' });
    await repo.publisher.setRollout({ product: 'robot-ai', version: '1.1.0', percent: 100 });
    await repo.publisher.publish();
    expect(await robot.check(input('1.0.0'), new AbortController().signal)).toMatchObject({ available: true, offer: { version: '1.1.0' } });
    await expect(repo.publisher.setRollout({ product: 'robot-ai', version: '9.9.9', percent: 5 })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(repo.publisher.setRollout({ product: 'robot-ai', version: '1.1.0', percent: 101 })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('rejects timestamp metadata signed by an unknown key with TRUST_SIGNATURE, audited once, nothing cached', async () => {
    await publishRelease(repo, '1.0.0', { files: { 'VERSION': '1.0.0\n' } });
    const ts = await repo.readMetadata('timestamp.json');
    await repo.writeMetadata('timestamp.json', signWith(withSigned(ts, { version: ts.signed.version + 1 }), [foreignKey('timestamp')]));
    await expect(robot.check(input(null), new AbortController().signal)).rejects.toMatchObject({ code: 'TRUST_SIGNATURE' });
    expect(robot.audit.events.filter((e) => e.kind === 'signature-failure')).toHaveLength(1);
    expect(await exists(path.join(robot.config.paths.cacheDir, 'robot-ai'))).toBe(false);
  });

  it('rejects an expired timestamp (freeze) with TRUST_EXPIRED, audited as a trust failure', async () => {
    await publishRelease(repo, '1.0.0', { files: { 'VERSION': '1.0.0\n' } });
    const keys = await repo.keys('timestamp');
    const ts = await repo.readMetadata('timestamp.json');
    const expired = withSigned(ts, { version: ts.signed.version + 1, expires: new Date(Date.now() - 3_600_000).toISOString().replace(/\.\d+Z$/, 'Z') });
    await repo.writeMetadata('timestamp.json', signWith(expired, keys));
    await expect(robot.check(input(null), new AbortController().signal)).rejects.toMatchObject({ code: 'TRUST_EXPIRED' });
    expect(robot.audit.events.some((e) => e.kind === 'trust-failure' && e.details?.code === 'TRUST_EXPIRED')).toBe(true);
  });

  it('uses a local folder repository (a USB stick) with the same signed metadata', async () => {
    await publishRelease(repo, '1.2.0', { files: { 'VERSION': '1.2.0\n' } });
    const usb = await createSandbox({ url: 'http://127.0.0.1:9', repoDir: repo.repoDir, dir: path.join(repo.dir, 'usb-robot'), product: { repository: { kind: 'local', path: repo.repoDir } } });
    try {
      expect(usb.repository.kind).toBe('local');
      expect(await usb.check(input('1.0.0'), new AbortController().signal)).toMatchObject({ available: true, offer: { version: '1.2.0' } });
    } finally {
      await usb.close();
    }
  });

  it('refuses a local repository without a path with CONFIG_INVALID', async () => {
    await expect(createSandbox({ url: repo.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'bad-robot'), product: { repository: { kind: 'local' } } })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
    });
  });
});

/**
 * TUF delegations end to end: ota-repo (offline, with the top-level targets key) delegates each
 * product to its own role; a publisher holding only that role's key plus the snapshot and
 * timestamp keys (the studio's situation) publishes through it; robots (the real trust module over
 * a real ota-server on loopback) find releases through the delegation, and refuse what the
 * delegated key signs outside its paths, past its expiry, or after it was rotated out.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadDelegatedKeys, type SigningKey } from '../../../src/repo/keys.js';
import { createPublisher, type Publisher } from '../../../src/repo/repository.js';
import { createTestRepo, detectAndDownload, fakePackage, listDir, signWith, withSigned, type AnyMetadata, type TestRepo } from '../../support/tuf-repo.js';
import { createHash } from 'node:crypto';

const HOUR = 3_600_000;
let repo: TestRepo | undefined;

afterEach(async () => {
  await repo?.close();
  repo = undefined;
});

/** A keys folder holding what the studio holds: snapshot and timestamp keys, no top-level targets or root key. */
async function studioKeys(r: TestRepo, name: string): Promise<string> {
  const dir = path.join(r.dir, name);
  await fs.mkdir(dir, { mode: 0o700 });
  for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(r.keysDir, role), path.join(dir, role), { recursive: true });
  return dir;
}

async function stage(r: TestRepo, publisher: Publisher, product: string, version: string): Promise<void> {
  const file = path.join(r.dir, `${product}-${version}.tar.gz`);
  await fs.writeFile(file, fakePackage(`${product}-${version}`));
  await publisher.add({ product, version, packageFile: file, notes: `release ${version}` });
}

async function current(r: TestRepo): Promise<{ timestamp: AnyMetadata; snapshot: AnyMetadata; snapshotVersion: number }> {
  const timestamp = await r.readMetadata('timestamp.json');
  const snapshotVersion = (timestamp.signed as unknown as { snapshotMeta: { version: number } }).snapshotMeta.version;
  return { timestamp, snapshot: await r.readMetadata(`${snapshotVersion}.snapshot.json`), snapshotVersion };
}

/**
 * What a holder of a delegated key (and the snapshot and timestamp keys) can write with software
 * that does not check anything: a new version of the role with extra targets and a new expiry,
 * signed by `roleKeys`, then snapshot and timestamp over it.
 */
async function rogueRoleVersion(r: TestRepo, role: string, roleKeys: SigningKey[], change: { addTargets?: Record<string, unknown>; expires?: string }): Promise<void> {
  const { snapshot, timestamp, snapshotVersion } = await current(r);
  const meta = (snapshot.signed as unknown as { meta: Record<string, { version: number }> }).meta;
  const roleVersion = meta[`${role}.json`]!.version;
  const md = await r.readMetadata(`${roleVersion}.${role}.json`);
  const json = md.toJSON() as { signed: { targets: Record<string, unknown>; expires: string } };
  const roleMd = signWith(withSigned(md, { version: roleVersion + 1, targets: { ...json.signed.targets, ...(change.addTargets ?? {}) }, expires: change.expires ?? json.signed.expires }), roleKeys);
  const roleBytes = Buffer.from(`${JSON.stringify(roleMd.toJSON(), null, 2)}\n`);
  await r.writeMetadata(`${roleVersion + 1}.${role}.json`, roleBytes);
  const hash = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const newMeta = { ...meta, [`${role}.json`]: { version: roleVersion + 1, length: roleBytes.length, hashes: { sha256: hash(roleBytes) } } };
  const snap = signWith(withSigned(snapshot, { version: snapshotVersion + 1, meta: newMeta }), await r.keys('snapshot'));
  const snapBytes = Buffer.from(`${JSON.stringify(snap.toJSON(), null, 2)}\n`);
  await r.writeMetadata(`${snapshotVersion + 1}.snapshot.json`, snapBytes);
  const ts = signWith(
    withSigned(timestamp, { version: timestamp.signed.version + 1, meta: { 'snapshot.json': { version: snapshotVersion + 1, length: snapBytes.length, hashes: { sha256: hash(snapBytes) } } } }),
    await r.keys('timestamp'),
  );
  await r.writeMetadata('timestamp.json', ts);
}

async function stagedTargets(r: TestRepo): Promise<Record<string, unknown>> {
  const staged = JSON.parse(await fs.readFile(path.join(r.repoDir, 'staged.json'), 'utf8')) as Record<string, { length: number; sha256: string; custom: unknown }>;
  await fs.rm(path.join(r.repoDir, 'staged.json'));
  return Object.fromEntries(Object.entries(staged).map(([p, t]) => [p, { length: t.length, hashes: { sha256: t.sha256 }, custom: { otad: t.custom } }]));
}

describe('TUF delegations per product', () => {
  it('a publisher holding only the delegated key publishes a release that a robot finds, downloads and verifies', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    const made = await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys, expiresInMs: 30 * 24 * HOUR });
    expect(made).toMatchObject({ role: 'product-robot-ai', paths: ['robot-ai/*'], replacedKeyIds: [] });
    expect((await fs.stat(made.keyFile)).mode & 0o777).toBe(0o600);
    expect(await listDir(keys)).toEqual(['delegated', 'snapshot', 'timestamp']);

    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    expect(await studio.signingRoleFor('robot-ai')).toEqual({ role: 'product-robot-ai' });
    const topBefore = (await current(repo)).snapshot.signed as unknown as { meta: Record<string, { version: number }> };
    await stage(repo, studio, 'robot-ai', '1.0.0');
    const result = await studio.publish({ role: 'product-robot-ai' });
    expect(result.published).toContain('2.product-robot-ai.json');
    // The top-level targets role was not signed again: the studio cannot.
    expect(result.targetsVersion).toBe(topBefore.meta['targets.json']!.version);
    expect(Object.keys((await repo.readMetadata(`${result.targetsVersion}.targets.json`)).signed as object)).toContain('delegations');

    const robot = await repo.robot();
    const dest = await detectAndDownload(robot, 'robot-ai');
    expect(path.basename(dest)).toBe('robot-ai-1.0.0.tar.gz');
    const topOnRobot = JSON.parse(await fs.readFile(path.join(robot.metadataDir, 'targets.json'), 'utf8')) as { signed: { targets: object } };
    expect(Object.keys(topOnRobot.signed.targets)).toEqual([]);
    expect(await listDir(robot.metadataDir)).toContain('product-robot-ai.json');
    expect((await studio.delegations())[0]).toMatchObject({ role: 'product-robot-ai', version: 2, targets: 3 });
  }, 60_000);

  it('the studio cannot publish a product outside its delegation: PUBLISH_OUTSIDE_DELEGATION, nothing written', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    const before = { metadata: await listDir(path.join(repo.repoDir, 'metadata')), targets: await listDir(path.join(repo.repoDir, 'targets')) };
    await expect(studio.signingRoleFor('vacuum')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION', message: expect.stringContaining('product-robot-ai (robot-ai/*)') });
    // Staged by hand and pushed through the wrong role: refused at signing, nothing signed.
    await stage(repo, studio, 'vacuum', '1.0.0');
    await expect(studio.publish({ role: 'product-robot-ai' })).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION' });
    expect(await listDir(path.join(repo.repoDir, 'metadata'))).toEqual(before.metadata);
  }, 60_000);

  it('a target of another product signed by product-a’s delegated key is not found by the robot', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    await repo.publisher.delegate({ product: 'vacuum' });
    // vacuum 1.0.0 through its own delegation (its key is with the offline publisher here).
    await stage(repo, repo.publisher, 'vacuum', '1.0.0');
    await repo.publisher.publish({ role: 'product-vacuum' });
    // The robot-ai key holder signs vacuum 9.9.9 into product-robot-ai.
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, studio, 'vacuum', '9.9.9');
    await rogueRoleVersion(repo, 'product-robot-ai', await loadDelegatedKeys(keys, 'product-robot-ai'), { addTargets: await stagedTargets(repo) });

    const robot = await repo.robot();
    expect((await robot.repo.latestRelease('vacuum'))?.manifest.version).toBe('1.0.0');
    await expect(robot.repo.downloadTarget({ name: 'vacuum/vacuum-9.9.9.tar.gz', length: 1, sha256: '0'.repeat(64) }, path.join(robot.downloadDir, 'x'))).rejects.toMatchObject({
      code: 'TRUST_TARGET_UNKNOWN',
    });
    expect(await listDir(robot.downloadDir)).toEqual([]);
    // Listing robot-ai walks product-robot-ai: its entries outside robot-ai/* are reported and ignored.
    expect(await robot.repo.latestRelease('robot-ai')).toBeNull();
    expect(robot.audit.events.some((e) => (e.details as { code?: string } | undefined)?.code === 'TRUST_DELEGATION_VIOLATION')).toBe(true);
  }, 60_000);

  it('an expired delegation is refused by the robot (TRUST_EXPIRED) and by the publisher (PUBLISH_DELEGATION_EXPIRED)', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    // tuf-js judges expiry by the real time: the delegation is made and used three hours ago, for two hours.
    const now = repo.publisherClock.now();
    repo.publisherClock.jumpTo(now - 3 * HOUR);
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys, expiresInMs: 2 * HOUR });
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, studio, 'robot-ai', '1.0.0');
    await studio.publish({ role: 'product-robot-ai' });
    repo.publisherClock.jumpTo(now);

    const robot = await repo.robot();
    await expect(robot.repo.latestRelease('robot-ai')).rejects.toMatchObject({ code: 'TRUST_EXPIRED', message: expect.stringContaining('product-robot-ai.json is expired') });
    await expect(studio.signingRoleFor('robot-ai')).rejects.toMatchObject({ code: 'PUBLISH_DELEGATION_EXPIRED' });
    await stage(repo, studio, 'robot-ai', '1.0.1');
    const before = await listDir(path.join(repo.repoDir, 'metadata'));
    await expect(studio.publish({ role: 'product-robot-ai' })).rejects.toMatchObject({ code: 'PUBLISH_DELEGATION_EXPIRED' });
    expect(await listDir(path.join(repo.repoDir, 'metadata'))).toEqual(before);

    // Renewed offline (a rotation with a new expiry): robots find the release again.
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys, expiresInMs: 24 * HOUR });
    expect((await (await repo.robot()).repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');
  }, 60_000);

  it('a role signed with an expiry later than its delegation allows is refused (TRUST_DELEGATION_VIOLATION)', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys, expiresInMs: 2 * HOUR });
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, studio, 'robot-ai', '1.0.0');
    await rogueRoleVersion(repo, 'product-robot-ai', await loadDelegatedKeys(keys, 'product-robot-ai'), {
      addTargets: await stagedTargets(repo),
      expires: new Date(repo.publisherClock.now() + 365 * 24 * HOUR).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
    const robot = await repo.robot();
    expect(await robot.repo.latestRelease('robot-ai')).toBeNull();
    expect(robot.logger.lines.some((e) => (e.fields as { code?: string }).code === 'TRUST_DELEGATION_VIOLATION')).toBe(true);
  }, 60_000);

  it('after a rotation the old delegated key is refused; releases signed before are carried over', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    const oldKeys = await loadDelegatedKeys(keys, 'product-robot-ai');
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, studio, 'robot-ai', '1.0.0');
    await studio.publish({ role: 'product-robot-ai' });

    const rotated = await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    expect(rotated.replacedKeyIds).toEqual(oldKeys.map((k) => k.keyid));
    expect(rotated.carriedTargets).toBe(3);
    expect((await loadDelegatedKeys(keys, 'product-robot-ai')).map((k) => k.keyid)).toEqual([rotated.keyid]);
    expect(await listDir(path.join(keys, 'retired'))).toEqual([`product-robot-ai-${oldKeys[0]!.keyid}.json`]);
    const robot = await repo.robot();
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');

    // A studio left with only the old key cannot publish…
    const oldDir = await studioKeys(repo, 'old-studio-keys');
    await fs.mkdir(path.join(oldDir, 'delegated', 'product-robot-ai'), { recursive: true });
    await fs.copyFile(path.join(keys, 'retired', `product-robot-ai-${oldKeys[0]!.keyid}.json`), path.join(oldDir, 'delegated', 'product-robot-ai', `${oldKeys[0]!.keyid}.json`));
    const oldStudio = createPublisher({ repoDir: repo.repoDir, keysDir: oldDir, clock: repo.publisherClock });
    await expect(oldStudio.signingRoleFor('robot-ai')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION' });
    // …and what the old key signs anyway is refused by the robot.
    await stage(repo, oldStudio, 'robot-ai', '2.0.0');
    await rogueRoleVersion(repo, 'product-robot-ai', oldKeys, { addTargets: await stagedTargets(repo) });
    await expect((await repo.robot()).repo.latestRelease('robot-ai')).rejects.toMatchObject({ code: 'TRUST_SIGNATURE' });
  }, 60_000);
});

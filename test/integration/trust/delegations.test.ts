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

async function stage(r: TestRepo, publisher: Publisher, product: string, version: string, channel?: string): Promise<void> {
  const file = path.join(r.dir, `${product}-${version}.tar.gz`);
  await fs.writeFile(file, fakePackage(`${product}-${version}`));
  await publisher.add({ product, version, packageFile: file, notes: `release ${version}`, ...(channel !== undefined ? { channel } : {}) });
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

describe('TUF delegations per channel, with thresholds, and removed', () => {
  it('a channel delegated on its own: its releases go under robot-ai/beta/, robots on beta find them, the beta key signs nothing else', async () => {
    repo = await createTestRepo();
    const product = await studioKeys(repo, 'product-keys');
    const beta = await studioKeys(repo, 'beta-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: product });
    const made = await repo.publisher.delegate({ product: 'robot-ai', channel: 'beta', keyOut: beta });
    expect(made).toMatchObject({ role: 'product-robot-ai~beta', channel: 'beta', paths: ['robot-ai/beta/*'], threshold: 1 });
    const productStudio = createPublisher({ repoDir: repo.repoDir, keysDir: product, clock: repo.publisherClock });
    const betaStudio = createPublisher({ repoDir: repo.repoDir, keysDir: beta, clock: repo.publisherClock });

    await stage(repo, productStudio, 'robot-ai', '1.0.0');
    await productStudio.publish({ role: (await productStudio.signingRoleFor('robot-ai', 'stable')).role! });
    expect(await betaStudio.signingRoleFor('robot-ai', 'beta')).toEqual({ role: 'product-robot-ai~beta' });
    await stage(repo, betaStudio, 'robot-ai', '1.1.0-beta.1', 'beta');
    expect(Object.keys(JSON.parse(await fs.readFile(path.join(repo.repoDir, 'staged.json'), 'utf8')) as object).every((t) => t.startsWith('robot-ai/beta/'))).toBe(true);
    const published = await betaStudio.publish({ role: 'product-robot-ai~beta' });
    expect(published.published).toContain('2.product-robot-ai~beta.json');

    const robot = await repo.robot();
    expect((await robot.repo.latestRelease('robot-ai', { channel: 'beta', allowPrerelease: true }))?.manifest).toMatchObject({ version: '1.1.0-beta.1', channel: 'beta', package: { target: 'robot-ai/beta/robot-ai-1.1.0-beta.1.tar.gz' } });
    expect((await robot.repo.latestRelease('robot-ai', { allowPrerelease: true }))?.manifest.version).toBe('1.0.0');
    expect(await listDir(robot.metadataDir)).toContain('product-robot-ai~beta.json');

    // The product's key cannot sign the beta channel (its targets are under robot-ai/beta/, outside robot-ai/*)…
    await expect(productStudio.signingRoleFor('robot-ai', 'beta')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION', message: expect.stringContaining('product-robot-ai~beta') });
    // …and the beta key cannot sign stable: refused by the publisher, and ignored by robots when signed anyway.
    await expect(betaStudio.signingRoleFor('robot-ai', 'stable')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION' });
    await stage(repo, productStudio, 'robot-ai', '9.0.0');
    await expect(betaStudio.publish({ role: 'product-robot-ai~beta' })).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION' });
    await rogueRoleVersion(repo, 'product-robot-ai~beta', await loadDelegatedKeys(beta, 'product-robot-ai~beta'), { addTargets: await stagedTargets(repo) });
    const after = await repo.robot();
    expect((await after.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');
    await expect(after.repo.downloadTarget({ name: 'robot-ai/robot-ai-9.0.0.tar.gz', length: 1, sha256: '0'.repeat(64) }, path.join(after.downloadDir, 'x'))).rejects.toMatchObject({ code: 'TRUST_TARGET_UNKNOWN' });
    expect((await after.repo.latestRelease('robot-ai', { channel: 'beta', allowPrerelease: true }))?.manifest.version).toBe('1.1.0-beta.1');
    expect(after.audit.events.some((e) => (e.details as { code?: string } | undefined)?.code === 'TRUST_DELEGATION_VIOLATION')).toBe(true);
  }, 60_000);

  it('threshold 2 of 3: two keys publish and robots accept; one key is refused by the publisher, and a version signed by one key of two is refused by the robot', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    const made = await repo.publisher.delegate({ product: 'robot-ai', keyCount: 3, threshold: 2, keyOut: keys });
    expect(made.keyids).toHaveLength(3);
    expect(made.keyFiles).toHaveLength(3);
    const delegation = ((await repo.readMetadata(`${made.publish.targetsVersion}.targets.json`)).toJSON() as unknown as { signed: { delegations: { roles: Array<{ name: string; keyids: string[]; threshold: number }> } } }).signed.delegations.roles[0]!;
    expect(delegation).toMatchObject({ name: 'product-robot-ai', threshold: 2 });
    expect([...delegation.keyids].sort()).toEqual([...made.keyids].sort());
    const all = await loadDelegatedKeys(keys, 'product-robot-ai');
    // Two of the three keys with the studio: enough.
    await fs.rm(path.join(keys, 'delegated', 'product-robot-ai', `${all[2]!.keyid}.json`));
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, studio, 'robot-ai', '1.0.0');
    const result = await studio.publish({ role: (await studio.signingRoleFor('robot-ai')).role! });
    const roleMd = await repo.readMetadata(`${result.published.find((f) => f.endsWith('.product-robot-ai.json'))!}`);
    expect(roleMd.signatures ? Object.keys(roleMd.signatures) : []).toHaveLength(2);
    expect((await (await repo.robot()).repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');

    // One key: the publisher refuses before anything is stored, saying why.
    const one = await studioKeys(repo, 'one-key');
    await fs.mkdir(path.join(one, 'delegated', 'product-robot-ai'), { recursive: true });
    await fs.copyFile(path.join(keys, 'delegated', 'product-robot-ai', `${all[0]!.keyid}.json`), path.join(one, 'delegated', 'product-robot-ai', `${all[0]!.keyid}.json`));
    const lone = createPublisher({ repoDir: repo.repoDir, keysDir: one, clock: repo.publisherClock });
    await expect(lone.signingRoleFor('robot-ai')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION', message: expect.stringContaining('holds 1 of the keys of product-robot-ai (robot-ai/*), whose threshold is 2') });
    await stage(repo, lone, 'robot-ai', '2.0.0');
    const before = await listDir(path.join(repo.repoDir, 'metadata'));
    await expect(lone.publish({ role: 'product-robot-ai' })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('threshold is 2') });
    expect(await listDir(path.join(repo.repoDir, 'metadata'))).toEqual(before);
    // Signed by that one key anyway (with valid snapshot and timestamp): the robot's tuf-js refuses the role.
    await rogueRoleVersion(repo, 'product-robot-ai', [all[0]!], { addTargets: await stagedTargets(repo) });
    await expect((await repo.robot()).repo.latestRelease('robot-ai')).rejects.toMatchObject({ code: 'TRUST_SIGNATURE' });
  }, 60_000);

  it('a removed delegation: robots no longer find what it signed, even what its key signs afterwards; its key holder is refused; made again, it continues', async () => {
    repo = await createTestRepo();
    const keys = await studioKeys(repo, 'studio-keys');
    await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    await repo.publisher.delegate({ product: 'vacuum' });
    const roleKeys = await loadDelegatedKeys(keys, 'product-robot-ai');
    // The studio's copy of the key (on its own machine): undelegate retires only the copies in --key-out.
    const studioCopy = await studioKeys(repo, 'studio-copy');
    await fs.cp(path.join(keys, 'delegated'), path.join(studioCopy, 'delegated'), { recursive: true });
    const studio = createPublisher({ repoDir: repo.repoDir, keysDir: studioCopy, clock: repo.publisherClock });
    await stage(repo, studio, 'robot-ai', '1.0.0');
    await studio.publish({ role: 'product-robot-ai' });
    const robot = await repo.robot();
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.0.0');

    const removed = await repo.publisher.undelegate({ product: 'robot-ai', keyOut: keys });
    expect(removed).toMatchObject({ role: 'product-robot-ai', paths: ['robot-ai/*'], removedKeyIds: roleKeys.map((k) => k.keyid), retiredKeyFiles: 1, droppedTargets: 3 });
    expect(await listDir(path.join(keys, 'delegated', 'product-robot-ai'))).toEqual([]);
    expect((await repo.publisher.delegations()).map((d) => d.role)).toEqual(['product-vacuum']);
    const top = ((await repo.readMetadata(`${removed.publish.targetsVersion}.targets.json`)).toJSON() as unknown as { signed: { delegations: { keys: Record<string, unknown>; roles: Array<{ name: string }> } } }).signed;
    expect(top.delegations.roles.map((r) => r.name)).toEqual(['product-vacuum']);
    expect(Object.keys(top.delegations.keys)).not.toContain(roleKeys[0]!.keyid);
    // The snapshot still lists the role's last version: TUF clients refuse a snapshot that drops a file.
    expect(Object.keys(((await current(repo)).snapshot.signed as unknown as { meta: object }).meta)).toContain('product-robot-ai.json');

    // The same robot (its cache holds the role) refreshes and accepts the new metadata; the release is gone.
    await robot.repo.refresh();
    expect(await robot.repo.latestRelease('robot-ai')).toBeNull();
    await expect(robot.repo.downloadTarget({ name: 'robot-ai/robot-ai-1.0.0.tar.gz', length: 1, sha256: '0'.repeat(64) }, path.join(robot.downloadDir, 'x'))).rejects.toMatchObject({ code: 'TRUST_TARGET_UNKNOWN' });
    // The studio still holding the key: refused before anything is stored.
    await expect(studio.signingRoleFor('robot-ai')).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION', message: expect.stringContaining('delegates robot-ai to no role') });
    await stage(repo, studio, 'robot-ai', '2.0.0');
    const before = await listDir(path.join(repo.repoDir, 'metadata'));
    await expect(studio.publish({ role: 'product-robot-ai' })).rejects.toMatchObject({ code: 'PUBLISH_OUTSIDE_DELEGATION' });
    expect(await listDir(path.join(repo.repoDir, 'metadata'))).toEqual(before);
    // What the key signs anyway, with valid snapshot and timestamp: robots do not follow the role any more.
    await rogueRoleVersion(repo, 'product-robot-ai', roleKeys, { addTargets: await stagedTargets(repo) });
    const fresh = await repo.robot();
    expect(await fresh.repo.latestRelease('robot-ai')).toBeNull();
    await robot.repo.refresh();
    expect(await robot.repo.latestRelease('robot-ai')).toBeNull();
    await expect(fresh.repo.downloadTarget({ name: 'robot-ai/robot-ai-2.0.0.tar.gz', length: 1, sha256: '0'.repeat(64) }, path.join(fresh.downloadDir, 'x'))).rejects.toMatchObject({ code: 'TRUST_TARGET_UNKNOWN' });
    await expect(repo.publisher.undelegate({ product: 'robot-ai' })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('delegates to no role product-robot-ai') });

    // Delegated again: the role's numbering continues past what the snapshot lists, so robots accept it.
    const again = await repo.publisher.delegate({ product: 'robot-ai', keyOut: keys });
    const listed = ((await current(repo)).snapshot.signed as unknown as { meta: Record<string, { version: number }> }).meta['product-robot-ai.json']!.version;
    expect(again.publish.published).toContain(`${listed}.product-robot-ai.json`);
    expect(listed).toBeGreaterThan(3);
    const renewed = createPublisher({ repoDir: repo.repoDir, keysDir: keys, clock: repo.publisherClock });
    await stage(repo, renewed, 'robot-ai', '3.0.0');
    await renewed.publish({ role: 'product-robot-ai' });
    await robot.repo.refresh();
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('3.0.0');
  }, 60_000);
});

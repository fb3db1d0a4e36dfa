/**
 * Each metadata or transport attack from docs/threats: the robot rejects it with its stable code,
 * reports it, and leaves nothing in its download directory.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { evaluateOffer } from '../../../src/manifest/offer.js';
import type { Snapshot, Timestamp } from '@tufjs/models';
import type { Metadata } from '@tufjs/models';
import {
  createTestRepo,
  detectAndDownload,
  foreignKey,
  listDir,
  signWith,
  withSigned,
  type Robot,
  type TestRepo,
} from '../../support/tuf-repo.js';

let repo: TestRepo | undefined;
afterEach(async () => {
  await repo?.close();
  repo = undefined;
});

async function setup(init: Parameters<typeof createTestRepo>[0] = {}): Promise<{ repo: TestRepo; robot: Robot }> {
  repo = await createTestRepo(init);
  await repo.release('robot-ai', '1.0.0');
  return { repo, robot: await repo.robot() };
}

async function expectRejected(robot: Robot, code: string): Promise<void> {
  await expect(detectAndDownload(robot, 'robot-ai')).rejects.toMatchObject({ code });
  expect(await listDir(robot.downloadDir)).toEqual([]);
}

async function bumpTimestamp(r: TestRepo, changes: Record<string, unknown> = {}): Promise<Metadata<Timestamp>> {
  const ts = await r.readMetadata<Metadata<Timestamp>>('timestamp.json');
  return withSigned(ts, { version: ts.signed.version + 1, ...changes });
}

describe('metadata attacks are rejected with their code and nothing is downloaded', () => {
  it('timestamp signed by a key the root does not know → TRUST_SIGNATURE, audited', async () => {
    const { repo: r, robot } = await setup();
    await r.writeMetadata('timestamp.json', signWith(await bumpTimestamp(r), [foreignKey('timestamp')]));
    await expectRejected(robot, 'TRUST_SIGNATURE');
    expect(robot.audit.events.some((e) => e.kind === 'signature-failure')).toBe(true);
  });

  it('timestamp signed by fewer keys than the threshold → TRUST_SIGNATURE', async () => {
    const { repo: r, robot } = await setup({ thresholds: { timestamp: 2 } });
    const [one] = await r.keys('timestamp');
    await r.writeMetadata('timestamp.json', signWith(await bumpTimestamp(r), [one!]));
    await expectRejected(robot, 'TRUST_SIGNATURE');
  });

  it('a new root that skips a version → TRUST_ROLLBACK, trusted root kept', async () => {
    const { repo: r, robot } = await setup();
    const root = await r.readMetadata('1.root.json');
    await r.writeMetadata('2.root.json', signWith(withSigned(root, { version: 3 }), await r.keys('root')));
    await expectRejected(robot, 'TRUST_ROLLBACK');
    const cached = JSON.parse(await fs.readFile(path.join(robot.metadataDir, 'root.json'), 'utf8')) as { signed: { version: number } };
    expect(cached.signed.version).toBe(1);
  });

  it('a new root not signed by the old root keys → TRUST_SIGNATURE', async () => {
    const { repo: r, robot } = await setup();
    const root = await r.readMetadata('1.root.json');
    await r.writeMetadata('2.root.json', signWith(withSigned(root, { version: 2 }), [foreignKey('root')]));
    await expectRejected(robot, 'TRUST_SIGNATURE');
  });

  it('an expired timestamp (freeze) → TRUST_EXPIRED', async () => {
    const { repo: r, robot } = await setup();
    r.publisherClock.advance(-3 * 86_400_000);
    await r.publisher.refreshTimestamp();
    await expectRejected(robot, 'TRUST_EXPIRED');
  });

  it('a timestamp older than one already trusted (rollback) → TRUST_ROLLBACK', async () => {
    const { repo: r, robot } = await setup();
    const old = await fs.readFile(r.metadataPath('timestamp.json'));
    await r.release('robot-ai', '1.1.0');
    await robot.repo.refresh();
    await r.writeMetadata('timestamp.json', old);
    await expect(robot.repo.refresh()).rejects.toMatchObject({ code: 'TRUST_ROLLBACK' });
    await expectRejected(robot, 'TRUST_ROLLBACK');
  });

  it('a snapshot that does not match what the timestamp signed (mix-and-match) → TRUST_MIX_AND_MATCH', async () => {
    const { repo: r, robot } = await setup();
    const ts = await r.readMetadata<Metadata<Timestamp>>('timestamp.json');
    const name = `${ts.signed.snapshotMeta.version}.snapshot.json`;
    const snapshot = await r.readMetadata<Metadata<Snapshot>>(name);
    // Validly signed by the snapshot key, same version, but not the bytes the timestamp names.
    const forged = signWith(withSigned(snapshot, { expires: '2099-01-01T00:00:00Z' }), await r.keys('snapshot'));
    await r.writeMetadata(name, forged);
    await expectRejected(robot, 'TRUST_MIX_AND_MATCH');
  });

  it('targets metadata from another snapshot (mix-and-match) → TRUST_MIX_AND_MATCH', async () => {
    const { repo: r, robot } = await setup();
    const old = await fs.readFile(r.metadataPath('1.targets.json'));
    await r.release('robot-ai', '1.1.0'); // targets 3 is now the signed one
    await r.writeMetadata('3.targets.json', old);
    await expectRejected(robot, 'TRUST_MIX_AND_MATCH');
  });

  it('a 10 MB timestamp → download stopped at the cap, TRUST_METADATA_TOO_LARGE', async () => {
    const { repo: r, robot } = await setup();
    await r.writeMetadata('timestamp.json', Buffer.alloc(10 * 1024 * 1024, 0x20));
    await expectRejected(robot, 'TRUST_METADATA_TOO_LARGE');
  });

  it('a targets file bigger than its snapshot entry → stopped at the signed length', async () => {
    const { repo: r, robot } = await setup();
    const path2 = r.metadataPath('2.targets.json');
    await fs.appendFile(path2, Buffer.alloc(1024, 0x20));
    await expect(robot.repo.refresh()).rejects.toMatchObject({ code: 'TRUST_METADATA_TOO_LARGE' });
  });
});

describe('target attacks', () => {
  it('a package longer than its signed length → TRUST_LENGTH_MISMATCH, partial removed', async () => {
    const { repo: r, robot } = await setup();
    await fs.appendFile(await r.targetFile('robot-ai/robot-ai-1.0.0.tar.gz'), Buffer.alloc(64 * 1024, 1));
    await expectRejected(robot, 'TRUST_LENGTH_MISMATCH');
  });

  it('a package with one bit flipped → TRUST_HASH_MISMATCH, nothing kept', async () => {
    const { repo: r, robot } = await setup();
    const file = await r.targetFile('robot-ai/robot-ai-1.0.0.tar.gz');
    const bytes = await fs.readFile(file);
    bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0x10;
    await fs.writeFile(file, bytes);
    await expectRejected(robot, 'TRUST_HASH_MISMATCH');
  });

  it('a manifest whose bytes differ from its signed hash → TRUST_HASH_MISMATCH', async () => {
    const { repo: r, robot } = await setup();
    const file = await r.targetFile('robot-ai/robot-ai-1.0.0.manifest.json');
    const text = await fs.readFile(file, 'utf8');
    await fs.writeFile(file, text.replace('"release 1.0.0"', '"release 9.9.9"'));
    await expectRejected(robot, 'TRUST_HASH_MISMATCH');
  });

  it('a target the signed metadata does not list → TRUST_TARGET_UNKNOWN', async () => {
    const { robot } = await setup();
    const dest = path.join(robot.downloadDir, 'x.tar.gz');
    await expect(robot.repo.downloadTarget({ name: 'robot-ai/evil.tar.gz', length: 10, sha256: '0'.repeat(64) }, dest)).rejects.toMatchObject({
      code: 'TRUST_TARGET_UNKNOWN',
    });
    expect(await listDir(robot.downloadDir)).toEqual([]);
  });
});

/** The publisher signs whatever it is given: vacuum's genuine 3.0.0 manifest filed as robot-ai's. */
async function fileVacuumManifestUnderRobotAi(r: TestRepo): Promise<void> {
  const vac = (await r.publisher.listTargets()).find((t) => t.name === 'vacuum/vacuum-3.0.0.manifest.json')!;
  await r.publisher.stageTarget('robot-ai/robot-ai-3.0.0.manifest.json', { file: await r.targetFile(vac.name) }, { kind: 'manifest', product: 'robot-ai', version: '3.0.0', channel: 'stable' });
  await r.publisher.publish();
}

describe('releases that must not be offered', () => {
  it('a genuinely signed manifest for another product under this product → RELEASE_WRONG_PRODUCT', async () => {
    repo = await createTestRepo();
    await repo.release('robot-ai', '1.0.0');
    // The publisher signs whatever it is given: a manifest for "vacuum" filed under robot-ai/.
    const manifests = await repo.publisher.listTargets();
    const vacuum = await repo.release('vacuum', '3.0.0');
    await fileVacuumManifestUnderRobotAi(repo);
    // robot-ai 1.0.0's package, manifest and tree index.
    expect(manifests.map((t) => t.name).sort()).toEqual(['robot-ai/robot-ai-1.0.0.index.json', 'robot-ai/robot-ai-1.0.0.manifest.json', 'robot-ai/robot-ai-1.0.0.tar.gz']);
    expect(vacuum.packageName).toBe('vacuum/vacuum-3.0.0.tar.gz');
    const robot = await repo.robot();
    // It is passed over and reported, never taken for robot-ai: the older genuine release is what
    // the robot sees, and the foreign manifest is audited as a trust failure.
    const passed: Array<{ version: string; code: string }> = [];
    const latest = await robot.repo.latestRelease('robot-ai', { onPassedOver: (p) => passed.push({ version: p.version, code: p.error.code }) });
    expect(latest?.manifest.product).toBe('robot-ai');
    expect(latest?.manifest.version).toBe('1.0.0');
    expect(passed).toEqual([{ version: '3.0.0', code: 'RELEASE_WRONG_PRODUCT' }]);
    expect(robot.audit.events.some((e) => e.kind === 'trust-failure' && e.message.includes('robot-ai-3.0.0') && e.details?.code === 'RELEASE_WRONG_PRODUCT')).toBe(true);
    expect(await listDir(robot.downloadDir)).toEqual([]);
  });

  it('a genuinely signed manifest for another product as the only release → RELEASE_WRONG_PRODUCT, nothing downloaded', async () => {
    repo = await createTestRepo();
    await repo.release('vacuum', '3.0.0');
    await fileVacuumManifestUnderRobotAi(repo);
    const robot = await repo.robot();
    await expectRejected(robot, 'RELEASE_WRONG_PRODUCT');
  });

  it('an older release than the one installed → not offered (RELEASE_DOWNGRADE)', async () => {
    const { robot } = await setup();
    const latest = (await robot.repo.latestRelease('robot-ai'))!;
    const decision = evaluateOffer({ manifest: latest.manifest, product: 'robot-ai', installedVersion: '2.0.0', channelAllowsPrerelease: false, allowDowngrade: false });
    expect(decision).toMatchObject({ offered: false, reason: 'downgrade', code: 'RELEASE_DOWNGRADE' });
  });
});

describe('trusted root and clock', () => {
  it('a truncated cached trusted root is restored from the golden copy and the refresh succeeds', async () => {
    const { robot } = await setup();
    await robot.repo.refresh();
    const cached = path.join(robot.metadataDir, 'root.json');
    const bytes = await fs.readFile(cached);
    await fs.writeFile(cached, bytes.subarray(0, bytes.length >> 1));
    await robot.repo.refresh();
    expect(await fs.readFile(cached)).toEqual(await fs.readFile(robot.goldenRootPath));
    expect(robot.audit.events.some((e) => e.kind === 'recovery')).toBe(true);
    expect(await detectAndDownload(robot, 'robot-ai')).toContain('robot-ai-1.0.0.tar.gz');
  });

  it('a cached root with a broken signature is replaced as well (no crash loop)', async () => {
    const { robot } = await setup();
    await robot.repo.refresh();
    const cached = path.join(robot.metadataDir, 'root.json');
    const json = JSON.parse(await fs.readFile(cached, 'utf8')) as { signed: { expires: string } };
    json.signed.expires = '2100-01-01T00:00:00Z';
    await fs.writeFile(cached, JSON.stringify(json));
    await robot.repo.refresh();
    await robot.repo.refresh();
    expect(robot.logger.lines.filter((l) => l.message.includes('restored from the golden copy'))).toHaveLength(1);
  });

  it('a clock years in the past → CLOCK_NOT_SYNCED before any metadata is trusted', async () => {
    repo = await createTestRepo();
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot({ clock: new ManualClock('2012-06-01T00:00:00Z') });
    await expectRejected(robot, 'CLOCK_NOT_SYNCED');
  });

  it('a clock behind the signing time of the metadata → CLOCK_NOT_SYNCED', async () => {
    repo = await createTestRepo();
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot({ clock: new ManualClock(Date.now() - 10 * 86_400_000) });
    await expectRejected(robot, 'CLOCK_NOT_SYNCED');
  });

  it('a clock years in the future → CLOCK_NOT_SYNCED, not a trust failure', async () => {
    repo = await createTestRepo();
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot({ clock: new ManualClock(Date.now() + 3 * 365 * 86_400_000) });
    await expectRejected(robot, 'CLOCK_NOT_SYNCED');
  });
});

/**
 * Deltas end to end at the step level: releases published with the real publisher (tree index,
 * size-gated deltas) behind a real ota-server, the robot's check and stage steps wired as the
 * daemon wires them, the installed release a real directory behind the install symlink.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPackage } from '../../../src/package/create.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';
import { Store } from '../../../src/store/store.js';
import { deltaFallbackKey } from '../../../src/steps/check.js';
import { createSandbox, editSameSize, offerFor, publishRelease, treeHashes, writeTree, type Sandbox } from './check-stage-harness.js';

/** 100 small files and one model: a 1 % change is one small file. */
function releaseFiles(version: string, opts: { model?: Buffer; changed?: number[] } = {}): Record<string, string | Buffer> {
  const files: Record<string, string | Buffer> = { VERSION: `${version}\n`, 'config/robot.yaml': 'speed: 2\n', 'models/planner.bin': opts.model ?? MODEL };
  for (let i = 0; i < 100; i += 1) {
    const seed = opts.changed?.includes(i) === true ? `${version}-${i}` : `base-${i}`;
    files[`lib/mod${i}.py`] = createHash('sha256').update(seed).digest('hex').repeat(40);
  }
  return files;
}
const MODEL = randomBytes(400_000);

const signal = () => new AbortController().signal;


/** What apply leaves: the release tree (plus otad's marker) in releases/<version>, the install path a symlink to it. */
async function install(robot: Sandbox, repo: TestRepo, version: string): Promise<string> {
  const dir = path.join(robot.product.releasesDir!, version);
  await fs.cp(path.join(repo.dir, `src-${version}`), dir, { recursive: true });
  await fs.writeFile(path.join(dir, '.ota-release.json'), JSON.stringify({ version }));
  await fs.mkdir(path.dirname(robot.product.installPath), { recursive: true });
  await fs.rm(robot.product.installPath, { force: true });
  await fs.symlink(dir, robot.product.installPath);
  return dir;
}

function downloaded(robot: Sandbox): number {
  return robot.progress.filter((p) => p.step === 'download').reduce((max, p) => Math.max(max, p.bytes), 0);
}

describe('delta updates: publish, offer and stage against a real ota-server', () => {
  let repo: TestRepo;
  let robot: Sandbox;
  beforeEach(async () => {
    repo = await createTestRepo();
    robot = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'robot'), product: { preservedPaths: ['config'] } });
  });
  afterEach(async () => {
    await robot.close();
    await repo.close();
  });

  it('stages a 1 % change from the delta: the download is the delta, the tree is the release, verified against the signed index', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    await install(robot, repo, '1.0.0');
    const offer = await offerFor(robot, '1.0.0');
    expect(offer.index).toBeDefined();
    expect(offer.delta?.fromVersion).toBe('1.0.0');
    expect(offer.downloadBytes).toBe(offer.delta!.target.length);
    expect(offer.delta!.target.length).toBeLessThan(offer.package.length * 0.05);

    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('delta');
    expect(out.indexVerified).toBe(true);
    expect(out.deltaFallback).toBeUndefined();
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
    // Modes come from the index too.
    expect((await fs.stat(path.join(out.releaseDir, 'lib'))).mode & 0o777).toBe(0o755);
    // Copies, never hard links: the running release cannot change the new one.
    expect((await fs.stat(path.join(out.releaseDir, 'models/planner.bin'))).nlink).toBe(1);
    expect(downloaded(robot)).toBe(offer.delta!.target.length);
    expect(robot.audit.events.filter((e) => e.kind === 'delta-fallback')).toEqual([]);
    expect(robot.progress.at(-1)).toMatchObject({ step: 'extract', message: 'assembled from the delta and verified against the signed tree index' });
    // Nothing left beside the staged tree.
    expect(await fs.readdir(robot.stagingRoot)).toEqual(['run-1']);
  });

  it('a file modified locally under the install path: falls back to the full package and says so (log, audit, status)', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const current = await install(robot, repo, '1.0.0');
    // Same size, other bytes: only the hash can tell.
    const victim = path.join(current, 'lib/mod3.py');
    await editSameSize(victim);
    const offer = await offerFor(robot, '1.0.0');

    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.indexVerified).toBe(true);
    expect(out.deltaFallback?.code).toBe('RELEASE_TREE_MISMATCH');
    expect(out.deltaFallback?.message).toContain('lib/mod3.py');
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
    const audits = robot.audit.events.filter((e) => e.kind === 'delta-fallback');
    expect(audits).toHaveLength(1);
    expect(audits[0]!.details).toMatchObject({ code: 'RELEASE_TREE_MISMATCH', path: 'lib/mod3.py', fromVersion: '1.0.0' });
    expect(robot.logger.lines.some((e) => e.level === 'warn' && e.message.startsWith('delta from 1.0.0 not used: RELEASE_TREE_MISMATCH'))).toBe(true);
    expect(robot.progress.some((p) => p.message?.includes('downloading the full package') === true)).toBe(true);
    expect(downloaded(robot)).toBe(offer.package.length);
  });

  it('an unchanged file replaced by a FIFO, in the installed release: falls back to the full package, nothing blocks', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const current = await install(robot, repo, '1.0.0');
    // A small file (read by direct calls) becomes a FIFO: opening it for reading would wait for a writer.
    await fs.rm(path.join(current, 'lib/mod4.py'));
    execFileSync('mkfifo', [path.join(current, 'lib/mod4.py')]);
    const offer = await offerFor(robot, '1.0.0');
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.deltaFallback?.code).toBe('RELEASE_TREE_MISMATCH');
    expect(out.deltaFallback?.message).toContain('lib/mod4.py');
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
  });

  it('the model (over 64 KiB, copied with copyFile) gone from the installed release: falls back to the full package', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const current = await install(robot, repo, '1.0.0');
    await fs.rm(path.join(current, 'models/planner.bin'));
    const offer = await offerFor(robot, '1.0.0');
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.deltaFallback?.code).toBe('RELEASE_TREE_MISMATCH');
    expect(out.deltaFallback?.message).toContain('models/planner.bin');
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
  });

  it('a locally changed preserved file does not defeat the delta: apply carries it over anyway', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    const current = await install(robot, repo, '1.0.0');
    await fs.writeFile(path.join(current, 'config/robot.yaml'), 'speed: 3 # tuned on this robot\n');
    const offer = await offerFor(robot, '1.0.0');
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('delta');
    expect(await fs.readFile(path.join(out.releaseDir, 'config/robot.yaml'), 'utf8')).toBe('speed: 3 # tuned on this robot\n');
  });

  it('a corrupt delta on the server: the download fails its signed hash, the full package is staged instead', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    await install(robot, repo, '1.0.0');
    const offer = await offerFor(robot, '1.0.0');
    const stored = path.join(repo.repoDir, 'targets', 'robot-ai', `${offer.delta!.target.sha256}.${path.posix.basename(offer.delta!.target.name)}`);
    const bytes = await fs.readFile(stored);
    bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0xff;
    await fs.writeFile(stored, bytes);

    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.deltaFallback?.code).toBe('TRUST_HASH_MISMATCH');
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(path.join(repo.dir, 'src-1.1.0')));
    expect(robot.audit.events.some((e) => e.kind === 'delta-fallback' && e.details?.code === 'TRUST_HASH_MISMATCH')).toBe(true);
  });

  it('a delta that fell back is not offered again for that release: the next check offers and sizes the full package', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    await publishRelease(repo, '1.1.0', { files: releaseFiles('1.1.0', { changed: [7] }) });
    await install(robot, repo, '1.0.0');
    // The state database and the wiring of the real step provider (src/steps/provider.ts).
    const store = Store.open(path.join(repo.dir, 'robot-state.db'));
    const wired = await createSandbox({
      url: repo.url,
      repoDir: repo.repoDir,
      dir: path.join(repo.dir, 'robot'),
      product: { preservedPaths: ['config'] },
      stage: { onDeltaFallback: (version, from, code) => store.setValue(deltaFallbackKey('robot-ai', version, from), code) },
      check: { deltaFellBack: (p, v, from) => store.getValue(deltaFallbackKey(p, v, from)) },
    });
    try {
      const offer = await offerFor(wired, '1.0.0');
      expect(offer.downloadBytes).toBe(offer.delta!.target.length);
      const stored = path.join(repo.repoDir, 'targets', 'robot-ai', `${offer.delta!.target.sha256}.${path.posix.basename(offer.delta!.target.name)}`);
      const bytes = await fs.readFile(stored);
      bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0xff;
      await fs.writeFile(stored, bytes);
      const out = await wired.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
      expect(out.deltaFallback?.code).toBe('TRUST_HASH_MISMATCH');
      expect(store.getValue(deltaFallbackKey('robot-ai', '1.1.0', '1.0.0'))).toBe('TRUST_HASH_MISMATCH');

      // The run did not install it (a later pre-check failed, the robot was turned off…): the next check.
      const again = await offerFor(wired, '1.0.0');
      expect(again.version).toBe('1.1.0');
      expect(again.delta).toBeUndefined();
      expect(again.downloadBytes).toBe(again.package.length);
      expect(wired.logger.lines.some((e) => e.message === 'the delta from 1.0.0 fell back to the full package in an earlier run (TRUST_HASH_MISMATCH): offering the full package')).toBe(true);
    } finally {
      await wired.close();
      store.close();
    }
  });

  it('the size gate: a new model makes the delta bigger than 70 % of the package, so none is published and the offer is the full package', async () => {
    await publishRelease(repo, '1.0.0', { files: releaseFiles('1.0.0') });
    const src = path.join(repo.dir, 'src-1.1.0');
    await writeTree(src, releaseFiles('1.1.0', { model: randomBytes(400_000) }));
    const packageFile = path.join(repo.dir, 'robot-ai-1.1.0.tar.gz');
    await createPackage(src, packageFile);
    const added = await repo.publisher.add({ product: 'robot-ai', version: '1.1.0', packageFile });
    await repo.publisher.publish();
    expect(added.deltas).toHaveLength(1);
    expect(added.deltas[0]).toMatchObject({ fromVersion: '1.0.0', published: false });
    expect(added.deltas[0]!.bytes).toBeGreaterThanOrEqual(added.deltas[0]!.limitBytes);
    expect(added.manifest.deltas).toBeUndefined();
    await install(robot, repo, '1.0.0');
    const offer = await offerFor(robot, '1.0.0');
    expect(offer.delta).toBeUndefined();
    expect(offer.downloadBytes).toBe(offer.package.length);
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out.via).toBe('package');
    expect(out.deltaFallback).toBeUndefined();
    expect(downloaded(robot)).toBe(offer.package.length);
  });

  it('deltas from the last N releases only (N configurable), each a signed target; an offer from an older release gets the full package', async () => {
    for (const [i, v] of ['1.0.0', '1.1.0', '1.2.0'].entries()) await publishRelease(repo, v, { files: releaseFiles(v, { changed: [i] }) });
    const src = path.join(repo.dir, 'src-1.3.0');
    await writeTree(src, releaseFiles('1.3.0', { changed: [3] }));
    const packageFile = path.join(repo.dir, 'robot-ai-1.3.0.tar.gz');
    await createPackage(src, packageFile);
    const added = await repo.publisher.add({ product: 'robot-ai', version: '1.3.0', packageFile, deltas: { fromLast: 2 } });
    await repo.publisher.publish();
    expect(added.manifest.deltas?.map((d) => d.fromVersion)).toEqual(['1.2.0', '1.1.0']);
    const listed = await repo.publisher.listTargets();
    for (const d of added.manifest.deltas!) {
      expect(listed.find((t) => t.name === d.target)).toMatchObject({ length: d.length, sha256: d.sha256, custom: { kind: 'delta', version: '1.3.0', fromVersion: d.fromVersion } });
    }
    await install(robot, repo, '1.0.0');
    const offer = await offerFor(robot, '1.0.0');
    expect(offer.delta).toBeUndefined();
    expect((await offerFor(robot, '1.1.0')).delta?.fromVersion).toBe('1.1.0');
  });

  it('an old manifest without a tree index (schema 1.0) is still accepted and staged from the full package', async () => {
    const src = path.join(repo.dir, 'src-1.1.0');
    await writeTree(src, releaseFiles('1.1.0'));
    const packageFile = path.join(repo.dir, 'robot-ai-1.1.0.tar.gz');
    await createPackage(src, packageFile);
    const pkg = await repo.publisher.stageTarget('robot-ai/robot-ai-1.1.0.tar.gz', { file: packageFile }, { kind: 'package', product: 'robot-ai', version: '1.1.0', channel: 'stable' });
    const manifest = {
      schema: '1.0',
      product: 'robot-ai',
      version: '1.1.0',
      channel: 'stable',
      releasedAt: new Date().toISOString(),
      notes: 'from an older ota-repo',
      package: { target: pkg.name, length: pkg.length, sha256: pkg.sha256 },
    };
    await repo.publisher.stageTarget('robot-ai/robot-ai-1.1.0.manifest.json', { bytes: Buffer.from(JSON.stringify(manifest)) }, { kind: 'manifest', product: 'robot-ai', version: '1.1.0', channel: 'stable' });
    await repo.publisher.publish();
    await writeTree(path.join(repo.dir, 'src-1.0.0'), releaseFiles('1.0.0'));
    await install(robot, repo, '1.0.0');
    const offer = await offerFor(robot, '1.0.0');
    expect(offer.index).toBeUndefined();
    expect(offer.delta).toBeUndefined();
    expect(offer.downloadBytes).toBe(offer.package.length);
    const out = await robot.stage({ product: 'robot-ai', runId: 'run-1', offer }, signal());
    expect(out).toMatchObject({ via: 'package', indexVerified: false });
    expect(await treeHashes(out.releaseDir)).toEqual(await treeHashes(src));
    expect(robot.logger.lines.some((e) => e.message.includes('has no tree index (manifest schema 1.0)'))).toBe(true);

    // The next release (indexed) gets a delta from the unindexed one: the publisher reads its package.
    const next = await publishRelease(repo, '1.2.0', { files: releaseFiles('1.2.0', { changed: [1] }) });
    expect(next.packageFile).toBeTruthy();
    await install(robot, repo, '1.1.0');
    expect((await offerFor(robot, '1.1.0')).delta?.fromVersion).toBe('1.1.0');
  });
});

/**
 * preview() computes the release add() would stage (manifest, package, tree index, deltas) and
 * stores nothing; add() with the previewed SHA-256s as `expect` stages exactly those bytes, and
 * refuses when anything the manifest names changed in between: here, a release published after
 * the preview, which gives the new release another delta base.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createPackage } from '../../../src/package/create.js';
import { createPublisher, type Publisher } from '../../../src/repo/repository.js';
import { makeTempDir } from '../../support/tuf-repo.js';

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(root, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  return out.sort();
}

describe('publisher preview', () => {
  let dir: string;
  let publisher: Publisher;
  const source = async (version: string, model: string): Promise<string> => {
    const root = path.join(dir, 'src', version);
    await fs.mkdir(path.join(root, 'bin'), { recursive: true });
    await fs.writeFile(path.join(root, 'VERSION'), `${version}\n`);
    await fs.writeFile(path.join(root, 'bin/run'), '#!/bin/sh\necho run\n');
    // Big enough and random, so the delta of a small change passes the size gate.
    await fs.writeFile(path.join(root, 'model.bin'), createHash('sha512').update(model).digest().toString('hex').repeat(2000));
    return root;
  };

  beforeEach(async () => {
    dir = await makeTempDir('otad-preview-');
    publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
    await publisher.init();
    await publisher.add({ product: 'robot-ai', version: '1.0.0', sourceDir: await source('1.0.0', 'm1'), releasedAt: 1_000 });
    await publisher.publish();
  });
  afterEach(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('gives the exact manifest add() then signs, index and deltas included, and stores nothing itself', async () => {
    const src = await source('1.1.0', 'm1');
    const pkg = path.join(dir, 'robot-ai-1.1.0.tar.gz');
    // A package file of its own, as the studio keeps one per draft.
    await createPackage(src, pkg);
    const before = await listFiles(path.join(dir, 'repo'));
    const input = { product: 'robot-ai', version: '1.1.0', packageFile: pkg, releasedAt: 3_000, check: { versionFile: 'VERSION' } } as const;
    const seen = await publisher.preview(input);
    expect(await listFiles(path.join(dir, 'repo'))).toEqual(before);
    expect(seen.manifest.index).toMatchObject({ target: 'robot-ai/robot-ai-1.1.0.index.json' });
    expect(seen.manifest.deltas).toEqual([expect.objectContaining({ fromVersion: '1.0.0' })]);
    const added = await publisher.add({ ...input, expect: { packageSha256: seen.packageTarget.sha256, manifestSha256: seen.manifestTarget.sha256 } });
    expect(added.manifestTarget).toEqual(seen.manifestTarget);
    expect(added.manifest).toEqual(seen.manifest);
  });

  it('refuses with PUBLISH_CONTENT_CHANGED, storing nothing, when a release published since the preview changes the deltas', async () => {
    const pkgSrc = await source('1.2.0', 'm1');
    const input = { product: 'robot-ai', version: '1.2.0', sourceDir: pkgSrc, releasedAt: 3_000 } as const;
    const seen = await publisher.preview(input);
    await publisher.add({ product: 'robot-ai', version: '1.1.0', sourceDir: await source('1.1.0', 'm1'), releasedAt: 2_000 });
    await publisher.publish();
    const before = await listFiles(path.join(dir, 'repo'));
    await expect(publisher.add({ ...input, expect: { packageSha256: seen.packageTarget.sha256, manifestSha256: seen.manifestTarget.sha256 } })).rejects.toMatchObject({
      code: 'PUBLISH_CONTENT_CHANGED',
      message: expect.stringContaining('nothing was stored or signed'),
    });
    expect(await listFiles(path.join(dir, 'repo'))).toEqual(before);
  });
});

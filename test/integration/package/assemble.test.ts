/**
 * assembleRelease (src/package/tree-index.ts) when a copy fails: nothing may still be writing into
 * the new tree once the call has failed, since the stage step removes that tree right after and
 * stages the full package instead.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPackage } from '../../../src/package/create.js';
import { assembleRelease, indexPackage } from '../../../src/package/tree-index.js';
import { rejection } from '../../support/assertions.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-assemble-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('assembleRelease', () => {
  it('after a locally modified file fails it, writes nothing more into the tree, which can be removed at once', async () => {
    const current = join(root, 'current');
    await mkdir(join(current, 'lib'), { recursive: true });
    // The modified file sorts first, so many copies are still to come when it fails.
    await writeFile(join(current, 'lib', 'a-first.txt'), 'as released\n');
    for (let i = 0; i < 300; i++) await writeFile(join(current, 'lib', `m${String(i).padStart(3, '0')}.bin`), randomBytes(32 * 1024));
    const pkg = join(root, 'release.tar.gz');
    await createPackage(current, pkg);
    const index = await indexPackage(pkg, { product: 'robot-ai', version: '2.0.0' });
    await writeFile(join(current, 'lib', 'a-first.txt'), 'changed here\n');
    const deltaFiles = join(root, 'delta-files');
    await mkdir(deltaFiles);
    const dest = join(root, 'staged');

    const error = await rejection(assembleRelease({ index, currentDir: current, deltaFilesDir: deltaFiles, destDir: dest }));
    expect(error.code).toBe('RELEASE_TREE_MISMATCH');
    expect(error.message).toMatch(/a-first\.txt/);
    const right = await readdir(join(dest, 'lib'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await readdir(join(dest, 'lib'))).toEqual(right);
    // Fewer than all of them: the failure stopped the copies.
    expect(right.length).toBeLessThan(301);
    await rm(dest, { recursive: true });
  });
});

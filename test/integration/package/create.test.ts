import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { createArchive, createPackage, DEFAULT_PACKAGE_MTIME, hashTree } from '../../../src/package/create.js';
import { scanPackage } from '../../../src/package/scan.js';
import { listAll, randomish, writeTree } from '../../support/tar-fixtures.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-create-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const TREE = {
  'b/z.txt': 'z',
  'b/a.txt': 'a',
  'a-file': randomish(20_000),
  'a/nested/deep.bin': randomish(5000, 9),
  'run.sh': { mode: 0o755, content: '#!/bin/sh\n' },
  'latest': { symlink: 'a/nested/deep.bin' },
} as const;

describe('createPackage', () => {
  it('gives byte-identical output for the same tree, whatever the file times and creation order', async () => {
    const one = await writeTree(join(root, 'one'), TREE);
    const reversed = Object.fromEntries(Object.entries(TREE).reverse());
    const two = await writeTree(join(root, 'two'), reversed);
    await utimes(join(two, 'b/z.txt'), new Date('2030-01-01'), new Date('2030-01-01'));
    const r1 = await createPackage(one, join(root, 'one.tar.gz'));
    const r2 = await createPackage(two, join(root, 'two.tar.gz'));
    expect(r1.sha256).toBe(r2.sha256);
    expect(r1.bytes).toBe(r2.bytes);
    expect(await readFile(join(root, 'one.tar.gz'))).toEqual(await readFile(join(root, 'two.tar.gz')));
  });

  it('writes sorted entries with a fixed mtime, uid/gid 0, no user names and a gzip header without time or name', async () => {
    const src = await writeTree(join(root, 'fmt'), TREE);
    const file = join(root, 'fmt.tar.gz');
    await createPackage(src, file);
    const gz = await readFile(file);
    expect(gz.readUInt32LE(4)).toBe(0); // MTIME field of the gzip header
    expect(gz[3]! & 0x08).toBe(0); // FNAME flag
    const tarBytes = gunzipSync(gz);
    const names: string[] = [];
    for (let off = 0; off + 512 <= tarBytes.length; off += 512) {
      const block = tarBytes.subarray(off, off + 512);
      if (block.every((b) => b === 0)) break;
      const name = block.toString('latin1', 0, 100).replace(/\0.*$/s, '');
      names.push(name);
      expect(parseInt(block.toString('latin1', 108, 115), 8)).toBe(0); // uid
      expect(parseInt(block.toString('latin1', 116, 123), 8)).toBe(0); // gid
      expect(parseInt(block.toString('latin1', 136, 147), 8) * 1000).toBe(DEFAULT_PACKAGE_MTIME);
      expect(block.subarray(265, 329).every((b) => b === 0)).toBe(true); // uname, gname
      const size = parseInt(block.toString('latin1', 124, 135), 8);
      off += Math.ceil(size / 512) * 512;
    }
    // Byte order: '-' (0x2d) sorts before '/' (0x2f), and every parent still precedes its children.
    expect(names).toEqual(['a', 'a-file', 'a/nested', 'a/nested/deep.bin', 'b', 'b/a.txt', 'b/z.txt', 'latest', 'run.sh']);
    const scan = await scanPackage(file);
    expect(scan.files.find((f) => f.path === 'run.sh')?.mode).toBe(0o755);
  });

  it('refuses setuid, setgid and sticky bits in a release package, naming each entry, and writes nothing', async () => {
    const src = await writeTree(join(root, 'suid'), { 'bin/tool': 'x', 'bin/group-tool': 'y', 'ok.txt': 'z' });
    await chmod(join(src, 'bin/tool'), 0o4755);
    await chmod(join(src, 'bin/group-tool'), 0o2755);
    await chmod(join(src, 'bin'), 0o1755);
    const file = join(root, 'suid.tar.gz');
    const error = await createPackage(src, file).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect(error).toMatchObject({ code: 'PACKAGE_UNSAFE_MODE', details: { entries: ['bin', 'bin/group-tool', 'bin/tool'] } });
    expect((error as Error).message).toBe('3 entries have setuid, setgid or sticky bits, which robots refuse: bin (1755), bin/group-tool (2755), bin/tool (4755); clear them (chmod u-s,g-s,-t) or leave the files out');
    expect(existsSync(file)).toBe(false);
  });

  it('drops special bits from a backup (an archive of a restore, not a release)', async () => {
    const src = await writeTree(join(root, 'suid-backup'), { tool: 'x' });
    await chmod(join(src, 'tool'), 0o4755);
    const file = join(root, 'suid-backup.tar.gz');
    await createArchive([{ path: src, as: '' }], file, { origin: 'backup' });
    const bytes = gunzipSync(await readFile(file));
    const headers = new Map<string, number>();
    const ex = tarStream.extract();
    ex.on('entry', (h, stream, next) => {
      headers.set(h.name, h.mode ?? -1);
      stream.on('end', next);
      stream.resume();
    });
    await new Promise<void>((resolve, reject) => {
      ex.on('finish', resolve);
      ex.on('error', reject);
      ex.end(bytes);
    });
    expect(headers.get('tool')).toBe(0o755);
  });

  it('clears group and other write bits of a publisher tree (umask 002), so robots accept what it builds', async () => {
    const src = await writeTree(join(root, 'g-w'), { 'shared/tool': 'x', 'open.txt': 'y' });
    await chmod(join(src, 'shared'), 0o777);
    await chmod(join(src, 'shared/tool'), 0o775);
    await chmod(join(src, 'open.txt'), 0o666);
    const file = join(root, 'g-w.tar.gz');
    const result = await createPackage(src, file);
    const modes = Object.fromEntries((await scanPackage(file)).files.map((f) => [f.path, f.mode]));
    expect(modes).toEqual({ 'open.txt': 0o644, shared: 0o755, 'shared/tool': 0o755 });
    // Said, not done quietly: the publisher's tool prints these.
    expect(result.clearedWriteBits).toEqual(['open.txt', 'shared', 'shared/tool']);
  });

  it("refuses a tree holding otad's own release marker at its root (packaging an installed release)", async () => {
    const src = await writeTree(join(root, 'marker'), { '.ota-release.json': '{}', VERSION: '1' });
    const error = await createPackage(src, join(root, 'marker.tar.gz')).then(() => null, (e: unknown) => e as OtaError);
    expect(error?.code).toBe('PACKAGE_UNSAFE_PATH');
    expect(existsSync(join(root, 'marker.tar.gz'))).toBe(false);
  });

  it('refuses a symlink leaving the tree and leaves neither the package nor a temp file', async () => {
    const dir = await mkdtemp(join(root, 'abs-'));
    const src = await writeTree(join(dir, 'src'), { ok: 'x', escape: { symlink: '/etc/passwd' } });
    let error: unknown;
    try {
      await createPackage(src, join(dir, 'out.tar.gz'));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OtaError);
    expect((error as OtaError).code).toBe('PACKAGE_UNSAFE_LINK');
    expect(existsSync(join(dir, 'out.tar.gz'))).toBe(false);
    expect((await listAll(dir)).filter((p) => !p.startsWith('src'))).toEqual([]);
  });

  it('reports progress up to the total of the source bytes', async () => {
    const src = await writeTree(join(root, 'progress'), { a: randomish(300_000), b: 'bb' });
    const seen: Array<[number, number]> = [];
    await createPackage(src, join(root, 'progress.tar.gz'), { onProgress: (bytes, total) => seen.push([bytes, total]) });
    expect(seen.at(-1)).toEqual([300_002, 300_002]);
  });

  it('stores several sources under their own names, with the parents they need', async () => {
    const release = await writeTree(join(root, 'multi/release'), { 'bin/app': 'app' });
    const config = await writeTree(join(root, 'multi/config'), { 'robot.yaml': 'speed: 1\n' });
    const file = join(root, 'multi.tar.gz');
    await createArchive([{ path: release, as: 'release' }, { path: config, as: 'data/config' }], file);
    const scan = await scanPackage(file);
    expect(scan.files.map((f) => f.path)).toEqual(['data', 'data/config', 'data/config/robot.yaml', 'release', 'release/bin', 'release/bin/app']);
  });

  it('hashTree maps files to sha256 and symlinks to their target', async () => {
    const src = await writeTree(join(root, 'hash'), { 'a/x': 'x', l: { symlink: 'a/x' }, 'empty': { dir: true } });
    expect(await hashTree(src)).toEqual({
      'a/x': '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881',
      l: 'link:a/x',
    });
  });
});

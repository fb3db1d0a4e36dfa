import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPackage, hashTree } from '../../../src/package/create.js';
import { extractPackage } from '../../../src/package/extract.js';
import { benignEntries, HOSTILE_CASES, isRoot, listAll, mountTmpfs, randomish, writeTarGz, writeTree } from '../../support/tar-fixtures.js';
import { rejection } from '../../support/assertions.js';

let root: string;
const passwdBefore = existsSync('/etc/passwd') ? createHash('sha256').update(await readFile('/etc/passwd')).digest('hex') : null;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-extract-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('extractPackage', () => {
  it('extracts a benign package into a fresh directory with modes kept and symlinks intact', async () => {
    const dir = await mkdtemp(join(root, 'ok-'));
    const file = await writeTarGz(join(dir, 'p.tar.gz'), benignEntries());
    const dest = join(dir, 'staging', 'release-2.1.0');
    const result = await extractPackage(file, dest);
    expect(result.destDir).toBe(dest);
    expect(result.entries).toBe(6);
    expect((await lstat(join(dest, 'bin/robot-ai'))).mode & 0o7777).toBe(0o755);
    expect((await lstat(join(dest, 'VERSION'))).mode & 0o7777).toBe(0o644);
    expect(await readlink(join(dest, 'lib/current-model'))).toBe('model.bin');
    expect(await readFile(join(dest, 'VERSION'), 'utf8')).toBe('2.1.0\n');
  });

  it('ignores the owner recorded in the archive', async () => {
    const dir = await mkdtemp(join(root, 'owner-'));
    const file = await writeTarGz(join(dir, 'p.tar.gz'), [{ name: 'a', content: 'x', uid: 4242, gid: 4242 }]);
    const dest = join(dir, 'dest');
    await extractPackage(file, dest);
    const st = await lstat(join(dest, 'a'));
    expect(st.uid).toBe(process.getuid?.());
  });

  it('round-trips a tree made by createPackage (hashTree equal)', async () => {
    const dir = await mkdtemp(join(root, 'rt-'));
    const src = await writeTree(join(dir, 'src'), {
      'bin/run': { mode: 0o755, content: '#!/bin/sh\n' },
      'data/blob': randomish(100_000),
      'data/empty': '',
      'etc/.hidden': 'h',
      'link-to-blob': { symlink: 'data/blob' },
      'empty-dir': { dir: true },
    });
    await createPackage(src, join(dir, 'p.tar.gz'));
    await extractPackage(join(dir, 'p.tar.gz'), join(dir, 'dest'));
    expect(await hashTree(join(dir, 'dest'))).toEqual(await hashTree(src));
    expect((await lstat(join(dir, 'dest/empty-dir'))).isDirectory()).toBe(true);
  });

  it('refuses a destination that already exists and leaves it untouched', async () => {
    const dir = await mkdtemp(join(root, 'exists-'));
    const file = await writeTarGz(join(dir, 'p.tar.gz'), benignEntries());
    const dest = join(dir, 'dest');
    await mkdir(dest);
    await writeFile(join(dest, 'keep'), 'mine');
    const error = await rejection(extractPackage(file, dest));
    expect(error.code).toBe('IO_FAILED');
    expect(await listAll(dest)).toEqual(['keep']);
  });

  for (const c of HOSTILE_CASES) {
    it(`rejects ${c.title} with ${c.code}, writes nothing outside and leaves no destination`, async () => {
      const dir = await mkdtemp(join(root, 'case-'));
      const pkgDir = join(dir, 'pkg');
      await mkdir(pkgDir);
      const file = await c.build(pkgDir);
      const before = await listAll(dir);
      const dest = join(dir, 'stage', 'inner', 'dest');
      const error = await rejection(extractPackage(file, dest, c.limits));
      expect(error.code).toBe(c.code);
      expect(existsSync(dest)).toBe(false);
      // The staging parents may exist (they were asked for); nothing else appeared anywhere.
      expect((await listAll(dir)).filter((p) => !p.startsWith('stage'))).toEqual(before);
      expect(existsSync('/etc/cron.d/x')).toBe(false);
      expect(existsSync('/etc/x')).toBe(false);
      if (passwdBefore !== null) expect(createHash('sha256').update(await readFile('/etc/passwd')).digest('hex')).toBe(passwdBefore);
    });
  }

  it('stops with CANCELLED and leaves no destination when the signal aborts', async () => {
    const dir = await mkdtemp(join(root, 'cancel-'));
    const file = await writeTarGz(join(dir, 'p.tar.gz'), benignEntries());
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(extractPackage(file, join(dir, 'dest'), undefined, controller.signal));
    expect(error.code).toBe('CANCELLED');
    expect(existsSync(join(dir, 'dest'))).toBe(false);
  });
});

describe.skipIf(!isRoot)('extractPackage on a full disk (tmpfs, root only)', () => {
  let mnt: string;
  let unmount: () => Promise<void>;
  beforeAll(async () => {
    mnt = join(root, 'tmpfs');
    unmount = await mountTmpfs(mnt, '2m');
  });
  afterAll(async () => {
    await unmount();
  });

  it('fails with DISK_FULL and leaves no partial files', async () => {
    const file = await writeTarGz(join(root, 'large.tar.gz'), [
      { name: 'a', content: randomish(1024 * 1024, 1) },
      { name: 'b', content: randomish(1024 * 1024, 2) },
      { name: 'c', content: randomish(1024 * 1024, 3) },
    ]);
    const error = await rejection(extractPackage(file, join(mnt, 'dest')));
    expect(error.code).toBe('DISK_FULL');
    expect(await listAll(mnt)).toEqual([]);
  });
});

if (!isRoot) {
  describe('extractPackage on a full disk', () => {
    it.skip('needs root to mount a tmpfs: run the suite as root to exercise DISK_FULL', () => {});
  });
}

describe('extractScanned (a package replaced after its scan)', () => {
  const swaps = HOSTILE_CASES.filter((c) => c.code !== 'PACKAGE_CORRUPT' && c.limits === undefined);
  for (const c of swaps) {
    it(`stops ${c.title} while writing and leaves nothing behind`, async () => {
      const { scanPackage } = await import('../../../src/package/scan.js');
      const { extractScanned } = await import('../../../src/package/extract.js');
      const dir = await mkdtemp(join(root, 'swap-'));
      const pkgDir = join(dir, 'pkg');
      await mkdir(pkgDir);
      const benign = await writeTarGz(join(pkgDir, 'benign.tar.gz'), benignEntries());
      const scan = await scanPackage(benign);
      const hostile = await c.build(pkgDir);
      const before = await listAll(dir);
      const dest = join(dir, 'dest');
      const error = await rejection(extractScanned(hostile, dest, scan));
      expect(error.code).toBe(c.code);
      expect(existsSync(dest)).toBe(false);
      expect(await listAll(dir)).toEqual(before);
    });
  }

  it('rejects a benign file that differs from the scanned one with PACKAGE_CORRUPT', async () => {
    const { scanPackage } = await import('../../../src/package/scan.js');
    const { extractScanned } = await import('../../../src/package/extract.js');
    const dir = await mkdtemp(join(root, 'swap-benign-'));
    const a = await writeTarGz(join(dir, 'a.tar.gz'), benignEntries());
    const b = await writeTarGz(join(dir, 'b.tar.gz'), [...benignEntries(), { name: 'extra', content: 'x' }]);
    const error = await rejection(extractScanned(b, join(dir, 'dest'), await scanPackage(a)));
    expect(error.code).toBe('PACKAGE_CORRUPT');
    expect(existsSync(join(dir, 'dest'))).toBe(false);
  });
});

describe('extractVerified (one pass held to the signed hash and the signed tree index)', () => {
  async function signed(dir: string, entries: Parameters<typeof writeTarGz>[1]) {
    const { indexPackage } = await import('../../../src/package/tree-index.js');
    const file = await writeTarGz(join(dir, 'signed.tar.gz'), entries);
    const index = await indexPackage(file, { product: 'robot-ai', version: '2.1.0' });
    return { file, index, sha256: createHash('sha256').update(await readFile(file)).digest('hex') };
  }

  it('writes the tree, hashing every file as it is written: the hashes are those of the files on disk', async () => {
    const { extractVerified } = await import('../../../src/package/extract.js');
    const dir = await mkdtemp(join(root, 'verified-'));
    const { file, index, sha256 } = await signed(dir, benignEntries());
    const dest = join(dir, 'dest');
    const result = await extractVerified(file, dest, { sha256, index });
    expect(await readFile(join(dest, 'VERSION'), 'utf8')).toBe('2.1.0\n');
    expect((await lstat(join(dest, 'bin/robot-ai'))).mode & 0o7777).toBe(0o755);
    const files = index.entries.filter((e) => e.type === 'file');
    expect([...result.fileHashes.keys()].sort()).toEqual(files.map((e) => e.path).sort());
    for (const e of files) {
      expect(result.fileHashes.get(e.path)).toBe(createHash('sha256').update(await readFile(join(dest, e.path))).digest('hex'));
      expect(result.fileHashes.get(e.path)).toBe(e.sha256);
    }
  });

  it('refuses a file whose bytes are not the signed ones with TRUST_HASH_MISMATCH and leaves no destination', async () => {
    const { extractVerified } = await import('../../../src/package/extract.js');
    const dir = await mkdtemp(join(root, 'verified-hash-'));
    const { file, index } = await signed(dir, benignEntries());
    const error = await rejection(extractVerified(file, join(dir, 'dest'), { sha256: 'a'.repeat(64), index }));
    expect(error.code).toBe('TRUST_HASH_MISMATCH');
    expect(existsSync(join(dir, 'dest'))).toBe(false);
  });

  // The signed hash is the package's own, so only the index can disagree: a publisher that signed
  // a package and an index that are not the same tree.
  const disagreements: Array<[string, Parameters<typeof writeTarGz>[1], string]> = [
    ['an entry the index does not list', [...benignEntries(), { name: 'extra', content: 'x' }], 'not in the signed index'],
    ['a file with other content of the same size', benignEntries().map((e) => (e.name === 'VERSION' ? { ...e, content: '2.1.1\n' } : e)), 'in the signed index'],
    ['a file of another size', benignEntries().map((e) => (e.name === 'VERSION' ? { ...e, content: '2.1.10\n' } : e)), 'bytes in the package'],
    ['a file with another mode', benignEntries().map((e) => (e.name === 'bin/robot-ai' ? { ...e, mode: 0o700 } : e)), 'has mode 700'],
    ['a symlink to somewhere else', benignEntries().map((e) => (e.name === 'lib/current-model' ? { ...e, linkname: '../VERSION' } : e)), 'points to'],
    ['an entry the index lists left out', benignEntries().filter((e) => e.name !== 'VERSION'), 'missing on disk'],
  ];
  for (const [what, entries, message] of disagreements) {
    it(`refuses a package with ${what} with RELEASE_TREE_MISMATCH and leaves no destination`, async () => {
      const { extractVerified } = await import('../../../src/package/extract.js');
      const dir = await mkdtemp(join(root, 'verified-index-'));
      const { index } = await signed(dir, benignEntries());
      const other = await writeTarGz(join(dir, 'other.tar.gz'), entries);
      const sha256 = createHash('sha256').update(await readFile(other)).digest('hex');
      const error = await rejection(extractVerified(other, join(dir, 'dest'), { sha256, index }));
      expect(error.code).toBe('RELEASE_TREE_MISMATCH');
      expect(error.message).toContain(message);
      expect(existsSync(join(dir, 'dest'))).toBe(false);
    });
  }

  // The signed package after the benign entries the index lists: the rules judge each entry first,
  // so a hostile one gets its package code (not merely "not in the index") and nothing of it is written.
  const hostileTails: Array<[string, Parameters<typeof writeTarGz>[1], string]> = [
    ['an entry ../../etc/cron.d/x', [{ name: '../../etc/cron.d/x', content: '* * * * * root sh\n' }], 'PACKAGE_UNSAFE_PATH'],
    ['an absolute path', [{ name: '/etc/passwd', content: 'evil' }], 'PACKAGE_UNSAFE_PATH'],
    ['a symlink leaving the tree, then a file through it', [{ name: 'escape', type: 'symlink', linkname: '../../../../' }, { name: 'escape/owned', content: 'evil' }], 'PACKAGE_UNSAFE_LINK'],
    ['a file written through the package\'s own symlink', [{ name: 'lib/current-model/x', content: 'evil' }], 'PACKAGE_UNSAFE_LINK'],
    ['a setuid file', [{ name: 'bin/su', content: 'x', mode: 0o4755 }], 'PACKAGE_UNSAFE_MODE'],
    ['a group-writable file', [{ name: 'bin/gw', content: 'x', mode: 0o664 }], 'PACKAGE_UNSAFE_MODE'],
    ['a FIFO', [{ name: 'pipe', type: 'fifo' }], 'PACKAGE_UNSAFE_TYPE'],
    ['a second VERSION', [{ name: 'VERSION', content: '6.6.6\n' }], 'PACKAGE_DUPLICATE_ENTRY'],
  ];
  for (const [what, tail, code] of hostileTails) {
    it(`still judges every entry by the package rules before the index: stops ${what} with ${code} and leaves nothing behind`, async () => {
      const { extractVerified } = await import('../../../src/package/extract.js');
      const dir = await mkdtemp(join(root, 'verified-hostile-'));
      const pkgDir = join(dir, 'pkg');
      await mkdir(pkgDir);
      const { index } = await signed(pkgDir, benignEntries());
      const file = await writeTarGz(join(pkgDir, 'hostile.tar.gz'), [...benignEntries(), ...tail]);
      const sha256 = createHash('sha256').update(await readFile(file)).digest('hex');
      const before = await listAll(dir);
      const error = await rejection(extractVerified(file, join(dir, 'dest'), { sha256, index }));
      expect(error.code).toBe(code);
      expect(existsSync(join(dir, 'dest'))).toBe(false);
      expect(await listAll(dir)).toEqual(before);
      expect(existsSync(join(root, '..', 'etc', 'cron.d', 'x'))).toBe(false);
    });
  }
});

/**
 * Builds package archives in code, hostile ones included, so no binary fixture hides in the repo.
 * Every builder writes a .tar.gz with tar-stream (which writes whatever header it is given, exactly
 * what an attacker would do) and returns its path.
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip, gunzipSync, gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

export interface FixtureEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  mode?: number;
  content?: string | Buffer;
  /** A file of this many zero bytes, streamed (for bombs) rather than held in memory. */
  zeros?: number;
  linkname?: string;
  uid?: number;
  gid?: number;
}

const MTIME = new Date(1_700_000_000_000);
const ZERO_CHUNK = Buffer.alloc(1024 * 1024);

/** Writes `entries` as a gzip-compressed tar at `file`. */
export async function writeTarGz(file: string, entries: Iterable<FixtureEntry>): Promise<string> {
  const pack = tar.pack();
  const done = pipeline(pack, createGzip({ level: 1 }), createWriteStream(file));
  let queued = 0;
  for (const e of entries) {
    // Waiting for every entry is slow for 100,000 of them; waiting every 1,000 bounds the memory.
    const written = addEntry(pack, e);
    queued += 1;
    if (e.zeros !== undefined || queued % 1000 === 0) await written;
    else written.catch(() => {});
  }
  pack.finalize();
  await done;
  return file;
}

async function addEntry(pack: tar.Pack, e: FixtureEntry): Promise<void> {
  const type = e.type ?? 'file';
  const header: Partial<tar.Header> & { name: string } = { name: e.name, type, mtime: MTIME, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644) };
  if (e.linkname !== undefined) header.linkname = e.linkname;
  if (e.uid !== undefined) header.uid = e.uid;
  if (e.gid !== undefined) header.gid = e.gid;
  if (type === 'character-device' || type === 'block-device') Object.assign(header, { devmajor: 1, devminor: 3 });
  if (e.zeros !== undefined) {
    header.size = e.zeros;
    let sink!: ReturnType<tar.Pack['entry']>;
    const written = new Promise<void>((resolve, reject) => {
      sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
    let left = e.zeros;
    while (left > 0) {
      const chunk = ZERO_CHUNK.subarray(0, Math.min(left, ZERO_CHUNK.length));
      left -= chunk.length;
      if (!sink.write(chunk)) await once(sink, 'drain');
    }
    sink.end(null);
    await written;
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const content = type === 'file' ? (e.content ?? '') : undefined;
    if (content === undefined) pack.entry(header, (err) => (err ? reject(err) : resolve()));
    else pack.entry(header, content, (err) => (err ? reject(err) : resolve()));
  });
}

/** A harmless package: a couple of directories, files, and a symlink that stays inside. */
export function benignEntries(): FixtureEntry[] {
  return [
    { name: 'bin/', type: 'directory' },
    { name: 'bin/robot-ai', content: '#!/bin/sh\necho hello\n', mode: 0o755 },
    { name: 'lib/', type: 'directory' },
    { name: 'lib/model.bin', content: Buffer.alloc(4096, 7) },
    { name: 'lib/current-model', type: 'symlink', linkname: 'model.bin' },
    { name: 'VERSION', content: '2.1.0\n' },
  ];
}

/**
 * One archive per line of the "Packages" part of the threat list, each with the code the scanner
 * must answer with. `limits` keeps the cap cases fast (small caps, not gigabytes).
 */
export interface HostileCase {
  title: string;
  code: string;
  build(dir: string): Promise<string>;
  limits?: { maxEntries?: number; maxTotalBytes?: number; maxEntryBytes?: number };
  /** What an attacker wanted to write outside the tree, relative to the temp root's parent. */
  escapes?: string[];
}

const ok = (name = 'README', content = 'ok\n'): FixtureEntry => ({ name, content });

export const HOSTILE_CASES: HostileCase[] = [
  {
    title: 'an entry ../../etc/cron.d/x',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeTarGz(join(dir, 'dotdot.tar.gz'), [ok(), { name: '../../etc/cron.d/x', content: '* * * * * root sh\n' }]),
  },
  {
    title: 'an entry /etc/passwd',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeTarGz(join(dir, 'absolute.tar.gz'), [ok(), { name: '/etc/passwd', content: 'root::0:0::/:/bin/sh\n' }]),
  },
  {
    title: 'a symlink to /etc, then a file link/x written through it',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) =>
      writeTarGz(join(dir, 'symlink-escape.tar.gz'), [ok(), { name: 'link', type: 'symlink', linkname: '/etc' }, { name: 'link/x', content: 'pwned\n' }]),
  },
  {
    title: 'a relative symlink climbing out of the tree, then a file written through it',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) =>
      writeTarGz(join(dir, 'symlink-relative.tar.gz'), [
        ok(),
        { name: 'up', type: 'symlink', linkname: '../outside' },
        { name: 'up/x', content: 'pwned\n' },
      ]),
    escapes: ['outside/x'],
  },
  {
    title: 'a symlink that stays inside, then a file written through it',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) =>
      writeTarGz(join(dir, 'symlink-through.tar.gz'), [
        { name: 'data/', type: 'directory' },
        { name: 'alias', type: 'symlink', linkname: 'data' },
        { name: 'alias/x', content: 'through\n' },
      ]),
  },
  {
    title: 'a symlink chain that only escapes when followed (s -> ., l -> s/..)',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) =>
      writeTarGz(join(dir, 'symlink-chain.tar.gz'), [ok(), { name: 's', type: 'symlink', linkname: '.' }, { name: 'l', type: 'symlink', linkname: 's/..' }]),
  },
  {
    title: 'a symlink and then a regular file of the same name',
    code: 'PACKAGE_DUPLICATE_ENTRY',
    build: (dir) =>
      writeTarGz(join(dir, 'symlink-then-file.tar.gz'), [{ name: 'config', type: 'symlink', linkname: 'README' }, ok(), { name: 'config', content: 'x\n' }]),
  },
  {
    title: 'a hard link to /etc/passwd',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) => writeTarGz(join(dir, 'hardlink.tar.gz'), [ok(), { name: 'passwd', type: 'link', linkname: '/etc/passwd' }]),
  },
  {
    title: 'a hard link to a path inside the tree (hard links are never allowed)',
    code: 'PACKAGE_UNSAFE_LINK',
    build: (dir) => writeTarGz(join(dir, 'hardlink-inside.tar.gz'), [ok(), { name: 'again', type: 'link', linkname: 'README' }]),
  },
  {
    title: 'a setuid file',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (dir) => writeTarGz(join(dir, 'setuid.tar.gz'), [ok(), { name: 'bin/su', content: '#!/bin/sh\n', mode: 0o4755 }]),
  },
  {
    title: 'a setgid directory',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (dir) => writeTarGz(join(dir, 'setgid.tar.gz'), [{ name: 'shared/', type: 'directory', mode: 0o2775 }]),
  },
  {
    title: 'a sticky directory',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (dir) => writeTarGz(join(dir, 'sticky.tar.gz'), [{ name: 'tmp/', type: 'directory', mode: 0o1777 }]),
  },
  {
    title: 'a character device',
    code: 'PACKAGE_UNSAFE_TYPE',
    build: (dir) => writeTarGz(join(dir, 'chardev.tar.gz'), [ok(), { name: 'null', type: 'character-device' }]),
  },
  {
    title: 'a block device',
    code: 'PACKAGE_UNSAFE_TYPE',
    build: (dir) => writeTarGz(join(dir, 'blockdev.tar.gz'), [ok(), { name: 'sda', type: 'block-device' }]),
  },
  {
    title: 'a FIFO',
    code: 'PACKAGE_UNSAFE_TYPE',
    build: (dir) => writeTarGz(join(dir, 'fifo.tar.gz'), [ok(), { name: 'pipe', type: 'fifo' }]),
  },
  {
    title: 'a gzip bomb (64 MiB of zeros in one entry against a 1 MiB cap)',
    code: 'PACKAGE_TOO_LARGE',
    limits: { maxEntryBytes: 1024 * 1024, maxTotalBytes: 2 * 1024 * 1024 },
    build: (dir) => writeTarGz(join(dir, 'bomb.tar.gz'), [ok(), { name: 'zeros', zeros: 64 * 1024 * 1024 }]),
  },
  {
    title: 'many entries each under the per-entry cap that together pass the total cap',
    code: 'PACKAGE_TOO_LARGE',
    limits: { maxEntryBytes: 1024 * 1024, maxTotalBytes: 4 * 1024 * 1024 },
    build: (dir) => writeTarGz(join(dir, 'bomb-many.tar.gz'), Array.from({ length: 16 }, (_, i) => ({ name: `z${i}`, zeros: 1024 * 1024 }))),
  },
  {
    title: 'gzip of raw zeros (an endless "empty" tar)',
    code: 'PACKAGE_TOO_LARGE',
    limits: { maxEntries: 10, maxTotalBytes: 1024 * 1024, maxEntryBytes: 1024 * 1024 },
    build: async (dir) => {
      const file = join(dir, 'zero-stream.tar.gz');
      await writeFile(file, gzipSync(Buffer.alloc(32 * 1024 * 1024)));
      return file;
    },
  },
  {
    title: '100,000 tiny entries against an entry cap of 1,000',
    code: 'PACKAGE_TOO_LARGE',
    limits: { maxEntries: 1000 },
    build: (dir) => writeManyTinyEntries(join(dir, 'many.tar.gz'), 100_000),
  },
  {
    title: 'duplicate names',
    code: 'PACKAGE_DUPLICATE_ENTRY',
    build: (dir) => writeTarGz(join(dir, 'duplicate.tar.gz'), [ok('app.py', 'good\n'), ok('other'), ok('app.py', 'evil\n')]),
  },
  {
    title: 'a directory later replaced by a file',
    code: 'PACKAGE_DUPLICATE_ENTRY',
    build: (dir) => writeTarGz(join(dir, 'dir-then-file.tar.gz'), [{ name: 'etc/', type: 'directory' }, ok('etc/a'), ok('etc', 'file now\n')]),
  },
  {
    title: 'a directory (implied by its files) later replaced by a symlink',
    code: 'PACKAGE_DUPLICATE_ENTRY',
    build: (dir) => writeTarGz(join(dir, 'dir-then-symlink.tar.gz'), [ok('conf/a'), { name: 'conf', type: 'symlink', linkname: '/etc' }]),
  },
  {
    title: 'truncated gzip',
    code: 'PACKAGE_CORRUPT',
    build: async (dir) => {
      const file = await writeTarGz(join(dir, 'truncated.tar.gz'), [...benignEntries(), { name: 'big', content: randomish(64 * 1024) }]);
      const size = (await readFile(file)).length;
      await truncate(file, Math.floor(size / 2));
      return file;
    },
  },
  {
    title: 'a complete gzip around a tar cut at an entry boundary (no end-of-archive marker)',
    code: 'PACKAGE_CORRUPT',
    build: async (dir) => {
      const whole = await writeTarGz(join(dir, 'whole.tar.gz'), [ok()]);
      const { gunzipSync } = await import('node:zlib');
      const tarBytes = gunzipSync(await readFile(whole));
      const file = join(dir, 'cut-tar.tar.gz');
      await writeFile(file, gzipSync(tarBytes.subarray(0, 1024)));
      await rm(whole);
      return file;
    },
  },
  {
    title: 'a 0777 directory with a 0666 and a 0777 file (as python tarfile keeps them)',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (dir) =>
      writeTarGz(join(dir, 'world-writable.tar.gz'), [
        { name: 'app/', type: 'directory', mode: 0o777 },
        { name: 'app/run.sh', content: '#!/bin/sh\n', mode: 0o777 },
        { name: 'app/settings.py', content: 'X = 1\n', mode: 0o666 },
      ]),
  },
  {
    title: 'a group-writable file (0664)',
    code: 'PACKAGE_UNSAFE_MODE',
    build: (dir) => writeTarGz(join(dir, 'group-writable.tar.gz'), [ok(), { name: 'lib/x.py', content: 'x\n', mode: 0o664 }]),
  },
  {
    title: 'an entry with a 300-byte name component',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeTarGz(join(dir, 'long-component.tar.gz'), [ok(), { name: `lib/${'a'.repeat(300)}`, content: 'x\n' }]),
  },
  {
    title: 'an entry with a 4,200-byte path (every component short)',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeTarGz(join(dir, 'long-path.tar.gz'), [ok(), { name: longPath(4200), content: 'x\n' }]),
  },
  {
    title: 'a newline in a name',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeTarGz(join(dir, 'newline.tar.gz'), [ok(), { name: 'bin/run\nme', content: 'x\n' }]),
  },
  {
    title: 'a name that is not valid UTF-8 (raw bytes 0xff 0xfe in the header)',
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) => writeRawNameTarGz(join(dir, 'not-utf8.tar.gz'), Buffer.from([0x62, 0x69, 0x6e, 0x2f, 0xff, 0xfe, 0x2e, 0x70, 0x79]), 'x\n'),
  },
  {
    title: "otad's own release marker .ota-release.json",
    code: 'PACKAGE_UNSAFE_PATH',
    build: (dir) =>
      writeTarGz(join(dir, 'marker.tar.gz'), [ok(), { name: '.ota-release.json', content: '{"schema":1,"product":"robot-ai","version":"9.9.9"}\n' }]),
  },
  {
    title: 'a tiny package past the compression-ratio cap (64 MiB of zeros, default limits)',
    code: 'PACKAGE_TOO_LARGE',
    build: (dir) => writeTarGz(join(dir, 'ratio-bomb.tar.gz'), [ok(), { name: 'zeros', zeros: 64 * 1024 * 1024 }]),
  },
  {
    title: 'a file that is not gzip at all',
    code: 'PACKAGE_CORRUPT',
    build: async (dir) => {
      const file = join(dir, 'plain.tar.gz');
      await writeFile(file, 'this is not a package\n');
      return file;
    },
  },
];

/** A relative path of `bytes` bytes made of 100-byte components. */
export function longPath(bytes: number): string {
  const parts: string[] = [];
  let length = 0;
  while (length < bytes) {
    const take = Math.min(100, bytes - length - (parts.length > 0 ? 1 : 0));
    parts.push('p'.repeat(Math.max(1, take)));
    length = parts.join('/').length;
  }
  return parts.join('/');
}

/**
 * One regular file whose ustar name field holds exactly `nameBytes` (tar-stream only writes names
 * it was given as strings, always as UTF-8), followed by the end-of-archive marker.
 */
export async function writeRawNameTarGz(file: string, nameBytes: Buffer, content: string): Promise<string> {
  const body = Buffer.from(content);
  const template = gunzipSync(await tarGzBuffer([{ name: 'x', content }]));
  const header = Buffer.from(template.subarray(0, 512));
  header.fill(0, 0, 100);
  nameBytes.copy(header, 0, 0, Math.min(100, nameBytes.length));
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (let j = 0; j < 512; j += 1) sum += header[j] as number;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  const padded = Buffer.alloc(Math.ceil(body.length / 512) * 512);
  body.copy(padded);
  await writeFile(file, gzipSync(Buffer.concat([header, padded, Buffer.alloc(1024)])));
  return file;
}

/**
 * `count` empty files f/000000, f/000001... Packing 100,000 entries one by one through tar-stream
 * takes seconds, so one header made by tar-stream is copied and only its name and checksum change.
 */
export async function writeManyTinyEntries(file: string, count: number): Promise<string> {
  const template = gunzipSync(await tarGzBuffer([{ name: 'f/000000', content: '' }])).subarray(0, 512);
  const out = Buffer.alloc(count * 512 + 1024);
  for (let i = 0; i < count; i += 1) {
    const block = out.subarray(i * 512, (i + 1) * 512);
    template.copy(block);
    block.write(`f/${String(i).padStart(6, '0')}`, 0, 'ascii');
    let sum = 8 * 32;
    for (let j = 0; j < 512; j += 1) if (j < 148 || j >= 156) sum += block[j] as number;
    block.fill(0, 148, 156);
    block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  }
  await writeFile(file, gzipSync(out, { level: 1 }));
  return file;
}

async function tarGzBuffer(entries: FixtureEntry[]): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'otad-fixture-'));
  try {
    return await readFile(await writeTarGz(join(dir, 'x.tar.gz'), entries));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Incompressible-looking bytes without a random source, so fixtures are reproducible. */
export function randomish(bytes: number, seed = 1): Buffer {
  const out = Buffer.alloc(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i += 1) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A source tree: path → file content, or { symlink: target }, or { dir: true } for an empty directory. */
export type TreeSpec = Record<string, string | Buffer | { symlink: string } | { dir: true } | { mode: number; content: string | Buffer }>;

export async function writeTree(root: string, spec: TreeSpec): Promise<string> {
  const { mkdir, symlink, chmod } = await import('node:fs/promises');
  const { dirname } = await import('node:path');
  await mkdir(root, { recursive: true });
  for (const [rel, value] of Object.entries(spec)) {
    const abs = join(root, rel);
    await mkdir(dirname(abs), { recursive: true });
    if (typeof value === 'string' || Buffer.isBuffer(value)) await writeFile(abs, value);
    else if ('symlink' in value) await symlink(value.symlink, abs);
    else if ('dir' in value) await mkdir(abs, { recursive: true });
    else {
      await writeFile(abs, value.content);
      await chmod(abs, value.mode);
    }
  }
  return root;
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Mounts a small tmpfs (root only) so disk-full paths run for real; returns the unmount function. */
export async function mountTmpfs(dir: string, size: string): Promise<() => Promise<void>> {
  const { execFileSync } = await import('node:child_process');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  return async () => {
    execFileSync('umount', [dir]);
  };
}

/** Every path under `root`, relative, sorted: "nothing else was written" in one assertion. */
export async function listAll(root: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const found = await readdir(root, { recursive: true });
  return found.map(String).sort();
}

import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, truncate, writeFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPackage } from '../../../src/package/create.js';
import { detectCompression } from '../../../src/package/compression.js';
import { extractPackage } from '../../../src/package/extract.js';
import { scanPackage } from '../../../src/package/scan.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'zstd-pkg-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function tree(files: Record<string, Buffer | string>): Promise<string> {
  const dir = join(work, `src-${Math.random().toString(16).slice(2)}`);
  await mkdir(dir);
  for (const [name, body] of Object.entries(files)) await writeFile(join(dir, name), body);
  return dir;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return (error as { code: string }).code;
  }
  return 'none';
}

describe('zstd packages', () => {
  it('writes a zstd package that scans and extracts to the same tree as gzip, told apart by magic bytes', async () => {
    const src = await tree({ VERSION: '1.0.0\n', 'a.txt': 'hello '.repeat(1000) });
    const zst = join(work, 'p.tar.zst');
    const gz = join(work, 'named-wrong.tar.zst');
    await createPackage(src, zst, { compression: 'zstd' });
    await createPackage(src, gz, { compression: 'gzip' });
    expect((await readFile(zst)).subarray(0, 4).toString('hex')).toBe('28b52ffd');
    expect(await detectCompression(zst)).toBe('zstd');
    expect(await detectCompression(gz)).toBe('gzip');
    for (const file of [zst, gz]) {
      const scan = await scanPackage(file);
      expect(scan.files.map((f) => f.path).sort()).toEqual(['VERSION', 'a.txt']);
      const dest = join(work, `out-${file.endsWith('zst') ? 'z' : 'g'}-${Math.random()}`);
      await extractPackage(file, dest);
      expect(await readFile(join(dest, 'a.txt'), 'utf8')).toBe('hello '.repeat(1000));
    }
  });

  it('refuses a zstd bomb at the compression-ratio cap, as a gzip one', async () => {
    const src = await tree({ zeros: Buffer.alloc(64 * 1024 * 1024) });
    for (const compression of ['zstd', 'gzip'] as const) {
      const file = join(work, `bomb-${compression}`);
      await createPackage(src, file, { compression });
      expect(await codeOf(scanPackage(file, { maxCompressionRatio: 100 }))).toBe('PACKAGE_TOO_LARGE');
      const dest = join(work, `bomb-out-${compression}`);
      expect(await codeOf(extractPackage(file, dest, { maxCompressionRatio: 100 }))).toBe('PACKAGE_TOO_LARGE');
      expect(existsSync(dest)).toBe(false);
    }
  });

  it('refuses a corrupt and a truncated zstd package with PACKAGE_CORRUPT and leaves nothing', async () => {
    const src = await tree({ VERSION: '1.0.0\n', big: Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251)) });
    const file = join(work, 'p.tar.zst');
    await createPackage(src, file, { compression: 'zstd' });
    const bytes = await readFile(file);
    const corrupt = join(work, 'corrupt.tar.zst');
    const flipped = Buffer.from(bytes);
    flipped[Math.floor(flipped.length / 2)]! ^= 0xff;
    await writeFile(corrupt, flipped);
    const truncated = join(work, 'truncated.tar.zst');
    await writeFile(truncated, bytes);
    await truncate(truncated, Math.floor(bytes.length / 2));
    for (const f of [corrupt, truncated]) {
      expect(await codeOf(scanPackage(f))).toBe('PACKAGE_CORRUPT');
      const dest = join(work, `bad-${Math.random()}`);
      expect(await codeOf(extractPackage(f, dest))).toBe('PACKAGE_CORRUPT');
      expect(existsSync(dest)).toBe(false);
    }
    const neither = join(work, 'neither.tar.gz');
    await writeFile(neither, 'not a package');
    expect(await codeOf(scanPackage(neither))).toBe('PACKAGE_CORRUPT');
    expect((await stat(file)).size).toBe(bytes.length);
  });

  it('refuses a zstd frame that asks for a window over 8 MiB with PACKAGE_TOO_LARGE, before decompressing, and leaves nothing', async () => {
    // A real tar in a real zstd frame written with a 128 MiB window (windowLog 27, no pledged
    // size, so the frame header carries the window descriptor 0x88): what a crafted package
    // would use to make a robot reserve that memory.
    const src = await tree({ VERSION: '1.0.0\n', 'a.txt': 'x'.repeat(5000) });
    const tarBytes = execFileSync('tar', ['-c', '-C', src, '.']);
    const c = zlib.constants as unknown as Record<string, number>;
    const compressor = (zlib as unknown as { createZstdCompress(o: unknown): NodeJS.ReadWriteStream }).createZstdCompress({
      params: { [c['ZSTD_c_windowLog']!]: 27, [c['ZSTD_c_compressionLevel']!]: 3 },
    });
    const parts: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      compressor.on('data', (d: Buffer) => parts.push(d));
      compressor.on('end', () => resolve());
      compressor.on('error', reject);
    });
    compressor.end(tarBytes);
    await done;
    const frame = Buffer.concat(parts);
    expect(frame.subarray(0, 6).toString('hex')).toBe('28b52ffd0088');
    const file = join(work, 'wide-window.tar.zst');
    await writeFile(file, frame);
    expect(await codeOf(scanPackage(file))).toBe('PACKAGE_TOO_LARGE');
    const dest = join(work, 'wide-out');
    expect(await codeOf(extractPackage(file, dest))).toBe('PACKAGE_TOO_LARGE');
    expect(existsSync(dest)).toBe(false);
    // The same tree at the default window reads: the refusal is the window, not the content.
    const normal = join(work, 'normal.tar.zst');
    await createPackage(src, normal, { compression: 'zstd' });
    expect((await scanPackage(normal)).files.map((f) => f.path).sort()).toEqual(['VERSION', 'a.txt']);
  });
});

describe('zstd on a Node.js without it', () => {
  // The distribution's own Node (Ubuntu 24.04 ships 20) has no zstd in node:zlib: a real old runtime.
  const oldNode = '/usr/bin/node';
  const built = join(process.cwd(), 'dist', 'src', 'package', 'scan.js');
  const version = existsSync(oldNode) ? execFileSync(oldNode, ['-p', 'process.versions.node']).toString().trim() : '';
  const usable = version !== '' && Number(version.split('.')[0]) < 22 && existsSync(built);
  it.skipIf(!usable)('refuses a zstd package with PACKAGE_COMPRESSION_UNSUPPORTED and still reads gzip', async () => {
    const src = await tree({ VERSION: '1.0.0\n' });
    await createPackage(src, join(work, 'p.tar.zst'), { compression: 'zstd' });
    await createPackage(src, join(work, 'p.tar.gz'));
    const script = `import(${JSON.stringify(built)}).then(async (m) => { for (const f of process.argv.slice(1)) { try { await m.scanPackage(f); console.log('ok'); } catch (e) { console.log(e.code); } } })`;
    const out = execFileSync(oldNode, ['--input-type=module', '-e', script, join(work, 'p.tar.zst'), join(work, 'p.tar.gz')]).toString().trim().split('\n');
    expect(out).toEqual(['PACKAGE_COMPRESSION_UNSUPPORTED', 'ok']);
  });
});

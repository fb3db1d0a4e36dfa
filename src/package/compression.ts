/**
 * The two compressions a package (a release, a delta) may use: gzip, which every otad reads, and
 * zstd (node:zlib has it from Node 22.15 and 24), which is smaller and much faster to unpack. A
 * reader never trusts a file's name: it looks at the first bytes of the file (gzip 1f 8b, zstd
 * 28 b5 2f fd) and picks the decompressor from them.
 */
import { open } from 'node:fs/promises';
import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { OtaError } from '../core/errors.js';

export type PackageCompression = 'gzip' | 'zstd';
export const PACKAGE_COMPRESSIONS: readonly PackageCompression[] = ['gzip', 'zstd'];
/** What a publisher gets unless it asks: every robot, whatever its otad or Node, reads gzip. */
export const DEFAULT_COMPRESSION: PackageCompression = 'gzip';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/**
 * The largest zstd window a reader accepts: 2^23 = 8 MiB, what zstd uses up to level 19 (the
 * highest level the packer offers). A frame that asks for more memory is refused at its header,
 * before anything is decompressed, so a crafted package cannot make a robot reserve a large window.
 */
export const ZSTD_WINDOW_LOG_MAX = 23;
export const ZSTD_MAX_LEVEL = 19;
export const ZSTD_DEFAULT_LEVEL = 3;
export const GZIP_DEFAULT_LEVEL = 6;

/** The zstd half of node:zlib, looked up when used: @types/node and older Node do not have it. */
interface ZstdZlib {
  createZstdCompress?(options?: { params?: Record<number, number> }): Transform;
  createZstdDecompress?(options?: { params?: Record<number, number> }): Transform;
  constants: Record<string, number>;
}
const z = zlib as unknown as ZstdZlib;

/** Whether this Node can read and write zstd (node:zlib createZstdCompress/createZstdDecompress). */
export function zstdSupported(): boolean {
  return typeof z.createZstdDecompress === 'function' && typeof z.createZstdCompress === 'function' && z.constants['ZSTD_d_windowLogMax'] !== undefined;
}

function unsupported(what: string): OtaError {
  return new OtaError(
    'PACKAGE_COMPRESSION_UNSUPPORTED',
    `${what} is zstd-compressed, and this Node.js (${process.version}) has no zstd in node:zlib (Node 22.15 or 24 has): run otad on the Node.js it ships with, or publish gzip packages`,
    { details: { compression: 'zstd', node: process.version } },
  );
}

/** Parses a compression name (CLI flag, repository setting, studio form); refuses anything else. */
export function parseCompression(value: unknown, source: string): PackageCompression {
  if (value === 'gzip' || value === 'zstd') return value;
  throw new OtaError('CONFIG_INVALID', `${source} is ${JSON.stringify(value)}: expected "gzip" or "zstd"`, { details: { source } });
}

/** The target-name ending of a package or delta of this compression. */
export function archiveExtension(compression: PackageCompression): '.tar.gz' | '.tar.zst' {
  return compression === 'zstd' ? '.tar.zst' : '.tar.gz';
}

/** The compression the first bytes announce, or null for neither. */
export function compressionOfBytes(head: Buffer): PackageCompression | null {
  if (head.length >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip';
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd';
  return null;
}

async function readHead(file: string): Promise<Buffer> {
  const head = Buffer.alloc(4);
  const handle = await open(file, 'r');
  try {
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Reads the first four bytes of `file`; null when they are neither gzip nor zstd (or the file is shorter). */
export async function detectCompression(file: string): Promise<PackageCompression | null> {
  return compressionOfBytes(await readHead(file));
}

/** Like detectCompression, but a file that is neither is PACKAGE_CORRUPT (naming what it starts with). */
export async function requireCompression(file: string): Promise<PackageCompression> {
  const head = await readHead(file);
  const found = compressionOfBytes(head);
  if (found !== null) return found;
  const shown = head.length === 0 ? 'is empty' : `starts with ${[...head].map((b) => b.toString(16).padStart(2, '0')).join(' ')}`;
  throw new OtaError('PACKAGE_CORRUPT', `package ${file} is neither gzip (1f 8b) nor zstd (28 b5 2f fd): it ${shown}`, { details: { file } });
}

/** The decompressor for a package of `compression`. */
export function createDecompressor(compression: PackageCompression, what: string): Transform {
  if (compression === 'gzip') return zlib.createGunzip();
  if (!zstdSupported()) throw unsupported(what);
  return z.createZstdDecompress!({ params: { [z.constants['ZSTD_d_windowLogMax']!]: ZSTD_WINDOW_LOG_MAX } });
}

/**
 * The compressor for a package. gzip: level 0-9 (default 6), a header without time or name.
 * zstd: level 1-19 (default 3), a content checksum in every frame; single-threaded, so the
 * same tree always gives the same bytes.
 */
export function createCompressor(compression: PackageCompression, level?: number): Transform {
  if (compression === 'gzip') {
    const l = level ?? GZIP_DEFAULT_LEVEL;
    if (!Number.isInteger(l) || l < 0 || l > 9) throw new RangeError(`gzip level must be 0-9, got ${String(level)}`);
    return zlib.createGzip({ level: l });
  }
  const l = level ?? ZSTD_DEFAULT_LEVEL;
  if (!Number.isInteger(l) || l < 1 || l > ZSTD_MAX_LEVEL) throw new RangeError(`zstd level must be 1-${ZSTD_MAX_LEVEL}, got ${String(level)}`);
  if (!zstdSupported()) throw unsupported('the package to write');
  const c = z.constants;
  return z.createZstdCompress!({ params: { [c['ZSTD_c_compressionLevel']!]: l, [c['ZSTD_c_checksumFlag']!]: 1 } });
}

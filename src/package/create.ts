/**
 * Reproducible package creation: the same tree always gives byte-identical .tar.gz (or .tar.zst)
 * output (sorted entries, one fixed mtime, uid/gid 0, no user or group names, a gzip header without
 * time or name; zstd single-threaded with a content checksum),
 * so a package can be rebuilt and compared, and a backup's checksum means something. Every entry
 * passes the same checker the robot applies, so nothing is published that a robot would reject.
 */
import { hashFile } from '../core/files.js';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type Stats } from 'node:fs';
import { lstat, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { OtaError, toOtaError } from '../core/errors.js';
import { createCompressor, DEFAULT_COMPRESSION, type PackageCompression } from './compression.js';
import { fsyncDir, fsyncPath, throwIfAborted } from './durable-fs.js';
import { createEntryChecker, normalizeEntryPath } from './entry-checker.js';
import type { EntryOrigin } from './name-rules.js';

/** 1980-01-01T00:00:00Z: a fixed instant that tar and zip tools do not call implausible. */
export const DEFAULT_PACKAGE_MTIME = 315_532_800_000;

export interface CreateOptions {
  /** 'gzip' (default: every otad reads it) or 'zstd' (needs otad on a Node.js with zstd in node:zlib). */
  compression?: PackageCompression;
  /** gzip level 0-9 (default 6); zstd level 1-19 (default 3). */
  level?: number;
  /** Milliseconds since the epoch stamped on every entry, or 'source' to keep each file's own. */
  mtime?: number | 'source';
  signal?: AbortSignal;
  /**
   * 'package' (default): a release for robots. Group and other write bits are cleared (a robot
   * rejects them) and every robot rule applies. 'backup': modes kept exactly, for a restore.
   */
  origin?: EntryOrigin;
  /** Uncompressed source bytes read so far, out of the total. */
  onProgress?(bytes: number, total: number): void;
}

export interface CreateResult {
  /** SHA-256 (hex) of the written archive. */
  sha256: string;
  /** Size of the written archive. */
  bytes: number;
  compression: PackageCompression;
  /**
   * 'package' only: entries whose group or other write bit was cleared (robots refuse them), so
   * the publisher can be told; empty when the tree had none.
   */
  clearedWriteBits: string[];
}

/** A directory or file to archive, stored under `as` ('' for the archive root; directories only). */
export interface ArchiveSource {
  path: string;
  as: string;
}

interface PlannedEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  abs?: string;
  size: number;
  mode: number;
  mtimeMs: number;
  linkname?: string;
}

export async function createPackage(srcDir: string, destFile: string, opts: CreateOptions = {}): Promise<CreateResult> {
  return createArchive([{ path: srcDir, as: '' }], destFile, opts);
}

export async function createArchive(sources: ArchiveSource[], destFile: string, opts: CreateOptions = {}): Promise<CreateResult> {
  const compression = opts.compression ?? DEFAULT_COMPRESSION;
  // Made (and the level judged) before anything is read: a bad level or a Node without zstd fails here.
  createCompressor(compression, opts.level).destroy();
  const entries = await planEntries(sources);
  if ((opts.origin ?? 'package') === 'package') refuseSpecialBits(entries);
  const total = entries.reduce((sum, e) => sum + e.size, 0);
  const tmp = join(dirname(destFile), `.${basename(destFile)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const result = await writeArchive(entries, tmp, compression, total, opts);
    await fsyncPath(tmp);
    await rename(tmp, destFile);
    await fsyncDir(dirname(destFile));
    return result;
  } catch (error) {
    await rm(tmp, { force: true }).catch(() => {});
    throw toOtaError(error, 'IO_FAILED', `creating archive ${destFile}`, { destFile });
  }
}

/**
 * Robots refuse setuid, setgid and sticky bits (src/package/entry-checker.ts). Dropping them
 * quietly would ship a program that no longer does what its publisher built it to do, so a
 * release package with any is refused before anything is written, naming them.
 */
function refuseSpecialBits(entries: PlannedEntry[]): void {
  const special = entries.filter((e) => e.type !== 'symlink' && (e.mode & 0o7000) !== 0);
  if (special.length === 0) return;
  const shown = special.slice(0, 5).map((e) => `${e.name} (${(e.mode & 0o7777).toString(8).padStart(4, '0')})`);
  throw new OtaError(
    'PACKAGE_UNSAFE_MODE',
    `${special.length} entr${special.length === 1 ? 'y has' : 'ies have'} setuid, setgid or sticky bits, which robots refuse: ${shown.join(', ')}${special.length > 5 ? ', …' : ''}; clear them (chmod u-s,g-s,-t) or leave the files out`,
    { details: { entries: special.map((e) => e.name) } },
  );
}

/** Lists what goes in, sorted by byte order of the name (parents sort before their children). */
async function planEntries(sources: ArchiveSource[]): Promise<PlannedEntry[]> {
  const planned = new Map<string, PlannedEntry>();
  const add = (entry: PlannedEntry): void => {
    if (planned.has(entry.name)) {
      throw new OtaError('PACKAGE_DUPLICATE_ENTRY', `archive sources overlap at "${entry.name}"; expected each "as" to name a distinct place`, {
        details: { entry: entry.name },
      });
    }
    planned.set(entry.name, entry);
  };

  for (const source of sources) {
    const as = source.as === '' ? '' : normalizeEntryPath(source.as);
    // The top of a source is followed if it is a symlink: a product's "current" link means its release.
    const top = await stat(source.path).catch((error: unknown) => {
      throw toOtaError(error, 'IO_FAILED', `reading archive source ${source.path}`, { source: source.path });
    });
    if (as === '' && !top.isDirectory()) {
      throw new OtaError('IO_FAILED', `archive source ${source.path} stored at the root must be a directory`, { details: { source: source.path } });
    }
    const parts = as === '' ? [] : as.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const name = parts.slice(0, i).join('/');
      if (!planned.has(name)) planned.set(name, { name, type: 'directory', size: 0, mode: 0o755, mtimeMs: top.mtimeMs });
    }
    if (as !== '') {
      const entry = await describe(source.path, as, top);
      if (entry !== null) add(entry);
    }
    if (top.isDirectory()) await walk(source.path, as, add);
  }
  return [...planned.values()].sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
}

async function walk(dir: string, prefix: string, add: (e: PlannedEntry) => void): Promise<void> {
  for (const name of await readdir(dir)) {
    const abs = join(dir, name);
    const rel = prefix === '' ? name : `${prefix}/${name}`;
    const st = await lstat(abs);
    const entry = await describe(abs, rel, st);
    if (entry === null) continue;
    add(entry);
    if (st.isDirectory()) await walk(abs, rel, add);
  }
}

/** Sockets are skipped (like tar does: they mean nothing after a restore); FIFOs and devices are refused. */
async function describe(abs: string, name: string, st: Stats): Promise<PlannedEntry | null> {
  // Special bits are kept here so a release package can refuse them (refuseSpecialBits); a backup drops them.
  const mode = st.mode & 0o7777;
  if (st.isFile()) return { name, type: 'file', abs, size: st.size, mode, mtimeMs: st.mtimeMs };
  if (st.isDirectory()) return { name, type: 'directory', size: 0, mode, mtimeMs: st.mtimeMs };
  if (st.isSymbolicLink()) return { name, type: 'symlink', size: 0, mode, mtimeMs: st.mtimeMs, linkname: await readlink(abs) };
  if (st.isSocket()) return null;
  throw new OtaError('PACKAGE_UNSAFE_TYPE', `${abs} is a FIFO or device; only files, directories and symlinks can be packaged`, {
    details: { path: abs },
  });
}

async function writeArchive(entries: PlannedEntry[], tmp: string, compression: PackageCompression, total: number, opts: CreateOptions): Promise<CreateResult> {
  const origin = opts.origin ?? 'package';
  const checker = createEntryChecker({
    maxEntries: Number.MAX_SAFE_INTEGER,
    maxTotalBytes: Number.MAX_SAFE_INTEGER,
    maxEntryBytes: Number.MAX_SAFE_INTEGER,
    maxCompressionRatio: 0,
    origin,
  });
  const hash = createHash('sha256');
  let bytes = 0;
  const measure = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  const pack = tar.pack();
  // A release package is public (served to robots); a backup holds preserved configuration: private.
  const fileMode = origin === 'backup' ? 0o600 : 0o644;
  const written = pipeline(pack, createCompressor(compression, opts.level), measure, createWriteStream(tmp, { flags: 'wx', mode: fileMode }), opts.signal === undefined ? {} : { signal: opts.signal });
  let read = 0;
  const clearedWriteBits = origin === 'package' ? entries.filter((e) => e.type !== 'symlink' && (e.mode & 0o022) !== 0).map((e) => e.name) : [];

  async function feed(): Promise<void> {
    for (const e of entries) {
      throwIfAborted(opts.signal, 'creating an archive');
      const header: tar.Header = {
        name: e.name,
        type: e.type,
        size: e.size,
        // A publisher's tree often has 0664/0775 (umask 002); robots refuse group/other write, so
        // a package clears them (and says which); a backup keeps the permission bits exactly.
        mode: origin === 'package' && e.type !== 'symlink' ? e.mode & 0o755 : e.mode & 0o777,
        mtime: new Date(opts.mtime === 'source' ? Math.floor(e.mtimeMs) : (opts.mtime ?? DEFAULT_PACKAGE_MTIME)),
        uid: 0,
        gid: 0,
        uname: '',
        gname: '',
        linkname: e.linkname ?? '',
        devmajor: 0,
        devminor: 0,
      };
      checker.check(header);
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
        if (e.type !== 'file' || e.abs === undefined) return;
        const rs = createReadStream(e.abs, { start: 0, end: Math.max(0, e.size - 1) });
        if (e.size === 0) {
          rs.destroy();
          sink.end(null);
          return;
        }
        rs.on('data', (chunk) => {
          read += chunk.length;
          opts.onProgress?.(read, total);
          if (!sink.write(chunk)) {
            rs.pause();
            sink.once('drain', () => rs.resume());
          }
        });
        rs.on('end', () => sink.end(null));
        rs.on('error', (err) => {
          sink.destroy(err);
          reject(err);
        });
      });
    }
    checker.finish();
    pack.finalize();
  }

  const [w, f] = await Promise.allSettled([written, feed().catch((error: unknown) => {
    pack.destroy(error as Error);
    throw error;
  })]);
  // The writer's error (ENOSPC, say) is the cause; the feeder then only sees a destroyed stream.
  if (w.status === 'rejected') throw f.status === 'rejected' && f.reason instanceof OtaError ? f.reason : w.reason;
  if (f.status === 'rejected') throw f.reason;
  return { sha256: hash.digest('hex'), bytes, clearedWriteBits, compression };
}

/**
 * Relative path → SHA-256 of the content for every file, 'link:' + target for every symlink
 * (directories are implied by their contents). Two trees with equal maps hold the same release.
 */
export async function hashTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function visit(abs: string, rel: string): Promise<void> {
    for (const name of (await readdir(abs)).sort()) {
      const childAbs = join(abs, name);
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(childAbs);
      if (st.isSymbolicLink()) out[childRel] = `link:${await readlink(childAbs)}`;
      else if (st.isDirectory()) await visit(childAbs, childRel);
      else if (st.isFile()) out[childRel] = (await hashFile(childAbs)).sha256;
    }
  }
  await visit(dir, '');
  return out;
}


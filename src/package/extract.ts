/**
 * Safe extraction of a package into a fresh directory. extractPackage judges and writes in one
 * pass (one gunzip); extractScanned writes a file a caller already scanned, judging every entry
 * again with the same checker, so a file swapped between the two passes is judged by the same
 * rules (and caught by its changed hash). Afterwards the tree on disk must equal what was judged,
 * the whole tree is made durable, and on any failure the directory is removed completely: the
 * caller sees a complete tree or nothing.
 */
import { execFile } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { closeSync, constants as fsConstants, fchmodSync, futimesSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readlink, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tar from 'tar-stream';
import { OtaError, toOtaError } from '../core/errors.js';
import { forEachPooled } from '../core/pool.js';
import { readArchiveInto } from './archive-stream.js';
import { createTreeRoot } from './btrfs.js';
import { fsyncDir, fsyncPath, removeTree, throwIfAborted } from './durable-fs.js';
import { createEntryChecker, type EntryType, type HeaderLike } from './entry-checker.js';
import { resolveLimits, type PackageLimits } from './limits.js';
import { toScanFile, type PackageScan, type PackageScanFile } from './scan.js';
import { syncFilesystem, treeMismatch, verifyTree, type TreeIndex, type TreeIndexEntry } from './tree-index.js';

export interface ExtractResult extends PackageScan {
  destDir: string;
}

export interface VerifiedExtractResult extends ExtractResult {
  /** SHA-256 (hex) of every regular file, of the bytes as they were written, by normalised entry path. */
  fileHashes: ReadonlyMap<string, string>;
}

export interface VerifiedExtractOptions {
  /**
   * The signed SHA-256 of the compressed file (which the caller verified just before). The one
   * pass hashes what it reads; if that differs, the tree is removed and TRUST_HASH_MISMATCH thrown.
   */
  sha256: string;
  /**
   * The signed tree index of the release. Every entry is held to it before a byte of it is written
   * (in the index, same type, mode, size and link target: nothing beyond the index's size is ever
   * written), every file's content hash as its last byte is written, and afterwards the tree on
   * disk is walked against it (verifyTree: no entry more, none missing) with those hashes.
   */
  index?: TreeIndex;
  /**
   * true when `destDir` is a release tree (the stage step's), not a scratch tree: on btrfs it is
   * then created as a subvolume (createTreeRoot), so a later delta can start from a snapshot of it.
   */
  releaseTree?: boolean;
  /**
   * false for a scratch tree whose files are moved into a tree that is made durable afterwards (an
   * extracted delta): no filesystem sync of its own. Default true.
   */
  durable?: boolean;
  limits?: Partial<PackageLimits>;
  signal?: AbortSignal;
}

export async function extractPackage(
  file: string,
  destDir: string,
  limits?: Partial<PackageLimits>,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  // One pass: the archive is judged and written together (one gunzip, one read). Writing before
  // the last entry is judged is safe: every entry is checked before any byte of it is written,
  // nothing is written through a symlink or an existing name, and on any failure the fresh
  // destination is removed whole.
  return extractInto(file, destDir, resolveLimits(limits), { scanned: null }, signal);
}

/**
 * For a file already scanned (`scan` must be its scan; the stager checks the signed hash and the free space in between). Every
 * header is judged again while writing and the file's hash must equal the scanned one, so a file
 * replaced after its scan is stopped at its first bad entry and never accepted.
 */
export async function extractScanned(
  file: string,
  destDir: string,
  scan: PackageScan,
  limits?: Partial<PackageLimits>,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  return extractInto(file, destDir, resolveLimits(limits), { scanned: scan }, signal);
}

/**
 * One pass for a file whose signed hash is known: judged (the entry checker, every rule and cap
 * of the scan), held to the signed index when there is one, hashed and written together, with one
 * gunzip and no read-back. Writing before the last entry is judged is as safe as in
 * extractPackage: every entry is judged before any byte of it is written, nothing is written
 * through a symlink or an existing name, and on any failure (a rule, the index, the file's own
 * hash) the fresh destination is removed whole, so nobody ever sees a tree that was not verified.
 */
export async function extractVerified(file: string, destDir: string, options: VerifiedExtractOptions): Promise<VerifiedExtractResult> {
  const fileHashes = new Map<string, string>();
  const result = await extractInto(
    file,
    destDir,
    resolveLimits(options.limits),
    { scanned: null, signedSha256: options.sha256, index: options.index, fileHashes, durable: options.durable ?? true, releaseTree: options.releaseTree ?? false },
    options.signal,
  );
  return { ...result, fileHashes };
}

interface ExtractMode {
  /** The scan of the same file (extractScanned): the pass's hash must equal it. */
  scanned: PackageScan | null;
  /** The signed hash the pass's hash must equal (extractVerified). */
  signedSha256?: string;
  index?: TreeIndex | undefined;
  /** Filled with each file's SHA-256 as written. */
  fileHashes?: Map<string, string>;
  durable?: boolean;
  /** The tree is a release (see createTreeRoot), not a scratch tree. */
  releaseTree?: boolean;
}

async function extractInto(file: string, destDir: string, resolved: PackageLimits, mode: ExtractMode, signal?: AbortSignal): Promise<ExtractResult> {
  const { scanned } = mode;
  const durable = mode.durable ?? true;
  throwIfAborted(signal, `extracting package ${file}`);

  await mkdir(dirname(destDir), { recursive: true }).catch((error: unknown) => {
    throw toOtaError(error, 'IO_FAILED', `creating the parent of ${destDir}`);
  });
  try {
    // A release tree (not the scratch tree of a delta) on btrfs is a subvolume: the next delta can start from a snapshot of it.
    if (mode.releaseTree === true) await createTreeRoot(destDir, 0o755);
    else await mkdir(destDir, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new OtaError('IO_FAILED', `extraction directory ${destDir} already exists; expected a fresh path`, { details: { destDir } });
    }
    throw toOtaError(error, 'IO_FAILED', `creating extraction directory ${destDir}`);
  }

  try {
    const want = mode.index === undefined ? null : new Map(mode.index.entries.map((e) => [e.path, e]));
    const scan = await writeTree(file, destDir, resolved, signal, want, mode.fileHashes ?? null);
    if (scanned !== null && scan.sha256 !== scanned.sha256) {
      throw new OtaError('PACKAGE_CORRUPT', `package ${file} changed between scan and extraction (sha256 ${scanned.sha256} then ${scan.sha256})`, {
        details: { file, scanned: scanned.sha256, extracted: scan.sha256 },
      });
    }
    if (mode.signedSha256 !== undefined && scan.sha256 !== mode.signedSha256) {
      // The file changed after it was verified: what was written is not what was signed.
      throw new OtaError('TRUST_HASH_MISMATCH', `package ${file} has SHA-256 ${scan.sha256} as read while extracting; the signed value is ${mode.signedSha256}`, {
        details: { file, expected: mode.signedSha256, actual: scan.sha256 },
      });
    }
    if (mode.index !== undefined) {
      // The whole tree against the signed index: every path, type, mode, size and link target on
      // disk, nothing more and nothing missing; file contents by the hashes taken while writing.
      await verifyTree(destDir, mode.index, signal, new Set(), 'none', mode.fileHashes);
      if (durable) await syncFilesystem(destDir, mode.index);
    } else {
      await verifyAndSync(destDir, scan, durable);
    }
    if (durable) await fsyncDir(dirname(destDir));
    return { ...(scanned ?? scan), destDir };
  } catch (error) {
    await removeTree(destDir).catch(() => {});
    throw toOtaError(error, 'IO_FAILED', `extracting package ${file} into ${destDir}`, { file, destDir });
  }
}

/** Files are created fresh (never through an existing name or a symlink) and private until their mode is set. */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW; // libuv adds O_CLOEXEC
/** The writer gives the event loop back at least this often (the daemon keeps answering while staging). */
const YIELD_EVERY_MS = 10;

/**
 * The writer: one pass of tar-stream over the archive (one gunzip), every header judged again by the
 * entry checker before anything of it is written. The destination is fresh and ours, every name
 * is normalised and its parents are directories this pass created (the checker refuses writing
 * through a symlink or a file), and every file is opened with O_CREAT | O_EXCL | O_NOFOLLOW, so
 * nothing is ever written through a name that already exists. Modes and mtimes are set on the
 * open descriptor; directories stay 0700 until everything is written, then get their modes
 * deepest first (a read-only directory in the package cannot block its own children).
 *
 * The file system calls are synchronous: through the libuv thread pool every small file costs
 * a handful of round trips (open, write, chmod, utimes, close), each one a thread wake-up, and
 * tar-fs did them one entry after another (with a stat chain per parent): 4000 small files took
 * seconds there. Directly they cost only the system calls. The event loop is handed back every
 * YIELD_EVERY_MS, so a long archive never blocks the daemon for more than that (plus one write).
 */
async function writeTree(
  file: string,
  destDir: string,
  limits: PackageLimits,
  signal: AbortSignal | undefined,
  index: ReadonlyMap<string, TreeIndexEntry> | null,
  fileHashes: Map<string, string> | null,
): Promise<PackageScan> {
  const checker = createEntryChecker(limits);
  const files: PackageScanFile[] = [];
  const made = new Set<string>(['']);
  const dirs: Array<{ rel: string; mode: number; mtime: Date | undefined }> = [];
  let rejected: unknown;
  let lastYield = performance.now();
  /** The file being written, closed here if the pipeline stops in the middle of it. */
  let current: number | undefined;
  const extract = tar.extract();

  const ensureDir = (rel: string): void => {
    if (made.has(rel)) return;
    const slash = rel.lastIndexOf('/');
    if (slash > 0) ensureDir(rel.slice(0, slash));
    mkdirSync(join(destDir, rel), 0o700);
    made.add(rel);
    // A parent the archive only implies gets 0755 (as tar and tar-fs give it); a later entry for it may change that.
    dirs.push({ rel, mode: 0o755, mtime: undefined });
  };
  const fail = (error: unknown): void => {
    rejected ??= error;
    extract.destroy(error as Error);
  };
  const proceed = (next: () => void): void => {
    if (performance.now() - lastYield < YIELD_EVERY_MS) return next();
    setImmediate(() => {
      lastYield = performance.now();
      next();
    });
  };

  extract.on('entry', (header, stream, next) => {
    // Destroying the parser destroys the current entry stream too: its error is already ours.
    stream.on('error', () => {});
    if (rejected !== undefined) return stream.resume();
    let fd: number | undefined;
    try {
      const entry = checker.check(header);
      const signed = index === null || entry.path === '' ? undefined : holdToIndex(index, entry);
      if (entry.path !== '') files.push(toScanFile(entry));
      const slash = entry.path.lastIndexOf('/');
      if (slash > 0) ensureDir(entry.path.slice(0, slash));
      const abs = join(destDir, entry.path);
      if (entry.type === 'directory') {
        if (entry.path === '') dirs.push({ rel: '', mode: entry.mode, mtime: header.mtime });
        else if (made.has(entry.path)) {
          const implied = dirs.find((d) => d.rel === entry.path)!;
          implied.mode = entry.mode;
          implied.mtime = header.mtime;
        } else {
          mkdirSync(abs, 0o700);
          made.add(entry.path);
          dirs.push({ rel: entry.path, mode: entry.mode, mtime: header.mtime });
        }
      } else if (entry.type === 'symlink') {
        symlinkSync(entry.linkname!, abs);
      } else {
        const opened = openSync(abs, CREATE_FLAGS, 0o600);
        fd = opened;
        current = opened;
        const mtime = header.mtime;
        const hash: Hash | null = fileHashes === null ? null : createHash('sha256');
        stream.on('data', (data: unknown) => {
          const chunk = data as Buffer;
          try {
            for (let off = 0; off < chunk.length; ) off += writeSync(opened, chunk, off, chunk.length - off);
            hash?.update(chunk);
          } catch (error) {
            current = undefined;
            closeQuietly(opened);
            fail(error);
          }
        });
        stream.on('end', () => {
          if (rejected !== undefined) return;
          try {
            if (hash !== null) {
              const sha256 = hash.digest('hex');
              if (signed !== undefined && sha256 !== signed.sha256) {
                throw treeMismatch(entry.path, `has SHA-256 ${sha256} in the package, ${signed.sha256 ?? '?'} in the signed index`);
              }
              fileHashes!.set(entry.path, sha256);
            }
            fchmodSync(opened, entry.mode);
            if (mtime !== undefined) futimesSync(opened, mtime, mtime);
            current = undefined;
            closeSync(opened);
          } catch (error) {
            closeQuietly(opened);
            fail(error);
            return;
          }
          proceed(next);
        });
        return;
      }
    } catch (error) {
      if (fd !== undefined) closeQuietly(fd);
      current = undefined;
      stream.resume();
      fail(error);
      return;
    }
    stream.on('end', () => proceed(next));
    stream.resume();
  });

  let read;
  try {
    read = await readArchiveInto(file, extract, limits, () => rejected, signal);
  } finally {
    if (current !== undefined) closeQuietly(current);
  }
  checker.finish();
  // Deepest first: children of a directory get their modes before it may become read-only.
  dirs.sort((a, b) => b.rel.split('/').length - a.rel.split('/').length);
  for (const d of dirs) {
    const abs = d.rel === '' ? destDir : join(destDir, d.rel);
    await chmod(abs, d.mode);
    if (d.mtime !== undefined) await utimes(abs, d.mtime, d.mtime);
  }
  return { entries: checker.entries, totalBytes: checker.totalBytes, files, sha256: read.sha256, captured: {} };
}

/**
 * An entry of the package must be the index's entry of the same path, before anything of it is
 * written: a package that disagrees with its own signed index is refused at its first difference.
 * Listed directories carry their mode in the index; the content hash is checked at the file's end.
 */
function holdToIndex(index: ReadonlyMap<string, TreeIndexEntry>, entry: { path: string; type: EntryType; mode: number; size: number; linkname?: string }): TreeIndexEntry {
  const e = index.get(entry.path);
  if (e === undefined) throw treeMismatch(entry.path, 'is in the package but not in the signed index');
  if (e.type !== entry.type) throw treeMismatch(entry.path, `is a ${entry.type} in the package but a ${e.type} in the signed index`);
  if (entry.type !== 'symlink' && e.mode !== undefined && e.mode !== entry.mode) {
    throw treeMismatch(entry.path, `has mode ${entry.mode.toString(8)} in the package, ${e.mode.toString(8)} in the signed index`);
  }
  if (entry.type === 'file' && e.size !== entry.size) throw treeMismatch(entry.path, `is ${entry.size} bytes in the package, ${e.size} in the signed index`);
  if (entry.type === 'symlink' && e.linkname !== entry.linkname) throw treeMismatch(entry.path, `points to "${entry.linkname ?? ''}" in the package, "${e.linkname ?? ''}" in the signed index`);
  return e;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed or never usable: the failure that led here is the one reported
  }
}

interface OnDisk {
  type: EntryType;
  size: number;
  linkname?: string;
}

/**
 * The tree must hold exactly what the archive listed (plus the parents the writer creates for
 * entries listed without their directory). Then the whole tree is made durable
 * (syncTree) before anyone switches to it.
 */
async function verifyAndSync(destDir: string, scan: PackageScan, durable: boolean): Promise<void> {
  const expected = new Map<string, OnDisk>();
  for (const f of scan.files) {
    const parts = f.path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const parent = parts.slice(0, i).join('/');
      if (!expected.has(parent)) expected.set(parent, { type: 'directory', size: 0 });
    }
    expected.set(f.path, f.linkname === undefined ? { type: f.type, size: f.size } : { type: f.type, size: f.size, linkname: f.linkname });
  }

  const seen = new Set<string>();
  const files: string[] = [];
  const dirs: string[] = [];
  async function visit(rel: string): Promise<void> {
    const abs = rel === '' ? destDir : join(destDir, rel);
    for (const name of await readdir(abs)) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const childAbs = join(destDir, childRel);
      const st = await lstat(childAbs);
      const want = expected.get(childRel);
      const type: EntryType | 'other' = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
      if (want === undefined) throw mismatch(childRel, 'is on disk but not in the package');
      if (type !== want.type) throw mismatch(childRel, `is a ${type} on disk but a ${want.type} in the package`);
      if ((st.mode & 0o7000) !== 0) throw mismatch(childRel, `has special mode bits ${(st.mode & 0o7777).toString(8)} on disk`);
      seen.add(childRel);
      if (type === 'directory') {
        await visit(childRel);
        dirs.push(childAbs);
      } else if (type === 'file') {
        if (st.size !== want.size) throw mismatch(childRel, `is ${st.size} bytes on disk but ${want.size} in the package`);
        files.push(childAbs);
      } else if ((await readlink(childAbs)) !== want.linkname) {
        throw mismatch(childRel, `points somewhere other than "${want.linkname ?? ''}" on disk`);
      }
    }
  }
  await visit('');
  for (const path of expected.keys()) if (!seen.has(path)) throw mismatch(path, 'is in the package but missing on disk');
  if (durable) await syncTree(destDir, files, dirs);
}

/**
 * One syncfs(2) of the staging filesystem (`sync -f`, coreutils) makes data and metadata of every
 * file durable at once, instead of one fsync per file in sequence. syncfs reports writeback errors
 * only since Linux 5.8; where `sync -f` fails or cannot run, every file is fsynced (4 at a time),
 * then the directories deepest first.
 */
async function syncTree(destDir: string, files: string[], dirs: string[]): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    execFile('sync', ['-f', destDir], { timeout: 300_000 }, (error) => resolve(error === null));
  });
  if (ok) return;
  await forEachPooled(files, 4, (file) => fsyncPath(file));
  for (const d of dirs) await fsyncDir(d);
  await fsyncDir(destDir);
}

function mismatch(path: string, what: string): OtaError {
  return new OtaError('PACKAGE_CORRUPT', `extracted tree does not match the package: "${path}" ${what}`, { details: { path } });
}

/**
 * The tree index of a release: every entry of its package (path, type, mode, size, SHA-256 of each
 * file, link target of each symlink). The publisher writes it as a TUF target that the signed
 * manifest names by length and hash, so the robot can prove that the tree it staged, from a full
 * package or assembled from a delta, is exactly the release that was signed.
 *
 * A delta (`writeDelta`) is a tar.gz (or tar.zst) in the package format: `delta.json` (from, to, removed paths)
 * and `files/<path>` for every file that is new or whose content changed. Directories, symlinks
 * and modes come from the index, unchanged files from the release already installed.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, constants as fsConstants, createWriteStream, lchownSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, readSync, renameSync, rmSync, symlinkSync, writeSync } from 'node:fs';
import { copyFile, lstat, open } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import { z } from 'zod';
import { OtaError, toOtaError } from '../core/errors.js';
import { forEachPooled } from '../core/pool.js';
import { readArchiveInto } from './archive-stream.js';
import { createTreeRoot, isSubvolumeRoot, snapshotTree } from './btrfs.js';
import { createCompressor, type PackageCompression } from './compression.js';
import { fsyncDir, removeTree, throwIfAborted } from './durable-fs.js';
import { createEntryChecker, normalizeEntryPath, type EntryType } from './entry-checker.js';
import { resolveLimits, type PackageLimits } from './limits.js';

export const TREE_INDEX_SCHEMA = '1.0';
/** An index larger than this is refused before parsing (200,000 entries of ~300 bytes). */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;
/** The member of a delta archive that says what it is. */
export const DELTA_META = 'delta.json';
export const DELTA_FILES = 'files';

export interface TreeIndexEntry {
  path: string;
  type: EntryType;
  /** Permission bits; absent for a directory the archive only implies (a parent of a listed entry). */
  mode?: number;
  size: number;
  /** Files only. */
  sha256?: string;
  /** Symlinks only. */
  linkname?: string;
}

export interface TreeIndex {
  schema: string;
  product: string;
  version: string;
  /** Sum of the file sizes. */
  bytes: number;
  entries: TreeIndexEntry[];
}

const SHA256_RE = /^[0-9a-f]{64}$/;

const indexSchema = z.object({
  schema: z.string().regex(/^1\.\d+$/),
  product: z.string().min(1).max(64),
  version: z.string().min(1).max(128),
  bytes: z.number().int().nonnegative(),
  entries: z.array(
    z.object({
      path: z.string().min(1).max(4095),
      type: z.enum(['file', 'directory', 'symlink']),
      mode: z.number().int().min(0).max(0o777).optional(),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(SHA256_RE).optional(),
      linkname: z.string().max(4095).optional(),
    }),
  ),
});

/** Byte order of the UTF-8 names: parents sort before their children. */
export function comparePaths(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/**
 * Reads a package end to end (same rules and caps as the robot's scan) and lists its tree with the
 * SHA-256 of every file. Parents the archive implies without listing are added without a mode.
 */
export async function indexPackage(file: string, ids: { product: string; version: string }, limits?: Partial<PackageLimits>, signal?: AbortSignal): Promise<TreeIndex> {
  const resolved = resolveLimits(limits);
  const checker = createEntryChecker(resolved);
  const entries = new Map<string, TreeIndexEntry>();
  let rejected: unknown;
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    stream.on('error', () => {});
    let checked;
    try {
      checked = checker.check(header);
    } catch (error) {
      rejected ??= error;
      stream.resume();
      extract.destroy(error as Error);
      return;
    }
    if (checked.path === '') {
      stream.on('end', () => next());
      stream.resume();
      return;
    }
    const parts = checked.path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const parent = parts.slice(0, i).join('/');
      if (!entries.has(parent)) entries.set(parent, { path: parent, type: 'directory', size: 0 });
    }
    const entry: TreeIndexEntry = { path: checked.path, type: checked.type, mode: checked.mode, size: checked.size };
    if (checked.linkname !== undefined) entry.linkname = checked.linkname;
    entries.set(checked.path, entry);
    if (checked.type !== 'file') {
      stream.on('end', () => next());
      stream.resume();
      return;
    }
    const hash = createHash('sha256');
    stream.on('data', (chunk: unknown) => hash.update(chunk as Buffer));
    stream.on('end', () => {
      entry.sha256 = hash.digest('hex');
      next();
    });
  });
  await readArchiveInto(file, extract, resolved, () => rejected, signal);
  checker.finish();
  const list = [...entries.values()].sort((a, b) => comparePaths(a.path, b.path));
  return { schema: TREE_INDEX_SCHEMA, product: ids.product, version: ids.version, bytes: list.reduce((s, e) => s + (e.type === 'file' ? e.size : 0), 0), entries: list };
}

export function serializeIndex(index: TreeIndex): string {
  // One entry per line: diffable, and still one JSON document.
  const head = JSON.stringify({ schema: index.schema, product: index.product, version: index.version, bytes: index.bytes }).slice(0, -1);
  return `${head},"entries":[\n${index.entries.map((e) => JSON.stringify(e)).join(',\n')}\n]}\n`;
}

/** Parses and checks an index (the bytes already matched their signed hash). */
export function parseIndex(bytes: Buffer, source: string, expect?: { product: string; version: string }): TreeIndex {
  const fail = (why: string): OtaError => new OtaError('RELEASE_INDEX_INVALID', `tree index ${source}: ${why}`, { details: { source } });
  if (bytes.length > MAX_INDEX_BYTES) throw fail(`${bytes.length} bytes, expected at most ${MAX_INDEX_BYTES}`);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw fail(`not JSON: ${(error as Error).message}`);
  }
  const result = indexSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    throw fail(`field ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  const index = result.data as TreeIndex;
  if (expect !== undefined && (index.product !== expect.product || index.version !== expect.version)) {
    throw fail(`is for ${index.product} ${index.version}, expected ${expect.product} ${expect.version}`);
  }
  const seen = new Set<string>();
  let bytesTotal = 0;
  for (const e of index.entries) {
    let normal: string;
    try {
      normal = normalizeEntryPath(e.path);
    } catch {
      throw fail(`entry "${e.path}" is not a safe relative path`);
    }
    if (normal !== e.path) throw fail(`entry "${e.path}" is not in normal form`);
    if (seen.has(e.path)) throw fail(`entry "${e.path}" is listed twice`);
    seen.add(e.path);
    const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : null;
    if (parent !== null && !seen.has(parent)) throw fail(`entry "${e.path}" is listed before (or without) its directory`);
    if (e.type === 'file') {
      if (e.sha256 === undefined || e.mode === undefined) throw fail(`file "${e.path}" has no sha256 or mode`);
      bytesTotal += e.size;
    } else if (e.type === 'symlink' && e.linkname === undefined) throw fail(`symlink "${e.path}" has no target`);
  }
  for (const e of index.entries) {
    if (e.type === 'directory') continue;
    const prefix = `${e.path}/`;
    // Sorted order puts a child right after its parent: a file or link with children is a lie.
    const i = index.entries.indexOf(e);
    if (index.entries[i + 1]?.path.startsWith(prefix) === true) throw fail(`${e.type} "${e.path}" has entries beneath it`);
  }
  if (bytesTotal !== index.bytes) throw fail(`bytes is ${index.bytes}, the files add up to ${bytesTotal}`);
  return index;
}

export interface DeltaMeta {
  schema: string;
  product: string;
  fromVersion: string;
  toVersion: string;
  /** Paths of the old release that the new one does not have. */
  removed: string[];
  /** Files carried in the delta (`files/<path>`). */
  files: number;
}

/** The files of `next` a robot holding `prev` cannot take from its own tree: new, or other content. */
export function changedFiles(prev: TreeIndex, next: TreeIndex): Set<string> {
  const old = new Map(prev.entries.map((e) => [e.path, e]));
  const changed = new Set<string>();
  for (const e of next.entries) {
    if (e.type !== 'file') continue;
    const o = old.get(e.path);
    if (o === undefined || o.type !== 'file' || o.sha256 !== e.sha256 || o.size !== e.size) changed.add(e.path);
  }
  return changed;
}

/**
 * Writes the delta from `prev` to `next` into `destFile`: delta.json first, then the changed files
 * as read from the new package (`packageFile`, whose index `next` is). Reproducible bytes.
 */
export async function writeDelta(packageFile: string, prev: TreeIndex, next: TreeIndex, destFile: string, limits?: Partial<PackageLimits>, compression: PackageCompression = 'gzip'): Promise<DeltaMeta> {
  const changed = changedFiles(prev, next);
  const nextPaths = new Set(next.entries.map((e) => e.path));
  const meta: DeltaMeta = {
    schema: TREE_INDEX_SCHEMA,
    product: next.product,
    fromVersion: prev.version,
    toVersion: next.version,
    removed: prev.entries.filter((e) => !nextPaths.has(e.path)).map((e) => e.path),
    files: changed.size,
  };
  const mtime = new Date(315_532_800_000);
  const header = (name: string, size: number, mode: number, type: 'file' | 'directory' = 'file'): tar.Header => ({ name, size, mode, type, mtime, uid: 0, gid: 0, uname: '', gname: '', linkname: '', devmajor: 0, devminor: 0 });
  const pack = tar.pack();
  const written = pipeline(pack, createCompressor(compression), createWriteStream(destFile, { flags: 'wx', mode: 0o644 }));
  written.catch(() => {});
  const metaBytes = Buffer.from(`${JSON.stringify(meta)}\n`);
  pack.entry(header(DELTA_META, metaBytes.length, 0o644), metaBytes);
  pack.entry(header(DELTA_FILES, 0, 0o755, 'directory'));
  const resolved = resolveLimits(limits);
  const extract = tar.extract();
  let failure: unknown;
  extract.on('entry', (h, stream, next) => {
    stream.on('error', () => {});
    let path: string;
    try {
      path = normalizeEntryPath(h.name);
    } catch (error) {
      failure ??= error;
      stream.resume();
      extract.destroy(error as Error);
      return;
    }
    if (h.type !== 'file' || !changed.has(path)) {
      stream.on('end', () => next());
      stream.resume();
      return;
    }
    const sink = pack.entry(header(`${DELTA_FILES}/${path}`, h.size ?? 0, (h.mode ?? 0o644) & 0o777), (err) => {
      if (err) {
        failure ??= err;
        extract.destroy(err);
      } else next();
    });
    stream.pipe(sink);
  });
  try {
    await readArchiveInto(packageFile, extract, resolved, () => failure, undefined);
    pack.finalize();
    await written;
  } catch (error) {
    pack.destroy();
    await written.catch(() => {});
    throw toOtaError(failure ?? error, 'IO_FAILED', `writing delta ${destFile}`);
  }
  return meta;
}

/** Parses a delta's delta.json and checks it belongs to this step (installed → offered). */
export function parseDeltaMeta(bytes: Buffer, expect: { product: string; fromVersion: string; toVersion: string }, source: string): DeltaMeta {
  const fail = (why: string): OtaError => new OtaError('DELTA_INVALID', `delta ${source}: ${why}`, { details: { source } });
  let raw: Partial<DeltaMeta>;
  try {
    raw = JSON.parse(bytes.toString('utf8')) as Partial<DeltaMeta>;
  } catch (error) {
    throw fail(`${DELTA_META} is not JSON: ${(error as Error).message}`);
  }
  if (raw.product !== expect.product || raw.fromVersion !== expect.fromVersion || raw.toVersion !== expect.toVersion) {
    throw fail(`is from ${String(raw.product)} ${String(raw.fromVersion)} to ${String(raw.toVersion)}, expected ${expect.product} ${expect.fromVersion} to ${expect.toVersion}`);
  }
  if (!Array.isArray(raw.removed) || typeof raw.files !== 'number') throw fail(`${DELTA_META} lacks removed or files`);
  return raw as DeltaMeta;
}

export interface AssembleResult {
  /**
   * 'snapshot': the tree began as a btrfs snapshot of the installed release (the unchanged files
   * were not written at all); 'copy': it was built file by file.
   */
  method: 'snapshot' | 'copy';
  /** Files taken from the delta (renamed into place). */
  fromDelta: number;
  /**
   * Files taken unchanged from the installed release: copied (reflinked where the filesystem
   * can) with method 'copy', kept from the snapshot with method 'snapshot'.
   */
  unchanged: number;
  unchangedBytes: number;
}

/**
 * Builds the release `index` describes in `destDir` (which must not exist): directories and
 * symlinks from the index, changed files renamed out of the extracted delta (`deltaFilesDir`),
 * unchanged files copied from `currentDir` with COPYFILE_FICLONE (shared blocks on reflink
 * filesystems, a plain copy elsewhere; never a hard link, so the running release cannot change
 * the new one). Then the whole tree is verified against the index and made durable.
 */
export async function assembleRelease(opts: {
  index: TreeIndex;
  currentDir: string;
  deltaFilesDir: string;
  destDir: string;
  /**
   * The product's preserved paths: apply replaces them with the installed release's copies, so a
   * file there that was changed locally is taken as it is (its content is not held to the index).
   */
  preservedPaths?: string[];
  /**
   * SHA-256 of each file of the extracted delta as its extraction wrote it (by index path, i.e.
   * without the `files/` prefix): a renamed file is the same inode, so it is not read again.
   */
  carriedHashes?: ReadonlyMap<string, string>;
  signal?: AbortSignal;
}): Promise<AssembleResult> {
  const { index, currentDir, deltaFilesDir, destDir } = opts;
  const preserved = (opts.preservedPaths ?? []).map((p) => p.replace(/^\/+|\/+$/g, '')).filter((p) => p !== '');
  const isPreserved = (p: string): boolean => preserved.some((q) => p === q || p.startsWith(`${q}/`));
  const unverified = new Set<string>();
  // On btrfs, with the installed release a subvolume: start from a snapshot of it. The snapshot is
  // made inside a folder only otad's user can enter (its root has the installed release's mode
  // until it is changed, and nobody else may hold a way into the tree being assembled), and moved
  // to destDir once it is the release.
  if (await isSubvolumeRoot(currentDir)) {
    const holder = `${destDir}.snapshot`;
    await removeTree(holder);
    mkdirSync(holder, 0o700);
    try {
      const tree = join(holder, 'tree');
      if ((await snapshotTree(currentDir, tree)).ok) {
        const result = await assembleOnSnapshot({ ...opts, destDir: tree, isPreserved });
        renameSync(tree, destDir);
        // One filesystem sync for the whole assembled tree (the rename's folder is the caller's to fsync).
        await syncFilesystem(destDir, index);
        return result;
      }
    } finally {
      await removeTree(holder);
    }
  }
  await createTreeRoot(destDir, 0o700);
  const result: AssembleResult = { method: 'copy', fromDelta: 0, unchanged: 0, unchangedBytes: 0 };
  const copies: TreeIndexEntry[] = [];
  /** Content hashes of the new tree's files, taken as they were placed (verifyTree compares them). */
  const hashes = new Map<string, string>();
  // Metadata calls are made directly (each one through the thread pool would cost a wake-up,
  // one entry after another); the event loop is handed back every few milliseconds.
  const pace = pacer();
  for (const e of index.entries) {
    await pace();
    const dest = join(destDir, e.path);
    if (e.type === 'directory') mkdirSync(dest, 0o700);
    else if (e.type === 'symlink') symlinkSync(e.linkname!, dest);
    else {
      const carried = join(deltaFilesDir, e.path);
      const st = lstatSync(carried, { throwIfNoEntry: false });
      if (st !== undefined && st.isFile()) {
        await moveCarried(carried, dest);
        const carriedHash = opts.carriedHashes?.get(e.path);
        if (carriedHash !== undefined) hashes.set(e.path, carriedHash);
        result.fromDelta += 1;
      } else copies.push(e);
    }
  }
  // Large files are copied with copyFile and COPYFILE_FICLONE, a few at a time on the thread pool:
  // a reflink shares their blocks (metadata only), a plain copy overlaps I/O, and each copy is
  // hashed right after it is made, by the same worker, while its pages are still in memory.
  // Small files (most of a product's files) are read, hashed and written by direct calls instead:
  // two opens, a read, a write and two closes, with no thread-pool round trips and no read back.
  // Measured on the benchmark tree (3,960 unchanged files of 0.5 to 2 KiB), the copyFile-and-hash
  // of the small files was 550 ms of a 680 ms delta staging on XFS with reflink (a reflink of a
  // one-block file costs more than writing the block) and most of it on ext4. What is hashed is
  // what was written, as full staging hashes what it extracts.
  // Large files are handed out first, so their copies run while the small ones are written.
  copies.sort((a, b) => Number(b.size > SMALL_COPY) - Number(a.size > SMALL_COPY));
  const buffers = Array.from({ length: Math.min(4, copies.length) }, () => Buffer.allocUnsafe(HASH_CHUNK));
  // The first failure stops the handing out of copies and lets those in flight finish before it
  // is thrown: the caller removes the tree next, and must not race a copy still being made.
  await forEachPooled(copies, buffers.length, async (e, worker) => {
    throwIfAborted(opts.signal, 'assembling a release from a delta');
    const source = join(currentDir, e.path);
    const dest = join(destDir, e.path);
    const small = (e.size ?? 0) <= SMALL_COPY;
    if (small) await pace();
    const st = small ? lstatSync(source, { throwIfNoEntry: false }) ?? null : await lstat(source).catch(() => null);
    if (st === null || !st.isFile()) {
      throw treeMismatch(e.path, st === null ? 'is missing from the installed release (the delta expects it unchanged)' : 'is not a regular file in the installed release');
    }
    if (isPreserved(e.path)) unverified.add(e.path);
    else if (st.size !== e.size) throw treeMismatch(e.path, `is ${st.size} bytes in the installed release, ${e.size} in the signed index (changed locally?)`);
    let sha256: string;
    if (small && st.size <= SMALL_COPY) sha256 = copySmallFile(source, dest, e.path, buffers[worker]!);
    else {
      await copyFile(source, dest, fsConstants.COPYFILE_FICLONE | fsConstants.COPYFILE_EXCL).catch((error: NodeJS.ErrnoException) => {
        // The source gone since its lstat is the installed release changing under us, not an I/O fault.
        if (error.code === 'ENOENT') throw treeMismatch(e.path, 'disappeared from the installed release while it was copied');
        throw error;
      });
      sha256 = unverified.has(e.path) ? '' : await hashFile(dest, e.size, buffers[worker]!);
    }
    if (!unverified.has(e.path)) {
      // Stop at the first copy that is not the release (a file changed locally under the install path).
      if (sha256 !== e.sha256) throw treeMismatch(e.path, `has SHA-256 ${sha256} on disk, ${e.sha256 ?? '?'} in the signed index`);
      hashes.set(e.path, sha256);
    }
    result.unchanged += 1;
    result.unchangedBytes += e.size;
  });
  await applyModes(destDir, index);
  await verifyTree(destDir, index, opts.signal, unverified, 'none', hashes);
  // One filesystem sync for the whole assembled tree instead of one fsync per file in sequence.
  await syncFilesystem(destDir, index);
  return result;
}

/**
 * A file carried in the delta into the new tree: renamed (same inode, no copy), or, where the two
 * are different btrfs subvolumes (rename(2) fails with EXDEV), cloned (copyFile, COPYFILE_FICLONE).
 */
async function moveCarried(carried: string, dest: string): Promise<void> {
  try {
    renameSync(carried, dest);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(carried, dest, fsConstants.COPYFILE_FICLONE | fsConstants.COPYFILE_EXCL);
  }
}

/**
 * assembleRelease on a writable btrfs snapshot of the installed release, already at `destDir`:
 * the unchanged files are there without a byte written. The snapshot is then made into exactly
 * the tree of the index: whatever the index does not have (or has as another type, or another
 * link target) is removed, the files carried in the delta replace their old versions, missing
 * directories and links are made, owners not the daemon's are taken back, modes are set where
 * they differ; then the whole tree is verified against the index, every unchanged file read and
 * hashed (the snapshot holds whatever the installed release held, local changes included). The
 * caller moves it into place and makes it durable. What the index does not describe (extended
 * attributes) is kept as the installed release had it.
 */
async function assembleOnSnapshot(opts: Parameters<typeof assembleRelease>[0] & { isPreserved: (p: string) => boolean }): Promise<AssembleResult> {
  const { index, deltaFilesDir, destDir, signal } = opts;
  const result: AssembleResult = { method: 'snapshot', fromDelta: 0, unchanged: 0, unchangedBytes: 0 };
  chmodSync(destDir, 0o700);
  const want = new Map(index.entries.map((e) => [e.path, e]));
  const carried = new Set<string>();
  if (opts.carriedHashes !== undefined) for (const p of opts.carriedHashes.keys()) carried.add(p);
  else for (const e of index.entries) if (e.type === 'file' && lstatSync(join(deltaFilesDir, e.path), { throwIfNoEntry: false })?.isFile() === true) carried.add(e.path);
  const uid = process.getuid?.();
  const gid = process.getgid?.();
  /** Entries of the snapshot that stay, with their mode as found. */
  const kept = new Map<string, number>();
  const pace = pacer();
  async function prune(rel: string): Promise<void> {
    for (const name of readdirSync(rel === '' ? destDir : join(destDir, rel))) {
      await pace();
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = join(destDir, childRel);
      const st = lstatSync(abs);
      const e = want.get(childRel);
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
      const stays = e !== undefined && e.type === type && !(type === 'file' && carried.has(childRel)) && !(type === 'symlink' && readlinkSync(abs) !== e.linkname);
      if (!stays) {
        rmSync(abs, { recursive: true, force: true });
        continue;
      }
      if (uid !== undefined && gid !== undefined && uid === 0 && (st.uid !== uid || st.gid !== gid)) lchownSync(abs, uid, gid);
      kept.set(childRel, st.mode & 0o7777);
      if (type === 'directory') await prune(childRel);
    }
  }
  await prune('');
  throwIfAborted(signal, 'assembling a release from a delta');
  const hashes = new Map<string, string>();
  const unverified = new Set<string>();
  for (const e of index.entries) {
    await pace();
    const dest = join(destDir, e.path);
    if (kept.has(e.path)) {
      if (e.type === 'file') {
        if (opts.isPreserved(e.path)) unverified.add(e.path);
        result.unchanged += 1;
        result.unchangedBytes += e.size;
      }
      continue;
    }
    if (e.type === 'directory') mkdirSync(dest, 0o700);
    else if (e.type === 'symlink') symlinkSync(e.linkname!, dest);
    else if (carried.has(e.path)) {
      await moveCarried(join(deltaFilesDir, e.path), dest);
      const carriedHash = opts.carriedHashes?.get(e.path);
      if (carriedHash !== undefined) hashes.set(e.path, carriedHash);
      result.fromDelta += 1;
    } else throw treeMismatch(e.path, 'is missing from the installed release (the delta expects it unchanged)');
  }
  // Modes: only where the snapshot's differs (new entries were made 0700), directories deepest first.
  for (const e of index.entries) {
    if (e.type === 'directory' || e.type === 'symlink') continue;
    if (kept.get(e.path) !== e.mode) chmodSync(join(destDir, e.path), e.mode!);
  }
  for (const e of index.entries.filter((x) => x.type === 'directory').reverse()) {
    const mode = e.mode ?? 0o755;
    if (kept.get(e.path) !== mode) chmodSync(join(destDir, e.path), mode);
  }
  await verifyTree(destDir, index, signal, unverified, 'none', hashes);
  chmodSync(destDir, 0o755);
  return result;
}

const HASH_CHUNK = 1 << 20;
/** Files up to this size are copied by copySmallFile; larger ones with copyFile (reflinked where the filesystem can). */
const SMALL_COPY = 64 * 1024;

/**
 * Copies a small regular file (at most SMALL_COPY bytes, the size of `buf` or less) with direct
 * calls: the source opened without following a link, read whole, the copy created exclusively
 * (O_EXCL | O_NOFOLLOW, mode 0600 until applyModes) and written. Returns the SHA-256 of the bytes
 * written. A source that grew past SMALL_COPY meanwhile is a mismatch, not a partial copy.
 */
function copySmallFile(source: string, dest: string, path: string, buf: Buffer): string {
  let n = 0;
  // O_NONBLOCK: a source swapped for a FIFO since its lstat must not block the daemon on open.
  let input: number;
  try {
    input = openSync(source, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENXIO' || code === 'EISDIR') throw treeMismatch(path, `could not be opened in the installed release (${code}; changed while it was copied?)`);
    throw error;
  }
  try {
    for (;;) {
      let got: number;
      try {
        got = readSync(input, buf, n, Math.min(buf.length, SMALL_COPY + 1) - n, null);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EISDIR') throw treeMismatch(path, `is not a regular file in the installed release (${code})`);
        throw error;
      }
      if (got === 0) break;
      n += got;
      if (n > SMALL_COPY) throw treeMismatch(path, 'changed in the installed release while it was copied');
    }
  } finally {
    closeSync(input);
  }
  const out = openSync(dest, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW, 0o600);
  try {
    let off = 0;
    while (off < n) off += writeSync(out, buf, off, n - off);
  } finally {
    closeSync(out);
  }
  return createHash('sha256').update(buf.subarray(0, n)).digest('hex');
}

/**
 * SHA-256 of a file of the tree being built (O_NOFOLLOW). Small files are read with direct calls
 * (one open, read and close; through the thread pool each would be a wake-up), large ones in
 * 1 MiB reads through the thread pool so the event loop keeps running.
 */
async function hashFile(file: string, size: number, buf: Buffer): Promise<string> {
  const hash = createHash('sha256');
  if (size <= HASH_CHUNK) {
    // O_NONBLOCK: a FIFO swapped in since the caller's lstat fails the read (EAGAIN) instead of hanging.
    const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, null);
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    return hash.digest('hex');
  }
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Modes from the index, directories deepest first so a read-only directory is set after its children. */
async function applyModes(destDir: string, index: TreeIndex): Promise<void> {
  const pace = pacer();
  for (const e of index.entries) {
    if (e.type !== 'file') continue;
    await pace();
    chmodSync(join(destDir, e.path), e.mode!);
  }
  const dirs = index.entries.filter((e) => e.type === 'directory').reverse();
  for (const e of dirs) {
    await pace();
    chmodSync(join(destDir, e.path), e.mode ?? 0o755);
  }
  chmodSync(destDir, 0o755);
}

/**
 * For loops of direct (synchronous) file system calls: the returned function resolves at once,
 * except every PACE_MS, when it waits for the event loop to run (the daemon keeps answering).
 */
const PACE_MS = 10;
function pacer(): () => Promise<void> {
  let last = performance.now();
  return async () => {
    if (performance.now() - last < PACE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    last = performance.now();
  };
}

/**
 * The tree at `dir` must be exactly the index: the same entries, types, modes, sizes, link targets
 * and file contents (SHA-256), nothing more. Files and directories are fsynced on the way.
 * Throws RELEASE_TREE_MISMATCH naming the first difference.
 */
export async function verifyTree(
  dir: string,
  index: TreeIndex,
  signal?: AbortSignal,
  contentNotChecked: ReadonlySet<string> = new Set(),
  /** 'each': fsync every file and directory on the way; 'none': the caller makes the tree durable (syncFilesystem). */
  durability: 'each' | 'none' = 'each',
  /**
   * SHA-256 of files this process just wrote (or copied) into this fresh tree and hashed as it did:
   * compared with the index instead of reading the file back. Files not listed are read and hashed.
   * Never for a tree that others could have written to since (a tree staged earlier is read back).
   */
  knownHashes?: ReadonlyMap<string, string>,
): Promise<void> {
  const each = durability === 'each';
  const want = new Map(index.entries.map((e) => [e.path, e]));
  const files: TreeIndexEntry[] = [];
  const dirs: string[] = [];
  const seen = new Set<string>();
  // The walk calls lstat directly (see pacer): one thread-pool round trip per entry, one entry after another, was most of its time.
  const pace = pacer();
  async function visit(rel: string): Promise<void> {
    const abs = rel === '' ? dir : join(dir, rel);
    for (const name of readdirSync(abs)) {
      await pace();
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const st = lstatSync(join(dir, childRel));
      const e = want.get(childRel);
      if (e === undefined) throw treeMismatch(childRel, 'is on disk but not in the signed index');
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
      if (type !== e.type) throw treeMismatch(childRel, `is a ${type} on disk but a ${e.type} in the signed index`);
      if (type !== 'symlink' && e.mode !== undefined && (st.mode & 0o7777) !== e.mode) {
        throw treeMismatch(childRel, `has mode ${(st.mode & 0o7777).toString(8)} on disk, ${e.mode.toString(8)} in the signed index`);
      }
      if (type !== 'symlink' && (st.mode & 0o7000) !== 0) throw treeMismatch(childRel, `has special mode bits ${(st.mode & 0o7777).toString(8)} on disk`);
      seen.add(childRel);
      if (type === 'directory') {
        await visit(childRel);
        dirs.push(childRel);
      } else if (type === 'file') {
        if (contentNotChecked.has(childRel)) {
          if (each) await syncFile(join(dir, childRel));
          continue;
        }
        if (st.size !== e.size) throw treeMismatch(childRel, `is ${st.size} bytes on disk, ${e.size} in the signed index`);
        const known = knownHashes?.get(childRel);
        if (known === undefined) files.push(e);
        else {
          if (known !== e.sha256) throw treeMismatch(childRel, `has SHA-256 ${known} on disk, ${e.sha256 ?? '?'} in the signed index`);
          if (each) await syncFile(join(dir, childRel));
        }
      } else if (readlinkSync(join(dir, childRel)) !== e.linkname) {
        throw treeMismatch(childRel, `points somewhere other than "${e.linkname ?? ''}" on disk`);
      }
    }
  }
  await visit('');
  for (const p of want.keys()) if (!seen.has(p)) throw treeMismatch(p, 'is in the signed index but missing on disk');
  const buffers = Array.from({ length: Math.min(4, files.length) }, () => Buffer.allocUnsafe(1 << 20));
  await forEachPooled(files, buffers.length, async (e, worker) => {
    throwIfAborted(signal, 'verifying a staged release');
    const buf = buffers[worker]!;
    if (!each) {
      // Nothing to fsync: hashFile reads a small file with direct calls (the event loop handed back
      // every few milliseconds), a large one through the thread pool.
      if (e.size <= HASH_CHUNK) await pace();
      const sha256 = await hashFile(join(dir, e.path), e.size, buf);
      if (sha256 !== e.sha256) throw treeMismatch(e.path, `has SHA-256 ${sha256} on disk, ${e.sha256 ?? '?'} in the signed index`);
      return;
    }
    const handle = await open(join(dir, e.path), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    try {
      const hash = createHash('sha256');
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
      }
      const sha256 = hash.digest('hex');
      if (sha256 !== e.sha256) throw treeMismatch(e.path, `has SHA-256 ${sha256} on disk, ${e.sha256 ?? '?'} in the signed index`);
      if (each) await handle.sync();
    } finally {
      await handle.close();
    }
  });
  if (!each) return;
  for (const d of dirs) await fsyncDir(join(dir, d));
  await fsyncDir(dir);
}

/**
 * Makes everything written under `dir` durable with one syncfs(2) of its filesystem (`sync -f`,
 * coreutils), which flushes data and metadata of every file at once. Where `sync -f` cannot run,
 * every file and directory of the tree is fsynced instead.
 */
export async function syncFilesystem(dir: string, index: TreeIndex): Promise<void> {
  const ok = await new Promise<boolean>((resolve) => {
    execFile('sync', ['-f', dir], { timeout: 300_000 }, (error) => resolve(error === null));
  });
  if (ok) return;
  for (const e of index.entries) if (e.type === 'file') await syncFile(join(dir, e.path));
  for (const e of [...index.entries].reverse()) if (e.type === 'directory') await fsyncDir(join(dir, e.path));
  await fsyncDir(dir);
}

async function syncFile(file: string): Promise<void> {
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function treeMismatch(path: string, what: string): OtaError {
  return new OtaError('RELEASE_TREE_MISMATCH', `staged tree does not match the signed tree index: "${path}" ${what}`, { details: { path } });
}

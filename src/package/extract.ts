/**
 * Safe extraction of a package into a fresh directory. The archive is scanned completely first;
 * only then does tar-fs write, and it writes only entries the same checker approves again, so a
 * file swapped between the two passes is judged by the same rules (and caught by its changed hash).
 * Afterwards the tree on disk must equal the scan, the whole tree is made durable, and on any failure the
 * directory is removed completely: the caller sees a complete tree or nothing.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, readdir, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as tarFs from 'tar-fs';
import { OtaError, toOtaError } from '../core/errors.js';
import { readArchiveInto } from './archive-stream.js';
import { fsyncDir, fsyncPath, removeTree, throwIfAborted } from './durable-fs.js';
import { createEntryChecker, type EntryType, type HeaderLike } from './entry-checker.js';
import { resolveLimits, type PackageLimits } from './limits.js';
import { scanPackage, type PackageScan } from './scan.js';

export interface ExtractResult extends PackageScan {
  destDir: string;
}

/** The tar-fs options we rely on; @types/tar-fs lags behind tar-fs 3 (chown, umask). */
interface TarFsExtractOptions {
  chown: boolean;
  umask: number;
  strict: boolean;
  ignore: (name: string, header?: unknown) => boolean;
}

export async function extractPackage(
  file: string,
  destDir: string,
  limits?: Partial<PackageLimits>,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  const resolved = resolveLimits(limits);
  const scan = await scanPackage(file, resolved, signal);
  return extractScanned(file, destDir, scan, resolved, signal);
}

/**
 * The second half of extractPackage, for a file already scanned (`scan` must be its scan). Every
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
  const resolved = resolveLimits(limits);
  throwIfAborted(signal, `extracting package ${file}`);

  await mkdir(dirname(destDir), { recursive: true }).catch((error: unknown) => {
    throw toOtaError(error, 'IO_FAILED', `creating the parent of ${destDir}`);
  });
  try {
    await mkdir(destDir, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new OtaError('IO_FAILED', `extraction directory ${destDir} already exists; expected a fresh path`, { details: { destDir } });
    }
    throw toOtaError(error, 'IO_FAILED', `creating extraction directory ${destDir}`);
  }

  try {
    await writeTree(file, destDir, resolved, scan, signal);
    await verifyAndSync(destDir, scan);
    await fsyncDir(dirname(destDir));
    return { ...scan, destDir };
  } catch (error) {
    await removeTree(destDir).catch(() => {});
    throw toOtaError(error, 'IO_FAILED', `extracting package ${file} into ${destDir}`, { file, destDir });
  }
}

async function writeTree(file: string, destDir: string, limits: PackageLimits, scan: PackageScan, signal?: AbortSignal): Promise<void> {
  const checker = createEntryChecker(limits);
  let rejected: unknown;
  const options: TarFsExtractOptions = {
    chown: false, // the robot's service user owns the release, never uids from the archive
    umask: 0, // modes as packaged; tar-fs itself always masks to 0o777 (no special bits)
    strict: true,
    ignore: (_name, header) => {
      if (rejected !== undefined) return true;
      try {
        checker.check(header as HeaderLike);
        return false;
      } catch (error) {
        rejected = error;
        // Destroyed without an error: the entry stream tar-fs holds has no error listener, and the
        // verdict travels through `rejected` instead.
        extract.destroy();
        return true;
      }
    },
  };
  const extract = tarFs.extract(destDir, options as unknown as tarFs.ExtractOptions);
  const read = await readArchiveInto(file, extract, limits, () => rejected, signal);
  checker.finish();
  if (read.sha256 !== scan.sha256) {
    throw new OtaError('PACKAGE_CORRUPT', `package ${file} changed between scan and extraction (sha256 ${scan.sha256} then ${read.sha256})`, {
      details: { file, scanned: scan.sha256, extracted: read.sha256 },
    });
  }
}

interface OnDisk {
  type: EntryType;
  size: number;
  linkname?: string;
}

/**
 * The tree must hold exactly what the scan listed (plus the parents tar-fs creates for entries
 * listed without their directory). Then the whole tree is made durable
 * (syncTree) before anyone switches to it.
 */
async function verifyAndSync(destDir: string, scan: PackageScan): Promise<void> {
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
  await syncTree(destDir, files, dirs);
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
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < files.length) await fsyncPath(files[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(4, files.length) }, () => worker()));
  for (const d of dirs) await fsyncDir(d);
  await fsyncDir(destDir);
}

function mismatch(path: string, what: string): OtaError {
  return new OtaError('PACKAGE_CORRUPT', `extracted tree does not match the package: "${path}" ${what}`, { details: { path } });
}

/**
 * Reads a package end to end without writing anything and proves it safe to extract: every entry
 * passes the entry checker, the caps hold, and the gzip and tar framing are intact.
 */
import * as tar from 'tar-stream';
import { createEntryChecker, type CheckedEntry, type EntryType } from './entry-checker.js';
import { readArchiveInto } from './archive-stream.js';
import { resolveLimits, type PackageLimits } from './limits.js';

export interface PackageScanFile {
  path: string;
  size: number;
  mode: number;
  type: EntryType;
  linkname?: string;
}

export interface PackageScan {
  entries: number;
  /** Sum of the sizes of the file entries. */
  totalBytes: number;
  /** Every entry except the root, in archive order. */
  files: PackageScanFile[];
  /** SHA-256 (hex) of the compressed archive as read. */
  sha256: string;
  /** The contents of the regular files asked for with `capture` that the archive holds. */
  captured: Record<string, Buffer>;
}

export interface ScanOptions {
  /** Normalised entry paths (`VERSION`, `etc/version`) whose contents to keep, each up to 64 KiB. */
  capture?: string[];
}

const MAX_CAPTURE_BYTES = 64 * 1024;

export async function scanPackage(file: string, limits?: Partial<PackageLimits>, signal?: AbortSignal, options: ScanOptions = {}): Promise<PackageScan> {
  const resolved = resolveLimits(limits);
  const checker = createEntryChecker(resolved);
  const files: PackageScanFile[] = [];
  const wanted = new Set(options.capture ?? []);
  const captured: Record<string, Buffer> = {};
  let rejected: unknown;
  const extract = tar.extract();

  extract.on('entry', (header, stream, next) => {
    // Destroying the parser destroys the current entry stream too: its error is already ours.
    stream.on('error', () => {});
    let entry: CheckedEntry;
    try {
      entry = checker.check(header);
    } catch (error) {
      rejected ??= error;
      stream.resume();
      extract.destroy(error as Error);
      return;
    }
    if (entry.path !== '') files.push(toScanFile(entry));
    if (entry.type === 'file' && wanted.has(entry.path) && entry.size <= MAX_CAPTURE_BYTES) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => chunks.push(c as Buffer));
      stream.on('end', () => {
        captured[entry.path] = Buffer.concat(chunks);
        next();
      });
      return;
    }
    stream.on('end', () => next());
    stream.resume();
  });

  const read = await readArchiveInto(file, extract, resolved, () => rejected, signal);
  checker.finish();
  return { entries: checker.entries, totalBytes: checker.totalBytes, files, sha256: read.sha256, captured };
}

export function toScanFile(entry: CheckedEntry): PackageScanFile {
  const file: PackageScanFile = { path: entry.path, size: entry.size, mode: entry.mode, type: entry.type };
  if (entry.linkname !== undefined) file.linkname = entry.linkname;
  return file;
}

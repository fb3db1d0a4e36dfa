/**
 * The rules every package entry must pass, as one pure, stateful checker fed tar headers in archive
 * order. The scanner runs it over the whole archive before anything is written, and the extractor
 * runs it again on the very headers it writes, so a file swapped between the two passes is still
 * judged by the same rules. Nothing here touches the disk.
 */
import { posix } from 'node:path';
import { OtaError } from '../core/errors.js';
import type { PackageLimits } from './limits.js';
import { checkEntryMode, checkEntryName, checkLinkTarget, type EntryOrigin } from './name-rules.js';

export type EntryType = 'file' | 'directory' | 'symlink';

/** The part of a tar header the rules look at (tar-stream's Header fits). */
export interface HeaderLike {
  name: string;
  size?: number | null;
  mode?: number | null;
  type?: string | null;
  linkname?: string | null;
}

export interface CheckedEntry {
  /** Normalised: relative, `/`-separated, no `.` segments, no trailing slash; '' is the root itself. */
  path: string;
  size: number;
  /** Permission bits only (0o777): special bits are rejected, never carried. */
  mode: number;
  type: EntryType;
  /** Symlinks only: the target exactly as stored. */
  linkname?: string;
}

/** Longest symlink chain followed while resolving a target inside the tree (Linux uses 40 too). */
const MAX_LINK_HOPS = 40;
const SPECIAL_BITS = 0o7000;

/**
 * Turns an archive name into a safe relative path, or rejects it. Absolute names and any `..`
 * segment are refused outright: re-rooting them silently would install something the publisher
 * never meant to ship.
 */
export function normalizeEntryPath(name: string): string {
  if (name.length === 0) throw unsafePath(name, 'the name is empty');
  if (name.includes('\0')) throw unsafePath(name, 'the name contains a NUL byte');
  if (name.startsWith('/')) throw unsafePath(name, 'absolute paths are not allowed');
  const segments: string[] = [];
  for (const segment of name.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw unsafePath(name, '".." segments are not allowed');
    segments.push(segment);
  }
  return segments.join('/');
}

function unsafePath(name: string, why: string): OtaError {
  return new OtaError('PACKAGE_UNSAFE_PATH', `package entry "${name}" is rejected: ${why}; expected a relative path inside the package`, {
    details: { entry: name },
  });
}

type NodeKind = 'dir' | 'implicit-dir' | 'file' | 'symlink';

export interface EntryChecker {
  /** Judges the next header; throws an OtaError with a PACKAGE_* code when it breaks a rule. */
  check(header: HeaderLike): CheckedEntry;
  /**
   * Judges what only the whole archive shows: every symlink, followed through the other symlinks
   * of the archive, must land inside the tree.
   */
  finish(): void;
  readonly entries: number;
  readonly totalBytes: number;
}

/**
 * `limits.origin` 'package' (the default) applies every rule; 'backup' is an archive otad wrote
 * itself of a tree already on the robot, restored as it was (its modes, its own release marker).
 */
export function createEntryChecker(limits: PackageLimits): EntryChecker {
  const origin: EntryOrigin = limits.origin ?? 'package';
  const nodes = new Map<string, NodeKind>();
  const links = new Map<string, string>();
  let entries = 0;
  let totalBytes = 0;

  function check(header: HeaderLike): CheckedEntry {
    entries += 1;
    if (entries > limits.maxEntries) {
      throw new OtaError('PACKAGE_TOO_LARGE', `package has more than ${limits.maxEntries} entries; reading stopped at the cap`, {
        details: { limit: 'maxEntries', maxEntries: limits.maxEntries },
      });
    }

    const raw = header.name;
    const type = header.type ?? 'unknown';
    if (type === 'link') {
      throw new OtaError('PACKAGE_UNSAFE_LINK', `package entry "${raw}" is a hard link to "${header.linkname ?? ''}"; hard links are not allowed in packages`, {
        details: { entry: raw, linkname: header.linkname ?? null },
      });
    }
    if (type !== 'file' && type !== 'directory' && type !== 'symlink') {
      throw new OtaError('PACKAGE_UNSAFE_TYPE', `package entry "${raw}" has type ${type}; only regular files, directories and symlinks are allowed`, {
        details: { entry: raw, type },
      });
    }
    const path = normalizeEntryPath(raw);
    checkEntryName(raw, path, origin);
    const mode = header.mode ?? (type === 'directory' ? 0o755 : 0o644);
    if ((mode & SPECIAL_BITS) !== 0) {
      throw new OtaError('PACKAGE_UNSAFE_MODE', `package entry "${raw}" has mode ${(mode & 0o7777).toString(8)} with setuid, setgid or sticky bits; these are not allowed`, {
        details: { entry: raw, mode: mode & 0o7777 },
      });
    }
    checkEntryMode(raw, type, mode, origin);
    const size = type === 'file' ? (header.size ?? 0) : 0;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new OtaError('PACKAGE_CORRUPT', `package entry "${raw}" declares an invalid size ${String(header.size)}`, { details: { entry: raw } });
    }
    if (size > limits.maxEntryBytes) {
      throw new OtaError('PACKAGE_TOO_LARGE', `package entry "${raw}" is ${size} bytes, more than the ${limits.maxEntryBytes}-byte cap per entry`, {
        details: { entry: raw, size, limit: 'maxEntryBytes', maxEntryBytes: limits.maxEntryBytes },
      });
    }
    if (totalBytes + size > limits.maxTotalBytes) {
      throw new OtaError('PACKAGE_TOO_LARGE', `package content exceeds the ${limits.maxTotalBytes}-byte cap at entry "${raw}"; reading stopped at the cap`, {
        details: { entry: raw, limit: 'maxTotalBytes', maxTotalBytes: limits.maxTotalBytes },
      });
    }

    if (path === '') {
      // "./" is the package root itself: harmless as a directory, meaningless as anything else.
      if (type !== 'directory') throw unsafePath(raw, 'only a directory may name the package root');
      return { path, size: 0, mode: mode & 0o777, type };
    }

    checkAncestors(raw, path);
    claim(raw, path, type);

    const entry: CheckedEntry = { path, size, mode: mode & 0o777, type };
    if (type === 'symlink') {
      const target = header.linkname ?? '';
      if (target === '' || target.includes('\0')) {
        throw unsafeLink(raw, target, 'the target is empty or contains a NUL byte');
      }
      if (target.startsWith('/')) throw unsafeLink(raw, target, 'absolute targets point outside the package');
      checkLinkTarget(raw, target, origin);
      if (lexicalResolve(posix.dirname(path), target) === null) throw unsafeLink(raw, target, 'the target leaves the package');
      links.set(path, target);
      entry.linkname = target;
    }
    totalBytes += size;
    return entry;
  }

  /** Every parent must be (or become) a real directory: never a file, never a symlink written through. */
  function checkAncestors(raw: string, path: string): void {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i += 1) {
      const prefix = parts.slice(0, i).join('/');
      const kind = nodes.get(prefix);
      if (kind === 'symlink') {
        throw new OtaError('PACKAGE_UNSAFE_LINK', `package entry "${raw}" would be written through the symlink "${prefix}"; this is not allowed`, {
          details: { entry: raw, symlink: prefix, linkname: links.get(prefix) ?? null },
        });
      }
      if (kind === 'file') throw duplicate(raw, `"${prefix}" is a file earlier in the archive and cannot become a directory`);
      if (kind === undefined) nodes.set(prefix, 'implicit-dir');
    }
  }

  function claim(raw: string, path: string, type: EntryType): void {
    const before = nodes.get(path);
    if (before === undefined) {
      nodes.set(path, type === 'directory' ? 'dir' : type);
      return;
    }
    // A directory entry after files inside it only states what is already true.
    if (before === 'implicit-dir' && type === 'directory') {
      nodes.set(path, 'dir');
      return;
    }
    const what = before === 'implicit-dir' ? 'a directory' : before === 'dir' ? 'a directory' : before === 'symlink' ? 'a symlink' : 'a file';
    throw duplicate(raw, `the name is already ${what} earlier in the archive and would be replaced by a ${type}`);
  }

  /**
   * Follows a path through the archive's own symlinks (like realpath, inside the tree). Returns the
   * resolved relative path, or null when it climbs above the root or loops.
   */
  function realResolve(start: string[], rest: string[], hops: { n: number }): string[] | null {
    const resolved = [...start];
    const queue = [...rest];
    while (queue.length > 0) {
      const part = queue.shift() as string;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (resolved.length === 0) return null;
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, part].join('/');
      const target = links.get(candidate);
      if (target === undefined) {
        resolved.push(part);
        continue;
      }
      hops.n += 1;
      if (hops.n > MAX_LINK_HOPS || target.startsWith('/')) return null;
      queue.unshift(...target.split('/'));
    }
    return resolved;
  }

  function finish(): void {
    for (const [path, target] of links) {
      const parent = path.split('/').slice(0, -1);
      if (realResolve(parent, target.split('/'), { n: 0 }) === null) {
        throw unsafeLink(path, target, 'followed through the other symlinks of the package, the target leaves the package');
      }
    }
  }

  return {
    check,
    finish,
    get entries() {
      return entries;
    },
    get totalBytes() {
      return totalBytes;
    },
  };
}

/** Resolves `target` relative to `dir` by text alone; null when it climbs above the root. */
function lexicalResolve(dir: string, target: string): string | null {
  const stack = dir === '.' || dir === '' ? [] : dir.split('/');
  for (const part of target.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) return null;
      stack.pop();
      continue;
    }
    stack.push(part);
  }
  return stack.join('/');
}

function unsafeLink(entry: string, target: string, why: string): OtaError {
  return new OtaError('PACKAGE_UNSAFE_LINK', `package symlink "${entry}" -> "${target}" is rejected: ${why}`, {
    details: { entry, linkname: target },
  });
}

function duplicate(entry: string, why: string): OtaError {
  return new OtaError('PACKAGE_DUPLICATE_ENTRY', `package entry "${entry}" is rejected: ${why}`, { details: { entry } });
}

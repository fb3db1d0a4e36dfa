/**
 * The folders on the server machine a publisher may build releases from. A request names a root by
 * its name and a path relative to it; the resolved real path (symlinks followed) must stay inside
 * the root's real path, so no request reads outside what the operator configured.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { OtaError } from '../../core/errors.js';

export interface SourceRoot {
  /** Shown in the page and sent back by it: `[A-Za-z0-9._-]`. */
  name: string;
  dir: string;
}

const ROOT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A folder listing shown in the page stops here (a tree this large is not browsed by hand). */
export const MAX_LISTED = 2000;

/** `name=dir` or a bare `dir` (named after its last segment); names must be distinct. */
export function parseSourceRoots(values: readonly string[]): SourceRoot[] {
  const roots: SourceRoot[] = [];
  for (const value of values) {
    const eq = value.indexOf('=');
    const dir = path.resolve(eq > 0 ? value.slice(eq + 1) : value);
    const name = eq > 0 ? value.slice(0, eq) : path.basename(dir);
    if (!ROOT_NAME.test(name)) throw new OtaError('CONFIG_INVALID', `source root ${JSON.stringify(value)}: the name ${JSON.stringify(name)} must be [A-Za-z0-9._-], at most 64 characters (write NAME=DIR)`);
    if (roots.some((r) => r.name === name)) throw new OtaError('CONFIG_INVALID', `source root name ${name} is given twice (write NAME=DIR to tell them apart)`);
    roots.push({ name, dir });
  }
  return roots;
}

export interface ResolvedFolder {
  root: SourceRoot;
  /** Relative to the root, '/'-separated, '' for the root itself. */
  rel: string;
  abs: string;
}

export async function resolveFolder(roots: readonly SourceRoot[], rootName: unknown, rel: unknown): Promise<ResolvedFolder> {
  const root = roots.find((r) => r.name === rootName);
  if (root === undefined) {
    throw new OtaError('API_INVALID_REQUEST', roots.length === 0 ? 'no source roots are configured: start ota-server with --source-root NAME=DIR' : `no source root ${JSON.stringify(rootName)} (configured: ${roots.map((r) => r.name).join(', ')})`);
  }
  const relText = typeof rel === 'string' ? rel : '';
  if (relText.length > 1024 || relText.includes('\0') || relText.startsWith('/') || relText.split('/').includes('..')) {
    throw new OtaError('API_INVALID_REQUEST', `folder ${JSON.stringify(relText)}: expected a path relative to the source root, without ".."`);
  }
  const rootReal = await fs.realpath(root.dir).catch((cause: unknown) => {
    throw new OtaError('CONFIG_NOT_FOUND', `source root ${root.name} (${root.dir}) is not readable: ${(cause as Error).message}`, { cause });
  });
  const abs = await fs.realpath(path.join(rootReal, relText)).catch(() => {
    throw new OtaError('API_NOT_FOUND', `no folder ${JSON.stringify(relText)} in source root ${root.name}`);
  });
  if (abs !== rootReal && !abs.startsWith(rootReal + path.sep)) {
    throw new OtaError('API_INVALID_REQUEST', `folder ${JSON.stringify(relText)} leads outside source root ${root.name}`);
  }
  const st = await fs.stat(abs);
  if (!st.isDirectory()) throw new OtaError('API_INVALID_REQUEST', `${JSON.stringify(relText)} in source root ${root.name} is not a folder`);
  return { root, rel: path.relative(rootReal, abs).split(path.sep).join('/'), abs };
}

/** The sub-folders of a folder, by name: what the page offers to open next. */
export async function listSubfolders(abs: string): Promise<string[]> {
  const entries = await fs.readdir(abs, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name).sort().slice(0, MAX_LISTED);
}

export interface FolderEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  size: number;
  mode: number;
  linkname?: string;
}

/**
 * What a folder holds, without following links: the tree the page shows when the package scan
 * refused it (so the publisher sees the offending entry among the others).
 */
export async function listTree(abs: string, max = MAX_LISTED): Promise<{ entries: FolderEntry[]; truncated: boolean }> {
  const out: FolderEntry[] = [];
  let truncated = false;
  async function walk(dir: string, prefix: string): Promise<void> {
    const names = (await fs.readdir(dir)).sort();
    for (const name of names) {
      if (out.length >= max) {
        truncated = true;
        return;
      }
      const full = path.join(dir, name);
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      const st = await fs.lstat(full);
      const type = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
      const entry: FolderEntry = { path: rel, type, size: type === 'file' ? st.size : 0, mode: st.mode & 0o7777 };
      if (type === 'symlink') entry.linkname = await fs.readlink(full);
      out.push(entry);
      if (type === 'directory') await walk(full, rel);
    }
  }
  await walk(abs, '');
  return { entries: out, truncated };
}

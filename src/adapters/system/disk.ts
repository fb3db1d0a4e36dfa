/**
 * Disk measurements for the pre-check: which filesystem a path lives on and how much of it is free
 * to us, and how many bytes a tree holds. A path that does not exist yet (a backup folder before the
 * first backup) is measured on its nearest existing ancestor, which is where it will be created.
 */
import { lstat, readdir, stat, statfs } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';

export interface FilesystemInfo {
  /** Identifies the filesystem (the device id): two paths with the same id share free space. */
  id: string;
  /** The path actually measured: the given path or its nearest existing ancestor. */
  measuredPath: string;
  /** Bytes available to an unprivileged writer (statfs bavail × bsize). */
  freeBytes: number;
  totalBytes: number;
}

export interface DiskPort {
  filesystem(path: string): Promise<FilesystemInfo>;
  /** Bytes of regular files under `path` (the top followed if it is a symlink; 0 when missing). */
  treeBytes(path: string): Promise<number>;
}

export function createDiskAdapter(): DiskPort {
  return {
    async filesystem(path) {
      const measuredPath = await nearestExisting(resolve(path));
      const [st, fs] = await Promise.all([stat(measuredPath), statfs(measuredPath)]);
      return { id: String(st.dev), measuredPath, freeBytes: fs.bavail * fs.bsize, totalBytes: fs.blocks * fs.bsize };
    },
    async treeBytes(path) {
      let st;
      try {
        st = await stat(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw error;
      }
      return st.isDirectory() ? dirBytes(path) : st.isFile() ? st.size : 0;
    },
  };
}

async function nearestExisting(path: string): Promise<string> {
  let current = path;
  for (;;) {
    try {
      await stat(current);
      return current;
    } catch (error) {
      const parent = dirname(current);
      if (parent === current || (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      current = parent;
    }
  }
}

/** Inside the tree symlinks are not followed: they are stored as links, so they cost nothing. */
async function dirBytes(dir: string): Promise<number> {
  let sum = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) sum += await dirBytes(full);
    else if (entry.isFile()) sum += (await lstat(full)).size;
  }
  return sum;
}

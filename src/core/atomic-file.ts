/**
 * Writes that must survive a power cut: temp file in the same folder, fsync, rename over the
 * target, fsync the folder. A reader sees the old content or the new, never a part.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync a regular file or a directory by path. */
export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes a rename or a new entry in `dir` survive a power cut. */
export async function fsyncDir(dir: string): Promise<void> {
  await fsyncPath(dir);
}

export async function atomicWriteFile(file: string, data: string | Uint8Array, opts: { mode?: number } = {}): Promise<void> {
  const dir = dirname(file);
  // Folders made for a private file (no group or other bits) are private too.
  const mode = opts.mode ?? 0o644;
  await mkdir(dir, { recursive: true, mode: (mode & 0o077) === 0 ? 0o700 : 0o755 });
  const tmp = join(dir, `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
  await fsyncDir(dir);
}

/**
 * Small filesystem helpers shared by package and backup code: fsync of files and directories,
 * complete removal of a tree we created, and cancellation checks (errors: src/core/errors.ts).
 */
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OtaError } from '../core/errors.js';

export { fsyncDir, fsyncPath } from '../core/atomic-file.js';
import { fsyncDir } from '../core/atomic-file.js';

export async function fsyncParent(path: string): Promise<void> {
  await fsyncDir(dirname(path));
}

/**
 * Removes a tree we created, whatever state a failure left it in. A package may have made a
 * directory read-only; when running unprivileged that blocks rm, so give ourselves write access back
 * and try again.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw error;
  }
  await makeWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => null);
  if (st === null || !st.isDirectory()) return;
  await chmod(path, 0o700).catch(() => {});
  for (const name of await readdir(path).catch(() => [] as string[])) await makeWritable(join(path, name));
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) throw new OtaError('CANCELLED', `${what} was cancelled`);
}

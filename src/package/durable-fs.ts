/**
 * Small filesystem helpers shared by package and backup code: fsync of files and directories,
 * complete removal of a tree we created, and the translation of Node errors into OtaErrors.
 */
import { constants } from 'node:fs';
import { chmod, lstat, open, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OtaError, type ErrorCode } from '../core/errors.js';

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

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || (error as NodeJS.ErrnoException).code === 'ABORT_ERR');
}

/**
 * An OtaError stays as it is; ENOSPC/EDQUOT become DISK_FULL, an abort becomes CANCELLED, and any
 * other failure becomes `fallback`, with the original as the cause.
 */
export function toOtaError(error: unknown, fallback: ErrorCode, message: string, details?: Record<string, unknown>): OtaError {
  if (error instanceof OtaError) return error;
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = error instanceof Error ? error.message : String(error);
  const opts = { cause: error, details: { ...(details ?? {}), ...(errno === undefined ? {} : { errno }) } };
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return new OtaError('DISK_FULL', `${message}: the disk is full (${reason})`, opts);
  if (isAbortError(error)) return new OtaError('CANCELLED', `${message}: cancelled`, opts);
  return new OtaError(fallback, `${message}: ${reason}`, opts);
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) throw new OtaError('CANCELLED', `${what} was cancelled`);
}

/**
 * Preserved paths: configuration and data that belong to the robot, not to a release. Before a
 * switch they are copied from the live release into the new one, so the new release starts with
 * the robot's own state and the old release stays untouched for a rollback.
 */
import type { Stats } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { fsyncDir, fsyncFile, isErrno } from './switch.js';

export interface PreserveResult {
  copied: string[];
  skipped: string[];
}

/**
 * A preserved path is relative, normalised and stays inside the release: `config/robot.yaml`,
 * `data/`. Anything else is a configuration error, caught before any file is touched.
 */
export function normalisePreservedPath(p: string): string {
  const trimmed = p.replace(/\/+$/, '');
  const normal = path.posix.normalize(trimmed);
  if (
    trimmed === '' ||
    path.posix.isAbsolute(trimmed) ||
    normal === '.' ||
    normal === '..' ||
    normal.startsWith('../') ||
    normal !== trimmed
  ) {
    throw new OtaError('CONFIG_INVALID', `preserved path "${p}" must be a normalised relative path inside the release (like "config/robot.yaml")`, {
      details: { path: p },
    });
  }
  return normal;
}

/**
 * Copy each preserved path from `fromDir` into `toDir`, replacing what the new release ships at
 * that path. Modes and timestamps are kept (owners too when running as root). A path missing in
 * the old release is skipped with a log line. Safe to run twice: each destination is replaced
 * as a whole. Never writes through a symlink inside `toDir`, so a hostile release cannot redirect
 * the copy outside its tree.
 */
export async function preservePaths(paths: readonly string[], fromDir: string, toDir: string, logger: Logger): Promise<PreserveResult> {
  const normalised = paths.map(normalisePreservedPath);
  const result: PreserveResult = { copied: [], skipped: [] };
  for (const rel of normalised) {
    const src = path.join(fromDir, rel);
    const dest = path.join(toDir, rel);
    const srcStat = await fs.lstat(src).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return null;
      throw error;
    });
    if (srcStat === null) {
      logger.info('preserved path is missing in the current release; skipped', { path: rel, from: fromDir });
      result.skipped.push(rel);
      continue;
    }
    await assertNoSymlinkedParents(toDir, rel);
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.rm(dest, { recursive: true, force: true });
    await copyEntry(src, dest);
    await fsyncDir(path.dirname(dest));
    logger.info('preserved path carried into the new release', { path: rel, from: fromDir, to: toDir });
    result.copied.push(rel);
  }
  return result;
}

async function assertNoSymlinkedParents(root: string, rel: string): Promise<void> {
  const parts = rel.split('/').slice(0, -1);
  let current = root;
  for (const part of parts) {
    current = path.join(current, part);
    const stat = await fs.lstat(current).catch(() => null);
    if (stat === null) return; // created fresh below
    if (stat.isSymbolicLink() || !stat.isDirectory()) {
      throw new OtaError('APPLY_FAILED', `cannot carry preserved path "${rel}": ${current} in the new release is not a plain directory`, {
        details: { path: rel, blocking: current },
      });
    }
  }
}

const runningAsRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

async function copyEntry(src: string, dest: string): Promise<void> {
  const stat = await fs.lstat(src);
  if (stat.isSymbolicLink()) {
    // Copied verbatim: the link is the robot's own configuration, re-pointing it is not our call.
    await fs.symlink(await fs.readlink(src), dest);
    if (runningAsRoot()) await fs.lchown(dest, stat.uid, stat.gid);
    return;
  }
  if (stat.isDirectory()) {
    await fs.mkdir(dest, { mode: 0o700 });
    for (const name of await fs.readdir(src)) await copyEntry(path.join(src, name), path.join(dest, name));
    await applyMetadata(dest, stat);
    await fsyncDir(dest);
    return;
  }
  if (stat.isFile()) {
    await fs.copyFile(src, dest);
    await applyMetadata(dest, stat);
    await fsyncFile(dest);
    return;
  }
  throw new OtaError('APPLY_FAILED', `cannot carry preserved entry ${src}: only files, directories and symlinks are preserved`, {
    details: { path: src },
  });
}

async function applyMetadata(dest: string, stat: Stats): Promise<void> {
  if (runningAsRoot()) await fs.chown(dest, stat.uid, stat.gid);
  // chmod after chown: chown clears setuid/setgid bits, the mode must win.
  await fs.chmod(dest, stat.mode & 0o7777);
  await fs.utimes(dest, stat.atime, stat.mtime);
}

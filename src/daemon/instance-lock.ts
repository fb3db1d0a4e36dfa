/**
 * The single-instance lock: a pid file created with O_EXCL. A lock left by a process that is gone
 * (SIGKILL, power cut) is taken over; one held by a live otad is refused with ALREADY_RUNNING.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';
import { OtaError } from '../core/errors.js';

export interface InstanceLock {
  path: string;
  release(): void;
}

function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // After a reboot the pid may belong to something else: only an otad process holds the lock.
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('otad');
  } catch {
    return true;
  }
}

/** The pid of a live otad holding the lock at `path`, or null (no lock, or a stale one). Only reads. */
export function lockHolder(path: string): number | null {
  let holder = NaN;
  try {
    holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
  } catch {
    return null;
  }
  return Number.isInteger(holder) && holder !== process.pid && processAlive(holder) ? holder : null;
}

export function acquireInstanceLock(path: string): InstanceLock {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      fsyncSync(fd);
      closeSync(fd);
      return {
        path,
        release() {
          try {
            if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path, { force: true });
          } catch {
            // Already gone.
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let holder = NaN;
      try {
        holder = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
      } catch {
        // Unreadable lock: treat as stale.
      }
      if (holder !== process.pid && processAlive(holder)) {
        throw new OtaError('ALREADY_RUNNING', `another otad (pid ${holder}) holds the lock ${path}`, { details: { pid: holder, path } });
      }
      rmSync(path, { force: true });
    }
  }
  throw new OtaError('ALREADY_RUNNING', `could not take the lock ${path}`, { details: { path } });
}

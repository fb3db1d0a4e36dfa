/**
 * The single-instance lock: a pid file created with O_EXCL. A lock left by a process that is gone
 * (SIGKILL, power cut) is taken over; one held by a live otad is refused with ALREADY_RUNNING.
 *
 * The file holds the pid and the kernel's boot id (/proc/sys/kernel/random/boot_id). A lock written
 * in an earlier boot is stale whatever its pid: after a power cut the same pid is given again, early
 * in a boot, to some other process (the power-cut harness found otad refusing to start because its
 * old pid now belonged to a process whose command line happened to contain "otad").
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync, fsyncSync } from 'node:fs';
import { dirname } from 'node:path';
import { OtaError, toOtaError } from '../core/errors.js';

export interface InstanceLock {
  path: string;
  release(): void;
}

function bootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
  } catch {
    return null;
  }
}

/** The lock's pid, and whether it was written in this boot (unknown: a lock without a boot id). */
function readLock(path: string): { pid: number; thisBoot: boolean | null } {
  const lines = readFileSync(path, 'utf8').split('\n');
  const pid = Number.parseInt((lines[0] ?? '').trim(), 10);
  const boot = lines.find((l) => l.startsWith('boot '))?.slice(5).trim();
  const current = bootId();
  return { pid, thisBoot: boot === undefined || current === null ? null : boot === current };
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
  let lock: ReturnType<typeof readLock>;
  try {
    lock = readLock(path);
  } catch {
    return null;
  }
  const holder = lock.pid;
  return Number.isInteger(holder) && holder !== process.pid && lock.thisBoot !== false && processAlive(holder) ? holder : null;
}

export function acquireInstanceLock(path: string): InstanceLock {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      const boot = bootId();
      try {
        writeSync(fd, `${process.pid}\n${boot ? `boot ${boot}\n` : ''}`);
        fsyncSync(fd);
      } catch (writeError) {
        // A lock without its pid proves nothing (a full disk): it is not left behind.
        closeSync(fd);
        rmSync(path, { force: true });
        throw toOtaError(writeError, 'IO_FAILED', `writing the single-instance lock ${path}`);
      }
      closeSync(fd);
      return {
        path,
        release() {
          try {
            if (readLock(path).pid === process.pid) rmSync(path, { force: true });
          } catch {
            // Already gone.
          }
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let holder = NaN;
      let thisBoot: boolean | null = null;
      try {
        ({ pid: holder, thisBoot } = readLock(path));
      } catch {
        // Unreadable lock: treat as stale.
      }
      if (holder !== process.pid && thisBoot !== false && processAlive(holder)) {
        throw new OtaError('ALREADY_RUNNING', `another otad (pid ${holder}) holds the lock ${path}`, { details: { pid: holder, path } });
      }
      rmSync(path, { force: true });
    }
  }
  throw new OtaError('ALREADY_RUNNING', `could not take the lock ${path}`, { details: { path } });
}

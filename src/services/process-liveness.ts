/**
 * Is a pid a live process, and is it still the process we started? On Linux /proc gives the
 * state (a zombie is dead for our purposes: it runs nothing and only waits to be reaped, which
 * a container's PID 1 may never do) and the start time (pids are reused; a recorded start time
 * tells our process from a newcomer with the same number).
 */
import { readFileSync } from 'node:fs';

export interface ProcessIdentity {
  state: string;
  /** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot. */
  startTicks: string;
  pgid: number;
}

/** Read /proc/<pid>/stat; null when there is no such process or no /proc. */
export function readProcessIdentity(pid: number): ProcessIdentity | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = rest[0] ?? '?';
  const pgid = Number(rest[2]);
  const startTicks = rest[19] ?? '';
  return { state, startTicks, pgid };
}

/**
 * true when `pid` runs (not a zombie) and, when `startTicks` is given, is the same process that
 * was recorded. Without /proc, falls back to signal 0.
 */
export function isProcessAlive(pid: number, startTicks?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  const identity = readProcessIdentity(pid);
  if (identity !== null) {
    if (identity.state === 'Z' || identity.state === 'X') return false;
    return startTicks === undefined || startTicks === '' || identity.startTicks === startTicks;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

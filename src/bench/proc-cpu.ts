/**
 * CPU time of other processes, from /proc/<pid>/stat (Linux): what the fleet simulator reads for
 * each ota-server process and for the PostgreSQL cluster (the postmaster and every backend), before
 * and after its check-in load, to say what one check-in costs each party.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

/** Clock ticks per second of the stat fields (getconf CLK_TCK; 100 on every Linux seen). */
let tickHz: number | null = null;
function ticksPerSecond(): number {
  if (tickHz !== null) return tickHz;
  try {
    tickHz = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    tickHz = 100;
  }
  return tickHz;
}

interface Stat {
  ppid: number;
  /** utime, stime, cutime, cstime in clock ticks. */
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: split after its last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
  return { ppid: Number(fields[1]), utime: Number(fields[11]), stime: Number(fields[12]), cutime: Number(fields[13]), cstime: Number(fields[14]) };
}

/** CPU milliseconds (user + system) one process has used itself, or null when it is gone or /proc is not there. */
export function processCpuMs(pid: number): number | null {
  const s = readStat(pid);
  return s === null ? null : ((s.utime + s.stime) * 1000) / ticksPerSecond();
}

/**
 * CPU milliseconds of a process and all its children, living and ended: its own time, what its
 * ended children used (cutime, cstime: PostgreSQL's postmaster reaps its backends) and what each
 * living child has used so far. Null when the process is gone.
 */
export function treeCpuMs(pid: number): number | null {
  const root = readStat(pid);
  if (root === null) return null;
  let ticks = root.utime + root.stime + root.cutime + root.cstime;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s !== null && s.ppid === pid) ticks += s.utime + s.stime + s.cutime + s.cstime;
  }
  return (ticks * 1000) / ticksPerSecond();
}

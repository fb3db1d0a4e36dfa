/**
 * A service manager for machines without systemd (tests, the demo sandbox): each unit is a
 * command started as a detached process (its own process group), tracked by a pid file in a
 * state directory so a restarted daemon finds what an earlier one started. The pid file records
 * the process start time, so a recycled pid is never mistaken for the service.
 *
 * Not a supervisor: nothing restarts a unit that dies (restarts is always null). Under systemd,
 * use the systemctl adapter.
 *
 * A unit is started through `/bin/sh -c '… exec "$@"'`: the shell records its own pid in
 * `<unit>.pid.starting` and then becomes the command (same pid). The record is written by the
 * child itself, so a daemon killed between spawning a unit and writing its pid file never leaves a
 * service it does not know about: the next start adopts it instead of starting a second one. A
 * shell that has not run far enough to write its record (a loaded machine may not schedule it for
 * a while) is found by its command line, which names this unit's record, and adopted too. The one
 * window left is the instant between fork and exec inside the spawn call itself.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import { isProcessAlive, readProcessIdentity } from './process-liveness.js';
import { assertUnitName, type ServiceManager, type ServiceOpOptions, type ServiceStatus } from './service-manager.js';

export interface ProcessUnit {
  name: string;
  /** argv; no shell. */
  command: string[];
  cwd?: string;
  /** Added to a minimal environment (PATH, HOME, LANG), as systemd would. */
  env?: Record<string, string>;
}

export interface ProcessManagerOptions {
  units: readonly ProcessUnit[];
  /** Holds `<unit>.pid` and `<unit>.log`. */
  stateDir: string;
  logger: Logger;
  /** SIGTERM → SIGKILL deadline for stop (default 10 s). */
  stopTimeoutMs?: number;
  /** Poll interval while waiting for a process to exit (default 25 ms). */
  pollMs?: number;
}

interface PidRecord {
  pid: number;
  startTicks: string;
  command: string[];
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `program` names an executable file, as a shell would look it up. */
export async function findProgram(program: string, pathVar: string, cwd: string | undefined): Promise<boolean> {
  const candidates = program.includes('/') ? [path.resolve(cwd ?? process.cwd(), program)] : pathVar.split(':').filter(Boolean).map((d) => path.join(d, program));
  for (const file of candidates) {
    try {
      await fs.access(file, fs.constants.X_OK);
      if ((await fs.stat(file)).isFile()) return true;
    } catch {
      // Not here.
    }
  }
  return false;
}

/** True when `pid` runs `command` (its argv, as /proc/<pid>/cmdline shows it): a recycled pid never matches. */
function runsCommand(pid: number, command: readonly string[]): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a, i, all) => i < all.length - 1 || a !== '');
    const same = (want: readonly string[]) => argv.length === want.length && argv.every((a, i) => a === want[i]);
    // Either the command itself, or its starting shell in the instant before exec.
    return same(command) || (argv[0] === '/bin/sh' && argv[1] === '-c' && same([...argv.slice(0, 4), ...command]));
  } catch {
    return false;
  }
}

/** The starting shell: $0 is the record's path; it writes its pid there, then execs the command in place. */
export const STARTER_SCRIPT = 'printf "%s\\n" "$$" > "$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"';

export function createProcessServiceManager(options: ProcessManagerOptions): ServiceManager {
  const units = new Map(options.units.map((u) => [u.name, u]));
  for (const unit of options.units) assertUnitName(unit.name);
  const log = options.logger.child({ component: 'process-manager' });
  const pollMs = options.pollMs ?? 25;
  const pidFile = (unit: string): string => path.join(options.stateDir, `${unit}.pid`);
  const startingFile = (unit: string): string => `${pidFile(unit)}.starting`;

  function unitDef(unit: string): ProcessUnit {
    const def = units.get(unit);
    if (def === undefined) {
      throw new OtaError('SERVICE_FAILED', `unit ${unit} is not defined for the process service manager (known: ${[...units.keys()].join(', ') || 'none'})`, {
        details: { unit },
      });
    }
    return def;
  }

  async function readRecord(unit: string): Promise<PidRecord | null> {
    try {
      const parsed = JSON.parse(await fs.readFile(pidFile(unit), 'utf8')) as Partial<PidRecord>;
      if (typeof parsed.pid !== 'number') return null;
      return { pid: parsed.pid, startTicks: String(parsed.startTicks ?? ''), command: parsed.command ?? [] };
    } catch {
      return readStarting(unit);
    }
  }

  /** The record a unit's own shell left when the daemon died before writing the pid file. */
  async function readStarting(unit: string): Promise<PidRecord | null> {
    let pid: number;
    try {
      pid = Number.parseInt((await fs.readFile(startingFile(unit), 'utf8')).trim(), 10);
    } catch {
      return null;
    }
    const def = unitDef(unit);
    if (!Number.isInteger(pid) || pid <= 0 || !runsCommand(pid, def.command)) return null;
    const record: PidRecord = { pid, startTicks: readProcessIdentity(pid)?.startTicks ?? '', command: def.command };
    log.warn('adopting a service started by an earlier daemon that stopped before recording it', { unit, pid });
    await atomicWriteFile(pidFile(unit), JSON.stringify(record), { mode: 0o600 });
    await fs.rm(startingFile(unit), { force: true });
    return record;
  }

  async function running(unit: string): Promise<PidRecord | null> {
    const record = await readRecord(unit);
    return record !== null && isProcessAlive(record.pid, record.startTicks) ? record : null;
  }

  /**
   * A starting shell of an earlier daemon that has not yet written its `.pid.starting` record (the
   * daemon died between the spawn and the pid file, and the shell was not scheduled since): its
   * command line names this unit's record and command, and it becomes the service in place (same
   * pid), so it is adopted, not started a second time.
   */
  async function adoptStarter(unit: string): Promise<PidRecord | null> {
    const def = unitDef(unit);
    const want = ['/bin/sh', '-c', STARTER_SCRIPT, startingFile(unit), ...def.command];
    let entries: string[];
    try {
      entries = await fs.readdir('/proc');
    } catch {
      return null;
    }
    for (const name of entries) {
      if (!/^[0-9]+$/.test(name)) continue;
      const pid = Number(name);
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      } catch {
        continue;
      }
      if (argv.at(-1) === '') argv.pop();
      if (argv.length !== want.length || !argv.every((a, i) => a === want[i])) continue;
      // Only a process of the daemon's own user: anyone can run a shell with this command line.
      try {
        if (statSync(`/proc/${pid}`).uid !== process.getuid?.()) continue;
      } catch {
        continue;
      }
      const startTicks = readProcessIdentity(pid)?.startTicks ?? '';
      if (!isProcessAlive(pid, startTicks)) continue;
      const record: PidRecord = { pid, startTicks, command: def.command };
      log.warn('adopting a service an earlier daemon was starting when it stopped', { unit, pid });
      await atomicWriteFile(pidFile(unit), JSON.stringify(record), { mode: 0o600 });
      return record;
    }
    return null;
  }

  async function start(unit: string, _opts?: ServiceOpOptions): Promise<void> {
    const def = unitDef(unit);
    if ((await running(unit)) !== null) return;
    if ((await adoptStarter(unit)) !== null) return;
    const [program] = def.command;
    if (program === undefined) throw new OtaError('CONFIG_INVALID', `unit ${unit} has an empty command`, { details: { unit } });
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', LANG: 'C.UTF-8', ...def.env };
    // The shell would only fail after the spawn: find the program first, for a clear error.
    if (!(await findProgram(program, env.PATH, def.cwd))) {
      throw new OtaError('SERVICE_FAILED', `could not start ${unit}: ${program} is not an executable file`, { details: { unit, command: def.command } });
    }
    await fs.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    await fs.rm(startingFile(unit), { force: true });
    const logFd = openSync(path.join(options.stateDir, `${unit}.log`), 'a', 0o600);
    let pid: number;
    try {
      // $0 is the record's path: the shell writes its pid there, then execs the command in place.
      const child = spawn('/bin/sh', ['-c', STARTER_SCRIPT, startingFile(unit), ...def.command], {
        cwd: def.cwd,
        env,
        detached: true,
        stdio: ['ignore', logFd, logFd],
      });
      pid = await new Promise<number>((resolve, reject) => {
        child.once('spawn', () => resolve(child.pid as number));
        child.once('error', reject);
      });
      child.once('exit', (code, signal) => log.info('service process exited', { unit, pid, code, signal }));
      child.unref();
    } catch (error) {
      throw new OtaError('SERVICE_FAILED', `could not start ${unit} (${def.command.join(' ')}): ${(error as Error).message}`, {
        details: { unit, command: def.command },
        cause: error,
      });
    } finally {
      closeSync(logFd);
    }
    const startTicks = readProcessIdentity(pid)?.startTicks ?? '';
    await atomicWriteFile(pidFile(unit), JSON.stringify({ pid, startTicks, command: def.command }), { mode: 0o600 });
    await fs.rm(startingFile(unit), { force: true });
    log.info('service started', { unit, pid });
  }

  async function waitForExit(record: PidRecord, timeoutMs: number): Promise<boolean> {
    // Real time on purpose: this waits on a real process, and there is no logic to test here.
    const deadline = performance.now() + timeoutMs;
    while (isProcessAlive(record.pid, record.startTicks)) {
      if (performance.now() >= deadline) return false;
      await sleep(pollMs);
    }
    return true;
  }

  function signalGroup(record: PidRecord, sig: NodeJS.Signals): void {
    // Signal the whole group only when the pid still leads the group it created.
    const leads = readProcessIdentity(record.pid)?.pgid === record.pid;
    try {
      process.kill(leads ? -record.pid : record.pid, sig);
    } catch {
      // ESRCH: already gone.
    }
  }

  async function stop(unit: string, opts: ServiceOpOptions = {}): Promise<void> {
    unitDef(unit);
    const record = await running(unit);
    if (record !== null) {
      const timeoutMs = opts.timeoutMs ?? options.stopTimeoutMs ?? 10_000;
      signalGroup(record, 'SIGTERM');
      if (!(await waitForExit(record, timeoutMs))) {
        log.warn('service did not stop on SIGTERM; sending SIGKILL', { unit, pid: record.pid, timeoutMs });
        signalGroup(record, 'SIGKILL');
        if (!(await waitForExit(record, 5000))) {
          throw new OtaError('SERVICE_FAILED', `could not stop ${unit}: pid ${record.pid} survived SIGKILL`, { details: { unit, pid: record.pid } });
        }
      }
      // Children the service left in its group go with it.
      try {
        process.kill(-record.pid, 'SIGKILL');
      } catch {
        // ESRCH: nothing left.
      }
      log.info('service stopped', { unit, pid: record.pid });
    }
    await fs.rm(pidFile(unit), { force: true });
    await fs.rm(startingFile(unit), { force: true });
  }

  async function status(unit: string): Promise<ServiceStatus> {
    unitDef(unit);
    const record = await readRecord(unit);
    if (record === null) return { active: false, state: 'inactive', restarts: null };
    // A pid file whose process is gone: the service died without being stopped.
    if (!isProcessAlive(record.pid, record.startTicks)) return { active: false, state: 'failed', restarts: null };
    return { active: true, state: 'active/running', restarts: null };
  }

  return {
    start,
    stop,
    async restart(unit, opts) {
      await stop(unit, opts);
      await start(unit, opts);
    },
    status,
    isActive: async (unit) => (await status(unit)).active,
  };
}

/**
 * A service manager for machines without systemd (tests, the demo sandbox): each unit is a
 * command started as a detached process (its own process group), tracked by a pid file in a
 * state directory so a restarted daemon finds what an earlier one started. The pid file records
 * the process start time, so a recycled pid is never mistaken for the service.
 *
 * Not a supervisor: nothing restarts a unit that dies (restarts is always null). Under systemd,
 * use the systemctl adapter.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
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

export function createProcessServiceManager(options: ProcessManagerOptions): ServiceManager {
  const units = new Map(options.units.map((u) => [u.name, u]));
  for (const unit of options.units) assertUnitName(unit.name);
  const log = options.logger.child({ component: 'process-manager' });
  const pollMs = options.pollMs ?? 25;
  const pidFile = (unit: string): string => path.join(options.stateDir, `${unit}.pid`);

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
      return null;
    }
  }

  async function running(unit: string): Promise<PidRecord | null> {
    const record = await readRecord(unit);
    return record !== null && isProcessAlive(record.pid, record.startTicks) ? record : null;
  }

  async function start(unit: string, _opts?: ServiceOpOptions): Promise<void> {
    const def = unitDef(unit);
    if ((await running(unit)) !== null) return;
    const [program, ...args] = def.command;
    if (program === undefined) throw new OtaError('CONFIG_INVALID', `unit ${unit} has an empty command`, { details: { unit } });
    await fs.mkdir(options.stateDir, { recursive: true });
    const logFd = openSync(path.join(options.stateDir, `${unit}.log`), 'a');
    let pid: number;
    try {
      const child = spawn(program, args, {
        cwd: def.cwd,
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          HOME: process.env.HOME ?? '/',
          LANG: 'C.UTF-8',
          ...def.env,
        },
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
    await atomicWriteFile(pidFile(unit), JSON.stringify({ pid, startTicks, command: def.command }));
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

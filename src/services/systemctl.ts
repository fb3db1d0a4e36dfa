/**
 * The systemd adapter: every operation is one `systemctl` invocation through execFile (no
 * shell), each with a deadline. `systemctl stop/start` wait for the job to finish, so success
 * means the unit reached the state (or systemd gave up, which systemctl reports as failure).
 */
import { execFile } from 'node:child_process';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { assertUnitName, type ServiceManager, type ServiceOpOptions, type ServiceStatus } from './service-manager.js';

export interface SystemctlOptions {
  /** Path of systemctl; default "systemctl", looked up on the PATH of `env`. */
  systemctlPath?: string;
  /** Deadline for stop/start/restart (default 90 s, systemd's own default stop timeout). */
  timeoutMs?: number;
  /** Deadline for status queries (default 10 s). */
  queryTimeoutMs?: number;
  /** Environment for systemctl (default: the daemon's). */
  env?: NodeJS.ProcessEnv;
  logger: Logger;
}

interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function createSystemctlServiceManager(options: SystemctlOptions): ServiceManager {
  const systemctl = options.systemctlPath ?? 'systemctl';
  const opTimeout = options.timeoutMs ?? 90_000;
  const queryTimeout = options.queryTimeoutMs ?? 10_000;
  const log = options.logger.child({ component: 'systemctl' });

  function run(args: string[], timeoutMs: number): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      execFile(
        systemctl,
        args,
        { timeout: timeoutMs, killSignal: 'SIGKILL', env: options.env ?? process.env, maxBuffer: 1024 * 1024, encoding: 'utf8' },
        (error, stdout, stderr) => {
          if (error === null) return resolve({ code: 0, stdout, stderr });
          const e = error as NodeJS.ErrnoException & { killed?: boolean; code?: number | string; signal?: string };
          if (e.killed === true || e.signal === 'SIGKILL') {
            return reject(
              new OtaError('SERVICE_FAILED', `systemctl ${args.join(' ')} did not finish within ${timeoutMs} ms`, {
                details: { args, timeoutMs, timedOut: true, stderr: stderr.trim() },
              }),
            );
          }
          if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
          reject(
            new OtaError('SERVICE_FAILED', `could not run ${systemctl}: ${e.message}`, {
              details: { systemctl, args, errno: e.code },
              cause: error,
            }),
          );
        },
      );
    });
  }

  async function operate(verb: 'stop' | 'start' | 'restart', unit: string, opts: ServiceOpOptions = {}): Promise<void> {
    assertUnitName(unit);
    const timeoutMs = opts.timeoutMs ?? opTimeout;
    log.info(`systemctl ${verb}`, { unit, timeoutMs });
    const result = await run([verb, unit], timeoutMs);
    if (result.code !== 0) {
      const stderr = result.stderr.trim();
      throw new OtaError('SERVICE_FAILED', `systemctl ${verb} ${unit} exited with status ${result.code}${stderr ? `: ${stderr}` : ''}`, {
        details: { unit, verb, exitCode: result.code, stderr },
      });
    }
  }

  async function status(unit: string): Promise<ServiceStatus> {
    assertUnitName(unit);
    const result = await run(['show', '-p', 'ActiveState,SubState,NRestarts', unit], queryTimeout);
    if (result.code !== 0) {
      throw new OtaError('SERVICE_FAILED', `systemctl show ${unit} exited with status ${result.code}: ${result.stderr.trim()}`, {
        details: { unit, exitCode: result.code, stderr: result.stderr.trim() },
      });
    }
    return parseShowOutput(result.stdout);
  }

  return {
    stop: (unit, opts) => operate('stop', unit, opts),
    start: (unit, opts) => operate('start', unit, opts),
    restart: (unit, opts) => operate('restart', unit, opts),
    status,
    isActive: async (unit) => (await status(unit)).active,
  };
}

/**
 * Parse `systemctl show -p ActiveState,SubState,NRestarts` (KEY=value lines). "reloading" counts
 * as active (the unit keeps running); NRestarts is absent before systemd 235 (→ null).
 */
export function parseShowOutput(stdout: string): ServiceStatus {
  const props = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  const activeState = props.get('ActiveState') ?? 'unknown';
  const subState = props.get('SubState');
  const restartsText = props.get('NRestarts');
  const restarts = restartsText !== undefined && /^\d+$/.test(restartsText) ? Number(restartsText) : null;
  return {
    active: activeState === 'active' || activeState === 'reloading',
    state: subState ? `${activeState}/${subState}` : activeState,
    restarts,
  };
}

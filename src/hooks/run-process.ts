/**
 * Run one command in its own process group, with a deadline that kills the whole group
 * (SIGTERM, then SIGKILL after a grace period), capturing stdout and stderr line by line.
 * Hooks and command health checks use it: the program is the product's, so it may hang, fork
 * children or ignore SIGTERM, and none of that may outlive the deadline.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface RunProcessOptions {
  /** argv: the program and its arguments; no shell is involved. */
  command: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs: number;
  /** How long SIGTERM has before SIGKILL (default 2000 ms). */
  killGraceMs?: number;
  signal?: AbortSignal;
  onLine?: (stream: 'stdout' | 'stderr', line: string) => void;
  /** Output kept in the result, the newest part (default 64 KiB). */
  maxOutputChars?: number;
}

export interface RunProcessResult {
  /** null when the process was ended by a signal. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  /** stdout and stderr interleaved by line, as they arrived. */
  output: string;
  /** Set when the program could not be started at all (ENOENT, EACCES). */
  spawnError?: NodeJS.ErrnoException;
}

/** How long to wait for the pipes to drain after exit: a detached grandchild could hold them open. */
const DRAIN_MS = 500;

export function runProcess(options: RunProcessOptions): Promise<RunProcessResult> {
  const [program, ...args] = options.command;
  if (program === undefined) throw new TypeError('runProcess: command is empty');
  const killGraceMs = options.killGraceMs ?? 2000;
  const maxChars = options.maxOutputChars ?? 64 * 1024;

  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let aborted = false;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];

    const child = spawn(program, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      // A new process group (pgid = child pid): the deadline kills everything the program started.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });

    const append = (stream: 'stdout' | 'stderr', line: string): void => {
      output += `${line}\n`;
      if (output.length > maxChars) output = output.slice(output.length - maxChars);
      options.onLine?.(stream, line);
    };
    const readers = [
      createInterface({ input: child.stdout, crlfDelay: Infinity }),
      createInterface({ input: child.stderr, crlfDelay: Infinity }),
    ] as const;
    readers[0].on('line', (line) => append('stdout', line));
    readers[1].on('line', (line) => append('stderr', line));

    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // ESRCH: the group is already gone.
      }
    };
    const terminate = (): void => {
      killGroup('SIGTERM');
      timers.push(setTimeout(() => killGroup('SIGKILL'), killGraceMs));
    };

    timers.push(
      setTimeout(() => {
        timedOut = true;
        terminate();
      }, options.timeoutMs),
    );
    const onAbort = (): void => {
      aborted = true;
      terminate();
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (result: Omit<RunProcessResult, 'output' | 'timedOut' | 'aborted'>): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({ ...result, timedOut, aborted, output });
    };

    child.once('error', (error: NodeJS.ErrnoException) => {
      finish({ exitCode: null, signal: null, spawnError: error });
    });
    child.once('exit', () => {
      // Whatever the program left running in its group does not outlive it.
      killGroup('SIGKILL');
      // 'close' follows once both pipes are drained; a grandchild that escaped the group could
      // hold them open, so they are cut after a short wait.
      const drainTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, DRAIN_MS);
      timers.push(drainTimer);
    });
    child.once('close', (exitCode, signal) => {
      finish({ exitCode, signal });
    });
  });
}

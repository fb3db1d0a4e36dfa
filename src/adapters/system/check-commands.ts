/**
 * Product check commands for the pre-check ("is the robot docked?", "is a job running?"): each is
 * the product's own program, run without a shell, in its own process group, killed with its
 * children at its timeout. Exit 0 means it is safe to update now.
 */
import { runProcess } from '../../hooks/run-process.js';

export interface CommandRequest {
  name: string;
  command: readonly string[];
  timeoutMs: number;
  env?: Record<string, string>;
  cwd?: string;
  signal?: AbortSignal;
}

export interface CommandResult {
  /** null when the process was ended by a signal or could not start. */
  exitCode: number | null;
  timedOut: boolean;
  /** stdout and stderr interleaved by line (the newest part when long). */
  output: string;
  /** Why the program could not be started at all (ENOENT, EACCES). */
  spawnError?: string;
}

export interface CommandRunner {
  run(request: CommandRequest): Promise<CommandResult>;
}

export interface CommandRunnerOptions {
  /** SIGTERM to SIGKILL grace (default 2000 ms). */
  killGraceMs?: number;
  /** Output kept per command (default 16 KiB). */
  maxOutputChars?: number;
}

export function createCommandRunner(options: CommandRunnerOptions = {}): CommandRunner {
  return {
    async run(req) {
      const result = await runProcess({
        command: req.command,
        timeoutMs: req.timeoutMs,
        killGraceMs: options.killGraceMs ?? 2000,
        maxOutputChars: options.maxOutputChars ?? 16 * 1024,
        // The command sees the daemon's environment plus what the pre-check tells it about the run.
        env: { ...process.env, ...(req.env ?? {}) },
        ...(req.cwd === undefined ? {} : { cwd: req.cwd }),
        ...(req.signal === undefined ? {} : { signal: req.signal }),
      });
      return {
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        output: result.output,
        ...(result.spawnError === undefined ? {} : { spawnError: `${result.spawnError.code ?? 'error'}: ${result.spawnError.message}` }),
      };
    },
  };
}

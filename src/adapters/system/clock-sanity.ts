/**
 * Does the operating system say its clock is synchronised? On systemd machines
 * `timedatectl show -p NTPSynchronized --value` answers yes or no. Where there is no timedatectl
 * or no systemd (containers, tests) the answer is unknown (null) and only the wall-clock bounds
 * of the pre-check apply.
 */
import { runProcess } from '../../hooks/run-process.js';

export interface ClockSanityPort {
  /** true / false as the system reports it; null when it cannot say. */
  ntpSynchronized(signal?: AbortSignal): Promise<boolean | null>;
}

export interface TimedatectlOptions {
  /** The program to run (default `timedatectl` from PATH). */
  program?: string;
  timeoutMs?: number;
}

export function createTimedatectlAdapter(options: TimedatectlOptions = {}): ClockSanityPort {
  const program = options.program ?? 'timedatectl';
  return {
    async ntpSynchronized(signal) {
      const result = await runProcess({
        command: [program, 'show', '-p', 'NTPSynchronized', '--value'],
        timeoutMs: options.timeoutMs ?? 5_000,
        killGraceMs: 500,
        ...(signal === undefined ? {} : { signal }),
      });
      if (result.spawnError !== undefined || result.timedOut || result.exitCode !== 0) return null;
      return parseNtpSynchronized(result.output);
    },
  };
}

/** `yes` / `no` (one line); anything else is unknown. */
export function parseNtpSynchronized(output: string): boolean | null {
  const value = output.trim().split('\n').at(-1)?.trim().toLowerCase();
  if (value === 'yes') return true;
  if (value === 'no') return false;
  return null;
}

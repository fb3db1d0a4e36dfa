/**
 * Product hooks: executables a release ships under `<release>/.ota/hooks/<name>`. They are the
 * product's own code, looked up inside the NEW release (the one that knows how to migrate to
 * itself), run with a deadline and a known environment, and their output goes to the log.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { randomBytes } from 'node:crypto';
import { runProcess } from './run-process.js';
import { hookCommand, hooksRunAsTransientUnits } from './hook-isolation.js';

export const HOOK_NAMES = ['pre-apply', 'migrate-config', 'post-apply'] as const;
export type HookName = (typeof HOOK_NAMES)[number];

/** Where hooks live inside a release. */
export const HOOKS_DIR = path.join('.ota', 'hooks');

export interface RunHookOptions {
  hook: HookName;
  product: string;
  fromVersion: string | null;
  toVersion: string;
  /** The release the hook is taken from and runs in (its working directory). */
  releaseDir: string;
  /** The release being replaced, when there is one (exported as OTA_PREVIOUS_RELEASE_DIR). */
  previousReleaseDir?: string | null;
  timeoutMs: number;
  /** SIGTERM → SIGKILL grace (default 2000 ms). */
  killGraceMs?: number;
  logger: Logger;
  /** Extra environment (merged over a minimal base; the daemon's own environment is not passed). */
  env?: Record<string, string>;
  signal?: AbortSignal;
  /** Run as a transient systemd unit outside otad's sandbox (default: when otad is a systemd service; hook-isolation.ts). */
  transient?: boolean;
}

export interface HookResult {
  hook: HookName;
  /** true when the release ships no such hook: nothing ran. */
  skipped: boolean;
  exitCode: number | null;
  output: string;
  path: string;
}

export function hookPath(releaseDir: string, hook: HookName): string {
  return path.join(releaseDir, HOOKS_DIR, hook);
}

/**
 * Run one hook. Resolves with its exit code and output on success (or `skipped` when absent);
 * rejects with HOOK_FAILED (non-zero exit, killed, not executable, escapes the release) or
 * HOOK_TIMEOUT (past its deadline: the whole process group was killed), CANCELLED on abort.
 */
export async function runHook(options: RunHookOptions): Promise<HookResult> {
  const file = hookPath(options.releaseDir, options.hook);
  const log = options.logger.child({ hook: options.hook, product: options.product, toVersion: options.toVersion });
  const details = { hook: options.hook, path: file, product: options.product, from: options.fromVersion, to: options.toVersion };

  const stat = await fs.stat(file).catch(() => null);
  if (stat === null) {
    log.debug('hook not shipped by this release; skipped', { path: file });
    return { hook: options.hook, skipped: true, exitCode: null, output: '', path: file };
  }
  // A hook may be a symlink within the release, never a way to run something from outside it.
  const real = await fs.realpath(file);
  const releaseReal = await fs.realpath(options.releaseDir);
  if (!real.startsWith(`${releaseReal}${path.sep}`)) {
    throw new OtaError('HOOK_FAILED', `hook ${options.hook} at ${file} resolves to ${real}, outside the release ${releaseReal}`, { details });
  }
  if (!stat.isFile() || (stat.mode & 0o111) === 0) {
    throw new OtaError('HOOK_FAILED', `hook ${options.hook} at ${file} is not an executable file`, { details: { ...details, mode: stat.mode } });
  }

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    HOME: process.env.HOME ?? '/root',
    ...options.env,
    OTA_HOOK: options.hook,
    OTA_PRODUCT: options.product,
    OTA_FROM_VERSION: options.fromVersion ?? '',
    OTA_TO_VERSION: options.toVersion,
    OTA_RELEASE_DIR: options.releaseDir,
    OTA_PREVIOUS_RELEASE_DIR: options.previousReleaseDir ?? '',
  };

  const killGraceMs = options.killGraceMs ?? 2000;
  const transient = options.transient ?? hooksRunAsTransientUnits();
  const launch = hookCommand(
    { program: real, product: options.product, hook: options.hook, cwd: options.releaseDir, env: env as Record<string, string>, timeoutMs: options.timeoutMs, killGraceMs, instance: randomBytes(4).toString('hex') },
    transient,
  );
  log.info('running hook', { path: file, timeoutMs: options.timeoutMs, ...(transient ? { via: 'systemd-run' } : {}) });
  const result = await runProcess({
    command: launch.command,
    cwd: options.releaseDir,
    env: launch.env,
    timeoutMs: options.timeoutMs,
    killGraceMs,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onLine: (stream, line) => {
      const message = `${options.hook}: ${line}`;
      if (stream === 'stderr') log.warn(message, { stream, line });
      else log.info(message, { stream, line });
    },
  });
  const withOutput = { ...details, exitCode: result.exitCode, signal: result.signal, output: result.output };

  if (result.spawnError !== undefined) {
    throw new OtaError('HOOK_FAILED', `hook ${options.hook} at ${file} could not be started: ${result.spawnError.message}`, {
      details: withOutput,
      cause: result.spawnError,
    });
  }
  if (result.aborted) {
    throw new OtaError('CANCELLED', `hook ${options.hook} was cancelled; its process group was killed`, { details: withOutput });
  }
  if (result.timedOut) {
    log.error('hook timed out; its process group was killed', { timeoutMs: options.timeoutMs });
    throw new OtaError('HOOK_TIMEOUT', `hook ${options.hook} at ${file} did not finish within ${options.timeoutMs} ms; its process group was killed`, {
      details: { ...withOutput, timeoutMs: options.timeoutMs },
    });
  }
  if (result.exitCode !== 0) {
    const how = result.exitCode === null ? `was killed by ${result.signal ?? 'a signal'}` : `exited with status ${result.exitCode}`;
    log.error(`hook ${how}`, { exitCode: result.exitCode, signal: result.signal });
    throw new OtaError('HOOK_FAILED', `hook ${options.hook} at ${file} ${how} (expected 0)`, { details: withOutput });
  }
  log.info('hook succeeded');
  return { hook: options.hook, skipped: false, exitCode: 0, output: result.output, path: file };
}

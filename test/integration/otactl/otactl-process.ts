/**
 * The built otactl (`node dist/src/cli/otactl.js`, what the package installs) spawned as a child
 * process, with its exit code and output. Tests that use it run after `npm run build`.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../support/otad-process.js';

export const OTACTL = join(REPO_ROOT, 'dist/src/cli/otactl.js');

export interface OtactlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface OtactlProcess {
  done: Promise<OtactlResult>;
  out(): string;
  err(): string;
}

export function spawnOtactl(args: string[], env: Record<string, string | undefined> = {}): OtactlProcess {
  if (!existsSync(OTACTL)) throw new Error(`${OTACTL} is missing: run npm run build first`);
  const child = spawn(process.execPath, [OTACTL, ...args], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<OtactlResult>((res) => child.on('close', (code) => res({ code, stdout, stderr })));
  return { done, out: () => stdout, err: () => stderr };
}

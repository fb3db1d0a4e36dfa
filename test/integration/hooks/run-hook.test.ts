import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import { isProcessAlive as alive } from '../../../src/services/process-liveness.js';
import { hookPath, runHook, type HookName, type RunHookOptions } from '../../../src/hooks/run-hook.js';

let root: string;
let releaseDir: string;

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-hooks-'));
  releaseDir = path.join(root, 'releases', '2.0.0');
  await fs.mkdir(path.join(releaseDir, '.ota', 'hooks'), { recursive: true });
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function writeHook(name: HookName, script: string, mode = 0o755): Promise<void> {
  await fs.writeFile(hookPath(releaseDir, name), `#!/bin/sh\n${script}\n`, { mode });
}

function options(hook: HookName, logger: MemoryLogger, extra: Partial<RunHookOptions> = {}): RunHookOptions {
  return { hook, product: 'robot-ai', fromVersion: '1.0.0', toVersion: '2.0.0', releaseDir, timeoutMs: 10_000, logger, ...extra };
}


describe('runHook', () => {
  it('runs a hook from the new release with the OTA environment and returns its output', async () => {
    await writeHook('pre-apply', 'echo "product=$OTA_PRODUCT from=$OTA_FROM_VERSION to=$OTA_TO_VERSION dir=$OTA_RELEASE_DIR cwd=$(pwd)"');
    const logger = new MemoryLogger();
    const result = await runHook(options('pre-apply', logger));
    expect(result).toMatchObject({ hook: 'pre-apply', skipped: false, exitCode: 0 });
    expect(result.output).toBe(`product=robot-ai from=1.0.0 to=2.0.0 dir=${releaseDir} cwd=${await fs.realpath(releaseDir)}\n`);
    expect(logger.lines.some((l) => l.message.startsWith('pre-apply: product=robot-ai'))).toBe(true);
  });

  it('skips a hook the release does not ship', async () => {
    const result = await runHook(options('migrate-config', new MemoryLogger()));
    expect(result).toMatchObject({ skipped: true, exitCode: null, output: '' });
  });

  it('fails with HOOK_FAILED on a non-zero exit and puts every output line in the log', async () => {
    await writeHook('post-apply', 'echo "checking config"\necho "config key robot.arm missing" >&2\nexit 3');
    const logger = new MemoryLogger();
    const error = await runHook(options('post-apply', logger)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect(error).toMatchObject({ code: 'HOOK_FAILED', details: { exitCode: 3 } });
    expect((error as OtaError).details?.output).toContain('config key robot.arm missing');
    const said = logger.lines.map((l) => [l.level, l.message]);
    expect(said).toContainEqual(['info', 'post-apply: checking config']);
    expect(said).toContainEqual(['warn', 'post-apply: config key robot.arm missing']);
  });

  it('fails with HOOK_FAILED for a hook that is not executable', async () => {
    await writeHook('pre-apply', 'exit 0', 0o644);
    await expect(runHook(options('pre-apply', new MemoryLogger()))).rejects.toMatchObject({ code: 'HOOK_FAILED' });
  });

  it('refuses a hook that is a symlink to a program outside the release', async () => {
    await fs.symlink('/bin/true', hookPath(releaseDir, 'pre-apply'));
    await expect(runHook(options('pre-apply', new MemoryLogger()))).rejects.toMatchObject({ code: 'HOOK_FAILED' });
  });

  it('kills the whole process group of a hook that hangs and ignores SIGTERM, with HOOK_TIMEOUT', async () => {
    const pidFile = path.join(root, 'child.pid');
    // The hook starts a child that also ignores TERM, reports its pid, then hangs.
    await writeHook('migrate-config', `trap '' TERM\nsh -c 'trap "" TERM; while :; do sleep 1; done' &\necho $! > ${pidFile}\necho started\nwhile :; do sleep 1; done`);
    const logger = new MemoryLogger();
    const error = await runHook(options('migrate-config', logger, { timeoutMs: 1500, killGraceMs: 200 })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HOOK_TIMEOUT' });
    expect((error as OtaError).details?.output).toContain('started');
    const childPid = Number((await fs.readFile(pidFile, 'utf8')).trim());
    // SIGKILL is delivered by the time runHook settles; give the kernel a moment to reap.
    for (let i = 0; i < 250 && alive(childPid); i++) await new Promise((r) => setTimeout(r, 20));
    expect(alive(childPid)).toBe(false);
  });

  it('cancels a running hook when the signal aborts', async () => {
    await writeHook('pre-apply', 'while :; do sleep 1; done');
    const controller = new AbortController();
    const running = runHook(options('pre-apply', new MemoryLogger(), { signal: controller.signal, killGraceMs: 200 }));
    setTimeout(() => controller.abort(), 50);
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});

describe('runHook through systemd-run', () => {
  it('starts the hook through systemd-run with the hook environment as --setenv, and reports its output and status', async () => {
    // A stand-in for systemd-run on PATH: records its arguments, then does what systemd would for
    // these options (working directory, environment) and runs the program after "--".
    const bin = path.join(root, 'bin');
    await fs.mkdir(bin);
    await fs.writeFile(
      path.join(bin, 'systemd-run'),
      `#!/bin/sh
printf '%s\\n' "$@" > ${root}/systemd-run.args
cd_to=; envs=
while [ "$1" != "--" ]; do
  case "$1" in --working-directory=*) cd_to="\${1#--working-directory=}";; --setenv=*) envs="$envs \${1#--setenv=}";; esac
  shift
done
shift
cd "$cd_to" && exec env -i $envs "$@"
`,
      { mode: 0o755 },
    );
    await writeHook('post-apply', 'echo "to=$OTA_TO_VERSION cwd=$(pwd)"; exit 3');
    const logger = new MemoryLogger();
    const error = await runHook(options('post-apply', logger, { transient: true, env: { PATH: `${bin}:/usr/bin:/bin` } })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect((error as OtaError).details).toMatchObject({ exitCode: 3, output: `to=2.0.0 cwd=${await fs.realpath(releaseDir)}\n` });
    const args = (await fs.readFile(path.join(root, 'systemd-run.args'), 'utf8')).split('\n');
    expect(args.slice(0, 5)).toEqual(['--wait', '--collect', '--pipe', '--quiet', expect.stringMatching(/^--unit=otad-hook-robot-ai-post-apply-[0-9a-f]{8}$/)]);
    expect(args).toContain('--setenv=OTA_TO_VERSION=2.0.0');
    expect(args).toContain(`--working-directory=${releaseDir}`);
    expect(args.at(-2)).toBe(await fs.realpath(hookPath(releaseDir, 'post-apply')));
    expect(logger.lines.some((l) => l.message === 'running hook' && l.fields['via'] === 'systemd-run')).toBe(true);
  });
});

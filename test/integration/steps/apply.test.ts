import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { isProcessAlive } from '../../../src/services/process-liveness.js';
import { hashTree } from '../../../src/package/create.js';
import { readReleaseMarker } from '../../../src/release/marker.js';
import { createApply } from '../../../src/steps/apply.js';
import { createCommit } from '../../../src/steps/commit.js';
import { createValidate } from '../../../src/steps/validate.js';
import { applied, createWorld, logText, offer, waitForVersion, type World } from './execution-world.js';

let world: World;
const signal = new AbortController().signal;

beforeEach(async () => {
  world = await createWorld();
});
afterEach(async () => {
  await world.close();
});

async function rejection(promise: Promise<unknown>): Promise<OtaError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OtaError);
  return error as OtaError;
}

describe('apply → validate → commit', () => {
  it('adopts a plain install, switches to the staged release, proves it healthy and commits it', async () => {
    await world.plainInstall('1.0.0');
    const plainHashes = await hashTree(world.installPath);
    expect(await waitForVersion(world)).toBe('1.0.0');

    const staged = await world.stage('2.0.0', 'r1');
    const ports = world.ports();
    const out = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(out).toEqual(applied('1.0.0', '2.0.0', world.releasesDir));

    // Adoption moved the plain install, unchanged, into the releases.
    expect(await hashTree(path.join(world.releasesDir, '1.0.0'))).toEqual(plainHashes);
    expect((await fs.lstat(world.installPath)).isSymbolicLink()).toBe(true);
    expect(await world.releases().current()).toMatchObject({ version: '2.0.0' });
    expect(await waitForVersion(world)).toBe('2.0.0');
    expect(await world.journal().read()).toMatchObject({ runId: 'r1', from: '1.0.0', to: '2.0.0', phase: 'done' });
    expect(await readReleaseMarker(path.join(world.releasesDir, '2.0.0'))).toMatchObject({ product: 'robot-ai', version: '2.0.0', runId: 'r1', previousVersion: '1.0.0' });

    const validation = await createValidate(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    expect(validation.healthy).toBe(true);
    expect(validation.checks.map((c) => [c.name, c.ok])).toEqual([
      [`http://127.0.0.1:${world.port}/health`, true],
      ['version:VERSION', true],
      ['robot-ai.service running', true],
      ['release-marker', true],
    ]);

    expect(await createCommit(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal)).toEqual({ version: '2.0.0' });
    expect(await world.journal().read()).toBeNull();
    expect((await world.releases().list()).map((r) => r.version)).toEqual(['1.0.0', '2.0.0']);
    // The run's staging folder (named by the run id) is gone.
    expect(existsSync(path.dirname(staged.releaseDir))).toBe(false);
  });

  it('returns the same result when run again after it finished (a re-run after a crash)', async () => {
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1');
    const apply = createApply(world.ports());
    const input = { product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' };
    const first = await apply(input, signal);
    const hashes = await hashTree(world.installPath);
    expect(await createApply(world.ports())(input, signal)).toEqual(first);
    expect(await hashTree(world.installPath)).toEqual(hashes);
  });

  it('carries preserved paths from the live release into the new one and leaves the old copy alone', async () => {
    await world.plainInstall('1.0.0');
    await fs.writeFile(path.join(world.installPath, 'config', 'robot.yaml'), 'robot-name: r2\n');
    const staged = await world.stage('2.0.0', 'r1');
    await createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(readFileSync(path.join(world.installPath, 'config', 'robot.yaml'), 'utf8')).toBe('robot-name: r2\n');
    expect(readFileSync(path.join(world.releasesDir, '1.0.0', 'config', 'robot.yaml'), 'utf8')).toBe('robot-name: r2\n');
    expect(readFileSync(path.join(world.installPath, 'VERSION'), 'utf8')).toBe('2.0.0\n');
  });

  it('runs the hooks from the new release in order with the documented environment, before the switch for pre-apply and migrate-config', async () => {
    await world.plainInstall('1.0.0');
    const trace = path.join(world.root, 'hooks.log');
    const line = (name: string) => `echo "${name} $OTA_FROM_VERSION->$OTA_TO_VERSION live=$(cat ${world.installPath}/VERSION) cwd=$(pwd)" >> ${trace}`;
    const staged = await world.stage('2.0.0', 'r1', { hooks: { 'pre-apply': line('pre-apply'), 'migrate-config': line('migrate-config'), 'post-apply': line('post-apply') } });
    await createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    const dir = path.join(world.releasesDir, '2.0.0');
    expect(readFileSync(trace, 'utf8').trim().split('\n')).toEqual([
      `pre-apply 1.0.0->2.0.0 live=1.0.0 cwd=${dir}`,
      `migrate-config 1.0.0->2.0.0 live=1.0.0 cwd=${dir}`,
      `post-apply 1.0.0->2.0.0 live=2.0.0 cwd=${dir}`,
    ]);
  });

  it('fails with HOOK_FAILED when a hook exits non-zero, its output in the log, the old release still live and the journal kept for rollback', async () => {
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1', { hooks: { 'pre-apply': 'echo "database schema too old" >&2\nexit 3' } });
    const error = await rejection(createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal));
    expect(error.code).toBe('HOOK_FAILED');
    expect(error.details).toMatchObject({ hook: 'pre-apply', exitCode: 3 });
    expect(logText(world.logger)).toContain('pre-apply: database schema too old');
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
    expect(await waitForVersion(world)).toBe('1.0.0');
    expect(await world.journal().read()).toMatchObject({ runId: 'r1', from: '1.0.0', to: '2.0.0', phase: 'prepared' });
  });

  it('fails with HOOK_TIMEOUT when a hook hangs, and kills its whole process group', async () => {
    await world.plainInstall('1.0.0');
    const childPid = path.join(world.root, 'child.pid');
    // Long enough for a loaded machine to start the shell and record the child's pid.
    const product = { ...world.product, hooks: { timeout: 1500 } };
    const staged = await world.stage('2.0.0', 'r1', { hooks: { 'migrate-config': `sleep 30 &\necho $! > ${childPid}\necho migrating\nwait` } });
    const error = await rejection(createApply(world.ports({ product }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal));
    expect(error.code).toBe('HOOK_TIMEOUT');
    expect(logText(world.logger)).toContain('migrate-config: migrating');
    const pid = Number(readFileSync(childPid, 'utf8'));
    // The signal is sent; a loaded machine may take a moment to schedule the child's death.
    for (let i = 0; i < 100 && isProcessAlive(pid); i += 1) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(isProcessAlive(pid)).toBe(false);
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
  });

  it('refuses to apply while the journal of another run is still open', async () => {
    await world.plainInstall('1.0.0');
    await world.releases().adopt('1.0.0');
    await world.journal().begin({ runId: 'old-run', from: '1.0.0', to: '1.5.0' });
    const staged = await world.stage('2.0.0', 'r1');
    const error = await rejection(createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal));
    expect(error.code).toBe('APPLY_FAILED');
    expect(error.message).toContain('old-run');
  });

  it('installs a first release when nothing is installed yet', async () => {
    const staged = await world.stage('1.0.0', 'r1');
    const out = await createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('1.0.0'), staged, installedVersion: null }, signal);
    expect(out.fromRelease).toBeNull();
    expect(await waitForVersion(world)).toBe('1.0.0');
  });

  it('keeps only the live and the previous release after a commit', async () => {
    await world.plainInstall('1.0.0');
    for (const [run, from, to] of [['r1', '1.0.0', '2.0.0'], ['r2', '2.0.0', '3.0.0']] as const) {
      const staged = await world.stage(to, run);
      const out = await createApply(world.ports())({ product: 'robot-ai', runId: run, offer: offer(to), staged, installedVersion: from }, signal);
      await createCommit(world.ports())({ product: 'robot-ai', runId: run, offer: offer(to), applied: out }, signal);
    }
    expect((await world.releases().list()).map((r) => r.version)).toEqual(['2.0.0', '3.0.0']);
  });

  it('does not stop or start services in simulation mode, and says so', async () => {
    await world.plainInstall('1.0.0');
    const staged = await world.stage('2.0.0', 'r1');
    await createApply(world.ports({ simulation: true }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(await world.releases().current()).toMatchObject({ version: '2.0.0' });
    // The 1.0.0 process was never restarted: it still serves the old version.
    expect(await waitForVersion(world)).toBe('1.0.0');
    expect(world.logger.lines.filter((l) => l.level === 'warn' && l.message.startsWith('SIMULATION MODE'))).toHaveLength(2);
  });
});

import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApplyOutput, BackupOutput, RollbackInput } from '../../../machines/types.js';
import { createBackupManager } from '../../../src/backup/backup-manager.js';
import { systemClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { hashTree } from '../../../src/package/create.js';
import { createApply } from '../../../src/steps/apply.js';
import { createCommit } from '../../../src/steps/commit.js';
import { createRollback, rollbackRecordFile } from '../../../src/steps/rollback.js';
import { stagingRootFor } from '../../../src/release/layout.js';
import { previewRollback } from '../../../src/steps/rollback-preview.js';
import { createWorld, offer, UNIT, waitForVersion, type ReleaseOptions, type World } from './execution-world.js';

let world: World;
const signal = new AbortController().signal;
const quickProbation = { windowMs: 100, intervalMs: 30, failureThreshold: 60 };

beforeEach(async () => {
  world = await createWorld();
});
afterEach(async () => {
  await world.close();
});

function rollbackInput(over: Partial<RollbackInput> = {}): RollbackInput {
  return { product: 'robot-ai', runId: 'r1', reason: 'validation failed', cause: 'failure', offer: offer('2.0.0'), applied: null, backup: null, installedVersion: '1.0.0', markBad: false, requestedBy: null, failure: null, ...over };
}

async function install1(): Promise<Record<string, string>> {
  await world.plainInstall('1.0.0');
  await fs.writeFile(path.join(world.installPath, 'config', 'robot.yaml'), 'robot-name: r2\n');
  return hashTree(world.installPath);
}

async function apply2(options: ReleaseOptions = {}, runId = 'r1'): Promise<ApplyOutput> {
  const staged = await world.stage('2.0.0', runId, options);
  return createApply(world.ports())({ product: 'robot-ai', runId, offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
}

async function backupOf1(): Promise<BackupOutput> {
  const manager = createBackupManager({ clock: systemClock, logger: world.logger, deviceId: 'robot-1' });
  const result = await manager.create({
    product: 'robot-ai',
    version: '1.0.0',
    sources: [
      { path: world.installPath, as: 'release' },
      { path: path.join(world.installPath, 'config'), as: 'data/config' },
    ],
    backupDir: world.backupDir,
  });
  return { path: result.path, sha256: result.sha256, bytes: result.bytes };
}

async function failure(promise: Promise<unknown>): Promise<OtaError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OtaError);
  return error as OtaError;
}

describe('rollback', () => {
  it('switches back to the previous release after a failed validation: same files, service back, failed release removed and marked bad', async () => {
    const before = await install1();
    const out = await apply2({ broken: true });
    expect(await waitForVersion(world)).toBe('2.0.0');

    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput({ applied: out }), signal);
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(await hashTree(world.installPath)).toEqual(before);
    expect(await waitForVersion(world)).toBe('1.0.0');
    expect(existsSync(path.join(world.releasesDir, '2.0.0'))).toBe(false);
    expect(await world.journal().read()).toBeNull();
    expect(world.db.isBad('robot-ai', '2.0.0')).toBe(true);
    expect(world.db.isBad('robot-ai', '1.0.0')).toBe(false);
    expect(world.db.release('robot-ai', '2.0.0')).toMatchObject({ badBy: 'automatic', badActor: 'otad', badRunId: 'r1', badReason: 'rolled back automatically: validation failed' });
    // The failed run's staging is cleared too.
    expect(existsSync(path.join(world.root, 'opt', '.staging', 'run-r1'))).toBe(false);
  });

  it('undoes an apply that failed in a hook before the switch: the old release keeps running', async () => {
    const before = await install1();
    await expect(apply2({ hooks: { 'pre-apply': 'exit 1' } })).rejects.toMatchObject({ code: 'HOOK_FAILED' });
    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput({ reason: 'apply failed' }), signal);
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(await hashTree(world.installPath)).toEqual(before);
    expect(await world.releases().list()).toEqual([expect.objectContaining({ version: '1.0.0', current: true })]);
    expect(await waitForVersion(world)).toBe('1.0.0');
  });

  it('clears the staged tree of a run interrupted in apply before its release was imported (a power cut before the rename)', async () => {
    const before = await install1();
    // What staging leaves under the product's staging folder by run id, never renamed into the releases.
    const staged = path.join(stagingRootFor(world.ports().product), 'r1');
    await fs.mkdir(path.join(staged, 'bin'), { recursive: true });
    await fs.writeFile(path.join(staged, 'VERSION'), '2.0.0\n');
    await fs.mkdir(`${staged}.delta`, { recursive: true });
    const other = path.join(stagingRootFor(world.ports().product), 'r0');
    await fs.mkdir(other, { recursive: true });
    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput({ reason: 'apply failed' }), signal);
    // Nothing was switched, so nothing to switch back: the live release is untouched.
    expect(result).toEqual({ restoredVersion: null, method: 'nothing-to-undo' });
    expect(existsSync(staged)).toBe(false);
    expect(existsSync(`${staged}.delta`)).toBe(false);
    // Only this run's: another run's folder is the stage step's to clear.
    expect(existsSync(other)).toBe(true);
    expect(await hashTree(world.installPath)).toEqual(before);
  });

  it('restores the backup into a fresh release when the previous release directory is gone', async () => {
    const before = await install1();
    await world.releases().adopt('1.0.0');
    const backup = await backupOf1();
    const out = await apply2({ broken: true });
    await fs.rm(path.join(world.releasesDir, '1.0.0'), { recursive: true });

    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput({ applied: out, backup }), signal);
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'backup' });
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
    expect(await hashTree(world.installPath)).toEqual(before);
    expect(await waitForVersion(world)).toBe('1.0.0');
    expect((await fs.readdir(world.releasesDir)).sort()).toEqual(['1.0.0']);
    expect(world.db.isBad('robot-ai', '2.0.0')).toBe(true);
  });

  it('skips a damaged backup and fails with ROLLBACK_FAILED when nothing usable is left, without touching the live release', async () => {
    await install1();
    await world.releases().adopt('1.0.0');
    const backup = await backupOf1();
    await fs.appendFile(backup.path as string, 'x');
    const out = await apply2();
    await fs.rm(path.join(world.releasesDir, '1.0.0'), { recursive: true });

    const error = await failure(createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput({ applied: out, backup }), signal));
    expect(error.code).toBe('ROLLBACK_FAILED');
    expect(error.message).toContain('no verified backup');
    expect(await world.releases().current()).toMatchObject({ version: '2.0.0' });
    expect(await world.journal().read()).not.toBeNull();
  });

  it('rolls a committed release back on a manual request, to the release its marker names, without marking it bad', async () => {
    const before = await install1();
    const out = await apply2();
    await createCommit(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);

    const manual = rollbackInput({ runId: 'r2', cause: 'manual', reason: 'operator request', offer: null, applied: null, installedVersion: '2.0.0' });
    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(manual, signal);
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(await hashTree(world.installPath)).toEqual(before);
    // A healthy release someone stepped back from is not condemned: a later check may offer it again.
    expect(world.db.isBad('robot-ai', '2.0.0')).toBe(false);

    // Run again (the daemon died before recording the result): the same answer, never one release further.
    expect(await createRollback(world.ports({ rollbackProbation: quickProbation }))(manual, signal)).toEqual(result);
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
  });

  it('marks the release it leaves bad on a manual request with markBad, naming the operator', async () => {
    await install1();
    const out = await apply2();
    await createCommit(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    const manual = rollbackInput({ runId: 'r2', cause: 'manual', reason: 'arm drifts', markBad: true, requestedBy: 'alice', offer: null, applied: null, installedVersion: '2.0.0' });
    expect(await createRollback(world.ports({ rollbackProbation: quickProbation }))(manual, signal)).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(world.db.release('robot-ai', '2.0.0')).toMatchObject({ badBy: 'operator', badActor: 'alice', badRunId: 'r2', badReason: 'marked bad by an operator on rollback: arm drifts' });
  });

  it('has nothing to undo on a manual request when the live release has no predecessor and no backup', async () => {
    await install1();
    await world.releases().adopt('1.0.0');
    const manual = rollbackInput({ runId: 'r2', reason: 'operator request', offer: null, applied: null });
    const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(manual, signal);
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'nothing-to-undo' });
    expect(world.db.isBad('robot-ai', '1.0.0')).toBe(false);
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
  });

  it('never "rolls back" to a newer version from a backup when the live release names no predecessor', async () => {
    await install1();
    await world.releases().adopt('1.0.0');
    // A backup of a newer release (taken before some later update was undone) is all there is.
    const newer = path.join(world.root, 'newer');
    await world.writeRelease(newer, '2.0.0');
    await createBackupManager({ clock: systemClock, logger: world.logger, deviceId: 'robot-1' }).create({ product: 'robot-ai', version: '2.0.0', sources: [{ path: newer, as: 'release' }], backupDir: world.backupDir });

    const ports = world.ports({ rollbackProbation: quickProbation });
    const preview = await previewRollback({ product: world.product, journalDir: ports.journalDir, backupDir: world.backupDir, backups: ports.backups as NonNullable<typeof ports.backups>, clock: systemClock, logger: world.logger });
    expect(preview).toMatchObject({ live: '1.0.0', previous: null, onDisk: ['1.0.0'], backups: ['2.0.0'], target: null });
    expect(preview.why).toBe('1.0.0 has no previous release on disk and no backup of another version');

    const manual = rollbackInput({ runId: 'r2', cause: 'manual', reason: 'operator request', offer: null, applied: null });
    expect(await createRollback(ports)(manual, signal)).toEqual({ restoredVersion: '1.0.0', method: 'nothing-to-undo' });
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
  });

  it('previews where a manual rollback of a committed release goes, the same place the step then goes', async () => {
    await install1();
    const out = await apply2();
    await createCommit(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    const ports = world.ports({ rollbackProbation: quickProbation });
    const preview = await previewRollback({ product: world.product, journalDir: ports.journalDir, backupDir: world.backupDir, backups: ports.backups as NonNullable<typeof ports.backups>, clock: systemClock, logger: world.logger });
    expect(preview).toMatchObject({ live: '2.0.0', previous: '1.0.0', target: { version: '1.0.0', method: 'previous-release', leaves: '2.0.0' }, why: null });
    const manual = rollbackInput({ runId: 'r2', cause: 'manual', reason: 'operator request', offer: null, applied: null, installedVersion: '2.0.0' });
    expect(await createRollback(ports)(manual, signal)).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
  });

  it('fails with ROLLBACK_FAILED when the restored release does not prove healthy', async () => {
    await install1();
    const out = await apply2({ broken: true });
    await fs.writeFile(path.join(world.releasesDir, '1.0.0', 'BROKEN'), '');
    const error = await failure(
      createRollback(world.ports({ rollbackProbation: { windowMs: 100, intervalMs: 30, failureThreshold: 2 } }))(rollbackInput({ applied: out }), signal),
    );
    expect(error.code).toBe('ROLLBACK_FAILED');
    expect(error.details).toMatchObject({ reason: 'HEALTH_CHECK_FAILED', version: '1.0.0' });
    // The switch back happened and the failed version is still bad; a person takes it from here.
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });
    expect(world.db.isBad('robot-ai', '2.0.0')).toBe(true);
    expect(JSON.parse(readFileSync(rollbackRecordFile(path.join(world.stateDir, 'journal'), 'robot-ai'), 'utf8'))).toMatchObject({ phase: 'restored' });
  });

  it('undoes a failed first install by removing the link and stopping its services', async () => {
    const staged = await world.stage('1.0.0', 'r1', { broken: true });
    const out = await createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('1.0.0'), staged, installedVersion: null }, signal);
    const result = await createRollback(world.ports())(rollbackInput({ offer: offer('1.0.0'), applied: out, installedVersion: null }), signal);
    expect(result).toEqual({ restoredVersion: null, method: 'nothing-to-undo' });
    expect(existsSync(world.installPath)).toBe(false);
    expect(await (await world.ports().services()).manager.isActive(UNIT)).toBe(false);
    expect(await world.releases().list()).toEqual([]);
    expect(world.db.isBad('robot-ai', '1.0.0')).toBe(true);
  });
});

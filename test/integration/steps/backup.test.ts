import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BackupInput, BackupOutput } from '../../../machines/types.js';
import { createBackupManager } from '../../../src/backup/backup-manager.js';
import { buildConfig } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import type { ProgressMessage } from '../../../src/daemon/event-bus.js';
import { hashTree } from '../../../src/package/create.js';
import { detectProduct } from '../../../src/products/registry.js';
import { createBackupStep, RUN_RECORDS_DIR } from '../../../src/steps/backup.js';
import { randomish, writeTree } from '../../support/tar-fixtures.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-backup-step-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const START = '2026-03-04T05:06:07Z';

function releaseSpec(version: string) {
  return {
    VERSION: `${version}\n`,
    'bin/robot-ai': { mode: 0o755, content: `#!/bin/sh\necho ${version}\n` },
    'lib/model.bin': randomish(200_000),
    'lib/latest': { symlink: 'model.bin' },
    'config/robot.yaml': 'speed: 2\n',
    'data/maps/home.pgm': randomish(30_000, 7),
  };
}

/** A product installed the way otad installs it: releases side by side and a symlink. */
async function managedInstall(dir: string): Promise<{ installPath: string; release: string }> {
  const release = await writeTree(join(dir, 'opt/.otad/robot-ai/releases/2.0.0'), releaseSpec('2.0.0'));
  const installPath = join(dir, 'opt/robot-ai');
  await symlink(release, installPath);
  return { installPath, release };
}

/** A product installed by hand: a plain directory at the install path. */
async function plainInstall(dir: string): Promise<{ installPath: string; release: string }> {
  const installPath = await writeTree(join(dir, 'opt/robot-ai'), releaseSpec('1.9.0'));
  return { installPath, release: installPath };
}

function setup(dir: string, installPath: string, opts: { simulation?: boolean; keep?: number; freeBytes?: number } = {}) {
  const config = buildConfig({
    simulation: opts.simulation ?? false,
    paths: { stateDir: join(dir, 'state') },
    products: [{ name: 'robot-ai', installPath, preservedPaths: ['config', 'data'], backup: { keep: opts.keep ?? 2, level: 1 } }],
  });
  const clock = new ManualClock(START);
  const logger = new MemoryLogger();
  const progress: Array<Omit<ProgressMessage, 'product'>> = [];
  const backups = createBackupManager({
    clock,
    logger,
    deviceId: 'robot-42',
    ...(opts.freeBytes === undefined ? {} : { freeBytes: async () => opts.freeBytes as number }),
  });
  const step = createBackupStep({
    product: config.products[0]!,
    config,
    backups,
    detect: detectProduct,
    clock,
    logger,
    deviceId: 'robot-42',
    progress: (m) => progress.push(m),
    progressIntervalMs: 0,
  });
  return { step, backups, clock, logger, progress, backupDir: config.paths.backupDir };
}

function input(runId: string, installedVersion: string | null = '2.0.0'): BackupInput {
  return {
    product: 'robot-ai',
    runId,
    installedVersion,
    offer: {
      product: 'robot-ai',
      version: '2.1.0',
      channel: 'stable',
      releasedAt: 0,
      notes: '',
      manifest: { name: 'm', length: 1, sha256: 'a'.repeat(64) },
      package: { name: 'p', length: 1, sha256: 'b'.repeat(64) },
    },
  };
}

const signal = () => new AbortController().signal;

async function backupFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.endsWith('.tar.gz')).sort();
}

async function restoredMatches(s: ReturnType<typeof setup>, out: BackupOutput, release: string, name: string): Promise<void> {
  const dest = join(root, `restored-${name}`);
  await s.backups.restore(out.path as string, dest);
  expect(await hashTree(join(dest, 'release'))).toEqual(await hashTree(release));
}

describe('backup step', () => {
  it('backs up the release a symlinked install path points at, verified, named by product, version, time and device', async () => {
    const dir = join(root, 'managed');
    const { installPath, release } = await managedInstall(dir);
    const s = setup(dir, installPath);
    const out = await s.step(input('20260304T050607Z-aaaaaa'), signal());
    expect(out.path).toBe(join(s.backupDir, 'robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz'));
    const verified = await s.backups.verify(out.path as string);
    expect(out).toEqual({ path: out.path, sha256: verified.sha256, bytes: verified.bytes });
    // The preserved paths live inside the release, so the restored release carries them.
    await restoredMatches(s, out, release, 'managed');
    const restoredConfig = await readFile(join(root, 'restored-managed/release/config/robot.yaml'), 'utf8');
    expect(restoredConfig).toBe('speed: 2\n');
  });

  it('backs up a plain install directory', async () => {
    const dir = join(root, 'plain');
    const { installPath, release } = await plainInstall(dir);
    const s = setup(dir, installPath);
    const out = await s.step(input('20260304T050607Z-bbbbbb', '1.9.0'), signal());
    expect(out.path).toBe(join(s.backupDir, 'robot-ai_1.9.0_20260304T050607Z_robot-42.tar.gz'));
    await s.backups.verify(out.path as string);
    await restoredMatches(s, out, release, 'plain');
  });

  it('returns the same verified backup when called again for the same run, even later', async () => {
    const dir = join(root, 'twice');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath);
    const first = await s.step(input('20260304T050607Z-cccccc'), signal());
    s.clock.advance(90_000);
    const second = await s.step(input('20260304T050607Z-cccccc'), signal());
    expect(second).toEqual(first);
    expect(await backupFiles(s.backupDir)).toEqual(['robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz']);
    expect(s.logger.lines.some((l) => l.message === 'backup already exists and verifies; reusing it')).toBe(true);
  });

  it('finishes an interrupted backup under the name recorded for the run and removes its temporary files', async () => {
    const dir = join(root, 'interrupted');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath);
    const runId = '20260304T050607Z-dddddd';
    const name = 'robot-ai_2.0.0_20260304T050000Z_robot-42.tar.gz';
    // What a crash mid-write leaves: the run's record, a half-written temp file, an archive without checksum.
    await writeTree(join(s.backupDir, RUN_RECORDS_DIR), { [`robot-ai_${runId}.json`]: JSON.stringify({ product: 'robot-ai', runId, name }) });
    await writeFile(join(s.backupDir, `.${name}.0123456789ab.tmp`), 'partial');
    await writeFile(join(s.backupDir, name), 'truncated');
    const out = await s.step(input(runId), signal());
    expect(out.path).toBe(join(s.backupDir, name));
    await s.backups.verify(out.path as string);
    expect((await readdir(s.backupDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('reports progress on the backup step up to the final size', async () => {
    const dir = join(root, 'progress');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath);
    await s.step(input('20260304T050607Z-eeeeee'), signal());
    expect(s.progress.length).toBeGreaterThanOrEqual(2);
    for (const p of s.progress) expect(p).toMatchObject({ runId: '20260304T050607Z-eeeeee', step: 'backup' });
    // Source bytes: the two random files plus the small text files of the release.
    const last = s.progress.at(-1);
    expect(last?.total).toBeGreaterThanOrEqual(200_000 + 30_000);
    expect(last?.total).toBeLessThan(200_000 + 30_000 + 1000);
    expect(last?.bytes).toBe(last?.total);
  });

  it('keeps the newest product.backup.keep backups, one per run', async () => {
    const dir = join(root, 'prune');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath, { keep: 2 });
    const paths: string[] = [];
    for (const id of ['aaaaa1', 'aaaaa2', 'aaaaa3']) {
      paths.push((await s.step(input(`20260304T050607Z-${id}`), signal())).path as string);
      s.clock.advance(3_600_000);
    }
    expect(await backupFiles(s.backupDir)).toEqual([
      'robot-ai_2.0.0_20260304T060607Z_robot-42.tar.gz',
      'robot-ai_2.0.0_20260304T070607Z_robot-42.tar.gz',
    ]);
    // The pruned run's record goes with its backup; the newest run's stays for a second call.
    const records = (await readdir(join(s.backupDir, RUN_RECORDS_DIR))).sort();
    expect(records).not.toContain('robot-ai_20260304T050607Z-aaaaa1.json');
    expect(records).toContain('robot-ai_20260304T050607Z-aaaaa3.json');
  });

  it('never prunes the backup of the current run when the clock was stepped back', async () => {
    const dir = join(root, 'clock-back');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath, { keep: 1 });
    await s.step(input('20260304T050607Z-fffff1'), signal());
    s.clock.jumpTo('2026-03-01T00:00:00Z');
    const out = await s.step(input('20260304T050607Z-fffff2'), signal());
    expect(await backupFiles(s.backupDir)).toContain(out.path?.slice(s.backupDir.length + 1));
    expect(await backupFiles(s.backupDir)).toHaveLength(2);
    expect(s.logger.lines.some((l) => l.level === 'warn' && l.message.startsWith('old backups not pruned'))).toBe(true);
  });

  it('is refused with DISK_FULL by the manager when the backup would not fit, leaving no archive', async () => {
    const dir = join(root, 'full');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath, { freeBytes: 100_000 });
    const error = await s.step(input('20260304T050607Z-111111'), signal()).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OtaError);
    expect((error as OtaError).code).toBe('DISK_FULL');
    expect(await backupFiles(s.backupDir)).toEqual([]);
  });

  it('writes nothing in simulation mode and warns loudly', async () => {
    const dir = join(root, 'simulation');
    const { installPath } = await managedInstall(dir);
    const s = setup(dir, installPath, { simulation: true });
    expect(await s.step(input('20260304T050607Z-222222'), signal())).toEqual({ skipped: 'simulation mode: no backup written' });
    expect(await readdir(dir)).toEqual(['opt']);
    expect(s.logger.lines.find((l) => l.level === 'warn')?.message).toMatch(/SIMULATION MODE: NO BACKUP WAS WRITTEN/);
  });

  it('skips when nothing is installed yet', async () => {
    const dir = join(root, 'fresh');
    const s = setup(dir, join(dir, 'opt/robot-ai'));
    expect(await s.step(input('20260304T050607Z-333333', null), signal())).toEqual({ skipped: `nothing installed at ${join(dir, 'opt/robot-ai')} yet` });
  });
});

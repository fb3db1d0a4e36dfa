import { describe, expect, it } from 'vitest';
import type { BackupInput } from '../../../machines/types.js';
import type { BackupManager } from '../../../src/backup/backup-manager.js';
import { buildConfig } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import type { DetectedProduct } from '../../../src/products/registry.js';
import { createBackupStep } from '../../../src/steps/backup.js';

/** A manager that must not be used: the skip paths decide before touching any backup. */
const untouchable: BackupManager = {
  create: () => Promise.reject(new Error('create must not be called')),
  verify: () => Promise.reject(new Error('verify must not be called')),
  restore: () => Promise.reject(new Error('restore must not be called')),
  prune: () => Promise.reject(new Error('prune must not be called')),
  list: () => Promise.reject(new Error('list must not be called')),
};

function setup(opts: { product?: Record<string, unknown>; simulation?: boolean; layout?: DetectedProduct['layout'] } = {}) {
  const config = buildConfig({
    paths: { stateDir: '/var/lib/ota' },
    simulation: opts.simulation ?? false,
    products: [{ name: 'robot-ai', installPath: '/opt/robot-ai', ...(opts.product ?? {}) }],
  });
  const logger = new MemoryLogger();
  const detected: DetectedProduct = {
    product: 'robot-ai',
    installPath: '/opt/robot-ai',
    layout: opts.layout ?? 'managed',
    releaseDir: '/opt/.otad/robot-ai/releases/2.0.0',
    version: '2.0.0',
    versionSource: 'marker',
  };
  const step = createBackupStep({
    product: config.products[0]!,
    config,
    backups: untouchable,
    detect: async () => detected,
    clock: new ManualClock('2026-03-04T05:06:07Z'),
    logger,
    deviceId: 'robot-42',
    progress: () => {
      throw new Error('no progress expected');
    },
  });
  return { step, logger };
}

const input: BackupInput = {
  product: 'robot-ai',
  runId: '20260304T050607Z-abcdef',
  installedVersion: '2.0.0',
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

describe('backup step decisions', () => {
  it('skips with a reason when the product turns backups off', async () => {
    const { step } = setup({ product: { backup: { enabled: false } } });
    expect(await step(input, new AbortController().signal)).toEqual({ skipped: 'backup disabled for robot-ai (backup.enabled: false)' });
  });

  it('skips in simulation mode and says so loudly in the log', async () => {
    const { step, logger } = setup({ simulation: true });
    expect(await step(input, new AbortController().signal)).toEqual({ skipped: 'simulation mode: no backup written' });
    const warning = logger.lines.find((l) => l.level === 'warn');
    expect(warning?.message).toMatch(/^SIMULATION MODE: NO BACKUP WAS WRITTEN/);
    expect(warning?.fields).toMatchObject({ simulation: true, runId: input.runId });
  });

  it('skips when nothing is installed yet', async () => {
    const { step } = setup({ layout: 'missing' });
    expect(await step(input, new AbortController().signal)).toEqual({ skipped: 'nothing installed at /opt/robot-ai yet' });
  });
});

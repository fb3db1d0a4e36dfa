import { chmod, mkdir, mkdtemp, rm, statfs, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer, PreCheckInput } from '../../../machines/types.js';
import { createCommandRunner } from '../../../src/adapters/system/check-commands.js';
import { createTimedatectlAdapter } from '../../../src/adapters/system/clock-sanity.js';
import { createDiskAdapter } from '../../../src/adapters/system/disk.js';
import { FakeClockSanity, FakePower } from '../../../src/adapters/system/fakes.js';
import { createInhibitFileAdapter } from '../../../src/adapters/system/inhibit-file.js';
import { createPowerAdapter } from '../../../src/adapters/system/power.js';
import { buildConfig } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import { createPreCheckStep } from '../../../src/steps/pre-check.js';
import { isRoot, mountTmpfs, randomish, writeTree } from '../../support/tar-fixtures.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-precheck-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const NOW = Date.parse('2026-03-04T05:06:07Z');
const KiB = 1024;
const MiB = 1024 ** 2;

function offer(length: number): Offer {
  return {
    product: 'robot-ai',
    version: '2.1.0',
    channel: 'stable',
    releasedAt: NOW - 86_400_000,
    notes: '',
    manifest: { name: 'robot-ai/2.1.0.json', length: 500, sha256: 'a'.repeat(64) },
    package: { name: 'robot-ai/robot-ai-2.1.0.tar.gz', length, sha256: 'b'.repeat(64) },
  };
}

function input(length: number): PreCheckInput {
  return { product: 'robot-ai', runId: '20260304T050607Z-abcdef', offer: offer(length), attempt: 1 };
}

/** The real disk, inhibit file and command adapters; power and NTP faked (this host has neither). */
function realStep(dir: string, product: Record<string, unknown> = {}) {
  const config = buildConfig({
    paths: { stateDir: join(dir, 'state'), inhibitFile: join(dir, 'run/inhibit') },
    inhibit: { maxHold: '4h' },
    products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai'), ...product }],
  });
  const clock = new ManualClock(NOW);
  const logger = new MemoryLogger();
  const step = createPreCheckStep({
    product: config.products[0]!,
    config,
    disk: createDiskAdapter(),
    power: FakePower.mains(),
    network: { snapshot: async () => ({ online: true, serverReachable: true }) },
    clock,
    clockSanity: new FakeClockSanity(null),
    inhibits: () => [],
    inhibitFile: createInhibitFileAdapter(),
    commands: createCommandRunner({ killGraceMs: 200 }),
    logger,
  });
  return { step, logger, clock, config };
}

describe('disk adapter', () => {
  it('reports the free space statfs reports, and measures a folder that does not exist yet on its nearest ancestor', async () => {
    const disk = createDiskAdapter();
    const fs = await disk.filesystem(join(root, 'not/yet/there'));
    const direct = await statfs(root);
    expect(fs.measuredPath).toBe(root);
    expect(fs.totalBytes).toBe(direct.blocks * direct.bsize);
    expect(fs.freeBytes).toBeGreaterThan(0);
    expect((await disk.filesystem(root)).id).toBe(fs.id);
  });

  it('sums the regular files of a tree through the top symlink, without following links inside it', async () => {
    const dir = join(root, 'tree');
    const release = await writeTree(join(dir, 'releases/1.0.0'), {
      'bin/app': randomish(3000),
      'data/map.bin': randomish(5000, 2),
      'data/latest': { symlink: 'map.bin' },
      'outside': { symlink: '/usr' },
    });
    await symlink(release, join(dir, 'current'));
    const disk = createDiskAdapter();
    expect(await disk.treeBytes(join(dir, 'current'))).toBe(8000);
    expect(await disk.treeBytes(join(dir, 'missing'))).toBe(0);
  });
});

describe('pre-check with real statfs', () => {
  it('passes on a real temp folder with room for a small package', async () => {
    const dir = join(root, 'roomy');
    await writeTree(join(dir, 'opt/robot-ai'), { VERSION: '2.0.0\n' });
    const { step } = realStep(dir);
    expect(await step(input(10 * KiB), new AbortController().signal)).toEqual({ ok: true });
  });

  it('reports DISK_SPACE_LOW when the package would not fit on the real filesystem', async () => {
    const dir = join(root, 'huge');
    const { step } = realStep(dir);
    const fs = await statfs(root);
    const out = await step(input(fs.bavail * fs.bsize), new AbortController().signal);
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.reasons.map((r) => r.code)).toEqual(['DISK_SPACE_LOW']);
  });

  it.skipIf(!isRoot)('reports DISK_SPACE_LOW on a small tmpfs holding the state folder, naming it', async () => {
    const dir = join(root, 'tmpfs-case');
    const state = join(dir, 'state');
    const unmount = await mountTmpfs(state, '8m');
    try {
      // The install lives on the big disk; the 1 MiB release still needs its backup on the tmpfs.
      await writeTree(join(dir, 'opt/robot-ai'), { VERSION: '2.0.0\n', 'lib/model.bin': randomish(MiB) });
      const { step } = realStep(dir);
      expect(await step(input(256 * KiB), new AbortController().signal)).toEqual({ ok: true });
      // 6 MiB download + about 2 MiB backup on the 8 MiB tmpfs; the extraction (18 MiB) is elsewhere.
      const out = await step(input(6 * MiB), new AbortController().signal);
      expect(out.ok).toBe(false);
      if (out.ok) return;
      expect(out.reasons).toHaveLength(1);
      expect(out.reasons[0]?.code).toBe('DISK_SPACE_LOW');
      expect(out.reasons[0]?.message).toContain(join(state, 'cache'));
      expect(out.reasons[0]?.message).toContain(join(state, 'backups'));
      // Extraction happens beside the releases, on the big disk: not counted against the tmpfs.
      expect(out.reasons[0]?.message).toMatch(/download 6\.0 MiB .*backup /);
      expect(out.reasons[0]?.message).not.toContain('extraction');
    } finally {
      await unmount();
    }
  });

  it.skipIf(!isRoot)('reports DISK_SPACE_LOW on a small tmpfs holding the releases and staging folders, where extraction really happens', async () => {
    const dir = join(root, 'tmpfs-staging');
    const unmount = await mountTmpfs(join(dir, 'opt/.otad'), '8m');
    try {
      await writeTree(join(dir, 'opt/robot-ai'), { VERSION: '2.0.0\n' });
      const { step } = realStep(dir);
      expect(await step(input(2 * MiB), new AbortController().signal)).toEqual({ ok: true });
      const out = await step(input(3 * MiB), new AbortController().signal);
      if (out.ok) throw new Error('expected DISK_SPACE_LOW');
      expect(out.reasons).toHaveLength(1);
      expect(out.reasons[0]?.code).toBe('DISK_SPACE_LOW');
      expect(out.reasons[0]?.message).toContain(`${join(dir, 'opt/.otad/robot-ai/staging/robot-ai')}, ${join(dir, 'opt/.otad/robot-ai/releases')}`);
      expect(out.reasons[0]?.message).toMatch(/extraction 9\.0 MiB/);
      expect(out.reasons[0]?.message).not.toContain('download');
    } finally {
      await unmount();
    }
  });
  if (!isRoot) it.skip('tmpfs DISK_SPACE_LOW case needs root to mount a tmpfs', () => {});
});

describe('check commands as real processes', () => {
  it('reports CHECK_COMMAND_FAILED for a command exiting 3, with its output in the log', async () => {
    const dir = join(root, 'cmd-exit');
    const { step, logger } = realStep(dir, {
      precheck: { commands: [{ name: 'docked', command: ['sh', '-c', 'echo "robot is not on its dock" >&2; exit 3'], timeout: '10s' }] },
    });
    const out = await step(input(KiB), new AbortController().signal);
    expect(out).toEqual({
      ok: false,
      reasons: [{ code: 'CHECK_COMMAND_FAILED', message: 'check command "docked" (sh -c echo "robot is not on its dock" >&2; exit 3) exited with status 3 (0 expected): robot is not on its dock' }],
    });
    const line = logger.lines.find((l) => l.message === 'check command failed');
    expect(line?.fields).toMatchObject({ name: 'docked', exitCode: 3, timedOut: false, output: 'robot is not on its dock\n' });
  });

  it('kills a command that hangs past its timeout and reports it', async () => {
    const dir = join(root, 'cmd-hang');
    const { step, logger } = realStep(dir, {
      precheck: { commands: [{ name: 'slow', command: ['sh', '-c', 'echo started; sleep 60'], timeout: 300 }] },
    });
    const out = await step(input(KiB), new AbortController().signal);
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.reasons).toHaveLength(1);
    expect(out.reasons[0]?.code).toBe('CHECK_COMMAND_FAILED');
    expect(out.reasons[0]?.message).toContain('did not finish within its timeout of 300 ms');
    expect(logger.lines.find((l) => l.message === 'check command failed')?.fields).toMatchObject({ timedOut: true, output: 'started\n' });
  });

  it('passes when every command exits 0, and gives them the run in their environment', async () => {
    const dir = join(root, 'cmd-ok');
    await mkdir(dir, { recursive: true });
    const out = join(dir, 'env.txt');
    const { step } = realStep(dir, {
      precheck: { commands: [{ name: 'env', command: ['sh', '-c', `echo "$OTA_PRODUCT $OTA_TARGET_VERSION $OTA_RUN_ID" > ${out}`] }] },
    });
    expect(await step(input(KiB), new AbortController().signal)).toEqual({ ok: true });
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(out, 'utf8')).toBe('robot-ai 2.1.0 20260304T050607Z-abcdef\n');
  });

  it('reports a command that cannot be started', async () => {
    const dir = join(root, 'cmd-missing');
    const { step } = realStep(dir, { precheck: { commands: [{ name: 'gone', command: [join(dir, 'no-such-program')] }] } });
    const out = await step(input(KiB), new AbortController().signal);
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.reasons[0]?.message).toContain('could not be started (ENOENT');
  });
});

describe('inhibit file on disk', () => {
  it('holds updates while a fresh file exists and lets them go once it is removed', async () => {
    const dir = join(root, 'inhibit-fresh');
    const file = join(dir, 'run/inhibit');
    await mkdir(join(dir, 'run'), { recursive: true });
    await writeFile(file, JSON.stringify({ holder: 'robot-ai', reason: 'mapping floor 2', expiresAt: new Date(NOW + 3_600_000).toISOString() }));
    await utimes(file, new Date(NOW - 60_000), new Date(NOW - 60_000));
    const { step } = realStep(dir);
    const out = await step(input(KiB), new AbortController().signal);
    expect(out).toEqual({
      ok: false,
      reasons: [{ code: 'INHIBITED', message: `updates are inhibited by robot-ai through ${file} until 2026-03-04T06:06:07.000Z: mapping floor 2` }],
    });
    await rm(file);
    expect(await step(input(KiB), new AbortController().signal)).toEqual({ ok: true });
  });

  it('ignores with a warning a file last written longer ago than inhibit.maxHold', async () => {
    const dir = join(root, 'inhibit-stale');
    const file = join(dir, 'run/inhibit');
    await mkdir(join(dir, 'run'), { recursive: true });
    await writeFile(file, '{"holder":"robot-ai","reason":"mission"}');
    const fiveHoursAgo = new Date(NOW - 5 * 3_600_000);
    await utimes(file, fiveHoursAgo, fiveHoursAgo);
    const { step, logger } = realStep(dir);
    expect(await step(input(KiB), new AbortController().signal)).toEqual({ ok: true });
    expect(logger.lines.some((l) => l.level === 'warn' && l.message.includes('older than the maximum hold of 4 h'))).toBe(true);
  });

  it('does not follow a symlink planted at the inhibit path, and holds updates instead', async () => {
    const dir = join(root, 'inhibit-link');
    await mkdir(join(dir, 'run'), { recursive: true });
    const secret = join(dir, 'secret');
    await writeFile(secret, 'do not log me');
    await symlink(secret, join(dir, 'run/inhibit'));
    const read = createInhibitFileAdapter().read(join(dir, 'run/inhibit'));
    await expect(read).rejects.toMatchObject({ code: 'ELOOP' });
    const out = await realStep(dir).step(input(KiB), new AbortController().signal);
    expect(out.ok).toBe(false);
    if (out.ok) return;
    expect(out.reasons[0]?.code).toBe('INHIBITED');
    expect(out.reasons[0]?.message).not.toContain('do not log me');
  });
});

describe('timedatectl and battery adapters', () => {
  async function stub(name: string, script: string): Promise<string> {
    const dir = join(root, 'bin');
    await mkdir(dir, { recursive: true });
    const path = join(dir, name);
    await writeFile(path, `#!/bin/sh\n${script}\n`);
    await chmod(path, 0o755);
    return path;
  }

  it('reads yes and no from timedatectl, and unknown when it fails or is absent', async () => {
    const yes = await stub('timedatectl-yes', '[ "$*" = "show -p NTPSynchronized --value" ] && echo yes');
    const no = await stub('timedatectl-no', 'echo no');
    const broken = await stub('timedatectl-broken', 'echo "System has not been booted with systemd" >&2; exit 1');
    expect(await createTimedatectlAdapter({ program: yes }).ntpSynchronized()).toBe(true);
    expect(await createTimedatectlAdapter({ program: no }).ntpSynchronized()).toBe(false);
    expect(await createTimedatectlAdapter({ program: broken }).ntpSynchronized()).toBeNull();
    expect(await createTimedatectlAdapter({ program: join(root, 'bin/none') }).ntpSynchronized()).toBeNull();
  });

  it('reads this machine\'s battery through systeminformation', async () => {
    const b = await createPowerAdapter().battery();
    expect(typeof b.hasBattery).toBe('boolean');
    expect(typeof b.percent).toBe('number');
    expect(typeof b.acConnected).toBe('boolean');
  });
});

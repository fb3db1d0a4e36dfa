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
import { backupName } from '../../../src/backup/naming.js';
import { createPreCheckStep, formatBytes } from '../../../src/steps/pre-check.js';
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
  it.skipIf(!isRoot)('counts the new backup, credits the old backups retention prunes before the download, and never credits the releases commit removes, on one real tmpfs', async () => {
    // Everything on one 32 MiB tmpfs: cache and backups under state/, releases and staging under opt/.otad.
    const dir = join(root, 'tmpfs-retention');
    const unmount = await mountTmpfs(dir, '32m');
    try {
      const releases = join(dir, 'opt/.otad/robot-ai/releases');
      const current = { VERSION: '2.0.0\n', 'lib/model.bin': randomish(2 * MiB) };
      await writeTree(join(releases, '2.0.0'), current);
      await writeTree(join(releases, '1.9.0'), { VERSION: '1.9.0\n', 'lib/model.bin': randomish(MiB, 2) });
      await symlink(join(releases, '2.0.0'), join(dir, 'opt/robot-ai'));
      const backups = join(dir, 'state/backups');
      await mkdir(backups, { recursive: true });
      const name = (product: string, version: string, hoursAgo: number) => backupName({ product, version, createdAt: NOW - hoursAgo * 3_600_000, deviceId: 'rb1' });
      // backup.keep is 2: this run's backup plus the newest of today's stay; the two older ones go.
      await writeFile(join(backups, name('robot-ai', '1.9.0', 1)), randomish(1536 * KiB, 3));
      await writeFile(join(backups, name('robot-ai', '1.8.0', 2)), randomish(MiB, 4));
      await writeFile(join(backups, name('robot-ai', '1.7.0', 3)), randomish(512 * KiB, 5));
      await writeFile(join(backups, name('other', '1.0.0', 9)), randomish(256 * KiB, 6)); // another product's: never counted

      const R = 2 * MiB + '2.0.0\n'.length;
      const backup = R + MiB + Math.ceil(R * 0.05); // the backup manager's own estimate, uncompressed
      const freed = MiB + 512 * KiB;
      const { step, logger } = realStep(dir);
      const fs = await statfs(dir);
      const free = fs.bavail * fs.bsize;
      // need = download L + extraction 3L + backup − freed backups, all on this filesystem.
      const fits = Math.floor((free + freed - backup) / 4);
      expect(await step(input(fits), new AbortController().signal)).toEqual({ ok: true });
      const passed = logger.lines.find((l) => l.message === 'pre-check passed');
      const need = 4 * fits + backup - freed;
      expect(passed?.fields?.disk).toEqual([expect.stringContaining(`need ${formatBytes(need)} (download ${formatBytes(fits)} + extraction ${formatBytes(3 * fits)} + backup ${formatBytes(backup)} − 2 old backups pruned after the backup (backup.keep) ${formatBytes(freed)} + precheck.minFreeBytes 0 B;`)]);
      expect(passed?.fields?.disk).toEqual([expect.stringContaining(`; free ${formatBytes(free)}`)]);

      const out = await step(input(fits + 1), new AbortController().signal);
      if (out.ok) throw new Error('expected DISK_SPACE_LOW one byte of package later');
      expect(out.reasons).toHaveLength(1);
      const message = out.reasons[0]!.message;
      expect(out.reasons[0]?.code).toBe('DISK_SPACE_LOW');
      expect(message).toContain(`${formatBytes(free)} free, ${formatBytes(need + 4)} needed (download ${formatBytes(fits + 1)} + extraction ${formatBytes(3 * fits + 3)} + backup ${formatBytes(backup)} − 2 old backups pruned after the backup (backup.keep) ${formatBytes(freed)} + precheck.minFreeBytes 0 B`);
      // The release being replaced stays as the previous one: on disk already, neither added nor freed.
      expect(message).toContain(`kept previous release 2.0.0 ${formatBytes(R)} already on disk: adds 0, frees 0`);
      // 1.9.0 goes only at commit, after the download and extraction: told, not subtracted.
      expect(message).toContain(`release 1.9.0 ${formatBytes(MiB + '1.9.0\n'.length)} freed only at commit, after the peak: not counted`);
      const warned = logger.lines.find((l) => l.message.startsWith('pre-check did not pass'));
      expect(warned?.fields?.disk).toEqual([expect.stringContaining(`need ${formatBytes(need + 4)}`)]);
    } finally {
      await unmount();
    }
  });

  it.skipIf(!isRoot)('needs room for the new backup before the old ones are pruned, when those are larger than the package', async () => {
    const dir = join(root, 'tmpfs-backup-first');
    const unmount = await mountTmpfs(dir, '16m');
    try {
      const releases = join(dir, 'opt/.otad/robot-ai/releases');
      await writeTree(join(releases, '2.0.0'), { VERSION: '2.0.0\n', 'lib/model.bin': randomish(3 * MiB) });
      await symlink(join(releases, '2.0.0'), join(dir, 'opt/robot-ai'));
      const backups = join(dir, 'state/backups');
      await mkdir(backups, { recursive: true });
      for (const [i, v] of ['1.9.0', '1.8.0', '1.7.0'].entries()) {
        await writeFile(join(backups, backupName({ product: 'robot-ai', version: v, createdAt: NOW - (i + 1) * 3_600_000, deviceId: 'rb1' })), randomish(2 * MiB, i + 7));
      }
      const { step } = realStep(dir);
      const free = (await statfs(dir)).bavail * (await statfs(dir)).bsize;
      const R = 3 * MiB + 6;
      const backup = R + MiB + Math.ceil(R * 0.05);
      // A tiny package: download + extraction − 4 MiB freed is below the backup alone, so the backup decides.
      const out = await step(input(16 * KiB), new AbortController().signal);
      if (free >= backup) {
        expect(out).toEqual({ ok: true });
      } else {
        if (out.ok) throw new Error('expected DISK_SPACE_LOW');
        expect(out.reasons[0]?.message).toContain(`${formatBytes(backup)} needed (backup ${formatBytes(backup)}, written while the old backups are still there + precheck.minFreeBytes 0 B`);
      }
      // The backup-first peak is what is compared: squeeze the tmpfs until it no longer fits.
      await writeFile(join(dir, 'filler'), Buffer.alloc(Math.max(0, free - backup + 1)));
      const squeezed = (await statfs(dir)).bavail * (await statfs(dir)).bsize;
      expect(squeezed).toBeLessThan(backup);
      const low = await step(input(16 * KiB), new AbortController().signal);
      if (low.ok) throw new Error('expected DISK_SPACE_LOW');
      expect(low.reasons[0]?.message).toContain(`${formatBytes(squeezed)} free, ${formatBytes(backup)} needed (backup ${formatBytes(backup)}, written while the old backups are still there + precheck.minFreeBytes 0 B`);
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

import { describe, expect, it } from 'vitest';
import type { Offer, PreCheckInput } from '../../../machines/types.js';
import { FakeClockSanity, FakeCommandRunner, FakeDisk, FakeInhibitFile, FakePower } from '../../../src/adapters/system/fakes.js';
import { parseInhibitFile } from '../../../src/adapters/system/inhibit-file.js';
import { buildConfig, type Config } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import {
  createPreCheckStep,
  decidePreCheck,
  policyFromConfig,
  PRECHECK_REASON_CODES,
  type PreCheckMeasurements,
  type PreCheckPolicy,
} from '../../../src/steps/pre-check.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const NOW = Date.parse('2026-03-04T05:06:07Z');
const HOUR = 3_600_000;

function config(product: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Config {
  return buildConfig({
    paths: { stateDir: '/var/lib/ota', inhibitFile: '/run/ota/inhibit' },
    inhibit: { maxHold: '4h' },
    products: [{ name: 'robot-ai', installPath: '/opt/robot-ai', ...product }],
    ...extra,
  });
}

function offer(overrides: Partial<Offer> = {}): Offer {
  return {
    product: 'robot-ai',
    version: '2.1.0',
    channel: 'stable',
    releasedAt: NOW - 3 * 24 * HOUR,
    notes: '',
    manifest: { name: 'robot-ai/2.1.0.json', length: 500, sha256: 'a'.repeat(64) },
    package: { name: 'robot-ai/robot-ai-2.1.0.tar.gz', length: 100 * MiB, sha256: 'b'.repeat(64) },
    ...overrides,
  };
}

const POLICY: PreCheckPolicy = {
  minFreeBytes: 0,
  minBatteryPercent: 30,
  requireCharging: false,
  maxHoldMs: 4 * HOUR,
  clockFloorMs: Date.parse('2025-01-01T00:00:00Z'),
  clockMaxAheadMs: 5 * 365 * 24 * HOUR,
  requireNtpSync: true,
  requireServerReachable: true,
};

/** One filesystem for everything, plenty of room, online, charged, synced, nothing held. */
function healthy(overrides: Partial<PreCheckMeasurements> = {}): PreCheckMeasurements {
  const fs = { id: 'root', measuredPath: '/', freeBytes: 50 * GiB, totalBytes: 100 * GiB };
  return {
    now: NOW,
    offer: offer(),
    disk: {
      value: {
        places: {
          cache: { dir: '/var/lib/ota/cache', fs },
          staging: { dir: '/opt/.otad/robot-ai/staging/robot-ai', fs },
          releases: { dir: '/opt/.otad/robot-ai/releases', fs },
          backups: { dir: '/var/lib/ota/backups', fs },
        },
        backupSourceBytes: 200 * MiB,
      },
    },
    network: { value: { online: true, serverReachable: true } },
    battery: { value: { hasBattery: true, percent: 80, isCharging: true, acConnected: true } },
    ntpSynchronized: { value: true },
    apiInhibits: [],
    inhibitFile: { path: '/run/ota/inhibit', read: { value: null } },
    commands: [],
    ...overrides,
  };
}

function codes(m: PreCheckMeasurements, policy: PreCheckPolicy = POLICY): string[] {
  return decidePreCheck(m, policy).reasons.map((r) => r.code);
}

describe('pre-check decision (pure)', () => {
  it('passes when every measurement is within its threshold', () => {
    expect(decidePreCheck(healthy(), POLICY)).toEqual({ reasons: [], warnings: [] });
  });

  describe('disk space', () => {
    it('computes the delta path from the signed sizes: the delta download and the indexed unpacked size, not 3 x the package', () => {
      const index = { name: 'robot-ai/robot-ai-2.1.0.index.json', length: 9000, sha256: 'c'.repeat(64), entries: 100, bytes: 150 * MiB };
      const delta = { fromVersion: '2.0.0', target: { name: 'robot-ai/robot-ai-2.0.0-to-2.1.0.delta.tar.gz', length: 2 * MiB, sha256: 'd'.repeat(64) } };
      // Download 2 MiB + assembled 150 MiB + 100 x 4 KiB; backup 211 MiB.
      const need = 2 * MiB + 150 * MiB + 100 * 4096 + 211 * MiB;
      const at = (free: number, withDelta: boolean): PreCheckMeasurements => {
        const m = healthy({ offer: offer({ index, ...(withDelta ? { delta } : {}) }) });
        if (!('value' in m.disk)) throw new Error('unreachable');
        for (const p of Object.values(m.disk.value.places)) p.fs = { id: 'root', measuredPath: '/', freeBytes: free, totalBytes: 10 * GiB };
        return m;
      };
      expect(codes(at(need, true))).toEqual([]);
      const low = decidePreCheck(at(need - 1, true), POLICY).reasons;
      expect(low[0]?.message).toMatch(/delta from 2\.0\.0 2\.0 MiB \(2097152 bytes\) \+ assembled release \(signed tree index\) 150\.4 MiB/);
      // The same release without a delta from the installed version: the package and the indexed size.
      expect(codes(at(need, false))).toEqual(['DISK_SPACE_LOW']);
      expect(codes(at(need - 2 * MiB + 100 * MiB, false))).toEqual([]);
    });

    it('needs download + 3 x package + backup estimate + minFreeBytes on a shared filesystem, and names the numbers', () => {
      // 100 MiB package: 100 + 300 = 400 MiB; backup of 200 MiB: 200 + 1 + 10 = 211 MiB; +64 MiB reserve = 675 MiB.
      const need = (100 + 300 + 211 + 64) * MiB;
      const fs = (free: number) => ({ id: 'root', measuredPath: '/', freeBytes: free, totalBytes: 10 * GiB });
      const at = (free: number): PreCheckMeasurements => {
        const m = healthy();
        if (!('value' in m.disk)) throw new Error('unreachable');
        for (const p of Object.values(m.disk.value.places)) p.fs = fs(free);
        return m;
      };
      const policy = { ...POLICY, minFreeBytes: 64 * MiB };
      expect(codes(at(need), policy)).toEqual([]);
      const low = decidePreCheck(at(need - 1), policy).reasons;
      expect(low).toHaveLength(1);
      expect(low[0]?.code).toBe('DISK_SPACE_LOW');
      expect(low[0]?.message).toContain(`${need - 1} bytes`);
      expect(low[0]?.message).toContain(`${need} bytes`);
      expect(low[0]?.message).toMatch(/download .*extraction .*backup .*precheck\.minFreeBytes/);
      expect(low[0]?.message).toContain('/var/lib/ota/backups');
    });

    it('reports each filesystem that is short, and charges the extracted tree again to a separate releases filesystem', () => {
      const m = healthy();
      if (!('value' in m.disk)) throw new Error('unreachable');
      const small = { id: 'opt', measuredPath: '/opt', freeBytes: 250 * MiB, totalBytes: GiB };
      m.disk.value.places.releases.fs = small;
      const reasons = decidePreCheck(m, POLICY).reasons;
      expect(reasons.map((r) => r.code)).toEqual(['DISK_SPACE_LOW']);
      expect(reasons[0]?.message).toContain('/opt/.otad/robot-ai/releases');
      expect(reasons[0]?.message).toContain('release copy 300.0 MiB');
    });

    it('does not count a backup that will not be written', () => {
      const m = healthy();
      if (!('value' in m.disk)) throw new Error('unreachable');
      for (const p of Object.values(m.disk.value.places)) p.fs = { ...p.fs, freeBytes: 400 * MiB };
      expect(codes(m)).toEqual(['DISK_SPACE_LOW']);
      m.disk.value.backupSourceBytes = null;
      expect(codes(m)).toEqual([]);
    });

    it('credits old backups only when a backup is written, and never the releases commit removes', () => {
      const m = healthy();
      if (!('value' in m.disk)) throw new Error('unreachable');
      // 100 MiB package + 300 MiB extraction + 211 MiB backup = 611 MiB; 150 MiB of old backups go first.
      for (const p of Object.values(m.disk.value.places)) p.fs = { ...p.fs, freeBytes: 461 * MiB };
      m.disk.value.retention = {
        installed: { version: '2.0.0', bytes: 200 * MiB },
        backupsPruned: [{ name: 'old-1', bytes: 100 * MiB }, { name: 'old-2', bytes: 50 * MiB }],
        releasesPruned: [{ version: '1.9.0', bytes: 900 * MiB }],
      };
      expect(codes(m)).toEqual([]);
      for (const p of Object.values(m.disk.value.places)) p.fs = { ...p.fs, freeBytes: 461 * MiB - 1 };
      const [low] = decidePreCheck(m, POLICY).reasons;
      expect(low?.message).toContain('− 2 old backups pruned after the backup (backup.keep) 150.0 MiB');
      expect(low?.message).toContain('release 1.9.0 900.0 MiB (943718400 bytes) freed only at commit, after the peak: not counted');
      // No backup this run: nothing is pruned, so nothing is credited either.
      m.disk.value.backupSourceBytes = null;
      for (const p of Object.values(m.disk.value.places)) p.fs = { ...p.fs, freeBytes: 400 * MiB - 1 };
      expect(decidePreCheck(m, POLICY).reasons[0]?.message).not.toContain('pruned after the backup');
      for (const p of Object.values(m.disk.value.places)) p.fs = { ...p.fs, freeBytes: 400 * MiB };
      expect(codes(m)).toEqual([]);
    });

    it('reports DISK_SPACE_LOW when the disk could not be measured', () => {
      expect(decidePreCheck(healthy({ disk: { error: 'EACCES' } }), POLICY).reasons).toEqual([
        { code: 'DISK_SPACE_LOW', message: 'free disk space could not be measured: EACCES' },
      ]);
    });
  });

  describe('network', () => {
    it('reports NETWORK_OFFLINE alone when there is no link (the server cannot be reached either)', () => {
      expect(codes(healthy({ network: { value: { online: false, serverReachable: false } } }))).toEqual(['NETWORK_OFFLINE']);
    });

    it('reports SERVER_UNREACHABLE when online but the server does not answer, unless not required', () => {
      const m = healthy({ network: { value: { online: true, serverReachable: false } } });
      expect(codes(m)).toEqual(['SERVER_UNREACHABLE']);
      expect(codes(m, { ...POLICY, requireServerReachable: false })).toEqual([]);
    });
  });

  describe('power', () => {
    it('passes without a battery: the machine is on mains power', () => {
      const m = healthy({ battery: { value: { hasBattery: false, percent: 0, isCharging: false, acConnected: false } } });
      expect(codes(m, { ...POLICY, requireCharging: true, minBatteryPercent: 90 })).toEqual([]);
    });

    it('reports BATTERY_LOW below minBatteryPercent with both numbers in the message', () => {
      const m = healthy({ battery: { value: { hasBattery: true, percent: 29, isCharging: true, acConnected: true } } });
      const reasons = decidePreCheck(m, POLICY).reasons;
      expect(reasons).toEqual([{ code: 'BATTERY_LOW', message: 'battery at 29%, below the minimum of 30% (precheck.minBatteryPercent)' }]);
      expect(codes(healthy({ battery: { value: { hasBattery: true, percent: 30, isCharging: true, acConnected: true } } }))).toEqual([]);
    });

    it('reports NOT_CHARGING only when charging is required and there is no external power', () => {
      const onBattery = healthy({ battery: { value: { hasBattery: true, percent: 80, isCharging: false, acConnected: false } } });
      expect(codes(onBattery)).toEqual([]);
      expect(codes(onBattery, { ...POLICY, requireCharging: true })).toEqual(['NOT_CHARGING']);
      // Full on its dock: not charging, but powered.
      const docked = healthy({ battery: { value: { hasBattery: true, percent: 100, isCharging: false, acConnected: true } } });
      expect(codes(docked, { ...POLICY, requireCharging: true })).toEqual([]);
    });
  });

  describe('clock', () => {
    it('reports CLOCK_NOT_SYNCED for a clock before the build floor', () => {
      const old = offer({ releasedAt: Date.parse('2020-01-01T00:00:00Z') });
      const reasons = decidePreCheck(healthy({ now: Date.parse('2001-01-01T00:00:00Z'), offer: old }), POLICY).reasons;
      expect(reasons.map((r) => r.code)).toEqual(['CLOCK_NOT_SYNCED']);
      expect(reasons[0]?.message).toContain('2001-01-01T00:00:00.000Z');
      expect(reasons[0]?.message).toContain('build floor');
    });

    it('reports CLOCK_NOT_SYNCED for a clock more than a day before the release was published', () => {
      const o = offer({ releasedAt: NOW + 2 * 24 * HOUR });
      expect(codes(healthy({ offer: o }))).toEqual(['CLOCK_NOT_SYNCED']);
      expect(codes(healthy({ offer: offer({ releasedAt: NOW + 12 * HOUR }) }))).toEqual([]);
    });

    it('reports CLOCK_NOT_SYNCED for a clock far in the future', () => {
      expect(codes(healthy({ now: Date.parse('2040-01-01T00:00:00Z') }))).toEqual(['CLOCK_NOT_SYNCED']);
    });

    it('reports CLOCK_NOT_SYNCED when the system says it is not synchronised; unknown passes', () => {
      expect(codes(healthy({ ntpSynchronized: { value: false } }))).toEqual(['CLOCK_NOT_SYNCED']);
      expect(codes(healthy({ ntpSynchronized: { value: null } }))).toEqual([]);
      const relaxed = decidePreCheck(healthy({ ntpSynchronized: { value: false } }), { ...POLICY, requireNtpSync: false });
      expect(relaxed.reasons).toEqual([]);
      expect(relaxed.warnings[0]).toContain('not synchronised');
    });
  });

  describe('inhibits', () => {
    it('reports INHIBITED for an inhibit held through the API, naming holder, reason and expiry', () => {
      const m = healthy({ apiInhibits: [{ holder: 'robot-ai', reason: 'delivering a parcel', expiresAt: NOW + HOUR }] });
      expect(decidePreCheck(m, POLICY).reasons).toEqual([
        { code: 'INHIBITED', message: 'updates are inhibited by robot-ai until 2026-03-04T06:06:07.000Z: delivering a parcel' },
      ]);
      expect(codes(healthy({ apiInhibits: [{ holder: 'x', reason: '', expiresAt: NOW }] }))).toEqual([]);
    });

    const file = (content: string, mtimeMs: number): PreCheckMeasurements['inhibitFile'] => ({ path: '/run/ota/inhibit', read: { value: { content, mtimeMs } } });

    it('reports INHIBITED for a fresh inhibit file, until the earlier of its expiry and mtime + maxHold', () => {
      const json = JSON.stringify({ holder: 'mission-control', reason: 'mapping the warehouse', expiresAt: '2026-03-04T06:00:00Z' });
      const reasons = decidePreCheck(healthy({ inhibitFile: file(json, NOW - HOUR) }), POLICY).reasons;
      expect(reasons).toEqual([
        { code: 'INHIBITED', message: 'updates are inhibited by mission-control through /run/ota/inhibit until 2026-03-04T06:00:00.000Z: mapping the warehouse' },
      ]);
      const long = JSON.stringify({ holder: 'app', expiresAt: NOW + 100 * HOUR });
      expect(decidePreCheck(healthy({ inhibitFile: file(long, NOW - HOUR) }), POLICY).reasons[0]?.message).toContain('until 2026-03-04T08:06:07.000Z');
    });

    it('honours an empty or plain-text inhibit file: its existence is the signal', () => {
      expect(codes(healthy({ inhibitFile: file('', NOW - 60_000) }))).toEqual(['INHIBITED']);
      const plain = decidePreCheck(healthy({ inhibitFile: file('docking\n', NOW - 60_000) }), POLICY);
      expect(plain.reasons[0]?.message).toContain('by unknown');
      expect(plain.reasons[0]?.message).toContain(': docking');
    });

    it('ignores, with a warning, an inhibit file older than inhibit.maxHold so a crashed app cannot block updates forever', () => {
      const d = decidePreCheck(healthy({ inhibitFile: file('{"holder":"robot-ai","reason":"mission"}', NOW - 4 * HOUR) }), POLICY);
      expect(d.reasons).toEqual([]);
      expect(d.warnings).toHaveLength(1);
      expect(d.warnings[0]).toContain('older than the maximum hold of 4 h');
      expect(d.warnings[0]).toContain('robot-ai');
    });

    it('ignores, with a warning, an inhibit file whose own expiry has passed', () => {
      const d = decidePreCheck(healthy({ inhibitFile: file(JSON.stringify({ holder: 'a', expiresAt: NOW - 1 }), NOW - HOUR) }), POLICY);
      expect(d.reasons).toEqual([]);
      expect(d.warnings[0]).toContain('expired');
    });

    it('ignores an inhibit file stamped further in the future than the maximum hold', () => {
      const d = decidePreCheck(healthy({ inhibitFile: file('{}', NOW + 5 * HOUR) }), POLICY);
      expect(d.reasons).toEqual([]);
      expect(d.warnings[0]).toContain('ahead of the clock');
      expect(codes(healthy({ inhibitFile: file('{}', NOW + HOUR) }))).toEqual(['INHIBITED']);
    });

    it('treats an inhibit file that exists but cannot be read as held', () => {
      const m = healthy({ inhibitFile: { path: '/run/ota/inhibit', read: { error: 'ELOOP: too many symbolic links' } } });
      expect(codes(m)).toEqual(['INHIBITED']);
    });
  });

  describe('check commands', () => {
    const cmd = (result: PreCheckMeasurements['commands'][number]['result']) => ({ name: 'docked', command: ['/usr/bin/is-docked', '--quiet'], timeoutMs: 30_000, result });

    it('reports CHECK_COMMAND_FAILED with the exit status and the last line of output', () => {
      const reasons = decidePreCheck(healthy({ commands: [cmd({ exitCode: 3, timedOut: false, output: 'checking\nnot on the dock\n' })] }), POLICY).reasons;
      expect(reasons).toEqual([
        { code: 'CHECK_COMMAND_FAILED', message: 'check command "docked" (/usr/bin/is-docked --quiet) exited with status 3 (0 expected): not on the dock' },
      ]);
    });

    it('reports a command that timed out, or could not start', () => {
      const timedOut = decidePreCheck(healthy({ commands: [cmd({ exitCode: null, timedOut: true, output: '' })] }), POLICY).reasons;
      expect(timedOut[0]?.message).toContain('did not finish within its timeout of 30 s');
      const missing = decidePreCheck(healthy({ commands: [cmd({ exitCode: null, timedOut: false, output: '', spawnError: 'ENOENT: no such file' })] }), POLICY).reasons;
      expect(missing[0]?.message).toContain('could not be started (ENOENT: no such file)');
    });
  });

  it('reports every failing check at once, in a fixed order', () => {
    const m = healthy({
      disk: { error: 'EIO' },
      network: { value: { online: false, serverReachable: false } },
      battery: { value: { hasBattery: true, percent: 5, isCharging: false, acConnected: false } },
      ntpSynchronized: { value: false },
      apiInhibits: [{ holder: 'app', reason: 'busy', expiresAt: NOW + HOUR }],
      commands: [
        { name: 'a', command: ['a'], timeoutMs: 1000, result: { exitCode: 1, timedOut: false, output: '' } },
        { name: 'b', command: ['b'], timeoutMs: 1000, result: { exitCode: 0, timedOut: false, output: '' } },
        { name: 'c', command: ['c'], timeoutMs: 1000, result: { exitCode: null, timedOut: true, output: '' } },
      ],
    });
    expect(codes(m, { ...POLICY, requireCharging: true })).toEqual([
      'DISK_SPACE_LOW',
      'NETWORK_OFFLINE',
      'BATTERY_LOW',
      'NOT_CHARGING',
      'CLOCK_NOT_SYNCED',
      'INHIBITED',
      'CHECK_COMMAND_FAILED',
      'CHECK_COMMAND_FAILED',
    ]);
    for (const c of codes(m)) expect(PRECHECK_REASON_CODES).toContain(c);
  });

  it('takes its thresholds from the product and the configuration', () => {
    const c = config({ precheck: { minFreeBytes: 1234, minBatteryPercent: 55, requireCharging: true } }, { inhibit: { maxHold: '2h' } });
    const p = policyFromConfig(c.products[0]!, c);
    expect(p).toMatchObject({ minFreeBytes: 1234, minBatteryPercent: 55, requireCharging: true, maxHoldMs: 2 * HOUR, requireNtpSync: true });
  });
});

describe('inhibit file content', () => {
  it('reads holder, reason and an expiry in ms or ISO 8601', () => {
    expect(parseInhibitFile('{"holder":"app","reason":"mission","expiresAt":1000}')).toEqual({ holder: 'app', reason: 'mission', expiresAt: 1000 });
    expect(parseInhibitFile('{"holder":"app","expiresAt":"1970-01-01T00:00:01Z"}').expiresAt).toBe(1000);
  });

  it('says what was wrong with content it cannot fully use', () => {
    expect(parseInhibitFile('{"expiresAt":"soon"}')).toMatchObject({ holder: 'unknown', expiresAt: null, problem: expect.stringContaining('"soon"') });
    expect(parseInhibitFile('{broken')).toMatchObject({ holder: 'unknown', problem: expect.stringContaining('does not parse') });
    expect(parseInhibitFile('')).toEqual({ holder: 'unknown', reason: '', expiresAt: null });
  });
});

describe('pre-check step with fake ports', () => {
  function setup(product: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
    const c = config(product, extra);
    const clock = new ManualClock(NOW);
    const disk = new FakeDisk([{ at: '/', freeBytes: 50 * GiB }]);
    const power = new FakePower();
    const network = { state: { online: true, serverReachable: true }, snapshot: async () => ({ ...network.state, latencyMs: 3 }) };
    const clockSanity = new FakeClockSanity(true);
    const inhibitFile = new FakeInhibitFile();
    const commands = new FakeCommandRunner();
    const held: Array<{ holder: string; reason: string; expiresAt: number }> = [];
    const logger = new MemoryLogger();
    const step = createPreCheckStep({
      product: c.products[0]!,
      config: c,
      disk,
      power,
      network,
      clock,
      clockSanity,
      inhibits: () => held,
      inhibitFile,
      commands,
      logger,
    });
    return { c, clock, disk, power, network, clockSanity, inhibitFile, commands, held, logger, step };
  }
  const input = (overrides: Partial<PreCheckInput> = {}): PreCheckInput => ({ product: 'robot-ai', runId: '20260304T050607Z-abcdef', offer: offer(), attempt: 1, ...overrides });

  it('passes on a healthy robot and logs it', async () => {
    const s = setup();
    expect(await s.step(input(), new AbortController().signal)).toEqual({ ok: true });
    expect(s.logger.lines.some((l) => l.message === 'pre-check passed')).toBe(true);
  });

  it('runs every check even when the first fails, and reports all their reasons', async () => {
    const s = setup({ precheck: { commands: [{ name: 'docked', command: ['/bin/false'] }, { name: 'idle', command: ['/bin/true'] }] } });
    s.network.state = { online: false, serverReachable: false };
    s.power.reading = { hasBattery: true, percent: 10, isCharging: false, acConnected: false };
    s.inhibitFile.write('/run/ota/inhibit', { holder: 'robot-ai', reason: 'mission' }, NOW - 60_000);
    s.commands.results.set('docked', { exitCode: 1, timedOut: false, output: 'undocked\n' });
    const out = await s.step(input(), new AbortController().signal);
    expect(out).toEqual({ ok: false, reasons: expect.any(Array) });
    if (out.ok) throw new Error('unreachable');
    expect(out.reasons.map((r) => r.code)).toEqual(['NETWORK_OFFLINE', 'BATTERY_LOW', 'INHIBITED', 'CHECK_COMMAND_FAILED']);
    expect(s.commands.calls.map((c) => c.name)).toEqual(['docked', 'idle']);
    const failed = s.logger.lines.find((l) => l.message === 'check command failed');
    expect(failed?.fields).toMatchObject({ name: 'docked', exitCode: 1, output: 'undocked\n' });
  });

  it('measures the cache, staging, releases and backup folders and the current release', async () => {
    const s = setup();
    s.disk.mounts = [
      { at: '/', freeBytes: 50 * GiB },
      { at: '/var/lib/ota', freeBytes: 300 * MiB },
    ];
    s.disk.trees.set('/opt/robot-ai', 10 * GiB);
    const out = await s.step(input(), new AbortController().signal);
    if (out.ok) throw new Error('expected DISK_SPACE_LOW');
    expect(out.reasons).toHaveLength(1);
    expect(out.reasons[0]?.message).toContain('/var/lib/ota/cache, /var/lib/ota/backups');
    expect(out.reasons[0]?.message).toContain('backup 10.5 GiB');
  });

  it('measures staging where the stage step extracts: beside the releases folder, not under the state folder', async () => {
    const s = setup();
    s.disk.mounts = [
      { at: '/', freeBytes: 50 * GiB },
      { at: '/opt', freeBytes: 100 * MiB },
    ];
    const out = await s.step(input(), new AbortController().signal);
    if (out.ok) throw new Error('expected DISK_SPACE_LOW');
    expect(out.reasons).toHaveLength(1);
    expect(out.reasons[0]?.message).toContain('/opt/.otad/robot-ai/staging/robot-ai, /opt/.otad/robot-ai/releases');
    expect(out.reasons[0]?.message).toContain('extraction');
  });

  it('does not count a backup in simulation mode or when backups are off', async () => {
    for (const s of [setup({}, { simulation: true }), setup({ backup: { enabled: false } })]) {
      s.disk.mounts = [{ at: '/', freeBytes: 500 * MiB }];
      s.disk.trees.set('/opt/robot-ai', 10 * GiB);
      expect(await s.step(input(), new AbortController().signal)).toEqual({ ok: true });
    }
  });

  it('hands each check command its timeout and the run in its environment', async () => {
    const s = setup({ precheck: { commands: [{ name: 'docked', command: ['/usr/bin/is-docked'], timeout: '7s' }] } });
    await s.step(input(), new AbortController().signal);
    expect(s.commands.calls[0]).toMatchObject({
      timeoutMs: 7000,
      env: { OTA_PRODUCT: 'robot-ai', OTA_RUN_ID: '20260304T050607Z-abcdef', OTA_TARGET_VERSION: '2.1.0', OTA_INSTALL_PATH: '/opt/robot-ai' },
    });
  });

  it('turns a failing measurement into the reason of its check instead of throwing', async () => {
    const s = setup();
    s.disk.failure = new Error('statfs: EIO');
    s.power.failure = new Error('no power supply class');
    const out = await s.step(input(), new AbortController().signal);
    if (out.ok) throw new Error('expected failure');
    expect(out.reasons.map((r) => r.code)).toEqual(['DISK_SPACE_LOW', 'BATTERY_LOW']);
    expect(out.reasons[0]?.message).toContain('statfs: EIO');
  });

  it('logs the stale-inhibit warning and passes', async () => {
    const s = setup();
    s.inhibitFile.write('/run/ota/inhibit', { holder: 'crashed-app', reason: 'mission' }, NOW - 5 * HOUR);
    expect(await s.step(input(), new AbortController().signal)).toEqual({ ok: true });
    expect(s.logger.lines.find((l) => l.level === 'warn')?.message).toContain('older than the maximum hold');
  });

  it('reports an inhibit held through the API', async () => {
    const s = setup();
    s.held.push({ holder: 'robot-ai', reason: 'charging run', expiresAt: NOW + HOUR });
    const out = await s.step(input(), new AbortController().signal);
    expect(out).toEqual({ ok: false, reasons: [{ code: 'INHIBITED', message: expect.stringContaining('charging run') }] });
  });

  it('rejects with CANCELLED when the signal fired', async () => {
    const s = setup({ precheck: { commands: [{ name: 'docked', command: ['/bin/true'] }] } });
    const ac = new AbortController();
    ac.abort();
    await expect(s.step(input(), ac.signal)).rejects.toSatisfy((e: unknown) => e instanceof OtaError && e.code === 'CANCELLED');
    expect(s.commands.calls).toEqual([]);
  });
});

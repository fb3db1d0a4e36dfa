/**
 * otad's NetworkManager reading (src/net/metered.ts) against the stand-in NetworkManager
 * (test/support/network-manager-standin.ts) on a private dbus-daemon: the value read, its change
 * through PropertiesChanged, NetworkManager leaving the bus and coming back, and a bus without it.
 * The stand-in itself is checked against the names and types NetworkManager documents, as
 * another D-Bus client (gdbus or busctl, when installed) sees them.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createNetworkManagerMetered, type MeteredReading, type MeteredSource } from '../../../src/net/metered.js';
import { NM_METERED_GUESS_NO, NM_METERED_GUESS_YES, NM_METERED_UNKNOWN, NM_METERED_YES, startNetworkManagerStandIn } from '../../support/network-manager-standin.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from '../api/private-bus.js';

const run = promisify(execFile);

async function until(source: MeteredSource, pred: (r: MeteredReading) => boolean, what: string): Promise<MeteredReading> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await source.read();
    if (pred(r)) return r;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last reading ${JSON.stringify(r)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

describe.skipIf(!hasDbusDaemon)('NetworkManager Metered reading on a private bus', () => {
  let dir: string;
  let bus: PrivateBus;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-nm-'));
    bus = await startPrivateBus(dir);
  });
  afterAll(async () => {
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!hasTool('gdbus'))('the stand-in serves Metered as NetworkManager does: uint32 on org.freedesktop.NetworkManager', async () => {
    const nm = await startNetworkManagerStandIn(bus.address, NM_METERED_GUESS_YES);
    try {
      const { stdout } = await run('gdbus', ['introspect', '--address', bus.address, '--dest', 'org.freedesktop.NetworkManager', '--object-path', '/org/freedesktop/NetworkManager']);
      expect(stdout).toContain('interface org.freedesktop.NetworkManager {');
      expect(stdout).toMatch(/readonly u Metered = 3;/);
    } finally {
      nm.close();
    }
  });

  it('reads the value, follows PropertiesChanged, and says unknown while NetworkManager is off the bus', async () => {
    const nm = await startNetworkManagerStandIn(bus.address, NM_METERED_YES);
    const source = createNetworkManagerMetered({ bus: bus.address, clock: systemClock, logger: silentLogger, retryMs: 50 });
    try {
      expect(await source.read()).toMatchObject({ metered: 'yes', value: 'yes', source: `NetworkManager on the bus ${bus.address}`, reason: 'NetworkManager reports Metered=yes' });

      nm.set(NM_METERED_GUESS_NO);
      expect(await until(source, (r) => r.value === 'guess-no', 'guess-no')).toMatchObject({ metered: 'no' });
      nm.set(NM_METERED_UNKNOWN);
      expect(await until(source, (r) => r.value === 'unknown', 'unknown')).toMatchObject({ metered: 'unknown', reason: 'NetworkManager reports Metered=unknown' });

      // NetworkManager stops: its last value is not kept as a reading.
      nm.close();
      const gone = await until(source, (r) => r.value === null, 'NetworkManager to leave');
      expect(gone.metered).toBe('unknown');
      expect(gone.reason).toMatch(/left the bus|could not be asked/);

      // It comes back with another value: read anew.
      const again = await startNetworkManagerStandIn(bus.address, NM_METERED_GUESS_YES);
      try {
        expect(await until(source, (r) => r.value === 'guess-yes', 'guess-yes after the restart')).toMatchObject({ metered: 'yes' });
        again.set(NM_METERED_YES);
        expect((await until(source, (r) => r.value === 'yes', 'yes after the restart')).metered).toBe('yes');
      } finally {
        again.close();
      }
    } finally {
      source.close();
    }
  });

  it('follows NetworkManager through a dozen restarts without piling up a listener per restart', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(`${w.name}: ${w.message}`);
    };
    process.on('warning', onWarning);
    const source = createNetworkManagerMetered({ bus: bus.address, clock: systemClock, logger: silentLogger, retryMs: 20 });
    try {
      // Each restart happens between two reads (as on a robot, where nothing reads while
      // NetworkManager restarts): the old one leaves the bus and the new one takes its name.
      let nm = await startNetworkManagerStandIn(bus.address, NM_METERED_YES);
      for (let i = 0; i < 12; i += 1) {
        const value = i % 2 === 0 ? NM_METERED_YES : NM_METERED_GUESS_NO;
        await until(source, (r) => r.value === (i % 2 === 0 ? 'yes' : 'guess-no'), `the reading after restart ${i}`);
        // The change signal of this NetworkManager reaches the reading.
        nm.set(NM_METERED_UNKNOWN);
        await until(source, (r) => r.value === 'unknown', `PropertiesChanged after restart ${i}`);
        nm.set(value);
        await until(source, (r) => r.value === (i % 2 === 0 ? 'yes' : 'guess-no'), `the value back after restart ${i}`);
        nm.close();
        nm = await startNetworkManagerStandIn(bus.address, i % 2 === 0 ? NM_METERED_GUESS_NO : NM_METERED_YES);
      }
      nm.close();
      // Node warns once an emitter holds more than 10 listeners for one event: one per restart would.
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      source.close();
    }
  });

  it('a bus without NetworkManager: unknown, saying why', async () => {
    const source = createNetworkManagerMetered({ bus: bus.address, clock: systemClock, logger: silentLogger });
    try {
      const r = await source.read();
      expect(r).toMatchObject({ metered: 'unknown', value: null });
      expect(r.reason).toContain('NetworkManager (org.freedesktop.NetworkManager) could not be asked');
    } finally {
      source.close();
    }
  });
});

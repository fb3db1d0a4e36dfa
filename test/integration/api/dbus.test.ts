/**
 * The D-Bus service on a private dbus-daemon: called from a second dbus-next connection and from
 * the standard command-line clients (busctl, dbus-send, gdbus: whichever this machine has).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, waitFor, type Harness } from './harness.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from './private-bus.js';
import { startDbusService } from '../../../src/api/dbus.js';
import { createEdge } from '../../../src/api/edge.js';
import { createFixedWindowLimiter } from '../../../src/api/rate-limit.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';
const PATH = '/io/otad/Daemon1';

if (!hasDbusDaemon) console.warn('SKIPPED: /usr/bin/dbus-daemon is missing; install the Debian package "dbus-daemon" (or "dbus") to run the D-Bus tests');

describe.skipIf(!hasDbusDaemon)('D-Bus service on a private bus', () => {
  let dir: string;
  let bus: PrivateBus;
  let h: Harness;
  let peer: dbus.MessageBus;
  let iface: dbus.ClientInterface;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-dbus-'));
    bus = await startPrivateBus(dir);
    h = await startHarness({
      fake: { offerVersion: '2.0.0', delayMs: { check: 100 } },
      extra: { api: { enabled: false }, dbus: { enabled: true, bus: bus.address, name: NAME } },
    });
    peer = dbus.sessionBus({ busAddress: bus.address });
    const obj = await peer.getProxyObject(NAME, PATH);
    iface = obj.getInterface(NAME);
  });
  afterAll(async () => {
    peer?.disconnect();
    await h?.close();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const state = () => h.daemon.status().products[0]?.state;

  it('introspects as io.otad.Daemon1 with the documented methods and signals', async () => {
    const obj = await peer.getProxyObject(NAME, PATH);
    expect(Object.keys(obj.interfaces)).toContain(NAME);
    for (const m of ['UpdateNow', 'Schedule3AM', 'CheckNow', 'Cancel', 'Rollback', 'GetStatus']) expect(typeof iface[m]).toBe('function');
  });

  it('answers GetStatus with the status as JSON', async () => {
    const json = (await iface.GetStatus!()) as string;
    const status = JSON.parse(json) as { deviceId: string; products: Array<{ product: string; state: string }> };
    expect(status.deviceId).toBe('robot-0001');
    expect(status.products[0]).toMatchObject({ product: 'robot-ai', state: 'idle' });
  });

  it('runs CheckNow and Schedule3AM from a second connection and emits StateChanged and UpdateAvailable signals', async () => {
    const changes: string[][] = [];
    const offers: string[][] = [];
    iface.on('StateChanged', (...args: string[]) => changes.push(args));
    iface.on('UpdateAvailable', (...args: string[]) => offers.push(args));
    const result = JSON.parse((await iface.CheckNow!('robot-ai')) as string) as { state: string; runId: string };
    expect(result.state).toBe('checking');
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    const scheduled = JSON.parse((await iface.Schedule3AM!('')) as string) as { state: string };
    expect(scheduled.state).toBe('scheduled');
    await waitFor(() => changes.length >= 3 && offers.length >= 1, 'the signals');
    expect(changes.map((c) => [c[1], c[2]])).toEqual([
      ['idle', 'checking'],
      ['checking', 'awaitingChoice'],
      ['awaitingChoice', 'scheduled'],
    ]);
    expect(changes[0]?.[0]).toBe('robot-ai');
    expect(changes[0]?.[3]).toBe(result.runId);
    expect(offers[0]).toEqual(['robot-ai', '2.0.0', expect.stringContaining('2.0.0')]);
    await iface.Cancel!('robot-ai');
    await waitFor(() => state() === 'idle', 'idle');
  });

  it('emits Progress signals with bytes and total', async () => {
    const progress: unknown[][] = [];
    iface.on('Progress', (...args: unknown[]) => progress.push(args));
    // The client's match rule reaches the bus asynchronously: publish until the signal gets through.
    const publish = () => h.daemon.bus.publish('progress', { product: 'robot-ai', runId: 'r', step: 'stage', bytes: 1500, total: 3000, rateBps: null, etaMs: null });
    publish();
    const again = setInterval(publish, 200);
    try {
      await waitFor(() => progress.length > 0, 'a Progress signal');
    } finally {
      clearInterval(again);
    }
    expect(progress[0]?.slice(0, 2)).toEqual(['robot-ai', 'stage']);
    expect(Number(progress[0]?.[2])).toBe(1500);
    expect(Number(progress[0]?.[3])).toBe(3000);
  });

  it('refuses an event not allowed now with io.otad.Daemon1.Error.API_EVENT_NOT_ALLOWED naming the state', async () => {
    const err = await iface.UpdateNow!('robot-ai').catch((e: dbus.DBusError) => e);
    expect(err).toBeInstanceOf(dbus.DBusError);
    expect((err as dbus.DBusError).type).toBe('io.otad.Daemon1.Error.API_EVENT_NOT_ALLOWED');
    expect((err as dbus.DBusError).text).toContain('state idle');
  });

  it('refuses an unknown product with io.otad.Daemon1.Error.PRODUCT_UNKNOWN', async () => {
    const err = (await iface.Rollback!('vacuum').catch((e: unknown) => e)) as dbus.DBusError;
    expect(err.type).toBe('io.otad.Daemon1.Error.PRODUCT_UNKNOWN');
  });

  it('offers no way to send any other event: an unknown method is refused by the bus library', async () => {
    const msg = new dbus.Message({ destination: NAME, path: PATH, interface: NAME, member: 'Tick', signature: 's', body: ['robot-ai'] });
    const err = (await peer.call(msg).catch((e: unknown) => e)) as dbus.DBusError;
    expect(err.type).toBe('org.freedesktop.DBus.Error.UnknownMethod');
    expect(state()).toBe('idle');
  });

  it.skipIf(!hasTool('busctl'))('is callable from busctl', async () => {
    const { stdout } = await run('busctl', [`--address=${bus.address}`, 'call', NAME, PATH, NAME, 'GetStatus']);
    expect(stdout.startsWith('s "')).toBe(true);
    expect(stdout).toContain('robot-0001');
    const check = await run('busctl', [`--address=${bus.address}`, '--json=short', 'call', NAME, PATH, NAME, 'CheckNow', 's', 'robot-ai']);
    expect(JSON.parse(JSON.parse(check.stdout).data[0]).state).toBe('checking');
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    const refused = await run('busctl', [`--address=${bus.address}`, 'call', NAME, PATH, NAME, 'CheckNow', 's', 'robot-ai']).catch((e: { stderr: string }) => e);
    expect((refused as { stderr: string }).stderr).toContain('not allowed');
  });

  it.skipIf(!hasTool('dbus-send'))('is callable from dbus-send', async () => {
    if (state() === 'idle') {
      await iface.CheckNow!('robot-ai');
      await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    }
    const { stdout } = await run('dbus-send', [`--bus=${bus.address}`, '--print-reply', `--dest=${NAME}`, PATH, `${NAME}.Cancel`, 'string:robot-ai']);
    expect(stdout).toContain('CANCEL');
    await waitFor(() => state() === 'idle', 'idle');
  });

  it.skipIf(!hasTool('gdbus'))('is callable from gdbus', async () => {
    const { stdout } = await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', PATH, '--method', `${NAME}.GetStatus`]);
    expect(stdout).toContain('robot-ai');
  });
});

describe.skipIf(!hasDbusDaemon)('D-Bus policy file deploy/dbus/io.otad.Daemon1.conf', () => {
  it('loads into a deny-by-default system bus and lets root own the name and be called', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-dbus-policy-'));
    const bus = await startPrivateBus(dir, 'system-policy');
    const h = await startHarness({ extra: { api: { enabled: false } }, interfaces: false });
    try {
      const edge = createEdge({ control: h.daemon, limiter: createFixedWindowLimiter({ windowMs: 60_000, max: 10, clock: h.clock }), audit: h.logging.audit });
      const service = await startDbusService({ control: h.daemon, edge, logger: h.logging.logger, bus: bus.address, name: NAME });
      if (process.getuid?.() === 0) {
        const peer = dbus.sessionBus({ busAddress: bus.address });
        const obj = await peer.getProxyObject(NAME, PATH);
        const json = (await obj.getInterface(NAME).GetStatus!()) as string;
        expect(JSON.parse(json).deviceId).toBe('robot-0001');
        peer.disconnect();
      }
      await service.close();
      // Another name is not granted by the policy: owning it is refused.
      const other = await startDbusService({ control: h.daemon, edge, logger: h.logging.logger, bus: bus.address, name: 'io.example.NotOtad' }).catch((e: Error) => e);
      expect(other).toBeInstanceOf(Error);
      expect((other as Error).message).toContain('io.example.NotOtad');
    } finally {
      await h.close();
      await bus.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

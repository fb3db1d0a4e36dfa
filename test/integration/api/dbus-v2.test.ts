/**
 * D-Bus API v2 (io.otad.Manager1, io.otad.Product1) on a private dbus-daemon, from a second
 * dbus-next connection, busctl and gdbus: typed properties, PropertiesChanged on every transition
 * of a real run, typed methods with named arguments, errors named io.otad.Error.<CODE>, and the
 * introspection checked into docs/dbus/*.xml compared with what the service exposes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, waitFor, type Harness } from './harness.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from './private-bus.js';
import { escapePathElement } from '../../../src/api/dbus-v2.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';
const MANAGER = '/io/otad/Daemon1';
const PRODUCT = '/io/otad/Product/robot_2dai';
const DOCS = resolve(import.meta.dirname, '../../../docs/dbus');

/** The tags of one interface in an introspection document, attributes sorted: comparable whatever the layout. */
function interfaceXml(xml: string, name: string): string[] {
  const start = xml.indexOf(`<interface name="${name}">`);
  if (start < 0) throw new Error(`no interface ${name} in the introspection`);
  const block = xml.slice(start, xml.indexOf('</interface>', start) + '</interface>'.length);
  return [...block.matchAll(/<(\/?)([\w]+)([^>]*?)(\/?)>/g)].map((m) => {
    const attrs = [...(m[3] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((a) => `${a[1]}=${a[2]}`).sort();
    return `${m[1]}${m[2]} ${attrs.join(' ')}${m[4]}`.trim();
  });
}

describe.skipIf(!hasDbusDaemon)('D-Bus API v2 on a private bus', () => {
  let dir: string;
  let bus: PrivateBus;
  let h: Harness;
  let peer: dbus.MessageBus;
  let product: dbus.ClientInterface;
  let props: dbus.ClientInterface;
  const changes: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-dbus2-'));
    bus = await startPrivateBus(dir);
    h = await startHarness({
      fake: { offerVersion: '2.0.0', delayMs: { check: 50, stage: 50, apply: 50 } },
      extra: { api: { enabled: false }, dbus: { enabled: true, bus: bus.address, name: NAME } },
    });
    peer = dbus.sessionBus({ busAddress: bus.address });
    const obj = await peer.getProxyObject(NAME, PRODUCT);
    product = obj.getInterface('io.otad.Product1');
    props = obj.getInterface('org.freedesktop.DBus.Properties');
    // Subscribe with an AddMatch we wait for, so no PropertiesChanged is missed.
    await peer.call(
      new dbus.Message({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'AddMatch',
        signature: 's',
        body: [`type='signal',path='${PRODUCT}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'`],
      }),
    );
    peer.on('message', (msg: dbus.Message) => {
      if (msg.type !== dbus.MessageType.SIGNAL || msg.path !== PRODUCT || msg.member !== 'PropertiesChanged') return;
      const [, changed] = msg.body as [string, Record<string, dbus.Variant>];
      changes.push(Object.fromEntries(Object.entries(changed).map(([k, v]) => [k, v.value])));
    });
  });
  afterAll(async () => {
    peer?.disconnect();
    await h?.close();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const state = () => h.daemon.status().products[0]?.state;

  it('escapes product names as systemd does', () => {
    expect(escapePathElement('robot-ai')).toBe('robot_2dai');
    expect(escapePathElement('a_b.c')).toBe('a_5fb_2ec');
    expect(escapePathElement('Abc9')).toBe('Abc9');
  });

  it('exposes exactly the introspection checked into docs/dbus', async () => {
    const introspect = async (path: string) => {
      const reply = await peer.call(new dbus.Message({ destination: NAME, path, interface: 'org.freedesktop.DBus.Introspectable', member: 'Introspect' }));
      return reply?.body[0] as string;
    };
    for (const [path, iface] of [
      [MANAGER, 'io.otad.Manager1'],
      [PRODUCT, 'io.otad.Product1'],
    ] as const) {
      const live = interfaceXml(await introspect(path), iface);
      const documented = interfaceXml(readFileSync(join(DOCS, `${iface}.xml`), 'utf8'), iface);
      expect(live.length).toBeGreaterThan(10);
      expect(live).toEqual(documented);
    }
    // The v1 interface is still there, beside the manager.
    expect(await introspect(MANAGER)).toContain('interface name="io.otad.Daemon1"');
  });

  it('lists the products as object paths and reads typed properties', async () => {
    const manager = (await peer.getProxyObject(NAME, MANAGER)).getInterface('io.otad.Manager1');
    expect(await manager.ListProducts!()).toEqual([PRODUCT]);
    expect(await manager.GetProduct!('robot-ai')).toBe(PRODUCT);
    expect(await manager.GetProduct!('')).toBe(PRODUCT);
    const all = (await props.GetAll!('io.otad.Product1')) as Record<string, dbus.Variant>;
    expect(Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.signature]))).toEqual({
      Name: 's',
      State: 's',
      RunId: 's',
      InstalledVersion: 's',
      OfferedVersion: 's',
      OfferedDownloadBytes: 't',
      Progress: 'd',
      ProgressStep: 's',
      LastOutcome: 's',
      LastErrorCode: 's',
      NextScheduled: 't',
      Inhibited: 'b',
      Maintenance: 'b',
      AllowedEvents: 'as',
      LastDowntime: '(sddddddst)',
      PreCheckReasons: 'a(ss)',
    });
    // No run has stopped services yet (the fake steps stop none): an empty struct, not a missing property.
    expect(all.LastDowntime?.value).toEqual(['', 0, 0, 0, 0, 0, 0, '', 0n]);
    expect(all.Name?.value).toBe('robot-ai');
    expect(all.State?.value).toBe('idle');
    expect(all.Inhibited?.value).toBe(false);
    expect(all.AllowedEvents?.value).toContain('CHECK_NOW');
    const managerProps = (await (await peer.getProxyObject(NAME, MANAGER)).getInterface('org.freedesktop.DBus.Properties').GetAll!('io.otad.Manager1')) as Record<string, dbus.Variant>;
    expect(managerProps.DeviceId?.value).toBe('robot-0001');
  });

  it('keeps its product objects through a reload that adds or removes a product (that needs a restart), and stays answering', async () => {
    const manager = (await peer.getProxyObject(NAME, MANAGER)).getInterface('io.otad.Manager1');
    const running = h.config;
    const added = { ...running, products: [...running.products, { ...running.products[0]!, name: 'robot-nav', installPath: join(dir, 'opt', 'robot-nav') }] };
    expect(h.daemon.reload(added).needsRestart).toContain('products.robot-nav');
    expect(await manager.ListProducts!()).toEqual([PRODUCT]);
    expect(((await manager.GetProduct!('robot-nav').catch((e: unknown) => e)) as dbus.DBusError).type).toBe('io.otad.Error.PRODUCT_UNKNOWN');
    expect(h.daemon.reload({ ...running, products: [] }).needsRestart).toContain('products.robot-ai');
    expect(await manager.ListProducts!()).toEqual([PRODUCT]);
    expect(((await props.Get!('io.otad.Product1', 'Name')) as dbus.Variant).value).toBe('robot-ai');
    h.daemon.reload(running);
  });

  it('refuses with errors named after the codes: io.otad.Error.API_EVENT_NOT_ALLOWED, ROLLBACK_TARGET_MISMATCH, PRODUCT_UNKNOWN', async () => {
    const err = (await product.UpdateNow!().catch((e: unknown) => e)) as dbus.DBusError;
    expect(err).toBeInstanceOf(dbus.DBusError);
    expect(err.type).toBe('io.otad.Error.API_EVENT_NOT_ALLOWED');
    expect(err.text).toContain('state idle');
    const rb = (await product.Rollback!('0.9.0', false, '').catch((e: unknown) => e)) as dbus.DBusError;
    expect(rb.type).toBe('io.otad.Error.ROLLBACK_TARGET_MISMATCH');
    const manager = (await peer.getProxyObject(NAME, MANAGER)).getInterface('io.otad.Manager1');
    const unknown = (await manager.GetProduct!('vacuum').catch((e: unknown) => e)) as dbus.DBusError;
    expect(unknown.type).toBe('io.otad.Error.PRODUCT_UNKNOWN');
    expect(state()).toBe('idle');
  });

  it('emits PropertiesChanged with State for every transition of a real run, and the transition and outcome signals', async () => {
    const transitions: string[] = [];
    const off = h.daemon.bus.subscribe('transition', (t) => void transitions.push(t.to));
    const signals: unknown[][] = [];
    product.on('StateChanged', (...a: unknown[]) => signals.push(['StateChanged', ...a]));
    product.on('RunFinished', (...a: unknown[]) => signals.push(['RunFinished', ...a]));
    changes.length = 0;
    try {
      const [st, runId] = (await product.CheckNow!()) as [string, string];
      expect(st).toBe('checking');
      expect(runId).not.toBe('');
      await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
      const [st2] = (await product.UpdateNow!()) as [string, string];
      expect(st2).not.toBe('awaitingChoice');
      await waitFor(() => state() === 'idle' && h.daemon.status().products[0]?.installedVersion === '2.0.0', 'the install');
      await waitFor(() => changes.filter((c) => 'State' in c).length >= transitions.length && changes.some((c) => c.InstalledVersion === '2.0.0'), 'every PropertiesChanged');
      expect(transitions.length).toBeGreaterThanOrEqual(6);
      expect(changes.filter((c) => 'State' in c).map((c) => c.State)).toEqual(transitions);
      // Maintenance is true while the services are switched, false again at the end.
      const maint = changes.filter((c) => 'Maintenance' in c).map((c) => c.Maintenance);
      expect(maint[0]).toBe(true);
      expect(maint.at(-1)).toBe(false);
      expect(changes.some((c) => c.LastOutcome === 'committed')).toBe(true);
      await waitFor(() => signals.some((s) => s[0] === 'RunFinished'), 'RunFinished');
      expect(signals.find((s) => s[0] === 'RunFinished')).toEqual(['RunFinished', runId, 'committed', '2.0.0', '']);
      expect(signals.filter((s) => s[0] === 'StateChanged').map((s) => s[2])).toEqual(transitions);
    } finally {
      off();
    }
    expect(await props.Get!('io.otad.Product1', 'InstalledVersion')).toMatchObject({ value: '2.0.0' });
  });

  it.skipIf(!hasTool('busctl'))('is readable and callable from busctl', async () => {
    const got = await run('busctl', [`--address=${bus.address}`, 'get-property', NAME, PRODUCT, 'io.otad.Product1', 'State', 'InstalledVersion', 'Inhibited']);
    expect(got.stdout.trim().split('\n')).toEqual(['s "idle"', 's "2.0.0"', 'b false']);
    const check = await run('busctl', [`--address=${bus.address}`, '--json=short', 'call', NAME, PRODUCT, 'io.otad.Product1', 'CheckNow']);
    const reply = JSON.parse(check.stdout) as { type: string; data: string[] };
    expect(reply.type).toBe('ss');
    expect(reply.data[0]).toBe('checking');
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    const refused = (await run('busctl', [`--address=${bus.address}`, 'call', NAME, PRODUCT, 'io.otad.Product1', 'CheckNow']).catch((e: unknown) => e)) as { stderr: string };
    expect(refused.stderr).toContain('not allowed');
    await run('busctl', [`--address=${bus.address}`, 'call', NAME, PRODUCT, 'io.otad.Product1', 'Cancel']);
    await waitFor(() => state() === 'idle', 'idle');
  });

  it.skipIf(!hasTool('gdbus'))('shows named arguments and named errors in gdbus', async () => {
    const intro = await run('gdbus', ['introspect', '--address', bus.address, '--dest', NAME, '--object-path', PRODUCT]);
    expect(intro.stdout).toContain('Rollback(in  s version,');
    expect(intro.stdout).toContain('in  b mark_bad');
    expect(intro.stdout).toContain('out s run_id');
    expect(intro.stdout).toContain('readonly t NextScheduled');
    const m = await run('gdbus', ['introspect', '--address', bus.address, '--dest', NAME, '--object-path', MANAGER]);
    expect(m.stdout).toContain('Inhibit(in  s who,');
    expect(m.stdout).toContain('out h fd');
    const prop = await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', PRODUCT, '--method', 'org.freedesktop.DBus.Properties.Get', 'io.otad.Product1', 'State']);
    expect(prop.stdout.trim()).toBe("(<'idle'>,)");
    const refused = (await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', PRODUCT, '--method', 'io.otad.Product1.Confirm']).catch((e: unknown) => e)) as { stderr: string };
    expect(refused.stderr).toContain('io.otad.Error.API_EVENT_NOT_ALLOWED');
  });
});

describe('D-Bus activation', () => {
  it('the activation file names the bus name and otad.service, and the unit declares BusName=', () => {
    const root = resolve(import.meta.dirname, '../../..');
    const activation = readFileSync(join(root, 'deploy/dbus/io.otad.Daemon1.service'), 'utf8');
    expect(activation).toMatch(/^\[D-BUS Service\]$/m);
    expect(activation).toMatch(/^Name=io\.otad\.Daemon1$/m);
    expect(activation).toMatch(/^SystemdService=otad\.service$/m);
    const unit = readFileSync(join(root, 'deploy/systemd/otad.service'), 'utf8');
    expect(unit).toMatch(/^BusName=io\.otad\.Daemon1$/m);
  });
});

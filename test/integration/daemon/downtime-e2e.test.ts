/**
 * Downtime end to end: the demo product under a real otad process (the built CLI) and an embedded
 * ota-server with a real SQLite fleet store. A full update and a rollback show their downtime in
 * status, the history API, `otactl history` and `otactl status`, /metrics, and the device's
 * check-in as the fleet server stored it, and LastDowntime on otad's D-Bus product object (a private
 * dbus-daemon) with its PropertiesChanged. No wall-clock figure is asserted: that the figures
 * exist, add up, and are the same everywhere.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, startDowntimeWorld, waitFor, type DowntimeWorld } from '../../../src/bench/downtime-world.js';
import type { Downtime } from '../../../src/store/downtime.js';
import { hasDbusDaemon, startPrivateBus, type PrivateBus } from '../api/private-bus.js';

const execFileP = promisify(execFile);
const BUS_NAME = 'io.otad.Daemon1';
const PRODUCT_PATH = '/io/otad/Product/robot_2dai';
let w: DowntimeWorld;
let busDir: string;
let bus: PrivateBus | null = null;
let peer: dbus.MessageBus | null = null;
let dbusProps: dbus.ClientInterface | null = null;
/** Every LastDowntime the product object announced in PropertiesChanged. */
const announced: unknown[][] = [];

beforeAll(async () => {
  busDir = mkdtempSync(join(tmpdir(), 'otad-downtime-bus-'));
  if (hasDbusDaemon) bus = await startPrivateBus(busDir);
  w = await startDowntimeWorld({ probation: { window: '2s', interval: '200ms', failureThreshold: 2 }, ...(bus ? { dbus: { bus: bus.address, name: BUS_NAME } } : {}) });
  if (bus) {
    peer = dbus.sessionBus({ busAddress: bus.address });
    dbusProps = (await peer.getProxyObject(BUS_NAME, PRODUCT_PATH)).getInterface('org.freedesktop.DBus.Properties');
    dbusProps.on('PropertiesChanged', (_iface: string, changed: Record<string, dbus.Variant>) => {
      if (changed.LastDowntime) announced.push(changed.LastDowntime.value as unknown[]);
    });
  }
}, 120_000);
afterAll(async () => {
  peer?.disconnect();
  await w?.close();
  await bus?.stop();
  rmSync(busDir, { recursive: true, force: true });
});

/** The D-Bus LastDowntime struct the status's downtime must show as. */
const structOf = (d: Downtime & { runId: string }) => [d.runId, d.totalMs, d.stopMs, d.switchMs, d.startMs, d.probeMs, d.otadMs, d.greenOn, BigInt(d.greenAt!) * 1000n];

async function expectOnDbus(d: Downtime & { runId: string }): Promise<void> {
  if (!dbusProps) return;
  expect(((await dbusProps.Get!('io.otad.Product1', 'LastDowntime')) as dbus.Variant).value).toEqual(structOf(d));
  await waitFor('PropertiesChanged with the LastDowntime', async () => announced.some((a) => a[0] === d.runId), 30_000);
  expect(announced.find((a) => a[0] === d.runId)).toEqual(structOf(d));
}

async function otactl(...args: string[]): Promise<string> {
  const { stdout } = await execFileP(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), ...args], { env: { ...process.env, OTA_CONFIG: w.configPath }, timeout: 60_000 });
  return stdout;
}

function expectMeasured(d: Downtime | null | undefined, on: 'new' | 'old'): asserts d is Downtime {
  expect(d).toBeTruthy();
  const x = d as Downtime;
  expect(x).toMatchObject({ greenOn: on, open: null, note: null, clock: 'monotonic', acrossRestart: false });
  expect(x.totalMs).toBeGreaterThan(0);
  expect(x.stopMs + x.switchMs + x.startMs + x.probeMs).toBeCloseTo(x.totalMs as number, 1);
  expect(x.otadMs).toBeCloseTo((x.totalMs as number) - x.waitMs, 1);
  expect(x.greenAt as number).toBeGreaterThanOrEqual(x.stoppedAt);
}

interface DeviceList {
  devices: Array<{ id: string; products: Array<{ product: string; runId: string | null; downtime: (Downtime & { runId: string }) | null }> }>;
}

describe('downtime through a real otad', () => {
  it('a committed update: status, history API, otactl, metrics and the stored check-in all carry the same downtime', async () => {
    await w.publish('1.1.0');
    const s = await w.update('1.1.0');
    expect(s).toMatchObject({ lastOutcome: 'committed', installedVersion: '1.1.0' });
    expect((await w.health())?.version).toBe('1.1.0');
    const d = s.lastDowntime;
    expectMeasured(d, 'new');
    expect(d).toMatchObject({ runId: s.runId });

    const h = await w.history();
    const run = h.runs.find((r) => r.runId === s.runId)!;
    expect(run.downtime).toEqual(Object.fromEntries(Object.entries(d).filter(([k]) => k !== 'runId')));
    expect(h.downtime).toMatchObject({ count: 1, lastMs: d.totalMs, medianMs: d.totalMs, maxMs: d.totalMs });

    const ms = (v: number) => (v < 10 ? v.toFixed(1) : String(Math.round(v)));
    const history = await otactl('history');
    expect(history).toContain(`${s.runId}  robot-ai  update`);
    expect(history).toContain(`downtime ${ms(d.totalMs!)} ms (stop ${Math.round(d.stopMs)}, switch ${Math.round(d.switchMs)}, start ${Math.round(d.startMs)}, probe ${Math.round(d.probeMs)}; otad ${ms(d.otadMs!)} ms)`);
    expect(history).toContain(`downtime over 1 measured run: last ${ms(d.totalMs!)} ms`);
    expect(await otactl('status')).toContain(`downtime of run ${s.runId}: ${ms(d.totalMs!)} ms`);

    const metrics = await (await fetch(`${w.apiUrl}/metrics`, { headers: { authorization: `Bearer ${'downtime-control-token-0123456789abcdef'}` } })).text();
    const gauge = (part: string) => Number(new RegExp(`otad_last_downtime_seconds\\{product="robot-ai",part="${part}",green_on="new"\\} (\\S+)`).exec(metrics)?.[1]);
    expect(gauge('total')).toBeCloseTo(d.totalMs! / 1000, 5);
    expect(gauge('otad')).toBeCloseTo(d.otadMs! / 1000, 5);
    for (const part of ['stop', 'switch', 'start', 'probe', 'wait']) expect(Number.isFinite(gauge(part))).toBe(true);
    expect(metrics).toMatch(/otad_downtime_seconds_count\{product="robot-ai",part="total",outcome="committed"\} 1/);
    await expectOnDbus(d);

    // The check-in after the run carries it; the fleet server stored it for the device.
    const stored = await waitFor('the check-in with the downtime', async () => {
      const list = await w.operator<DeviceList>('/api/v1/devices');
      return list.devices[0]?.products.find((p) => p.downtime?.runId === s.runId)?.downtime ?? null;
    }, 60_000);
    expect(stored).toEqual({ runId: s.runId, totalMs: d.totalMs, stopMs: d.stopMs, switchMs: d.switchMs, startMs: d.startMs, probeMs: d.probeMs, otadMs: d.otadMs, greenOn: 'new', acrossRestart: false, greenAt: d.greenAt });
  }, 240_000);

  it('a rollback records the downtime until the old release is green again', async () => {
    await w.publish('1.2.0', { broken: true });
    const s = await w.update('1.2.0');
    expect(s).toMatchObject({ lastOutcome: 'rolled-back', installedVersion: '1.1.0' });
    await waitFor('robot-ai 1.1.0 to answer', async () => (await w.health())?.version === '1.1.0', 30_000);
    const d = s.lastDowntime;
    expectMeasured(d, 'old');
    // The failing release's probation before the rollback is the product's, not otad's.
    expect(d.waitMs).toBeGreaterThan(0);
    const h = await w.history();
    expect(h.runs.find((r) => r.runId === s.runId)?.downtime).toMatchObject({ totalMs: d.totalMs, greenOn: 'old' });
    expect(h.downtime.count).toBe(2);
    await expectOnDbus(d);
    expect(await otactl('history')).toMatch(new RegExp(`${s.runId}  robot-ai  update .* rolled-back  HEALTH_CHECK_FAILED  downtime [\\d.]+ ms \\(stop \\d+, switch \\d+, start \\d+, probe \\d+; otad [\\d.]+ ms; green on the old release\\)`));
    const stored = await waitFor('the check-in with the rollback downtime', async () => {
      const list = await w.operator<DeviceList>('/api/v1/devices');
      return list.devices[0]?.products.find((p) => p.downtime?.runId === s.runId)?.downtime ?? null;
    }, 60_000);
    expect(stored).toMatchObject({ greenOn: 'old', totalMs: d.totalMs });
  }, 240_000);
});

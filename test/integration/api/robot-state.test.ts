/**
 * The robot-state gates end to end: a real otad process whose robotState sources are stand-ins for
 * UPower and systemd-timedated on a private dbus-daemon (test/support/robot-services.ts), and the
 * app's reports over REST. Each of a missing source, on battery, a contradiction (UPower on battery,
 * the app says docked), a low battery, a stale UPower reading, an unsynchronised clock and a
 * stale app report keeps the install in preCheckWaiting with its reason, shown on REST, in
 * `otactl status` and on D-Bus (Product1 PreCheckReasons); once every condition clears, the update
 * proceeds and commits.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, bearer } from './harness.js';
import { hasDbusDaemon, startPrivateBus, type PrivateBus } from './private-bus.js';
import { startRealOtad, type RealOtad } from './real-otad.js';
import { REPO_ROOT } from '../../support/otad-process.js';
import { startFakeTimedated, startFakeUPower, type FakeTimedated, type FakeUPower, type PowerState } from '../../support/robot-services.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';
const PRODUCT = '/io/otad/Product/robot_2dai';
const CHARGING = 1;
const DISCHARGING = 2;

interface Reason {
  code: string;
  message: string;
}
interface ProductStatus {
  state: string;
  preCheckReasons: Reason[];
  lastOutcome: string | null;
  installedVersion: string | null;
}

async function poll<T>(probe: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!hasDbusDaemon)('robot-state gates with stand-in UPower and timedated on a private bus', () => {
  let dir: string;
  let bus: PrivateBus;
  let otad: RealOtad;
  let peer: dbus.MessageBus;
  let props: dbus.ClientInterface;
  let product: dbus.ClientInterface;
  let upower: FakeUPower | null = null;
  let timedated: FakeTimedated | null = null;
  // The app: reports `docked` every 500 ms while set, as a robot's app would; null: silent.
  let appDocked: boolean | null = null;
  let appTimer: NodeJS.Timeout | undefined;

  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${otad.url}${path}`, { method, headers: { ...bearer(CONTROL_TOKEN), 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    const json = (await r.json()) as Record<string, unknown>;
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  const status = async () => ((await api('GET', '/api/v1/status')) as unknown as { products: ProductStatus[] }).products[0]!;
  const report = () => (appDocked === null ? Promise.resolve() : api('POST', '/api/v1/robot-state', { docked: appDocked }).then(() => {}));
  const dbusReasons = async () => ((await props.Get!('io.otad.Product1', 'PreCheckReasons')) as dbus.Variant<Array<[string, string]>>).value;
  const otactlStatus = async () =>
    (await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/otactl.ts'), '--config', otad.sandbox.configPath, 'status'], { cwd: REPO_ROOT, env: { ...process.env, OTA_TOKEN_FILE: otad.tokensFile } })).stdout;
  const sorted = (codes: string[]) => [...codes].sort();

  /** Wait until the pre-check waits with exactly `codes` (any order) on REST, then check D-Bus and otactl show them. */
  async function expectBlocked(codes: string[]): Promise<Reason[]> {
    const want = sorted(codes);
    const p = await poll(async () => {
      const s = await status();
      return s.state === 'preCheckWaiting' && JSON.stringify(sorted(s.preCheckReasons.map((r) => r.code))) === JSON.stringify(want) && s;
    }, `preCheckWaiting with ${want.join(', ')}`);
    // The pre-check re-runs every second with the same readings: D-Bus and otactl catch the same reasons.
    await poll(async () => JSON.stringify(sorted((await dbusReasons()).map(([c]) => c))) === JSON.stringify(want), `D-Bus PreCheckReasons ${want.join(', ')}`);
    const out = await poll(async () => {
      const text = await otactlStatus();
      return want.every((c) => text.includes(`${c}: `)) && text;
    }, `otactl status to show ${want.join(', ')}`);
    expect(out).toMatch(/robot-ai/);
    expect(await otad.proc.alive()).toBe(true);
    return p.preCheckReasons;
  }

  const power = (s: Partial<PowerState>): PowerState => ({ pluggedIn: true, percentage: 80, state: CHARGING, ...s });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-robot-state-'));
    bus = await startPrivateBus(dir);
    otad = await startRealOtad({
      fake: { offerVersion: '2.0.0' },
      extra: {
        dbus: { enabled: true, bus: bus.address, name: NAME },
        products: [{ name: 'robot-ai', installPath: join(dir, 'opt', 'robot-ai'), precheck: { retryInterval: '1s' } }],
        robotState: {
          upower: { bus: bus.address, timeout: '3s' },
          timedated: { bus: bus.address, timeout: '3s' },
          gates: {
            docked: { sources: ['upower', 'app'], maxAge: '4s' },
            charging: { sources: ['upower'], maxAge: '10m' },
            battery: { sources: ['upower'], maxAge: '10m', minPercent: 40, trend: 'not-falling' },
            clock: { sources: ['timedated'], maxAge: '1m' },
          },
        },
      },
    });
    peer = dbus.sessionBus({ busAddress: bus.address });
    const obj = await poll(() => peer.getProxyObject(NAME, PRODUCT), 'otad on the private bus');
    product = obj.getInterface('io.otad.Product1');
    props = obj.getInterface('org.freedesktop.DBus.Properties');
    appTimer = setInterval(() => void report().catch(() => {}), 500);
  }, 90_000);

  afterAll(async () => {
    clearInterval(appTimer);
    peer?.disconnect();
    await upower?.stop();
    await timedated?.stop();
    await otad?.stop();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('blocks with ROBOT_STATE_MISSING while UPower and timedated are not on the bus and the app has not reported', async () => {
    await product.CheckNow!();
    await poll(async () => (await status()).state === 'awaitingChoice', 'awaitingChoice');
    await product.UpdateNow!();
    const reasons = await expectBlocked(['ROBOT_STATE_MISSING', 'ROBOT_STATE_MISSING', 'ROBOT_STATE_MISSING', 'ROBOT_STATE_MISSING', 'ROBOT_STATE_MISSING']);
    const text = reasons.map((r) => r.message).join('\n');
    expect(text).toContain('docked gate: no reading from UPower: UPower could not be read (org.freedesktop.DBus.Error.ServiceUnknown');
    expect(text).toContain('docked gate: no reading from the app: the app has not reported docked since otad started');
    expect(text).toContain('clock gate: no reading from timedated: timedated could not be read (org.freedesktop.DBus.Error.ServiceUnknown');
  });

  it('on battery: NOT_DOCKED, NOT_CHARGING and BATTERY_DRAINING', async () => {
    upower = await startFakeUPower(bus.address, power({ pluggedIn: false, state: DISCHARGING }));
    timedated = await startFakeTimedated(bus.address, true);
    appDocked = false;
    await report();
    const reasons = await expectBlocked(['NOT_DOCKED', 'NOT_CHARGING', 'BATTERY_DRAINING']);
    expect(reasons.find((r) => r.code === 'NOT_DOCKED')!.message).toContain('OnBattery=true, line_power_AC Online=false');
    expect(reasons.find((r) => r.code === 'NOT_CHARGING')!.message).toContain('State=2 (discharging)');
  });

  it('UPower on battery while the app says docked: ROBOT_STATE_CONFLICT', async () => {
    appDocked = true;
    await report();
    const reasons = await expectBlocked(['ROBOT_STATE_CONFLICT', 'NOT_CHARGING', 'BATTERY_DRAINING']);
    expect(reasons.find((r) => r.code === 'ROBOT_STATE_CONFLICT')!.message).toMatch(/^docked gate: UPower says not docked \(OnBattery=true.*\) but the app says docked \(reported by /);
    // The last evaluation in the status names both readings.
    const rs = (await api('GET', '/api/v1/status')).robotState as { lastCheck: { verdicts: Array<{ gate: string; readings: Array<{ source: string; value?: unknown }> }> } };
    expect(rs.lastCheck.verdicts.find((v) => v.gate === 'docked')!.readings.map((r) => [r.source, r.value])).toEqual([
      ['upower', false],
      ['app', true],
    ]);
  });

  it('plugged in and charging at 20%: BATTERY_LOW', async () => {
    upower!.set(power({ percentage: 20 }));
    const reasons = await expectBlocked(['BATTERY_LOW']);
    expect(reasons[0]!.message).toContain('battery at 20% (UPower), below the minimum of 40%');
  });

  it('a UPower reading whose UpdateTime is older than maxAge: ROBOT_STATE_STALE', async () => {
    upower!.set(power({ updateTime: Math.floor(Date.now() / 1000) - 2 * 3600 }));
    const reasons = await expectBlocked(['ROBOT_STATE_STALE', 'ROBOT_STATE_STALE']);
    expect(reasons.map((r) => r.message.split(':')[0])).toEqual(['charging gate', 'battery gate']);
    expect(reasons[0]!.message).toMatch(/the reading from UPower .* is 120 min old, older than robotState\.gates\.charging\.maxAge 10 min/);
  });

  it('timedated NTPSynchronized=false: CLOCK_NOT_SYNCED', async () => {
    upower!.set(power({}));
    timedated!.setSynchronized(false);
    const reasons = await expectBlocked(['CLOCK_NOT_SYNCED']);
    expect(reasons[0]!.message).toContain('timedated NTPSynchronized=false');
  });

  it('an app report older than maxAge: ROBOT_STATE_STALE', async () => {
    appDocked = null;
    const reasons = await expectBlocked(['ROBOT_STATE_STALE', 'CLOCK_NOT_SYNCED']);
    expect(reasons.find((r) => r.code === 'ROBOT_STATE_STALE')!.message).toMatch(/^docked gate: the reading from the app \(docked, reported by .*\) is \d+ s old, older than robotState\.gates\.docked\.maxAge 4 s$/);
  });

  it('once every condition clears, the update proceeds and commits', async () => {
    appDocked = true;
    await report();
    timedated!.setSynchronized(true);
    const s = await poll(async () => {
      const p = await status();
      return p.lastOutcome === 'committed' && p;
    }, 'the run to commit');
    expect(s).toMatchObject({ state: 'idle', installedVersion: '2.0.0', preCheckReasons: [] });
    expect(await dbusReasons()).toEqual([]);
    expect(await otactlStatus()).not.toContain('waiting:');
  });
});

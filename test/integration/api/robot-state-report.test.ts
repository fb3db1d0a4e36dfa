/**
 * The app's robot-state report on all three interfaces, and the `command` and `app` sources end to
 * end, with a real otad process on a private dbus-daemon.
 *
 * - D-Bus io.otad.Manager1.ReportRobotState(a{sv}) from dbus-next, busctl and gdbus, and the
 *   Socket.IO `robot-state` message, go through the same edge as REST POST /api/v1/robot-state: the
 *   same fields, the same validation (a key of the wrong type, an unknown key, an empty report or a
 *   value out of range is io.otad.Error.API_INVALID_REQUEST / API_INVALID_REQUEST, and nothing is
 *   taken), the read scope refused on Socket.IO (API_FORBIDDEN).
 * - `docked` and `battery` come from a real script (the command source) whose output the test
 *   changes between runs; `stationary` comes from the app. Each blocks with its reason (NOT_DOCKED,
 *   BATTERY_LOW, BATTERY_DRAINING, ROBOT_STATE_MISSING, ROBOT_MOVING), an app report older than
 *   its maxAge blocks with ROBOT_STATE_STALE, and once the script says docked and charging and the
 *   app keeps saying stationary, the install goes through and commits.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { io as connect, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, READ_TOKEN, bearer } from './harness.js';
import { assertMatchesDocument } from './openapi-check.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from './private-bus.js';
import { startRealOtad, type RealOtad } from './real-otad.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';
const MANAGER = '/io/otad/Daemon1';
const Variant = dbus.Variant;

interface Reason {
  code: string;
  message: string;
}
interface Stamped {
  value: unknown;
  at: number;
  by: string;
}
interface Status {
  products: Array<{ state: string; preCheckReasons: Reason[]; lastOutcome: string | null; installedVersion: string | null }>;
  robotState: { reports: Record<string, Stamped>; lastCheck: { verdicts: Array<{ gate: string; readings: Array<{ source: string; value?: unknown; detail?: string }> }> } | null };
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

/** The script of the command source: docked by exit code, the battery by what it prints; it logs every run. */
const GATE_SCRIPT = `#!/bin/sh
dir=$(dirname "$0")
echo "$OTA_GATE $OTA_PRODUCT $OTA_RUN_ID" >> "$dir/runs.log"
case "$OTA_GATE" in
  docked)
    if [ "$(cat "$dir/docked")" = yes ]; then echo "on the dock, contacts closed"; exit 0; fi
    echo "off the dock"; exit 1 ;;
  battery) cat "$dir/battery" ;;
  *) echo "unexpected gate $OTA_GATE"; exit 2 ;;
esac
`;

describe.skipIf(!hasDbusDaemon)('robot-state reports over D-Bus, Socket.IO and REST; the command and app sources with a real otad', () => {
  let dir: string;
  let bus: PrivateBus;
  let otad: RealOtad;
  let peer: dbus.MessageBus;
  let manager: dbus.ClientInterface;
  let socket: Socket;
  let readSocket: Socket;
  let reporter: NodeJS.Timeout | undefined;

  const api = async <T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${otad.url}${path}`, { method, headers: { ...bearer(CONTROL_TOKEN), 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    const json = (await r.json()) as T;
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
    return json;
  };
  const status = () => api<Status>('GET', '/api/v1/status');
  const reports = async () => (await status()).robotState.reports;
  const dbusError = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e as dbus.DBusError);
  const setScript = (docked: 'yes' | 'no', battery: string) => {
    writeFileSync(join(dir, 'gates', 'docked'), `${docked}\n`);
    writeFileSync(join(dir, 'gates', 'battery'), `${battery}\n`);
  };
  const scriptRuns = () => readFileSync(join(dir, 'gates', 'runs.log'), 'utf8').trim().split('\n');
  const openSocket = async (token: string) => {
    const s = connect(otad.url, { path: '/socket.io', auth: { token, topics: ['notification'] }, transports: ['websocket'] });
    await new Promise<void>((res, rej) => {
      s.once('connect', () => res());
      s.once('connect_error', rej);
    });
    return s;
  };

  /** Wait until the install's pre-check waits with exactly `codes`, in this order. */
  async function expectBlocked(codes: string[]): Promise<Reason[]> {
    const p = await poll(async () => {
      const s = (await status()).products[0]!;
      return s.state === 'preCheckWaiting' && JSON.stringify(s.preCheckReasons.map((r) => r.code)) === JSON.stringify(codes) && s;
    }, `preCheckWaiting with ${codes.join(', ')}`);
    expect(await otad.proc.alive()).toBe(true);
    return p.preCheckReasons;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-robot-report-'));
    bus = await startPrivateBus(dir);
    const gates = join(dir, 'gates');
    mkdirSync(gates);
    const script = join(gates, 'robot-gate.sh');
    writeFileSync(script, GATE_SCRIPT);
    chmodSync(script, 0o755);
    writeFileSync(join(gates, 'runs.log'), '');
    setScript('no', '30% discharging');
    otad = await startRealOtad({
      fake: { offerVersion: '2.0.0' },
      extra: {
        dbus: { enabled: true, bus: bus.address, name: NAME },
        products: [{ name: 'robot-ai', installPath: join(dir, 'opt', 'robot-ai'), precheck: { retryInterval: '1s' } }],
        robotState: {
          gates: {
            docked: { sources: ['command'], command: [script], maxAge: '1m', timeout: '10s' },
            battery: { sources: ['command'], command: [script], maxAge: '1m', minPercent: 40, trend: 'not-falling' },
            stationary: { sources: ['app'], maxAge: '4s' },
          },
        },
      },
    });
    peer = dbus.sessionBus({ busAddress: bus.address });
    manager = (await poll(() => peer.getProxyObject(NAME, MANAGER), 'otad on the private bus')).getInterface('io.otad.Manager1');
    socket = await openSocket(CONTROL_TOKEN);
    readSocket = await openSocket(READ_TOKEN);
  }, 90_000);

  afterAll(async () => {
    clearInterval(reporter);
    socket?.close();
    readSocket?.close();
    peer?.disconnect();
    await otad?.stop();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  describe('the command and app sources block with their reasons, then allow the install', () => {
    it('blocks with NOT_DOCKED, BATTERY_LOW, BATTERY_DRAINING from the script and ROBOT_STATE_MISSING while the app has not reported', async () => {
      await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
      await poll(async () => (await status()).products[0]!.state === 'awaitingChoice', 'awaitingChoice');
      await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'UPDATE_NOW' });
      const reasons = await expectBlocked(['NOT_DOCKED', 'BATTERY_LOW', 'BATTERY_DRAINING', 'ROBOT_STATE_MISSING']);
      const script = join(dir, 'gates', 'robot-gate.sh');
      expect(reasons[0]!.message).toBe(`the robot is not docked (the check command: ${script} exited 1: off the dock) and robotState.gates.docked requires it`);
      expect(reasons[1]!.message).toBe('battery at 30% (the check command), below the minimum of 40% (robotState.gates.battery.minPercent)');
      expect(reasons[2]!.message).toBe('the battery is discharging (the check command) and robotState.gates.battery.trend is not-falling');
      expect(reasons[3]!.message).toBe('stationary gate: no reading from the app: the app has not reported stationary since otad started');
      // The script really ran, once per gate and pre-check, with the product and run in its environment.
      const runs = scriptRuns();
      expect(runs.filter((l) => l.startsWith('docked robot-ai ')).length).toBeGreaterThanOrEqual(1);
      expect(runs.filter((l) => l.startsWith('battery robot-ai ')).length).toBeGreaterThanOrEqual(1);
    });

    it('the app says it is moving (D-Bus ReportRobotState): ROBOT_MOVING', async () => {
      const report = () => manager.ReportRobotState!({ stationary: new Variant('b', false) });
      await report();
      reporter = setInterval(() => void report().catch(() => {}), 500);
      const reasons = await expectBlocked(['NOT_DOCKED', 'BATTERY_LOW', 'BATTERY_DRAINING', 'ROBOT_MOVING']);
      expect(reasons[3]!.message).toMatch(/^the robot is moving \(the app: reported by dbus \(dbus\) at \S+\) and robotState\.gates\.stationary requires it to stand still$/);
    });

    it('the app falls silent: its last report grows older than maxAge and blocks with ROBOT_STATE_STALE', async () => {
      clearInterval(reporter);
      const reasons = await expectBlocked(['NOT_DOCKED', 'BATTERY_LOW', 'BATTERY_DRAINING', 'ROBOT_STATE_STALE']);
      expect(reasons[3]!.message).toMatch(/^stationary gate: the reading from the app \(moving, reported by dbus \(dbus\) at \S+\) is \d+ s old, older than robotState\.gates\.stationary\.maxAge 4 s$/);
    });

    it('the script now says docked and charging at 85%: only the stale app report blocks', async () => {
      const before = scriptRuns().length;
      setScript('yes', '85% charging');
      await expectBlocked(['ROBOT_STATE_STALE']);
      expect(scriptRuns().length).toBeGreaterThan(before);
      const verdicts = (await status()).robotState.lastCheck!.verdicts;
      const script = join(dir, 'gates', 'robot-gate.sh');
      expect(verdicts.find((v) => v.gate === 'docked')!.readings).toEqual([expect.objectContaining({ source: 'command', value: true, detail: `${script} exited 0: on the dock, contacts closed` })]);
      expect(verdicts.find((v) => v.gate === 'battery')!.readings).toEqual([expect.objectContaining({ source: 'command', value: { percent: 85, trend: 'rising' }, detail: `${script} printed "85% charging"` })]);
    });

    it('the app keeps saying stationary (Socket.IO): the install goes through and commits', async () => {
      const report = () => socket.timeout(10_000).emitWithAck('robot-state', { stationary: true });
      expect(await report()).toMatchObject({ ok: true, result: { accepted: ['stationary'] } });
      reporter = setInterval(() => void report().catch(() => {}), 500);
      const s = await poll(async () => {
        const p = (await status()).products[0]!;
        return p.lastOutcome === 'committed' && p;
      }, 'the run to commit', 60_000);
      clearInterval(reporter);
      expect(s).toMatchObject({ state: 'idle', installedVersion: '2.0.0', preCheckReasons: [] });
      expect((await reports()).stationary).toMatchObject({ value: true, by: 'robot-ai (socket)' });
    });
  });

  describe('the report on each interface, through the one edge', () => {
    it('D-Bus from dbus-next: typed fields accepted and stamped; wrong types, unknown keys, out of range and empty refused with io.otad.Error.API_INVALID_REQUEST, nothing taken', async () => {
      const before = Date.now();
      const [accepted, at] = (await manager.ReportRobotState!({ docked: new Variant('b', true), batteryPercent: new Variant('d', 55.5), batteryTrend: new Variant('s', 'steady') })) as [string[], bigint];
      expect(accepted).toEqual(['docked', 'batteryPercent', 'batteryTrend']);
      const atMs = Number(at / 1000n);
      expect(atMs).toBeGreaterThanOrEqual(before - 1000);
      const r = await reports();
      expect(r.docked).toEqual({ value: true, at: atMs, by: 'dbus (dbus)' });
      expect(r.batteryPercent).toMatchObject({ value: 55.5, at: atMs });
      expect(r.batteryTrend).toMatchObject({ value: 'steady', at: atMs });
      // An integer type for the percentage is taken as the number.
      await manager.ReportRobotState!({ batteryPercent: new Variant('u', 61) });
      expect((await reports()).batteryPercent).toMatchObject({ value: 61 });

      const wrongType = await dbusError(manager.ReportRobotState!({ docked: new Variant('s', 'yes'), stationary: new Variant('b', true) }));
      expect(wrongType?.type).toBe('io.otad.Error.API_INVALID_REQUEST');
      expect(wrongType?.text).toBe('robot state: docked must be a variant of type b (boolean), not s');
      const unknown = await dbusError(manager.ReportRobotState!({ speed: new Variant('d', 1.2) }));
      expect(unknown?.type).toBe('io.otad.Error.API_INVALID_REQUEST');
      expect(unknown?.text).toContain('speed');
      const range = await dbusError(manager.ReportRobotState!({ batteryPercent: new Variant('d', 150) }));
      expect(range?.type).toBe('io.otad.Error.API_INVALID_REQUEST');
      expect(range?.text).toContain('batteryPercent');
      const trend = await dbusError(manager.ReportRobotState!({ batteryTrend: new Variant('s', 'sideways') }));
      expect(trend?.type).toBe('io.otad.Error.API_INVALID_REQUEST');
      const empty = await dbusError(manager.ReportRobotState!({}));
      expect(empty?.type).toBe('io.otad.Error.API_INVALID_REQUEST');
      expect(empty?.text).toContain('report at least one of docked, charging, batteryPercent, batteryTrend, stationary');
      // None of the refused reports changed anything (stationary was in the refused wrong-type one).
      const after = await reports();
      expect(after.docked).toEqual(r.docked);
      expect(after.stationary?.by).toBe('robot-ai (socket)');
      expect(after.batteryPercent).toMatchObject({ value: 61 });
    });

    it.skipIf(!hasTool('busctl'))('D-Bus from busctl: typed a{sv}, named error', async () => {
      const got = await run('busctl', [`--address=${bus.address}`, 'call', NAME, MANAGER, 'io.otad.Manager1', 'ReportRobotState', 'a{sv}', '2', 'charging', 'b', 'true', 'batteryPercent', 'd', '77']);
      expect(got.stdout.trim()).toMatch(/^ast 2 "charging" "batteryPercent" \d+$/);
      expect((await reports()).charging).toMatchObject({ value: true, by: 'dbus (dbus)' });
      expect((await reports()).batteryPercent).toMatchObject({ value: 77 });
      const refused = (await run('busctl', [`--address=${bus.address}`, 'call', NAME, MANAGER, 'io.otad.Manager1', 'ReportRobotState', 'a{sv}', '1', 'charging', 'i', '1']).catch((e: unknown) => e)) as { stderr: string; code?: number };
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('charging must be a variant of type b (boolean), not i');
    });

    it.skipIf(!hasTool('gdbus'))('D-Bus from gdbus: the introspection names the arguments; a report and a named error', async () => {
      const intro = await run('gdbus', ['introspect', '--address', bus.address, '--dest', NAME, '--object-path', MANAGER]);
      expect(intro.stdout).toMatch(/ReportRobotState\(in {2}a\{sv\} report,\s+out as accepted,\s+out t reported_at\)/);
      const got = await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', MANAGER, '--method', 'io.otad.Manager1.ReportRobotState', "{'stationary': <false>}"]);
      expect(got.stdout.trim()).toMatch(/^\(\['stationary'\], uint64 \d+\)$/);
      expect((await reports()).stationary).toMatchObject({ value: false, by: 'dbus (dbus)' });
      const refused = (await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', MANAGER, '--method', 'io.otad.Manager1.ReportRobotState', "{'stationary': <'yes'>}"]).catch((e: unknown) => e)) as { stderr: string };
      expect(refused.stderr).toContain('io.otad.Error.API_INVALID_REQUEST');
      expect(refused.stderr).toContain('stationary must be a variant of type b (boolean), not s');
    });

    it('Socket.IO: the REST body, acknowledged; bad input API_INVALID_REQUEST; a read token API_FORBIDDEN', async () => {
      const ok = (await socket.timeout(10_000).emitWithAck('robot-state', { docked: false, batteryPercent: 42, batteryTrend: 'falling' })) as { ok: boolean; result: { accepted: string[]; at: number } };
      expect(ok).toMatchObject({ ok: true, result: { accepted: ['docked', 'batteryPercent', 'batteryTrend'] } });
      expect((await reports()).docked).toEqual({ value: false, at: ok.result.at, by: 'robot-ai (socket)' });
      const bad = (await socket.timeout(10_000).emitWithAck('robot-state', { docked: 'yes' })) as { ok: boolean; error: { code: string; message: string } };
      expect(bad).toMatchObject({ ok: false, error: { code: 'API_INVALID_REQUEST' } });
      expect(bad.error.message).toMatch(/^robot state: /);
      const notObject = (await socket.timeout(10_000).emitWithAck('robot-state', 'docked')) as { ok: boolean; error: { code: string } };
      expect(notObject).toMatchObject({ ok: false, error: { code: 'API_INVALID_REQUEST' } });
      const forbidden = (await readSocket.timeout(10_000).emitWithAck('robot-state', { docked: true })) as { ok: boolean; error: { code: string } };
      expect(forbidden).toMatchObject({ ok: false, error: { code: 'API_FORBIDDEN' } });
      expect((await reports()).docked).toEqual({ value: false, at: ok.result.at, by: 'robot-ai (socket)' });
      // REST, for comparison: the same edge gives the same refusal.
      const rest = await fetch(`${otad.url}/api/v1/robot-state`, { method: 'POST', headers: { ...bearer(CONTROL_TOKEN), 'content-type': 'application/json' }, body: JSON.stringify({ docked: 'yes' }) });
      expect(rest.status).toBe(400);
      const restBody = (await rest.json()) as { error: { code: string; message: string } };
      expect(restBody.error).toEqual(bad.error);
      const doc = (await api('GET', '/api/v1/openapi.json')) as Parameters<typeof assertMatchesDocument>[0];
      assertMatchesDocument(doc, '/robot-state', 'post', 400, restBody);
      const taken = await api('POST', '/api/v1/robot-state', { charging: false });
      expect(taken).toMatchObject({ accepted: ['charging'] });
      assertMatchesDocument(doc, '/robot-state', 'post', 200, taken);
    });
  });
});

/**
 * Rehearsal and the robot-state gates, on the REAL otad (dist/src/cli/otad.js, real steps) against
 * a real ota-server on loopback, with the stand-in UPower and systemd-timedated services on a
 * private dbus-daemon (test/support/robot-services.ts). While UPower says on battery and
 * draining, a rehearsal (otactl --json and text, REST, D-Bus Manager1.Rehearse from dbus-next and
 * gdbus) reports each gate's verdict with the reason a real install's pre-check gives (the same
 * codes and messages: a real install is then started and waits in preCheckWaiting with exactly
 * those), and says the real update would be refused. With good readings it reports the gates
 * passed. Nothing under the install path changes (the whole install root hashes the same before
 * and after every rehearsal), the service keeps its pid, and a rehearsal does not replace the
 * status's robotState.lastCheck.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import type { RehearsalReport } from '../../../src/daemon/rehearsal.js';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { REPO_ROOT, query, readSaved, waitUntil } from '../../support/otad-process.js';
import { startFakeTimedated, startFakeUPower, type FakeTimedated, type FakeUPower, type PowerState } from '../../support/robot-services.js';
import { assertMatchesDocument } from '../api/openapi-check.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from '../api/private-bus.js';

const run = promisify(execFile);
const OTACTL = join(REPO_ROOT, 'dist/src/cli/otactl.js');
const BUS_NAME = 'io.otad.Daemon1';
const CHARGING = 1;
const DISCHARGING = 2;

/** Every entry under `root`: path, type, mode, size, mtime, and the content's or link's hash. */
function hashTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
      const content = kind === 'file' ? createHash('sha256').update(readFileSync(p)).digest('hex') : kind === 'link' ? readlinkSync(p) : '';
      out.set(p.slice(root.length), `${kind} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${content}`);
      if (kind === 'dir') walk(p);
    }
  };
  walk(root);
  return out;
}

function servicePid(world: CrashWorld): number {
  const rec = JSON.parse(readFileSync(join(world.sandbox.stateDir, 'services', PRODUCT, `${PRODUCT}.pid`), 'utf8')) as { pid: number };
  expect(existsSync(`/proc/${rec.pid}`)).toBe(true);
  return rec.pid;
}

const power = (s: Partial<PowerState>): PowerState => ({ pluggedIn: true, percentage: 80, state: CHARGING, ...s });
const gateVerdicts = (r: RehearsalReport) => r.preCheck!.verdicts.filter((v) => v.condition.startsWith('robot-state ')).map((v) => `${v.condition}:${v.verdict}`);

describe.skipIf(process.env.OTA_SKIP_CRASH === '1' || !hasDbusDaemon)('rehearsal runs the robot-state gates (stand-in UPower and timedated on a private bus)', () => {
  let world: CrashWorld | null = null;
  let bus: PrivateBus | null = null;
  let busDir: string | null = null;
  let peer: dbus.MessageBus | null = null;
  let upower: FakeUPower | null = null;
  let timedated: FakeTimedated | null = null;
  afterAll(async () => {
    peer?.disconnect();
    await upower?.stop();
    await timedated?.stop();
    await world?.close(process.env.OTA_TEST_KEEP === '1');
    await bus?.stop();
    if (busDir) rmSync(busDir, { recursive: true, force: true });
  });

  it('reports each gate with the real pre-check reason while on battery and draining, then the gates passed; nothing under the install path changes', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    busDir = mkdtempSync(join(tmpdir(), 'otad-rehearse-gates-'));
    bus = await startPrivateBus(busDir);
    upower = await startFakeUPower(bus.address, power({ pluggedIn: false, percentage: 60, state: DISCHARGING }));
    timedated = await startFakeTimedated(bus.address, true);
    world = await createCrashWorld({ seed: 8811, bigFileBytes: 256 * 1024, brokenEvery: 1000 });
    const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as Record<string, unknown> & { products: Array<Record<string, unknown>> };
    // The robot's app answers nothing: no run starts unless the test asks for one.
    doc.products[0]!.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
    doc.dbus = { enabled: true, bus: bus.address, name: BUS_NAME };
    doc.robotState = {
      upower: { bus: bus.address, timeout: '3s' },
      timedated: { bus: bus.address, timeout: '3s' },
      gates: {
        docked: { sources: ['upower'], maxAge: '1m' },
        charging: { sources: ['upower'], maxAge: '10m' },
        battery: { sources: ['upower'], maxAge: '10m', minPercent: 40, trend: 'not-falling' },
        clock: { sources: ['timedated'], maxAge: '1m' },
      },
    };
    writeFileSync(world.sandbox.configPath, YAML.stringify(doc));
    const release = await world.publishNext();
    const d: RunningDaemon = await world.startOtad();
    const tokens = join(world.root, 'etc/tokens.yaml');
    const otactl = async (...args: string[]) => {
      const r = await run(process.execPath, [OTACTL, '--url', d.url, '--token-file', tokens, ...args], { cwd: REPO_ROOT, timeout: 120_000 }).catch((e: { stdout: string; stderr: string; code: number }) => e);
      return { stdout: r.stdout, stderr: r.stderr, code: (r as { code?: number }).code ?? 0 };
    };
    const robotStatus = async () => (await d.api.request<{ robotState: { lastCheck: unknown } }>('GET', '/api/v1/status')).robotState;
    const root = world.sandbox.installRoot;
    const tree0 = hashTree(root);
    const pid0 = servicePid(world);
    const unchanged = () => {
      expect(hashTree(root)).toEqual(tree0);
      expect(servicePid(world!)).toBe(pid0);
      expect(readSaved(world!.sandbox.dbPath)?.context.installedVersion).toBe('1.0.0');
    };

    // 1. On battery and draining: otactl --json.
    const r1 = await otactl('--json', 'rehearse', PRODUCT);
    expect(r1.code, r1.stderr).toBe(0);
    const bad = JSON.parse(r1.stdout) as RehearsalReport;
    unchanged();
    expect(existsSync(bad.scratchDir)).toBe(false);
    expect(bad).toMatchObject({ version: release.version, available: true, stoppedAt: null, error: null, preCheck: { ok: false } });
    expect(bad.preCheck!.reasons.map((r) => r.code)).toEqual(['NOT_DOCKED', 'NOT_CHARGING', 'BATTERY_DRAINING']);
    expect(gateVerdicts(bad)).toEqual(['robot-state docked:block', 'robot-state charging:block', 'robot-state battery:block', 'robot-state clock:pass']);
    const battery = bad.preCheck!.verdicts.find((v) => v.condition === 'robot-state battery')!;
    expect(battery.detail).toMatch(/^BATTERY_DRAINING: the battery is discharging \(UPower\) and robotState\.gates\.battery\.trend is not-falling$/);
    expect(bad.preCheck!.verdicts.find((v) => v.condition === 'robot-state docked')!.detail).toContain('NOT_DOCKED: the robot is not docked (UPower: OnBattery=true, line_power_AC Online=false)');
    expect(bad.preCheck!.verdicts.find((v) => v.condition === 'robot-state clock')!.detail).toMatch(/^passed: timedated says clock synchronised \(timedated NTPSynchronized=true, \d+ m?s old\)/);
    // The gates' own reasons are not folded into the product's own conditions.
    expect(bad.preCheck!.verdicts.filter((v) => ['power', 'clock'].includes(v.condition)).map((v) => v.verdict)).toEqual(['pass', 'pass']);
    expect(bad.preCheck!.robotState.map((g) => [g.gate, g.reasons.map((r) => r.code)])).toEqual([
      ['docked', ['NOT_DOCKED']],
      ['charging', ['NOT_CHARGING']],
      ['battery', ['BATTERY_DRAINING']],
      ['clock', []],
    ]);
    expect(bad.preCheck!.robotState.find((g) => g.gate === 'battery')!.readings).toEqual([expect.objectContaining({ source: 'upower', value: { percent: 60, trend: 'falling' } })]);
    // The rehearsal's evaluation is not the status's last pre-check.
    expect((await robotStatus()).lastCheck).toBeNull();
    const audit = query<{ message: string }>(world.sandbox.dbPath, "SELECT message FROM audit WHERE kind = 'rehearsal' ORDER BY id");
    expect(audit.at(-1)!.message).toMatch(/^rehearsal of robot-ai finished: .*; the pre-check would block on NOT_DOCKED, NOT_CHARGING, BATTERY_DRAINING$/);

    // 2. The text otactl prints says the real update would be refused, and why.
    const text = await otactl('rehearse');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('pre-check: would block: the real update would be refused now: its pre-check would block on NOT_DOCKED, NOT_CHARGING, BATTERY_DRAINING and the install would wait in preCheckWaiting until they clear');
    expect(text.stdout).toMatch(/\n {4}block {5}robot-state battery: BATTERY_DRAINING: the battery is discharging \(UPower\)/);
    expect(text.stdout).toMatch(/\n {4}pass {6}robot-state clock: passed: timedated says clock synchronised/);
    expect(text.stdout).toContain('robot-state gates: 3 of 4 blocked: docked (NOT_DOCKED), charging (NOT_CHARGING), battery (BATTERY_DRAINING)');
    unchanged();

    // 3. D-Bus Manager1.Rehearse: precheck_ok false, the gates in precheck_verdicts, the reasons in precheck_reasons.
    peer = dbus.sessionBus({ busAddress: bus.address });
    const manager = (await peer.getProxyObject(BUS_NAME, '/io/otad/Daemon1')).getInterface('io.otad.Manager1');
    const reply = (await manager.Rehearse!(PRODUCT)) as unknown[];
    const [version, , stoppedAt, errorCode, , , , precheckOk, verdicts, , , reasons] = reply as [string, boolean, string, string, bigint, bigint, string[], boolean, Array<[string, string, string]>, bigint, string, Array<[string, string]>];
    expect({ version, stoppedAt, errorCode, precheckOk }).toEqual({ version: release.version, stoppedAt: '', errorCode: '', precheckOk: false });
    expect(reasons).toEqual(bad.preCheck!.reasons.map((r) => [r.code, r.message]));
    expect(verdicts.filter((v) => v[0].startsWith('robot-state ')).map((v) => `${v[0]}:${v[1]}`)).toEqual(gateVerdicts(bad));
    if (hasTool('gdbus')) {
      const g = await run('gdbus', ['call', '--address', bus.address, '--dest', BUS_NAME, '--object-path', '/io/otad/Daemon1', '--method', 'io.otad.Manager1.Rehearse', PRODUCT]);
      expect(g.stdout).toContain("('robot-state battery', 'block', 'BATTERY_DRAINING: the battery is discharging (UPower)");
      expect(g.stdout).toContain("('BATTERY_DRAINING', 'the battery is discharging (UPower)");
    }
    unchanged();

    // 4. A real install now: its pre-check waits with exactly the reasons the rehearsal named.
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'awaitingChoice', { timeoutMs: 60_000, what: 'the offer' });
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'UPDATE_NOW' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'preCheckWaiting', { timeoutMs: 60_000, what: 'the pre-check to wait' });
    const waiting = (await d.api.request<{ products: Array<{ preCheckReasons: Array<{ code: string; message: string }> }> }>('GET', '/api/v1/status')).products[0]!;
    expect(waiting.preCheckReasons).toEqual(bad.preCheck!.reasons);
    expect((await robotStatus()).lastCheck).not.toBeNull();
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CANCEL' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'idle', { timeoutMs: 60_000, what: 'the cancelled install to settle' });
    unchanged();

    // 5. Good readings (plugged in, charging at 80%): REST and otactl say the gates passed.
    upower.set(power({}));
    const good = await d.api.request<RehearsalReport>('POST', `/api/v1/products/${PRODUCT}/rehearse`);
    unchanged();
    expect(good).toMatchObject({ version: release.version, stoppedAt: null, error: null, preCheck: { ok: true, reasons: [] } });
    const openapi = await d.api.request<Parameters<typeof assertMatchesDocument>[0]>('GET', '/api/v1/openapi.json');
    assertMatchesDocument(openapi, '/products/{product}/rehearse', 'post', 200, good);
    assertMatchesDocument(openapi, '/products/{product}/rehearse', 'post', 200, bad);
    expect(gateVerdicts(good)).toEqual(['robot-state docked:pass', 'robot-state charging:pass', 'robot-state battery:pass', 'robot-state clock:pass']);
    expect(good.preCheck!.verdicts.find((v) => v.condition === 'robot-state battery')!.detail).toMatch(/^passed: UPower says battery at 80%, rising \(DisplayDevice Percentage=80 State=1 \(charging\)/);
    const passed = await otactl('rehearse');
    expect(passed.code, passed.stderr).toBe(0);
    expect(passed.stdout).toContain('pre-check: would pass: an install now would get past the pre-check');
    expect(passed.stdout).toContain('robot-state gates: all 4 passed (docked, charging, battery, clock)');
    expect(query<{ message: string }>(world.sandbox.dbPath, "SELECT message FROM audit WHERE kind = 'rehearsal' ORDER BY id").at(-1)!.message).toMatch(/; the pre-check would pass$/);
    unchanged();
  }, 300_000);
});

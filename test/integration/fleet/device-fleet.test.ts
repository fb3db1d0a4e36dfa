/**
 * otad's side of the fleet protocol, against the protocol test server on loopback: the device key,
 * signed check-ins, halts that survive a restart, and the update lease around a run. The tests
 * speak about the protocol (what the server receives and answers), not about the stub.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { startOtad, type RunningOtad } from '../../../src/daemon/main.js';
import { fakeStepProvider, type FakeStepsSpec } from '../../support/fake-steps.js';
import { waitUntil } from '../../support/otad-process.js';

/** Poll an async probe (the protocol server's state) until it gives a value. */
async function eventually<T>(probe: () => Promise<T | null>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
import { protocolOperator, startFleetProtocolServer } from '../../support/fleet-protocol-server.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function sandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), 'otad-fleet-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(dir: string, serverUrl: string, fleet: Record<string, unknown> = {}): string {
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    YAML.stringify({
      environment: 'test',
      server: { url: serverUrl, connectTimeout: '2s', headersTimeout: '2s' },
      paths: { stateDir: join(dir, 'state'), trustedRoot: join(dir, 'root.json'), inhibitFile: join(dir, 'inhibit') },
      logging: { level: 'debug', stdout: false },
      api: { enabled: false },
      decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
      fleet,
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai'), precheck: { retryInterval: '150ms' } }],
    }),
  );
  return path;
}

async function otad(dir: string, configPath: string, spec: FakeStepsSpec = {}): Promise<RunningOtad> {
  const running = await startOtad({ configPath, env: {}, stepProvider: fakeStepProvider(spec) });
  const original = running.shutdown.bind(running);
  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopped ??= original('test'));
  cleanups.push(stop);
  return Object.assign(running, { shutdown: stop });
}

/** otad checks in at start, after runs and every interval; the tests ask for one now. */
const checkins = (running: RunningOtad) => ({ reportAll: () => running.checkIn() });

const product = (r: RunningOtad) => r.daemon.status().products[0]!;

describe('device key', () => {
  it('is made once at first start (0600), logged with its fingerprint, shown in status, and reused after a restart', async () => {
    const dir = sandbox();
    const configPath = writeConfig(dir, 'http://127.0.0.1:9/');
    const first = await otad(dir, configPath);
    const key = first.daemon.status().deviceKey!;
    expect(key.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(statSync(join(dir, 'state/device-key.pem')).mode & 0o777).toBe(0o600);
    expect(first.logging.tail({ contains: 'made a new device key' }).map((l) => l.message)).toEqual([`made a new device key, fingerprint ${key.fingerprint}`]);
    await first.shutdown('test');

    const second = await otad(dir, configPath);
    expect(second.daemon.status().deviceKey).toEqual(key);
    expect(second.logging.tail({ contains: 'made a new device key' })).toEqual([]);
  });
});

describe('signed check-ins', () => {
  it('are verified by the server, sign the base URL path prefix, and a pending device is logged once', async () => {
    const server = await startFleetProtocolServer({ prefix: '/fleet' });
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    const dir = sandbox();
    const running = await otad(dir, writeConfig(dir, server.url, { tags: { site: 'warehouse-3' } }));
    const reporter = checkins(running);
    await reporter.reportAll();
    await reporter.reportAll();
    const state = await op.state();
    // Every request verified (the server answers 401 otherwise) under the prefix; a run that ends reports too, so count at least two.
    expect(state.received.length).toBeGreaterThanOrEqual(2);
    for (const r of state.received) expect([r.path, r.status]).toEqual(['/fleet/api/v1/checkin', 202]);
    expect(state.received[0]!.body).toMatchObject({ deviceId: running.daemon.deviceId, product: 'robot-ai', state: 'idle', tags: { site: 'warehouse-3' } });
    const fingerprint = running.daemon.status().deviceKey!.fingerprint;
    expect(state.devices[running.daemon.deviceId]).toEqual({ publicKey: running.daemon.status().deviceKey!.publicKey, status: 'pending' });
    expect(running.logging.tail({ contains: 'pending acceptance' }).map((l) => l.message)).toEqual([`device is pending acceptance on the fleet server; fingerprint ${fingerprint}`]);

    await op.reject(running.daemon.deviceId);
    await reporter.reportAll();
    await reporter.reportAll();
    expect(running.logging.tail({ level: 'warn', contains: 'refused the check-in' }).map((l) => l.message)).toEqual([expect.stringContaining('HTTP 403 DEVICE_REJECTED')]);
  });
});

describe('halts', () => {
  it('a halt in a check-in answer stops the next install at pre-check, holds after a restart, and a later answer lifts it', async () => {
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });
    await op.setRollout({ product: 'robot-ai', version: '2.0.0', state: 'halted', reason: '3 of 40 robots in batch 2 failed (7.5 % > 5 %)' });
    const dir = sandbox();
    const configPath = writeConfig(dir, server.url);
    const first = await otad(dir, configPath);
    await checkins(first).reportAll();
    await first.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product(first).preCheckReasons.length > 0);
    expect(product(first).state).toBe('preCheckWaiting');
    expect(product(first).preCheckReasons).toEqual([{ code: 'ROLLOUT_HALTED', message: expect.stringContaining('3 of 40 robots in batch 2 failed') }]);
    await first.shutdown('test');

    // No check-in yet after the restart: the halt learned before it still holds.
    const second = await otad(dir, configPath);
    expect(second.daemon.status().fleetHalts).toEqual([expect.objectContaining({ product: 'robot-ai', version: '2.0.0', state: 'halted' })]);
    const attempts = (await waitUntil(() => (product(second).preCheckReasons[0]?.code === 'ROLLOUT_HALTED' ? second.daemon.status() : null))).products[0]!;
    expect(attempts.state).toBe('preCheckWaiting');

    await op.setRollout({ product: 'robot-ai', version: '2.0.0', state: 'active' });
    await checkins(second).reportAll();
    expect(second.daemon.status().fleetHalts).toEqual([]);
    await waitUntil(() => product(second).lastOutcome === 'committed', { what: 'the run to commit once the halt is lifted' });
  });
});

describe('update lease', () => {
  it('is granted before the backup, renewed while the run works, and returned at the end', async () => {
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });
    const dir = sandbox();
    const running = await otad(dir, writeConfig(dir, server.url, { lease: { enabled: true, ttl: '1500ms', renewEvery: '200ms' } }), { delayMs: { validate: 1000 } });
    await checkins(running).reportAll();
    await running.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product(running).lastOutcome === 'committed');
    const log = await eventually(async () => {
      const s = await op.state();
      return s.leaseLog.some((e) => e.event === 'returned') ? s.leaseLog : null;
    }, 'the lease to be returned');
    expect(log[0]).toMatchObject({ event: 'granted' });
    expect(log.filter((e) => e.event === 'renewed').length).toBeGreaterThanOrEqual(1);
    expect(log.at(-1)).toMatchObject({ event: 'returned', id: log[0]!.id });
    expect((await op.state()).leases).toEqual([]);
  });

  it('a renewal that fails never stops the run in flight', async () => {
    const server = await startFleetProtocolServer();
    let open = true;
    cleanups.push(() => (open ? server.close() : undefined));
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });
    const dir = sandbox();
    const running = await otad(dir, writeConfig(dir, server.url, { lease: { enabled: true, ttl: '1500ms', renewEvery: '100ms' } }), { delayMs: { validate: 800 } });
    await running.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await eventually(async () => ((await op.state()).leaseLog.some((e) => e.event === 'granted') ? true : null), 'a lease');
    await server.close();
    open = false;
    await waitUntil(() => product(running).lastOutcome === 'committed', { what: 'the run to commit without its fleet server' });
    await waitUntil(() => running.logging.tail({ level: 'warn', contains: 'could not return the update lease' }).length === 1);
    expect(running.logging.tail({ level: 'warn', contains: 'lease renewal failed' }).length).toBeGreaterThanOrEqual(1);
  });

  it('waits while the site budget is full and proceeds once the server grants', async () => {
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true, budget: 0, retryAfterMs: 100 });
    const dir = sandbox();
    const running = await otad(dir, writeConfig(dir, server.url, { lease: { enabled: true } }));
    await checkins(running).reportAll();
    await running.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product(running).preCheckReasons[0]?.code === 'SITE_BUDGET_FULL');
    expect(product(running).state).toMatch(/^preCheck/);
    await op.settings({ budget: 1 });
    await waitUntil(() => product(running).lastOutcome === 'committed');
    const events = await eventually(async () => {
      const s = await op.state();
      return s.leaseLog.some((e) => e.event === 'returned') ? s.leaseLog.map((e) => e.event) : null;
    }, 'the lease to be returned');
    expect(events[0]).toBe('refused');
    expect(events.slice(-2)).toEqual(['granted', 'returned']);
  });

  it('an unreachable server: wait does not pass the pre-check (FLEET_UNREACHABLE), proceed installs without a lease and says so', async () => {
    const dir = sandbox();
    const waiting = await otad(dir, writeConfig(dir, 'http://127.0.0.1:9/', { lease: { enabled: true, unreachable: 'wait' } }));
    await waiting.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product(waiting).preCheckReasons[0]?.code === 'FLEET_UNREACHABLE');
    await waiting.shutdown('test');

    const other = sandbox();
    const proceeding = await otad(other, writeConfig(other, 'http://127.0.0.1:9/', { lease: { enabled: true, unreachable: 'proceed' } }));
    await proceeding.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product(proceeding).lastOutcome === 'committed');
    expect(proceeding.logging.tail({ level: 'warn', contains: 'proceeding without a lease' })).toHaveLength(1);
  });
});

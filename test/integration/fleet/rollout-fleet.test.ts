/**
 * Real otad processes (with fake steps) and simulated robots (signed requests from the one signing
 * module) against a real ota-server on loopback: batch 1 of real robots commits, batch 2 opens,
 * failures injected there halt the rollout, robots outside the batch stop starting, an operator
 * resumes and the rest goes through. And a real otad killed with SIGKILL while it holds a lease:
 * its slot is freed when the lease's TTL passes, not before.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type ServerOptions } from '../../../src/server/app.js';
import { openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { newDeviceKey } from '../../support/fleet-db.js';
import { makeSandbox, query, readSaved, spawnOtad, waitUntil, type OtadProcess, type Sandbox } from '../../support/otad-process.js';
import { askLease, checkin, returnLease, type Robot } from '../../support/signed-requests.js';

const TOKEN = 'fleet-token-0123456789abcdef';
const V = '2.0.0';
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function eventually<T>(probe: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function fleetServer(extra: Partial<ServerOptions> = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'otad-rollout-fleet-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
  writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
  const store = await openFleetStore(path.join(dir, 'fleet.db'));
  const server = createServer({
    repoDir: path.join(dir, 'repo'),
    keysDir: path.join(dir, 'keys'),
    clock: systemClock,
    logger: silentLogger,
    tokenFile: path.join(dir, 'token'),
    timestampRefresh: false,
    prune: false,
    rolloutTick: { intervalMs: 200 },
    leaseRetryMs: 500,
    deviceRateLimit: { perSecond: 10_000, burst: 10_000 },
    fleetStore: store,
    ...extra,
  });
  const { url } = await server.start(0, '127.0.0.1');
  cleanups.push(async () => {
    await server.close();
    await store.close();
  });
  const operator = (method: string, route: string, body?: unknown) =>
    fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    }).then(async (r) => (await r.json()) as Record<string, any>);
  return { url, store, operator };
}

/** A real otad with fake steps, its own device id, checking in every second, leases on (TTL 3 s) unless `fleet` says otherwise. */
function realRobot(url: string, id: string, tags: Record<string, string>, fake: Record<string, unknown> = {}, fleet: Record<string, unknown> = {}): { box: Sandbox; otad: OtadProcess } {
  const box = makeSandbox({}, `otad-${id}-`);
  cleanups.push(() => rmSync(box.dir, { recursive: true, force: true }));
  const config = {
    environment: 'test',
    server: { url, connectTimeout: '2s', headersTimeout: '2s' },
    paths: { stateDir: box.stateDir, trustedRoot: path.join(box.dir, 'root.json'), inhibitFile: path.join(box.dir, 'inhibit') },
    logging: { level: 'info' },
    api: { enabled: false },
    decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
    fleet: { checkins: true, checkinInterval: '1s', tags, lease: { enabled: true, ttl: '3s', renewEvery: '500ms' }, ...fleet },
    products: [{ name: 'robot-ai', installPath: path.join(box.installRoot, 'robot-ai'), precheck: { retryInterval: '300ms' } }],
  };
  writeFileSync(box.configPath, YAML.stringify(config));
  mkdirSync(box.stateDir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(box.stateDir, 'device-id'), `${id}\n`, { mode: 0o600 });
  chmodSync(path.join(box.stateDir, 'device-id'), 0o600);
  const otad = spawnOtad(box, { fake: { delayMs: { validate: 300 }, ...fake }, env: { OTA_TEST_CHECK_ON_START: '1' } });
  cleanups.push(() => otad.kill('SIGKILL'));
  return { box, otad };
}

/** A simulated robot's install: the lease, a check-in while it works, the outcome, the lease returned. */
async function simulatedInstall(url: string, robot: Robot, outcome: 'committed' | 'rolled-back'): Promise<void> {
  const lease = await askLease(url, robot, V, Date.now());
  expect(lease.status).toBe(200);
  const runId = `run-${robot.id}`;
  await checkin(url, robot, Date.now(), { state: 'apply', targetVersion: V, runId });
  const final = outcome === 'committed' ? { version: V, lastOutcome: 'committed', runId, targetVersion: V } : { lastOutcome: 'rolled-back', runId, targetVersion: V };
  await checkin(url, robot, Date.now(), final);
  expect((await returnLease(url, robot, lease.body.lease.id, Date.now())).status).toBe(204);
}

const transitionsTo = (box: Sandbox, state: string) => query<{ n: number }>(box.dbPath, 'SELECT COUNT(*) AS n FROM transitions WHERE to_state = ?', state)[0]!.n;

describe('a rollout across real otad processes and simulated robots', () => {
  it('batch 1 commits, batch 2 opens, failures there halt it, robots outside stop starting, and resume lets the rest through', async () => {
    const { url, store, operator } = await fleetServer();
    const created = await operator('POST', '/api/v1/rollouts', {
      product: 'robot-ai',
      version: V,
      batches: [{ tags: { ring: 'canary' } }, { tags: { ring: 'early' } }, { all: true }],
      soak: 0,
      failureThreshold: 0.3,
      minReports: 2,
    });
    const id = created.id as string;
    const canaries = [1, 2, 3, 4].map((n) => realRobot(url, `real-canary-${n}`, { site: 'lab', ring: 'canary' }));
    const late = realRobot(url, 'real-late-1', { site: 'lab', ring: 'late' });
    const early = Array.from({ length: 5 }, (_, i): Robot => ({ id: `sim-early-${i}`, key: newDeviceKey() }));
    const outside = Array.from({ length: 3 }, (_, i): Robot => ({ id: `sim-late-${i}`, key: newDeviceKey() }));
    const sims = [...early.map((r) => [r, 'early'] as const), ...outside.map((r) => [r, 'late'] as const)];
    await store.preauthorize(sims.map(([r, ring]) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: { site: 'yard', ring } })), 'test', Date.now());
    for (const [r] of sims) await checkin(url, r, Date.now(), {});

    // The real robots register as pending on their first check-in; the operator accepts them.
    for (const { otad } of [...canaries, late]) await otad.ready();
    for (const n of ['real-canary-1', 'real-canary-2', 'real-canary-3', 'real-canary-4', 'real-late-1']) {
      await eventually(() => store.getDevice(n), `${n} to check in`);
      expect((await operator('POST', `/api/v1/devices/${n}/accept`)).device.status).toBe('accepted');
    }

    // Batch 1: the four real canaries install through the lab's budget of 2 and commit.
    for (const { box } of canaries) await waitUntil(() => readSaved(box.dbPath)?.context.lastOutcome === 'committed', { timeoutMs: 60_000, what: 'a canary to commit' });
    const opened = await eventually(async () => {
      const r = await operator('GET', `/api/v1/rollouts/${id}`);
      // minReports is 2: batch 2 may open before the last canary's check-in after its commit arrives.
      return r.batches[1].state === 'open' && r.batches[0].counts.committed === 4 ? r : null;
    }, 'batch 2 to open and every canary to report its commit');
    expect(opened.batches[0].counts).toMatchObject({ devices: 4, committed: 4 });
    // The late real robot has been held back all along, its batch not open: it never started an install.
    const reasons = (box: Sandbox) => ((readSaved(box.dbPath)?.context.preCheckReasons as Array<{ code: string }> | undefined) ?? []).map((r) => r.code);
    await waitUntil(() => reasons(late.box).includes('ROLLOUT_WAIT'), { timeoutMs: 30_000, what: 'the late robot to wait at pre-check' });
    expect(transitionsTo(late.box, 'backup')).toBe(0);

    // Batch 2: two simulated robots fail; the server halts the rollout by itself.
    await simulatedInstall(url, early[0]!, 'rolled-back');
    await simulatedInstall(url, early[1]!, 'rolled-back');
    const halted = await operator('GET', `/api/v1/rollouts/${id}`);
    expect(halted).toMatchObject({ state: 'halted', halt: { by: 'server', reason: '2 of 2 robots that reported in batch 2 failed: 100 % > 30 %' } });
    for (const r of [early[2]!, outside[0]!]) expect((await askLease(url, r, V, Date.now())).body.error.code).toBe('ROLLOUT_HALTED');
    // The real robot outside learns the halt from its check-ins and its pre-check says so; it starts nothing.
    await waitUntil(() => reasons(late.box).includes('ROLLOUT_HALTED'), {
      timeoutMs: 30_000,
      what: 'the late robot to report the halt at pre-check',
    });
    expect(transitionsTo(late.box, 'backup')).toBe(0);

    // Resume: the failures so far are forgiven; the rest of batch 2 commits, batch 3 opens, everyone goes.
    expect((await operator('POST', `/api/v1/rollouts/${id}/resume`)).state).toBe('active');
    for (const r of early.slice(2)) await simulatedInstall(url, r, 'committed');
    await eventually(async () => (await operator('GET', `/api/v1/rollouts/${id}`)).batches[2].state === 'open', 'batch 3 to open');
    for (const r of outside) await simulatedInstall(url, r, 'committed');
    await waitUntil(() => readSaved(late.box.dbPath)?.context.lastOutcome === 'committed', { timeoutMs: 60_000, what: 'the late real robot to commit' });
    const done = await eventually(async () => {
      const r = await operator('GET', `/api/v1/rollouts/${id}`);
      return r.batches[2].counts.committed === 4 ? r : null;
    }, 'the late robot to report its commit');
    expect(done.batches.map((b: any) => [b.counts.committed, b.counts.rolledBack])).toEqual([
      [4, 0],
      [3, 2],
      [4, 0],
    ]);
    const kinds = (await store.listAudit(200)).map((a) => a.kind);
    expect(kinds).toEqual(expect.arrayContaining(['rollout-created', 'rollout-batch-opened', 'rollout-halted', 'rollout-resumed']));
  }, 240_000);

  it('a real otad killed with SIGKILL while holding a lease frees its slot when the TTL passes, not before', async () => {
    const { url, store, operator } = await fleetServer({ siteBudgets: { default: 2, sites: { dock: 1 } } });
    const holder = realRobot(url, 'real-dock-1', { site: 'dock' }, { delayMs: { validate: 120_000 } });
    await holder.otad.ready();
    await eventually(() => store.getDevice('real-dock-1'), 'the robot to check in');
    await operator('POST', '/api/v1/devices/real-dock-1/accept');
    await waitUntil(() => readSaved(holder.box.dbPath)?.state === 'validate', { timeoutMs: 60_000, what: 'the run to reach validation' });
    const held = (await operator('GET', '/api/v1/leases')).leases[0];
    expect(held).toMatchObject({ deviceId: 'real-dock-1', site: 'dock', ttlMs: 3000 });
    const waiting: Robot = { id: 'sim-dock-1', key: newDeviceKey() };
    await store.preauthorize([{ deviceId: waiting.id, publicKey: waiting.key.publicKey, tags: { site: 'dock' } }], 'test', Date.now());
    expect((await askLease(url, waiting, V, Date.now())).body.error.code).toBe('SITE_BUDGET_FULL');

    expect((await holder.otad.kill('SIGKILL')).signal).toBe('SIGKILL');
    const last = (await operator('GET', '/api/v1/leases')).leases.find((l: any) => l.deviceId === 'real-dock-1');
    // Nobody returns the dead robot's lease: the waiting robot is refused until its expiry, then granted.
    const granted = await eventually(async () => {
      const answer = await askLease(url, waiting, V, Date.now());
      if (answer.status === 200) return answer;
      expect(answer.body.error.code).toBe('SITE_BUDGET_FULL');
      return null;
    }, 'the slot to be freed', 30_000);
    const leases = (await operator('GET', '/api/v1/leases')).leases as Array<{ id: string; deviceId: string; createdAt: number }>;
    expect(leases.map((l) => l.deviceId)).toEqual(['sim-dock-1']);
    const grantedAt = leases.find((l) => l.id === granted.body.lease.id)!.createdAt;
    // Server-side times: granted only after the dead robot's lease expired, and within its TTL after that.
    expect(grantedAt).toBeGreaterThanOrEqual(last.expiresAt);
    expect(grantedAt - last.expiresAt).toBeLessThan(last.ttlMs);
  }, 120_000);

  it('a real robot without leases whose last check-in came before the rollout hears wait before it installs, and installs once its batch opens', async () => {
    const { url, store, operator } = await fleetServer();
    // Its periodic check-ins are an hour apart, and its check finds the release some seconds after
    // its start-up check-in: the only answer it has heard predates the rollout.
    const { box, otad } = realRobot(url, 'real-nolease-1', { site: 'yard', ring: 'late' }, { delayMs: { check: 8_000 } }, { checkinInterval: '1h', lease: { enabled: false } });
    await otad.ready();
    await eventually(() => store.getDevice('real-nolease-1'), 'the robot to check in');
    expect((await operator('POST', '/api/v1/devices/real-nolease-1/accept')).device.status).toBe('accepted');
    // Batch 1 is one simulated canary (an empty batch would be healthy at once and open batch 2).
    const canary: Robot = { id: 'sim-canary-1', key: newDeviceKey() };
    await store.preauthorize([{ deviceId: canary.id, publicKey: canary.key.publicKey, tags: { site: 'lab', ring: 'canary' } }], 'test', Date.now());
    await checkin(url, canary, Date.now(), {});
    const created = await operator('POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ tags: { ring: 'canary' } }, { all: true }], soak: 0, failureThreshold: 0.3, minReports: 1 });
    const id = created.id as string;
    expect(created.batches[1].state).toBe('waiting');
    const reasons = () => ((readSaved(box.dbPath)?.context.preCheckReasons as Array<{ code: string; message: string }> | undefined) ?? []);
    await waitUntil(() => reasons().some((r) => r.code === 'ROLLOUT_WAIT'), { timeoutMs: 60_000, what: 'the robot to wait at pre-check' });
    expect(reasons().find((r) => r.code === 'ROLLOUT_WAIT')!.message).toContain('batch 2');
    expect(transitionsTo(box, 'backup')).toBe(0);
    // The check-in it sent from its pre-check is what the server counted it by.
    expect((await store.getDevice('real-nolease-1'))!.products[0]).toMatchObject({ state: 'preCheck', targetVersion: V });
    // A canary commits; with no soak batch 2 opens, and the robot's next pre-check hears it and installs.
    await simulatedInstall(url, canary, 'committed');
    await eventually(async () => (await operator('GET', `/api/v1/rollouts/${id}`)).batches[1].state === 'open', 'batch 2 to open');
    await waitUntil(() => readSaved(box.dbPath)?.context.lastOutcome === 'committed', { timeoutMs: 60_000, what: 'the robot to commit once its batch opened' });
  }, 120_000);
});

/**
 * Server-side rollouts and update leases through a real ota-server on loopback, on SQLite and on a
 * real PostgreSQL: batches open after their soak (a manual clock, no sleeps), failures past the
 * threshold halt the rollout with the reason and an audit entry, operator halt and resume, pending
 * devices in no batch, check-in answers carrying halts and waits, and the site budget with TTL.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { rolloutBucket } from '../../../src/schedule/spread.js';
import { createServer, type OtaServer, type ServerOptions } from '../../../src/server/app.js';
import type { FleetStore } from '../../../src/server/store/fleet-store.js';
import { openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { BACKENDS, freshDatabase, newDeviceKey, stopSharedPostgres, tableCounts } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';
import { askLease, checkin, renewLease, returnLease, signedRequest, type Robot } from '../../support/signed-requests.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const TOKEN = 'fleet-token-0123456789abcdef';
const V = '2.0.0';
const MIN = 60_000;

describe.each(BACKENDS)('rollouts and leases on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  let clock: ManualClock;
  const opened: Array<{ server: OtaServer; store: FleetStore }> = [];

  async function startServer(extra: Partial<ServerOptions> = {}): Promise<{ url: string; server: OtaServer; store: FleetStore }> {
    const store = await openFleetStore(database);
    const server = createServer({
      repoDir: path.join(dir, 'repo'),
      keysDir: path.join(dir, 'keys'),
      clock,
      logger: silentLogger,
      tokenFile: path.join(dir, 'token'),
      timestampRefresh: false,
      prune: false,
      rolloutTick: false,
      deviceRateLimit: { perSecond: 100_000, burst: 100_000 },
      fleetStore: store,
      ...extra,
    });
    opened.push({ server, store });
    const { url } = await server.start(0, '127.0.0.1');
    return { url, server, store };
  }

  const operator = (url: string, method: string, route: string, body?: unknown) =>
    fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, any> }));

  /** Accepted robots (preauthorized with their keys and site), each checked in once on 1.0.0. */
  async function fleet(url: string, store: FleetStore, sites: Record<string, number>): Promise<Robot[]> {
    const robots: Array<Robot & { site: string }> = [];
    for (const [site, n] of Object.entries(sites)) for (let i = 0; i < n; i++) robots.push({ id: `${site}-${i}`, key: newDeviceKey(), site });
    await store.preauthorize(robots.map((r) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: { site: r.site } })), 'test', clock.now());
    for (const r of robots) expect((await checkin(url, r, clock.now(), {})).status).toBe(200);
    return robots;
  }

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-rollouts-'));
    clock = new ManualClock(Date.now());
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock }).init();
    writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
    database = await freshDatabase(backend, dir);
  });
  afterEach(async () => {
    for (const { server, store } of opened.splice(0)) {
      await server.close();
      await store.close();
    }
    if (!skip) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('percentage batches take the signed rollout bucket; batch 2 opens only after the soak with enough reports; its robots wait until then', async () => {
    const { url, server, store } = await startServer();
    const robots = await fleet(url, store, { lab: 12 });
    const pending = { id: 'newcomer', key: newDeviceKey() };
    expect((await checkin(url, pending, clock.now(), {})).status).toBe(202);

    const created = await operator(url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ percent: 50 }, { percent: 100 }], soak: '30m', failureThreshold: 0.2, minReports: 2 });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const first = robots.filter((r) => rolloutBucket(r.id, 'robot-ai', V) < 50);
    const second = robots.filter((r) => rolloutBucket(r.id, 'robot-ai', V) >= 50);
    expect(first.length).toBeGreaterThan(0);
    expect(second.length).toBeGreaterThan(0);
    expect(created.body.batches.map((b: any) => [b.state, b.counts.devices])).toEqual([
      ['open', first.length],
      ['waiting', second.length],
    ]);
    expect((await operator(url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ all: true }] })).body.error.code).toBe('ROLLOUT_CONFLICT');

    // A robot of batch 2 is told to wait, in its check-in answer and when it asks for a lease.
    const waiting = await checkin(url, second[0]!, clock.now(), { targetVersion: V, state: 'preCheck', runId: 'w1' });
    expect(waiting.body.rollouts).toEqual([{ product: 'robot-ai', version: V, state: 'wait', reason: expect.stringContaining('batch 2') }]);
    expect((await askLease(url, second[0]!, V, clock.now())).body.error.code).toBe('ROLLOUT_WAIT');
    // A robot of batch 1 gets its lease, and its answer holds nothing back.
    const granted = await askLease(url, first[0]!, V, clock.now());
    expect(granted.status).toBe(200);
    expect((await checkin(url, first[0]!, clock.now(), { targetVersion: V, state: 'apply', runId: 'a1' })).body.rollouts).toEqual([]);

    for (const r of first.slice(0, 2)) await checkin(url, r, clock.now(), { version: V, lastOutcome: 'committed', runId: 'a1' });
    await server.evaluateRollouts();
    expect((await operator(url, 'GET', `/api/v1/rollouts/${id}`)).body.batches[1].state).toBe('waiting');
    clock.advance(30 * MIN);
    await server.evaluateRollouts();
    const after = (await operator(url, 'GET', `/api/v1/rollouts/${id}`)).body;
    expect(after.batches.map((b: any) => b.state)).toEqual(['done', 'open']);
    expect(after.batches[0].counts).toMatchObject({ committed: 2, running: 0 });
    expect((await askLease(url, second[0]!, V, clock.now())).status).toBe(200);
    const audit = await store.listAudit(20);
    expect(audit.map((a) => a.kind)).toContain('rollout-batch-opened');
    // The pending robot is in no batch and gets no lease.
    expect(after.batches.reduce((n: number, b: any) => n + b.counts.devices, 0)).toBe(robots.length);
    expect((await askLease(url, pending, V, clock.now())).body.error.code).toBe('DEVICE_PENDING');
  });

  it.skipIf(skip)('failures past the threshold halt the rollout by themselves with the reason, audited; check-ins and leases carry the halt; resume and operator halt', async () => {
    const { url, store } = await startServer();
    const robots = await fleet(url, store, { lab: 4, dock: 3 });
    const lab = robots.filter((r) => r.id.startsWith('lab'));
    const dock = robots.filter((r) => r.id.startsWith('dock'));
    const id = (await operator(url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ tags: { site: 'lab' } }, { all: true }], soak: '1h', failureThreshold: 0.3, minReports: 3 })).body
      .id as string;

    await checkin(url, lab[0]!, clock.now(), { version: V, lastOutcome: 'committed', runId: 'r0' });
    // lab-1 starts a run for V, then rolls back: otad clears its offer, the run id ties the outcome to V.
    await checkin(url, lab[1]!, clock.now(), { state: 'validate', targetVersion: V, runId: 'r1' });
    expect((await operator(url, 'GET', `/api/v1/rollouts/${id}`)).body.batches[0].counts).toMatchObject({ devices: 4, committed: 1, running: 1, notStarted: 2 });
    const rolledBack = await checkin(url, lab[1]!, clock.now(), { state: 'idle', lastOutcome: 'rolled-back', runId: 'r1', targetVersion: null });
    // 1 failure of 2 outcomes: fewer than minReports, no halt yet.
    expect(rolledBack.body.rollouts).toEqual([]);
    await checkin(url, lab[2]!, clock.now(), { state: 'staging', targetVersion: V, runId: 'r2' });
    const failed = await checkin(url, lab[2]!, clock.now(), { state: 'failed', lastOutcome: 'failed', targetVersion: V, runId: 'r2' });
    const reason = '2 of 3 robots that reported in batch 1 failed: 66.67 % > 30 %';
    expect(failed.body.rollouts).toEqual([{ product: 'robot-ai', version: V, state: 'halted', reason }]);
    const halted = (await operator(url, 'GET', `/api/v1/rollouts/${id}`)).body;
    expect(halted).toMatchObject({ state: 'halted', halt: { by: 'server', reason } });
    expect(halted.batches[0].counts).toMatchObject({ committed: 1, rolledBack: 1, failed: 1, notStarted: 1 });
    expect((await store.listAudit(10)).find((a) => a.kind === 'rollout-halted')).toMatchObject({ actor: 'ota-server', message: expect.stringContaining(reason) });
    // Robots outside the batch are told too, and get no lease; a check-in about another product carries it as well.
    expect((await checkin(url, dock[0]!, clock.now(), {})).body.rollouts).toEqual([{ product: 'robot-ai', version: V, state: 'halted', reason }]);
    expect((await checkin(url, dock[2]!, clock.now(), { product: 'robot-nav' })).body.rollouts).toEqual([{ product: 'robot-ai', version: V, state: 'halted', reason }]);
    const refused = await askLease(url, lab[3]!, V, clock.now());
    expect(refused).toMatchObject({ status: 409, body: { error: { code: 'ROLLOUT_HALTED' }, retryAfterMs: expect.any(Number) } });

    // Resume: the failures so far are forgiven, new ones count again.
    const resumed = await operator(url, 'POST', `/api/v1/rollouts/${id}/resume`);
    expect(resumed.body).toMatchObject({ state: 'active', halt: null, resumedAt: clock.now() });
    expect((await operator(url, 'POST', `/api/v1/rollouts/${id}/resume`)).status).toBe(409);
    expect((await askLease(url, lab[3]!, V, clock.now())).status).toBe(200);
    await checkin(url, lab[3]!, clock.now(), { version: V, lastOutcome: 'committed', runId: 'r3' });
    expect((await store.evaluateRollouts(clock.now())).map((c) => c.step.kind)).toEqual([]);

    // An operator's halt, with a reason, and its audit entry.
    const byHand = await operator(url, 'POST', `/api/v1/rollouts/${id}/halt`, { reason: 'battery complaints' });
    expect(byHand.body).toMatchObject({ state: 'halted', halt: { by: 'operator', reason: 'battery complaints' } });
    expect((await checkin(url, dock[1]!, clock.now(), {})).body.rollouts[0]).toMatchObject({ state: 'halted', reason: 'battery complaints' });
    expect((await store.listAudit(5)).map((a) => a.kind)).toContain('rollout-halted');
    const list = await operator(url, 'GET', '/api/v1/rollouts');
    expect(list.body.rollouts.map((r: any) => r.id)).toEqual([id]);
    expect((await fetch(`${url}/api/v1/rollouts`)).status).toBe(401);
  });

  it.skipIf(skip)('the site budget admits k robots at once; renewals extend, returns and expired TTLs free the slot; replays are refused', async () => {
    const { url, store } = await startServer({ siteBudgets: { default: 2, sites: { dock: 1 } } });
    const robots = await fleet(url, store, { lab: 3, dock: 2 });
    const [a, b, c] = robots;
    const ttlMs = 10_000;
    const la = await askLease(url, a!, V, clock.now(), { ttlMs });
    const lb = await askLease(url, b!, V, clock.now(), { ttlMs });
    expect([la.status, lb.status]).toEqual([200, 200]);
    const full = await askLease(url, c!, V, clock.now(), { ttlMs });
    expect(full).toMatchObject({ status: 409, body: { error: { code: 'SITE_BUDGET_FULL' }, retryAfterMs: ttlMs } });
    expect((await askLease(url, robots[3]!, V, clock.now())).status).toBe(200);
    expect((await askLease(url, robots[4]!, V, clock.now())).body.error.code).toBe('SITE_BUDGET_FULL');
    const view = await operator(url, 'GET', '/api/v1/leases');
    expect(view.body.budgets).toEqual({ lab: { max: 2, held: 2 }, dock: { max: 1, held: 1 } });

    clock.advance(6_000);
    const renewed = await renewLease(url, a!, la.body.lease.id, clock.now());
    expect(renewed).toEqual({ status: 200, body: { expiresAt: clock.now() + ttlMs } });
    // Another robot cannot renew or return someone else's lease.
    expect((await renewLease(url, c!, la.body.lease.id, clock.now())).body.error.code).toBe('LEASE_EXPIRED');
    clock.advance(5_000);
    // b never renewed: its TTL passed, so its slot is free without anyone returning it.
    expect((await renewLease(url, b!, lb.body.lease.id, clock.now())).status).toBe(404);
    const lc = await askLease(url, c!, V, clock.now(), { ttlMs });
    expect(lc.status).toBe(200);
    expect((await returnLease(url, a!, la.body.lease.id, clock.now())).status).toBe(204);
    expect((await returnLease(url, a!, la.body.lease.id, clock.now())).body.error.code).toBe('LEASE_EXPIRED');
    expect((await askLease(url, b!, V, clock.now(), { ttlMs })).status).toBe(200);

    // The lease endpoints share the check-in's nonce check.
    const nonce = 'ab'.repeat(16);
    const body = { deviceId: b!.id, product: 'robot-ai', version: V };
    await signedRequest(url, b!, 'POST', '/api/v1/leases', body, clock.now(), nonce);
    expect((await signedRequest(url, b!, 'POST', '/api/v1/leases', body, clock.now(), nonce)).body.error.code).toBe('DEVICE_REPLAY');
    const stranger = { id: b!.id, key: newDeviceKey() };
    expect((await askLease(url, stranger, V, clock.now())).body.error.code).toBe('DEVICE_KEY_CONFLICT');
  });

  it.skipIf(skip)('a refused lease request (pending, unknown, rejected, another key, replayed, skewed, unsigned) stores nothing but its audit entry', async () => {
    const { url, store } = await startServer();
    const [robot] = await fleet(url, store, { lab: 1 });
    const pending = { id: 'newcomer', key: newDeviceKey() };
    await checkin(url, pending, clock.now(), {});
    const rejected = { id: 'outcast', key: newDeviceKey() };
    await checkin(url, rejected, clock.now(), {});
    await store.decide('outcast', 'rejected', 'test', clock.now());
    const nonce = 'cd'.repeat(16);
    await signedRequest(url, robot!, 'POST', '/api/v1/leases/none/renew', undefined, clock.now(), nonce);
    const before = await tableCounts(database);
    const codes = [
      (await askLease(url, pending, V, clock.now())).body.error.code,
      (await askLease(url, { id: 'stranger', key: newDeviceKey() }, V, clock.now())).body.error.code,
      (await askLease(url, rejected, V, clock.now())).body.error.code,
      (await askLease(url, { id: robot!.id, key: newDeviceKey() }, V, clock.now())).body.error.code,
      (await signedRequest(url, robot!, 'POST', '/api/v1/leases', { deviceId: robot!.id, product: 'robot-ai', version: V }, clock.now(), nonce)).body.error.code,
      (await signedRequest(url, robot!, 'POST', '/api/v1/leases', { deviceId: robot!.id, product: 'robot-ai', version: V }, clock.now() - 10 * MIN)).body.error.code,
      (await fetch(`${url}/api/v1/leases`, { method: 'POST', body: '{}' }).then((r) => r.json() as Promise<any>)).error.code,
    ];
    expect(codes).toEqual(['DEVICE_PENDING', 'DEVICE_PENDING', 'DEVICE_REJECTED', 'DEVICE_KEY_CONFLICT', 'DEVICE_REPLAY', 'DEVICE_CLOCK_SKEW', 'DEVICE_AUTH_REQUIRED']);
    const after = await tableCounts(database);
    // The other key is recorded as a key conflict, as a check-in with it would be.
    expect({ ...after, audit: 0 }).toEqual({ ...before, audit: 0, key_conflicts: before.key_conflicts! + 1 });
    expect((await store.getDevice(robot!.id))!.conflicts).toHaveLength(1);
    expect(after.audit! - before.audit!).toBe(codes.length);
  });

  // Several processes on one database is PostgreSQL's job. Two SQLite connections inside ONE test
  // process would block each other: better-sqlite3 waits for a lock synchronously, on the very event
  // loop the holder needs to finish its transaction.
  it.skipIf(skip || backend === 'sqlite')('two servers evaluating one rollout at the same moment open each batch once and halt it once', async () => {
    const one = await startServer();
    const two = await startServer();
    const robots = await fleet(one.url, one.store, { lab: 6 });
    const id = (await operator(one.url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ percent: 100 }], soak: '10m', failureThreshold: 0.2, minReports: 2 })).body.id as string;
    for (const r of robots.slice(0, 2)) await checkin(one.url, r, clock.now(), { version: V, lastOutcome: 'committed', runId: 'x' });
    clock.advance(10 * MIN);
    const steps = (await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? one.store : two.store).evaluateRollouts(clock.now())))).flat();
    expect(steps.map((s) => s.step.kind)).toEqual(['done']);
    expect((await one.store.getRollout(id))!.state).toBe('done');
    expect((await one.store.listAudit(50)).filter((a) => a.kind === 'rollout-done')).toHaveLength(1);

    const next = (await operator(one.url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: '3.0.0', batches: [{ all: true }], soak: 0, failureThreshold: 0.2, minReports: 2 })).body.id as string;
    // Recorded without the check-in's own evaluation racing: the failures arrive as product state, then both servers evaluate.
    for (const r of robots.slice(0, 3)) await checkin(two.url, r, clock.now(), { state: 'failed', targetVersion: '3.0.0', runId: `f-${r.id}` });
    await Promise.all([one.store.evaluateRollouts(clock.now()), two.store.evaluateRollouts(clock.now()), one.store.evaluateRollouts(clock.now())]);
    expect((await two.store.getRollout(next))!.halt).toMatchObject({ by: 'server' });
    expect((await one.store.listAudit(50)).filter((a) => a.kind === 'rollout-halted')).toHaveLength(1);
  });

  it.skipIf(skip)('two servers never let more than k = 2 of 50 robots of one site hold a lease at once, over many cycles', async () => {
    const one = await startServer({ siteBudgets: { default: 2, sites: {} } });
    // On SQLite the second server shares the first one's connection (see above); on PostgreSQL it has its own pool.
    const two = await startServer({ siteBudgets: { default: 2, sites: {} }, ...(backend === 'sqlite' ? { fleetStore: one.store } : {}) });
    const robots = await fleet(one.url, one.store, { yard: 50 });
    let holding = 0;
    let most = 0;
    let grants = 0;
    const cycles = 3;
    await Promise.all(
      robots.map(async (robot, i) => {
        for (let cycle = 0; cycle < cycles; cycle++) {
          for (let attempt = 0; ; attempt++) {
            const url = (i + attempt) % 2 === 0 ? one.url : two.url;
            const answer = await askLease(url, robot, V, clock.now());
            if (answer.status === 200) {
              // Counted after the grant and uncounted before the return: never more than the server holds.
              holding += 1;
              grants += 1;
              most = Math.max(most, holding);
              // Held long enough that a second grant can land meanwhile on a loaded machine (each grant waits for the site's lock).
              await new Promise((r) => setTimeout(r, 25));
              holding -= 1;
              expect((await returnLease(attempt % 2 === 0 ? two.url : one.url, robot, answer.body.lease.id, clock.now())).status).toBe(204);
              break;
            }
            expect(answer.body.error.code).toBe('SITE_BUDGET_FULL');
            await new Promise((r) => setTimeout(r, 5 + (i % 7)));
          }
        }
      }),
    );
    expect(grants).toBe(robots.length * cycles);
    expect(most).toBeLessThanOrEqual(2);
    expect(most).toBe(2);
  }, 120_000);
});

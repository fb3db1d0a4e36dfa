/**
 * Rollout counters kept by the check-ins that change them (src/server/store/sql-rollout-counts.ts),
 * on SQLite and a real PostgreSQL: after every kind of change (a robot's report and tags, an
 * operator's accept, reject and tags, a preauthorization) they equal a full count of the fleet made
 * with the rollout rules (countBatches over every accepted device); two ota-server processes on one
 * PostgreSQL counting at once lose nothing; a rollout from before the counters is counted when a
 * server opens the store; and a robot that does not use leases hears `wait` in its check-in answer.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { countBatches, type DeviceProgress } from '../../../src/server/rollouts/rollout-model.js';
import { createServer, type OtaServer, type ServerOptions } from '../../../src/server/app.js';
import type { FleetStore } from '../../../src/server/store/fleet-store.js';
import { isPostgresUrl, openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { openPostgresDriver } from '../../../src/server/store/postgres-driver.js';
import { openSqliteDriver } from '../../../src/server/store/sqlite-driver.js';
import { BACKENDS, freshDatabase, newDeviceKey, stopSharedPostgres } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';
import { checkin, type Robot } from '../../support/signed-requests.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const TOKEN = 'rollout-counts-token-0123456789';
const V = '2.0.0';

/** Every accepted device with its report and the run the server saw aiming at the release: the full count. */
async function fullCount(database: string, store: FleetStore, rolloutId: string) {
  const rollout = (await store.getRollout(rolloutId))!;
  const driver = isPostgresUrl(database) ? openPostgresDriver(database, { maxConnections: 1 }) : openSqliteDriver(database);
  try {
    const runs = new Map((await driver.query('SELECT device_id, run_id FROM rollout_devices WHERE rollout_id = $1', [rolloutId])).map((r) => [String(r.device_id), r.run_id as string | null]));
    const { devices } = await store.listDevices({ limit: 10_000, offset: 0, status: 'accepted' });
    const progress: DeviceProgress[] = devices.map((d) => {
      const p = d.products.find((x) => x.product === rollout.product);
      return {
        deviceId: d.id,
        tags: d.tags,
        version: p?.version ?? null,
        state: p?.state ?? null,
        lastOutcome: p?.lastOutcome ?? null,
        runId: p?.runId ?? null,
        targetVersion: p?.targetVersion ?? null,
        rolloutRunId: runs.get(d.id) ?? null,
      };
    });
    const counts = countBatches(rollout, progress);
    return { kept: rollout.batches.map((b) => b.counts), full: rollout.batches.map((b) => counts.get(b.index)) };
  } finally {
    await driver.close();
  }
}

describe.each(BACKENDS)('rollout counters on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  let clock: ManualClock;
  const opened: Array<{ server: OtaServer; store: FleetStore }> = [];

  async function startServer(extra: Partial<ServerOptions> = {}, store?: FleetStore): Promise<{ url: string; server: OtaServer; store: FleetStore }> {
    const s = store ?? (await openFleetStore(database));
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
      fleetStore: s,
      ...extra,
    });
    opened.push({ server, store: s });
    const { url } = await server.start(0, '127.0.0.1');
    return { url, server, store: s };
  }

  const operator = (url: string, method: string, route: string, body?: unknown) =>
    fetch(`${url}${route}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, any> }));

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-rollout-counts-'));
    clock = new ManualClock(Date.now());
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock }).init();
    writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
    database = await freshDatabase(backend, dir);
  });
  afterEach(async () => {
    for (const { server, store } of opened.splice(0)) {
      await server.close();
      await store.close().catch(() => {});
    }
    if (!skip) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('after reports, tag changes, accept, reject and preauthorization the kept counters equal a full count', async () => {
    const { url, store } = await startServer();
    const robots: Array<Robot & { site: string }> = [];
    for (const site of ['lab', 'dock', 'yard']) for (let i = 0; i < 8; i++) robots.push({ id: `${site}-${i}`, key: newDeviceKey(), site });
    await store.preauthorize(robots.map((r) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: {} })), 'test', clock.now());
    // Sites come from the robots' own reports (the operator set none).
    for (const r of robots) await checkin(url, r, clock.now(), { tags: { site: r.site } });
    const created = await operator(url, 'POST', '/api/v1/rollouts', {
      product: 'robot-ai',
      version: V,
      batches: [{ tags: { site: 'lab' } }, { percent: 50 }, { all: true }],
      soak: '1h',
      failureThreshold: 0.9,
      minReports: 100,
    });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const check = async (what: string) => {
      const { kept, full } = await fullCount(database, store, id);
      expect(kept, what).toEqual(full);
    };
    await check('at creation');
    expect(created.body.batches[0].counts.devices).toBe(8);

    const [a, b, c, d, e] = robots.filter((r) => r.site === 'lab');
    await checkin(url, a!, clock.now(), { state: 'apply', targetVersion: V, runId: 'ra', tags: { site: 'lab' } });
    await checkin(url, b!, clock.now(), { version: V, lastOutcome: 'committed', runId: 'rb', tags: { site: 'lab' } });
    await checkin(url, c!, clock.now(), { state: 'validate', targetVersion: V, runId: 'rc', tags: { site: 'lab' } });
    // A rollback clears the target: the run id remembered from the earlier check-in ties it to V.
    await checkin(url, c!, clock.now(), { state: 'idle', lastOutcome: 'rolled-back', runId: 'rc', targetVersion: null, tags: { site: 'lab' } });
    await checkin(url, d!, clock.now(), { state: 'failed', lastOutcome: 'failed', targetVersion: V, runId: 'rd', tags: { site: 'lab' } });
    await check('after reports');
    expect((await store.getRollout(id))!.batches[0]!.counts).toEqual({ devices: 8, notStarted: 4, running: 1, committed: 1, rolledBack: 1, failed: 1 });

    // The robot moves itself to another site; the operator moves another; one is rejected.
    await checkin(url, a!, clock.now(), { state: 'apply', targetVersion: V, runId: 'ra', tags: { site: 'yard' } });
    await store.setOperatorTags(robots.find((r) => r.site === 'dock')!.id, { site: 'lab' }, 'test', clock.now());
    await store.decide(e!.id, 'rejected', 'test', clock.now());
    await check('after tag changes and a rejection');
    // A newcomer: pending (not counted) until accepted; a preauthorized device counted before it calls.
    const newcomer = { id: 'lab-new', key: newDeviceKey() };
    expect((await checkin(url, newcomer, clock.now(), { tags: { site: 'lab' }, state: 'apply', targetVersion: V, runId: 'rn' })).status).toBe(202);
    await check('with a pending device');
    await store.decide(newcomer.id, 'accepted', 'test', clock.now());
    await store.decide(e!.id, 'accepted', 'test', clock.now());
    await store.preauthorize([{ deviceId: 'lab-late', publicKey: newDeviceKey().publicKey, tags: { site: 'lab' } }], 'test', clock.now());
    await check('after accepting and preauthorizing');
    expect((await store.getRollout(id))!.batches[0]!.counts).toEqual({ devices: 10, notStarted: 6, running: 1, committed: 1, rolledBack: 1, failed: 1 });
    // A check-in that changes nothing leaves the counters alone.
    const before = await store.getRollout(id);
    await checkin(url, b!, clock.now(), { version: V, lastOutcome: 'committed', runId: 'rb', tags: { site: 'lab' } });
    expect((await store.getRollout(id))!.batches).toEqual(before!.batches);
  });

  it.skipIf(skip)('a robot without leases is told to wait in its check-in answer while its batch is closed, and hears the batch open', async () => {
    const { url, server, store } = await startServer();
    const robots: Robot[] = Array.from({ length: 6 }, (_, i) => ({ id: `r-${i}`, key: newDeviceKey() }));
    await store.preauthorize(robots.map((r, i) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: { site: i < 3 ? 'lab' : 'yard' } })), 'test', clock.now());
    for (const r of robots) await checkin(url, r, clock.now(), {});
    const id = (await operator(url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ tags: { site: 'lab' } }, { all: true }], soak: '10m', failureThreshold: 0.5, minReports: 3 })).body.id as string;
    const yard = robots[4]!;
    const answer = await checkin(url, yard, clock.now(), {});
    expect(answer.body.rollouts).toEqual([{ product: 'robot-ai', version: V, state: 'wait', reason: expect.stringContaining('batch 2') }]);
    // Also when it reports another product only, and when it is already pre-checking the release.
    expect((await checkin(url, yard, clock.now(), { product: 'robot-nav' })).body.rollouts).toMatchObject([{ version: V, state: 'wait' }]);
    expect((await checkin(url, yard, clock.now(), { state: 'preCheck', targetVersion: V, runId: 'y1' })).body.rollouts).toMatchObject([{ version: V, state: 'wait' }]);
    for (const r of robots.slice(0, 3)) await checkin(url, r, clock.now(), { version: V, lastOutcome: 'committed', runId: 'x' });
    clock.advance(10 * 60_000);
    await server.evaluateRollouts();
    expect((await store.getRollout(id))!.batches.map((b) => b.state)).toEqual(['done', 'open']);
    expect((await checkin(url, yard, clock.now(), {})).body.rollouts).toEqual([]);
  });

  it.skipIf(skip)('a rollout from before the counters (schema 2) is counted whole when a server opens the store', async () => {
    const { url, store } = await startServer();
    const robots: Robot[] = Array.from({ length: 5 }, (_, i) => ({ id: `r-${i}`, key: newDeviceKey() }));
    await store.preauthorize(robots.map((r) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: {} })), 'test', clock.now());
    for (const r of robots) await checkin(url, r, clock.now(), {});
    const id = (await operator(url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ all: true }], soak: '10m', failureThreshold: 0.5, minReports: 3 })).body.id as string;
    await checkin(url, robots[0]!, clock.now(), { version: V, lastOutcome: 'committed', runId: 'x' });
    for (const { server, store: s } of opened.splice(0)) {
      await server.close();
      await s.close();
    }
    // What migration 3 leaves for a rollout made before it: no counters, no places, counted = 0.
    const driver = isPostgresUrl(database) ? openPostgresDriver(database, { maxConnections: 1 }) : openSqliteDriver(database);
    await driver.run('UPDATE rollout_batches SET n_devices = 0, n_not_started = 0, n_committed = 0');
    await driver.run('UPDATE rollout_devices SET batch = NULL, outcome = NULL');
    await driver.run('UPDATE rollouts SET counted = 0');
    await driver.close();
    const reopened = await openFleetStore(database);
    opened.push({ server: createServer({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock, logger: silentLogger, fleetStore: reopened, prune: false, rolloutTick: false, timestampRefresh: false }), store: reopened });
    expect((await reopened.getRollout(id))!.batches[0]!.counts).toEqual({ devices: 5, notStarted: 4, running: 0, committed: 1, rolledBack: 0, failed: 0 });
  });

  // Several processes on one database is PostgreSQL's job (two SQLite connections in one test
  // process would block each other's event loop; see rollouts.test.ts).
  it.skipIf(skip || backend === 'sqlite')('two servers counting concurrent check-ins lose no change, and halt the rollout once', async () => {
    const one = await startServer();
    const two = await startServer();
    const robots: Robot[] = Array.from({ length: 40 }, (_, i) => ({ id: `r-${String(i).padStart(2, '0')}`, key: newDeviceKey() }));
    await one.store.preauthorize(robots.map((r) => ({ deviceId: r.id, publicKey: r.key.publicKey, tags: {} })), 'test', clock.now());
    await Promise.all(robots.map((r, i) => checkin(i % 2 === 0 ? one.url : two.url, r, clock.now(), {})));
    const id = (await operator(one.url, 'POST', '/api/v1/rollouts', { product: 'robot-ai', version: V, batches: [{ all: true }], soak: '1h', failureThreshold: 0.2, minReports: 10 })).body.id as string;
    // Every robot runs, and a quarter of them roll back, all at once through both servers.
    await Promise.all(
      robots.map(async (r, i) => {
        const url = i % 2 === 0 ? one.url : two.url;
        const other = i % 2 === 0 ? two.url : one.url;
        await checkin(url, r, clock.now(), { state: 'apply', targetVersion: V, runId: `run-${i}` });
        await checkin(other, r, clock.now(), i % 4 === 0 ? { state: 'idle', lastOutcome: 'rolled-back', runId: `run-${i}`, targetVersion: null } : { version: V, lastOutcome: 'committed', runId: `run-${i}` });
      }),
    );
    const { kept, full } = await fullCount(database, one.store, id);
    expect(kept).toEqual(full);
    expect(kept[0]).toEqual({ devices: 40, notStarted: 0, running: 0, committed: 30, rolledBack: 10, failed: 0 });
    const rollout = (await one.store.getRollout(id))!;
    expect(rollout.state).toBe('halted');
    expect((await one.store.listAudit(100)).filter((a) => a.kind === 'rollout-halted')).toHaveLength(1);
  }, 60_000);
});

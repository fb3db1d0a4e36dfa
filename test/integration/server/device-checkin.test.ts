/**
 * Signed device check-ins through a real ota-server on loopback, on SQLite and on a real PostgreSQL:
 * forged check-ins (unknown key, wrong key, replayed, skewed, unsigned) are refused and leave the
 * database as it was; accept, reject and tags over REST; the rate limit and the pending cap; two
 * servers sharing one PostgreSQL see one fleet and refuse each other's replays.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { keyFingerprint } from '../../../src/fleet/signing.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer, type ServerOptions } from '../../../src/server/app.js';
import type { FleetStore } from '../../../src/server/store/fleet-store.js';
import { openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { BACKENDS, freshDatabase, newDeviceKey, postCheckin, report, stopSharedPostgres, tableCounts } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';
import { RecordingAudit } from '../../support/tuf-repo.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const TOKEN = 'fleet-token-0123456789abcdef';

describe.each(BACKENDS)('signed check-ins on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  let clock: ManualClock;
  let audit: RecordingAudit;
  const opened: Array<{ server: OtaServer; store: FleetStore }> = [];

  async function startServer(extra: Partial<ServerOptions> = {}): Promise<{ url: string; server: OtaServer; store: FleetStore }> {
    const store = await openFleetStore(database);
    const server = createServer({
      repoDir: path.join(dir, 'repo'),
      keysDir: path.join(dir, 'keys'),
      clock,
      logger: silentLogger,
      audit,
      tokenFile: path.join(dir, 'token'),
      timestampRefresh: false,
      prune: false,
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

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-checkin-auth-'));
    clock = new ManualClock(Date.now());
    audit = new RecordingAudit();
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

  it.skipIf(skip)('an unknown key lands pending only; accepted over REST, its next check-in is answered accepted', async () => {
    const { url } = await startServer();
    const key = newDeviceKey();
    const first = await postCheckin({ url, key, body: report('robot-1', { tags: { site: 'dock' } }), now: clock.now() });
    expect(first).toMatchObject({ status: 202, body: { status: 'pending' } });
    expect(audit.events.some((e) => e.kind === 'device-pending')).toBe(true);
    const accepted = await operator(url, 'POST', '/api/v1/devices/robot-1/accept');
    expect(accepted).toMatchObject({ status: 200, body: { device: { status: 'accepted', decidedBy: 'token@127.0.0.1' } } });
    clock.advance(60_000);
    const second = await postCheckin({ url, key, body: report('robot-1', { version: '1.1.0' }), now: clock.now() });
    expect(second).toEqual(expect.objectContaining({ status: 200, body: { status: 'accepted', lastSeen: clock.now(), rollouts: [] } }));
    const list = await operator(url, 'GET', '/api/v1/devices');
    expect(list.body).toMatchObject({ total: 1, limit: 100, offset: 0, devices: [{ id: 'robot-1', status: 'accepted', site: 'dock', fingerprint: keyFingerprint(key.publicKey), products: [{ version: '1.1.0' }] }] });
    expect((await operator(url, 'GET', '/api/v1/devices/robot-1')).body.checkins).toHaveLength(2);
  });

  it.skipIf(skip)('unsigned, badly signed, skewed and mismatched check-ins are refused with their codes and store nothing but audit', async () => {
    const { url } = await startServer();
    const key = newDeviceKey();
    const before = await tableCounts(database);
    const cases = [
      [await postCheckin({ url, key, body: report('robot-1', { version: '0.0.1-pwned', state: 'failed' }), now: clock.now(), unsigned: true }), 401, 'DEVICE_AUTH_REQUIRED'],
      [await postCheckin({ url, key, body: report('robot-1'), now: clock.now() - 6 * 60_000 }), 401, 'DEVICE_CLOCK_SKEW'],
      [await postCheckin({ url, key, body: report('robot-1'), now: clock.now() + 6 * 60_000 }), 401, 'DEVICE_CLOCK_SKEW'],
      [await postCheckin({ url, key, body: report('robot-2'), signAs: 'robot-1', now: clock.now() }), 401, 'DEVICE_SIGNATURE_INVALID'],
      [await postCheckin({ url, key, body: report('robot-1', { unknownField: 1 }), now: clock.now() }), 400, 'API_INVALID_REQUEST'],
    ] as const;
    for (const [res, status, code] of cases) expect({ status: res.status, code: res.body.error?.code }).toEqual({ status, code });
    // A signature over other bytes than the body sent.
    const res = await fetch(`${url}/api/v1/checkin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(await import('../../../src/fleet/signing.js')).signRequest({ method: 'POST', path: '/api/v1/checkin', deviceId: 'robot-1', body: '{}', key, now: clock.now() }) },
      body: JSON.stringify(report('robot-1')),
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as any).error.code).toBe('DEVICE_SIGNATURE_INVALID');
    const after = await tableCounts(database);
    expect({ ...after, audit: 0 }).toEqual({ ...before, audit: 0 });
    expect(after.audit! - before.audit!).toBe(6);
    expect(audit.events.filter((e) => e.kind === 'device-refused')).toHaveLength(6);
  });

  it.skipIf(skip)('a wrong key for an accepted device is a 401 conflict: nothing it sent is stored, the clone shows in GET /api/v1/devices', async () => {
    const { url } = await startServer();
    const real = newDeviceKey();
    const clone = newDeviceKey();
    await postCheckin({ url, key: real, body: report('mac-0242ac110002'), now: clock.now() });
    await operator(url, 'POST', '/api/v1/devices/mac-0242ac110002/accept');
    const before = await tableCounts(database);
    const device = (await operator(url, 'GET', '/api/v1/devices/mac-0242ac110002')).body.device;
    const forged = await postCheckin({ url, key: clone, body: report('mac-0242ac110002', { version: '0.0.1-pwned', state: 'failed', tags: { site: 'evil' } }), now: clock.now() });
    expect(forged).toMatchObject({ status: 401, body: { error: { code: 'DEVICE_KEY_CONFLICT' } } });
    const after = await tableCounts(database);
    expect(after).toEqual({ ...before, key_conflicts: before.key_conflicts! + 1, audit: before.audit! + 1 });
    const listed = (await operator(url, 'GET', '/api/v1/devices')).body.devices[0];
    expect({ ...listed, conflicts: [] }).toEqual({ ...device, conflicts: [] });
    expect(listed.conflicts).toEqual([expect.objectContaining({ fingerprint: keyFingerprint(clone.publicKey), count: 1, source: '127.0.0.1' })]);
    expect(audit.events.find((e) => e.kind === 'device-refused')!.message).toContain('DEVICE_KEY_CONFLICT');
  });

  it.skipIf(skip)('a replayed check-in is refused with DEVICE_REPLAY, by this server and by a second one on the same database', async () => {
    const first = await startServer();
    const key = newDeviceKey();
    const nonce = 'ab'.repeat(16);
    expect((await postCheckin({ url: first.url, key, body: report('robot-1'), now: clock.now(), nonce })).status).toBe(202);
    const before = await tableCounts(database);
    const replay = await postCheckin({ url: first.url, key, body: report('robot-1'), now: clock.now(), nonce });
    expect(replay).toMatchObject({ status: 401, body: { error: { code: 'DEVICE_REPLAY' } } });
    if (backend === 'postgres') {
      const second = await startServer();
      const elsewhere = await postCheckin({ url: second.url, key, body: report('robot-1'), now: clock.now(), nonce });
      expect(elsewhere).toMatchObject({ status: 401, body: { error: { code: 'DEVICE_REPLAY' } } });
    }
    const after = await tableCounts(database);
    expect({ ...after, audit: 0 }).toEqual({ ...before, audit: 0 });
  });

  it.skipIf(skip)('a rejected device gets 403 DEVICE_REJECTED and its report is not kept', async () => {
    const { url } = await startServer();
    const key = newDeviceKey();
    await postCheckin({ url, key, body: report('robot-1'), now: clock.now() });
    expect((await operator(url, 'POST', '/api/v1/devices/robot-1/reject')).body.device.status).toBe('rejected');
    const before = await tableCounts(database);
    const refused = await postCheckin({ url, key, body: report('robot-1', { version: '9.9.9' }), now: clock.now() });
    expect(refused).toMatchObject({ status: 403, body: { error: { code: 'DEVICE_REJECTED' } } });
    expect({ ...(await tableCounts(database)), audit: 0 }).toEqual({ ...before, audit: 0 });
    expect((await operator(url, 'POST', '/api/v1/devices/nobody/accept')).status).toBe(404);
    expect((await fetch(`${url}/api/v1/devices/robot-1/accept`, { method: 'POST' })).status).toBe(401);
  });

  it.skipIf(skip)('operator tags override the reported ones; invalid paging and tags are refused', async () => {
    const { url } = await startServer();
    await postCheckin({ url, key: newDeviceKey(), body: report('robot-1', { tags: { site: 'a' } }), now: clock.now() });
    const tagged = await operator(url, 'PUT', '/api/v1/devices/robot-1/tags', { tags: { site: 'b' } });
    expect(tagged).toMatchObject({ status: 200, body: { device: { site: 'b', tags: { site: 'b' } } } });
    expect((await operator(url, 'PUT', '/api/v1/devices/robot-1/tags', { tags: { 'Bad Name': 'x' } })).status).toBe(400);
    expect((await operator(url, 'GET', '/api/v1/devices?limit=5000')).status).toBe(400);
    expect((await operator(url, 'GET', '/api/v1/devices?status=odd')).status).toBe(400);
  });

  it.skipIf(skip)('a source past its token bucket gets 429 API_RATE_LIMITED with Retry-After, audited once', async () => {
    const { url } = await startServer({ deviceRateLimit: { perSecond: 1, burst: 3 } });
    const key = newDeviceKey();
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof postCheckin>> | null = null;
    for (let i = 0; i < 6; i++) {
      const res = await postCheckin({ url, key, body: report('robot-1'), now: clock.now() });
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses).toEqual([202, 202, 202, 429, 429, 429]);
    expect(limited!.body.error.code).toBe('API_RATE_LIMITED');
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(audit.events.filter((e) => e.kind === 'device-refused' && e.message.includes('API_RATE_LIMITED'))).toHaveLength(1);
  });

  it.skipIf(skip)('past the pending cap a new device is refused with DEVICE_PENDING_LIMIT and nothing is stored', async () => {
    const { url } = await startServer({ maxPendingDevices: 2 });
    for (const id of ['robot-1', 'robot-2']) expect((await postCheckin({ url, key: newDeviceKey(), body: report(id), now: clock.now() })).status).toBe(202);
    const before = await tableCounts(database);
    const refused = await postCheckin({ url, key: newDeviceKey(), body: report('fake-3'), now: clock.now() });
    expect(refused).toMatchObject({ status: 503, body: { error: { code: 'DEVICE_PENDING_LIMIT' } } });
    expect({ ...(await tableCounts(database)), audit: 0 }).toEqual({ ...before, audit: 0 });
    expect(audit.events.some((e) => e.message.includes('DEVICE_PENDING_LIMIT'))).toBe(true);
  });

  it.skipIf(skip || backend !== 'postgres')('two servers on one PostgreSQL serve one fleet: a device registered on one is accepted through the other', async () => {
    const a = await startServer();
    const b = await startServer();
    const key = newDeviceKey();
    expect((await postCheckin({ url: a.url, key, body: report('robot-1'), now: clock.now() })).status).toBe(202);
    expect((await operator(b.url, 'GET', '/api/v1/devices')).body.devices.map((d: { id: string }) => d.id)).toEqual(['robot-1']);
    await operator(b.url, 'POST', '/api/v1/devices/robot-1/accept');
    expect((await postCheckin({ url: a.url, key, body: report('robot-1', { version: '2.0.0' }), now: clock.now() })).status).toBe(200);
    expect((await operator(b.url, 'GET', '/api/v1/devices/robot-1')).body.device.products[0].version).toBe('2.0.0');
    // Check-ins spread over both servers at once: each lands once.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => postCheckin({ url: i % 2 ? a.url : b.url, key, body: report('robot-1'), now: clock.now() })));
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect((await operator(a.url, 'GET', '/api/v1/devices/robot-1')).body.device.checkins).toBe(22);
  });
});

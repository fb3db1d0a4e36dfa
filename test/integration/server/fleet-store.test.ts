/**
 * The fleet store, the same tests against SQLite and a real PostgreSQL: migrations, the check-in
 * decision table, replays, key conflicts, the pending cap, retention, paging and preauthorization.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyFingerprint } from '../../../src/fleet/signing.js';
import type { CheckinInput, FleetStore } from '../../../src/server/store/fleet-store.js';
import { MIGRATIONS, migrate } from '../../../src/server/store/migrations.js';
import { openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { openPostgresDriver } from '../../../src/server/store/postgres-driver.js';
import { openSqliteDriver } from '../../../src/server/store/sqlite-driver.js';
import { BACKENDS, freshDatabase, newDeviceKey, stopSharedPostgres, tableCounts } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const T0 = 1_800_000_000_000;
let nonceCounter = 0;
const nonce = () => (nonceCounter++).toString(16).padStart(32, '0');

describe.each(BACKENDS)('fleet store on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  let store: FleetStore;
  const keyA = newDeviceKey().publicKey;
  const keyB = newDeviceKey().publicKey;

  const input = (deviceId: string, publicKey: string, extra: Partial<CheckinInput> = {}): CheckinInput => ({
    deviceId,
    publicKey,
    nonce: nonce(),
    nonceExpiresAt: T0 + 300_000,
    source: '127.0.0.1',
    now: T0,
    report: { product: 'robot-ai', version: '1.0.0', state: 'idle', lastOutcome: null, error: null, runId: null, targetVersion: null },
    reportedTags: { site: 'warehouse-3' },
    maxPending: 1000,
    ...extra,
  });

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-fleet-store-'));
    database = await freshDatabase(backend, dir);
    store = await openFleetStore(database, { retention: { checkinsPerDevice: 3, maxAgeMs: 86_400_000 }, now: T0 });
  });
  afterEach(async () => {
    if (skip) return;
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('applies each migration once, and a later entry appended to the list applies only that entry', async () => {
    const driver = backend === 'sqlite' ? openSqliteDriver(database) : openPostgresDriver(database);
    try {
      expect(await migrate(driver)).toEqual([]);
      const later = [...MIGRATIONS, { version: MIGRATIONS.length + 1, name: 'a later table', sql: 'CREATE TABLE later_things (id TEXT PRIMARY KEY)' }];
      expect(await migrate(driver, later)).toEqual([MIGRATIONS.length + 1]);
      expect(await migrate(driver, later)).toEqual([]);
      await expect(migrate(driver)).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('newer than this ota-server knows') });
    } finally {
      await driver.close();
    }
  });

  it.skipIf(skip)('an unknown device lands pending with its key and report; its next check-in updates it in place', async () => {
    const first = await store.checkin(input('robot-1', keyA));
    expect(first).toMatchObject({ kind: 'pending', created: true, device: { id: 'robot-1', status: 'pending', fingerprint: keyFingerprint(keyA), site: 'warehouse-3', checkins: 1 } });
    const second = await store.checkin(input('robot-1', keyA, { now: T0 + 60_000, report: { ...input('x', keyA).report, version: '1.1.0', state: 'validate', runId: 'r1', targetVersion: '1.1.0' } }));
    expect(second).toMatchObject({ kind: 'pending', created: false, device: { checkins: 2, firstSeen: T0, lastSeen: T0 + 60_000 } });
    const view = await store.getDevice('robot-1');
    expect(view!.products).toEqual([expect.objectContaining({ product: 'robot-ai', version: '1.1.0', state: 'validate', runId: 'r1', targetVersion: '1.1.0', updatedAt: T0 + 60_000 })]);
    expect((await store.checkinHistory('robot-1', 10)).map((c) => c.version)).toEqual(['1.1.0', '1.0.0']);
  });

  it.skipIf(skip)("stores a product's reported downtime, keeps it through check-ins that carry none, and in the check-in history", async () => {
    const base = input('x', keyA).report;
    const downtime = { runId: 'r1', totalMs: 612.5, stopMs: 40.25, switchMs: 3.5, startMs: 20, probeMs: 548.75, otadMs: 71.5, greenOn: 'new' as const, acrossRestart: false, greenAt: T0 + 30_000 };
    await store.checkin(input('robot-1', keyA, { now: T0 + 60_000, report: { ...base, version: '1.1.0', lastOutcome: 'committed', runId: 'r1', downtime } }));
    expect((await store.getDevice('robot-1'))!.products[0]).toMatchObject({ runId: 'r1', downtime });
    await store.checkin(input('robot-1', keyA, { now: T0 + 120_000, report: { ...base, version: '1.1.0', state: 'checking', runId: 'r2' } }));
    expect((await store.getDevice('robot-1'))!.products[0]).toMatchObject({ runId: 'r2', state: 'checking', downtime });
    const history = await store.checkinHistory('robot-1', 10);
    expect(history.map((c) => c.downtime ?? null)).toEqual([null, downtime]);
  });

  it.skipIf(skip)('refuses a replayed nonce and keeps nothing of it; concurrent copies of one request pass once', async () => {
    const once = input('robot-1', keyA);
    await store.checkin(once);
    const before = await tableCounts(database);
    expect(await store.checkin({ ...once, now: T0 + 1000 })).toEqual({ kind: 'replay' });
    expect(await tableCounts(database)).toEqual(before);
    const shared = input('robot-1', keyA);
    const results = await Promise.all(Array.from({ length: 8 }, () => store.checkin(shared)));
    expect(results.filter((r) => r.kind === 'replay')).toHaveLength(7);
  });

  it.skipIf(skip)('a second key for a known id is a conflict: recorded and counted, the device and its nonce untouched', async () => {
    await store.checkin(input('robot-1', keyA));
    await store.decide('robot-1', 'accepted', 'test', T0);
    const before = await store.getDevice('robot-1');
    const forged = input('robot-1', keyB, { reportedTags: { site: 'elsewhere' } });
    const outcome = await store.checkin(forged);
    expect(outcome).toMatchObject({ kind: 'conflict', conflict: { fingerprint: keyFingerprint(keyB), count: 1, source: '127.0.0.1' } });
    const again = await store.checkin({ ...forged, nonce: nonce(), now: T0 + 5000 });
    expect(again).toMatchObject({ kind: 'conflict', conflict: { count: 2, firstSeen: T0, lastSeen: T0 + 5000 } });
    const after = await store.getDevice('robot-1');
    expect({ ...after, conflicts: [] }).toEqual({ ...before, conflicts: [] });
    expect(after!.conflicts).toEqual([expect.objectContaining({ fingerprint: keyFingerprint(keyB), publicKey: keyB, count: 2 })]);
    // The forged request's nonce was rolled back with it: the same nonce from the real key passes.
    expect(await store.checkin({ ...input('robot-1', keyA), nonce: forged.nonce })).toMatchObject({ kind: 'accepted' });
  });

  it.skipIf(skip)('a rejected device is refused and its report is not stored', async () => {
    await store.checkin(input('robot-1', keyA));
    await store.decide('robot-1', 'rejected', 'test', T0);
    const before = await tableCounts(database);
    expect(await store.checkin(input('robot-1', keyA, { report: { ...input('x', keyA).report, version: '6.6.6' } }))).toMatchObject({ kind: 'rejected' });
    expect(await tableCounts(database)).toEqual(before);
    expect((await store.getDevice('robot-1'))!.products[0]!.version).toBe('1.0.0');
  });

  it.skipIf(skip)('beyond the pending cap a new unknown device is refused, known ones still check in', async () => {
    await store.checkin(input('robot-1', keyA, { maxPending: 2 }));
    await store.checkin(input('robot-2', keyA, { maxPending: 2 }));
    const before = await tableCounts(database);
    expect(await store.checkin(input('robot-3', keyA, { maxPending: 2 }))).toEqual({ kind: 'pending-full', pending: 2 });
    expect(await tableCounts(database)).toEqual(before);
    expect(await store.checkin(input('robot-1', keyA, { maxPending: 2 }))).toMatchObject({ kind: 'pending' });
    await store.decide('robot-2', 'accepted', 'test', T0);
    expect(await store.checkin(input('robot-3', keyA, { maxPending: 2 }))).toMatchObject({ kind: 'pending', created: true });
  });

  it.skipIf(skip)('the pending cap holds when many new devices arrive at once', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => store.checkin(input(`robot-${i}`, keyA, { maxPending: 4 }))));
    expect(results.filter((r) => r.kind === 'pending')).toHaveLength(4);
    expect(results.filter((r) => r.kind === 'pending-full')).toHaveLength(8);
    expect(await store.countDevices('pending')).toBe(4);
  });

  it.skipIf(skip)('keeps the newest N check-ins per device, and prune drops expired nonces and old history', async () => {
    for (let i = 0; i < 6; i++) await store.checkin(input('robot-1', keyA, { now: T0 + i, report: { ...input('x', keyA).report, version: `1.0.${i}` } }));
    await store.checkin(input('robot-2', keyA));
    expect((await store.checkinHistory('robot-1', 10)).map((c) => c.version)).toEqual(['1.0.5', '1.0.4', '1.0.3']);
    expect(await tableCounts(database)).toMatchObject({ nonces: 7, checkins: 4 });
    const pruned = await store.prune(T0 + 86_400_000 + 10);
    expect(pruned).toEqual({ nonces: 7, checkins: 4, audit: 0, leases: 0 });
    expect((await store.getDevice('robot-1'))!.products[0]!.version).toBe('1.0.5');
  });

  it.skipIf(skip)('lists devices page by page with status filter, key fingerprints, products and conflicts', async () => {
    for (let i = 0; i < 5; i++) await store.checkin(input(`robot-${i}`, keyA));
    await store.decide('robot-3', 'accepted', 'ops', T0 + 1);
    await store.checkin(input('robot-3', keyB));
    const page = await store.listDevices({ limit: 2, offset: 2 });
    expect(page.total).toBe(5);
    expect(page.devices.map((d) => d.id)).toEqual(['robot-2', 'robot-3']);
    expect(page.devices[1]).toMatchObject({ status: 'accepted', decidedBy: 'ops', decidedAt: T0 + 1, fingerprint: keyFingerprint(keyA), conflicts: [{ fingerprint: keyFingerprint(keyB) }] });
    expect(page.devices[0]!.products).toHaveLength(1);
    const accepted = await store.listDevices({ limit: 10, offset: 0, status: 'accepted' });
    expect(accepted).toMatchObject({ total: 1, devices: [{ id: 'robot-3' }] });
  });

  it.skipIf(skip)('searches devices by a text their id or site contains, ignoring case and treating % and _ as plain characters', async () => {
    await store.checkin(input('Dock-7', keyA, { reportedTags: { site: 'harbour' } }));
    await store.checkin(input('robot_1', keyA, { reportedTags: { site: 'Warehouse-3' } }));
    await store.checkin(input('robot-2', keyA, { reportedTags: { site: 'lab' } }));
    await store.checkin(input('robotx1', keyA, { reportedTags: {} }));
    const ids = async (search: string, status?: 'pending' | 'accepted') =>
      (await store.listDevices({ limit: 10, offset: 0, search, ...(status !== undefined ? { status } : {}) })).devices.map((d) => d.id);
    expect(await ids('dock')).toEqual(['Dock-7']);
    expect(await ids('WAREHOUSE')).toEqual(['robot_1']);
    expect(await ids('t_1')).toEqual(['robot_1']);
    expect(await ids('%')).toEqual([]);
    await store.decide('robot-2', 'accepted', 'ops', T0);
    expect(await ids('robot', 'accepted')).toEqual(['robot-2']);
    expect(await store.countDevices('pending', 'robot')).toBe(2);
    expect((await store.listDevices({ limit: 1, offset: 0, search: 'robot' })).total).toBe(3);
  });

  it.skipIf(skip)('a preauthorized device is accepted on its first check-in; the listed key replaces a pending one', async () => {
    await store.checkin(input('robot-2', keyB));
    expect(
      await store.preauthorize(
        [
          { deviceId: 'robot-1', publicKey: keyA, tags: { site: 'dock' } },
          { deviceId: 'robot-2', publicKey: keyA, tags: {} },
        ],
        'cli:ops',
        T0,
      ),
    ).toEqual({ created: 1, updated: 1 });
    expect(await store.checkin(input('robot-1', keyA, { reportedTags: { site: 'robot-says' } }))).toMatchObject({ kind: 'accepted', device: { site: 'dock', decidedBy: 'cli:ops' } });
    expect(await store.checkin(input('robot-2', keyA))).toMatchObject({ kind: 'accepted' });
    expect(await store.checkin(input('robot-2', keyB))).toMatchObject({ kind: 'conflict' });
  });

  it.skipIf(skip)('operator tags override reported ones and the site follows them', async () => {
    await store.checkin(input('robot-1', keyA));
    const device = await store.setOperatorTags('robot-1', { site: 'dock-9', zone: 'b' }, 'ops', T0);
    expect(device).toMatchObject({ site: 'dock-9', tags: { site: 'dock-9', zone: 'b' }, reportedTags: { site: 'warehouse-3' } });
    expect(await store.checkin(input('robot-1', keyA))).toMatchObject({ device: { site: 'dock-9' } });
    expect(await store.setOperatorTags('nobody', {}, 'ops', T0)).toBeNull();
    expect((await store.listAudit(5, 'robot-1'))[0]).toMatchObject({ kind: 'device-tags', actor: 'ops' });
  });
});

/**
 * Every device endpoint goes through one check of the signed request against the database
 * (src/server/store/sql-device-auth.ts): a check-in and a lease request forged the same way are
 * refused with the same status and code, store nothing but their audit entry (and, for another key,
 * the key conflict row), on SQLite and on a real PostgreSQL. A nonce used by one kind of request is
 * a replay for the other.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import type { FleetStore } from '../../../src/server/store/fleet-store.js';
import { openFleetStore } from '../../../src/server/store/open-fleet-store.js';
import { BACKENDS, freshDatabase, newDeviceKey, stopSharedPostgres, tableCounts } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';
import { signedRequest, type Robot } from '../../support/signed-requests.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const MIN = 60_000;

describe.each(BACKENDS)('one device check for check-ins and leases on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  let clock: ManualClock;
  let server: OtaServer | null = null;
  let store: FleetStore | null = null;

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-auth-paths-'));
    clock = new ManualClock(Date.now());
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock }).init();
    writeFileSync(path.join(dir, 'token'), 'auth-paths-token-0123456789\n');
    database = await freshDatabase(backend, dir);
  });
  afterEach(async () => {
    await server?.close();
    await store?.close();
    server = null;
    store = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('replayed, skewed, another key, rejected: the check-in and the lease refuse alike and store alike', async () => {
    store = await openFleetStore(database);
    server = createServer({
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
    });
    const { url } = await server.start(0, '127.0.0.1');
    const robot: Robot = { id: 'robot-1', key: newDeviceKey() };
    const outcast: Robot = { id: 'outcast', key: newDeviceKey() };
    await store.preauthorize([{ deviceId: robot.id, publicKey: robot.key.publicKey, tags: { site: 'lab' } }, { deviceId: outcast.id, publicKey: outcast.key.publicKey, tags: {} }], 'test', clock.now());
    await store.decide(outcast.id, 'rejected', 'test', clock.now());

    const paths = {
      checkin: (r: Robot, now: number, nonce?: string) => signedRequest(url, r, 'POST', '/api/v1/checkin', { deviceId: r.id, product: 'robot-ai', version: '1.0.0', state: 'idle' }, now, nonce),
      lease: (r: Robot, now: number, nonce?: string) => signedRequest(url, r, 'POST', '/api/v1/leases', { deviceId: r.id, product: 'robot-ai', version: '2.0.0' }, now, nonce),
    };
    // Each path's first genuine request passes; its nonce, replayed on either path, does not.
    const used: Record<string, string> = { checkin: 'a1'.repeat(16), lease: 'b2'.repeat(16) };
    expect((await paths.checkin(robot, clock.now(), used.checkin)).status).toBe(200);
    expect((await paths.lease(robot, clock.now(), used.lease)).status).toBe(200);

    const clone: Robot = { id: robot.id, key: newDeviceKey() };
    const forgeries: Array<[string, (p: typeof paths.checkin, kind: string) => ReturnType<typeof paths.checkin>]> = [
      ['replayed on the same path', (p, kind) => p(robot, clock.now(), used[kind])],
      ['replayed across paths', (p, kind) => p(robot, clock.now(), used[kind === 'checkin' ? 'lease' : 'checkin'])],
      ['skewed into the past', (p) => p(robot, clock.now() - 10 * MIN)],
      ['skewed into the future', (p) => p(robot, clock.now() + 10 * MIN)],
      ['signed with another key', (p) => p(clone, clock.now())],
      ['from a rejected device', (p) => p(outcast, clock.now())],
    ];
    const seen: Record<string, Array<[string, number, string]>> = { checkin: [], lease: [] };
    for (const kind of ['checkin', 'lease'] as const) {
      for (const [what, forge] of forgeries) {
        const before = await tableCounts(database);
        const conflictsBefore = (await store.getDevice(robot.id))!.conflicts[0]?.count ?? 0;
        const answer = await forge(paths[kind], kind);
        seen[kind]!.push([what, answer.status, answer.body.error?.code]);
        const after = await tableCounts(database);
        const conflict = what === 'signed with another key';
        // Nothing the request sent is stored: one audit entry, and for another key the conflict it is.
        expect({ ...after, audit: 0, key_conflicts: 0 }, `${kind} ${what}`).toEqual({ ...before, audit: 0, key_conflicts: 0 });
        expect(after.audit! - before.audit!, `${kind} ${what}`).toBe(1);
        expect(after.key_conflicts, `${kind} ${what}`).toBe(conflict ? 1 : before.key_conflicts);
        expect(((await store.getDevice(robot.id))!.conflicts[0]?.count ?? 0) - conflictsBefore, `${kind} ${what}`).toBe(conflict ? 1 : 0);
      }
    }
    expect(seen.checkin).toEqual(seen.lease);
    expect(seen.lease!.map(([, status, code]) => [status, code])).toEqual([
      [401, 'DEVICE_REPLAY'],
      [401, 'DEVICE_REPLAY'],
      [401, 'DEVICE_CLOCK_SKEW'],
      [401, 'DEVICE_CLOCK_SKEW'],
      [401, 'DEVICE_KEY_CONFLICT'],
      [403, 'DEVICE_REJECTED'],
    ]);
    // The clone shows on the device as one conflict, seen twice (once per path), never as its key.
    const device = (await store.getDevice(robot.id))!;
    expect(device.publicKey).toBe(robot.key.publicKey);
    expect(device.conflicts).toMatchObject([{ publicKey: clone.key.publicKey, count: 2 }]);
    const refused = (await store.listAudit(50)).filter((a) => a.kind === 'device-refused').map((a) => a.code);
    expect(refused.filter((c) => c === 'DEVICE_KEY_CONFLICT')).toHaveLength(2);
  });
});

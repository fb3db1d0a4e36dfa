/**
 * otad's check-in client against the real ota-server: the signed check-in lands as a pending device
 * with otad's own public key; after the operator accepts it, check-ins are accepted.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { silentLogger } from '../../../src/core/logger.js';
import { buildConfig } from '../../../src/config/load.js';
import { newCheckinMemory, startCheckins } from '../../../src/daemon/checkin.js';
import { createDeviceFleet } from '../../../src/fleet/device-fleet.js';
import { keyFingerprint, loadOrCreateDeviceKey } from '../../../src/fleet/signing.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer } from '../../../src/server/app.js';
import { makeTempDir } from '../../support/tuf-repo.js';

const TOKEN = 'fleet-view-token-0123456789';
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('check-ins with ota-server', () => {
  it('a new robot is pending with its own key, and accepted once the operator accepts it', async () => {
    const dir = await makeTempDir('otad-checkin-server-');
    cleanups.push(() => fs.rm(dir, { recursive: true, force: true }));
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
    const server = createServer({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock, logger: silentLogger, tokenFile: path.join(dir, 'token'), timestampRefresh: false });
    const { url } = await server.start(0, '127.0.0.1');
    cleanups.push(() => server.close());

    const key = await loadOrCreateDeviceKey(path.join(dir, 'device-key.pem'));
    const values = new Map<string, string>();
    const fleet = createDeviceFleet({ deviceId: 'robot-7', key, fingerprint: keyFingerprint(key.publicKey), store: { getValue: (k) => values.get(k) ?? null, setValue: (k, v) => void values.set(k, v) }, logger: silentLogger, now: () => Date.now() });
    cleanups.push(() => fleet.stop());
    const logging = createLogging({ level: 'debug', stdout: false });
    const control = { status: () => ({ deviceId: 'robot-7', products: [{ product: 'robot-ai', installedVersion: '1.0.0', state: 'idle', lastOutcome: null, error: null, runId: null, offeredVersion: null, lastDowntime: null }] }), bus: { subscribe: () => () => {} } };
    const config = buildConfig({ server: { url }, fleet: { tags: { site: 'warehouse-3' } } });
    const reporter = startCheckins({ control: control as never, fleet, config, logger: logging.logger, memory: newCheckinMemory(), now: () => Date.now() });
    cleanups.push(() => reporter.stop());

    await reporter.reportAll();
    const devices = (await request(server.app).get('/api/v1/devices').set('Authorization', `Bearer ${TOKEN}`).expect(200)).body.devices as Array<Record<string, unknown>>;
    expect(devices).toEqual([expect.objectContaining({ id: 'robot-7', status: 'pending' })]);
    expect(JSON.stringify(devices[0])).toContain(keyFingerprint(key.publicKey));
    expect(logging.tail({ contains: 'pending acceptance' })).toHaveLength(1);

    await request(server.app).post('/api/v1/devices/robot-7/accept').set('Authorization', `Bearer ${TOKEN}`).expect((r) => expect(r.status).toBeLessThan(300));
    await reporter.reportAll();
    expect(logging.tail({ contains: 'accepts this device' })).toHaveLength(1);
  });
});

/**
 * Fleet check-ins: the daemon reports each product's version and state to a real ota-server after
 * a run ends; the server's fleet view lists the device.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { startCheckins } from '../../../src/daemon/checkin.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer } from '../../../src/server/app.js';
import { fakeStepProvider } from '../../support/fake-steps.js';
import { waitUntil } from '../../support/otad-process.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('fleet check-ins', () => {
  it('reports the installed version and state after a run, and the server lists the device', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-checkin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const repoDir = join(dir, 'repo');
    const keysDir = join(dir, 'keys');
    await createPublisher({ repoDir, keysDir, clock: systemClock }).init();
    const tokenFile = join(dir, 'server-token');
    writeFileSync(tokenFile, 'fleet-view-token-0123456789\n', { mode: 0o600 });
    const server = createServer({ repoDir, keysDir, clock: systemClock, logger: silentLogger, tokenFile, timestampRefresh: false });
    const { url } = await server.start(0, '127.0.0.1');
    cleanups.push(() => server.close());

    const config = buildConfig({
      server: { url },
      paths: { stateDir: join(dir, 'state') },
      decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') }],
    });
    const daemon = new Daemon({ config, logging: createLogging({ level: 'info', stdout: false }), clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: fakeStepProvider({}) });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    const reporter = startCheckins({ control: daemon, serverUrl: url, logger: silentLogger });
    cleanups.push(() => reporter.stop());

    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    const fleet = async () => (await request(url).get('/api/v1/devices').set('Authorization', 'Bearer fleet-view-token-0123456789')).body.devices as Array<Record<string, unknown>>;
    let devices: Array<Record<string, unknown>> = [];
    await waitUntil(() => daemon.status().products[0]!.lastOutcome === 'committed');
    for (let i = 0; i < 100 && !devices.some((d) => d.version === '2.0.0'); i++) {
      devices = await fleet();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(devices).toEqual([expect.objectContaining({ deviceId: 'mac-0242ac110002', product: 'robot-ai', version: '2.0.0', state: 'idle', lastOutcome: 'committed' })]);
  });

  it('costs nothing but a debug line when the server has no check-in endpoint', async () => {
    const logger = createLogging({ level: 'debug', stdout: false });
    const control = { status: () => ({ deviceId: 'd-1', products: [{ product: 'robot-ai', installedVersion: '1.0.0', state: 'idle', lastOutcome: null, error: null }] }), bus: { subscribe: () => () => {} } };
    const reporter = startCheckins({ control: control as never, serverUrl: 'http://127.0.0.1:9/', logger: logger.logger });
    await reporter.reportAll();
    expect(logger.tail({ level: 'debug' }).some((l) => l.message === 'check-in failed')).toBe(true);
  });
});

/**
 * Fleet check-ins: the daemon reports each product's version and state after a run ends, signed
 * with its device key, to a loopback server that speaks the fleet protocol.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { silentLogger } from '../../../src/core/logger.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { newCheckinMemory, startCheckins } from '../../../src/daemon/checkin.js';
import { createDeviceFleet } from '../../../src/fleet/device-fleet.js';
import { keyFingerprint, loadOrCreateDeviceKey } from '../../../src/fleet/signing.js';

async function fleetFor(dir: string, deviceId: string) {
  const key = await loadOrCreateDeviceKey(join(dir, 'device-key.pem'));
  const values = new Map<string, string>();
  const store = { getValue: (k: string) => values.get(k) ?? null, setValue: (k: string, v: string) => void values.set(k, v) };
  return createDeviceFleet({ deviceId, key, fingerprint: keyFingerprint(key.publicKey), store, logger: silentLogger, now: () => Date.now() });
}
import { fakeStepProvider } from '../../support/fake-steps.js';
import { waitUntil } from '../../support/otad-process.js';
import { protocolOperator, startFleetProtocolServer } from '../../support/fleet-protocol-server.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('fleet check-ins', () => {
  it('reports the installed version and state after a run, signed, and the server records the device', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-checkin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });

    const config = buildConfig({
      server: { url: server.url },
      paths: { stateDir: join(dir, 'state') },
      decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') }],
    });
    const daemon = new Daemon({ config, logging: createLogging({ level: 'info', stdout: false }), clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: fakeStepProvider({}) });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    const fleetSide = await fleetFor(dir, 'mac-0242ac110002');
    const reporter = startCheckins({ control: daemon, fleet: fleetSide, config, logger: silentLogger, memory: newCheckinMemory(), now: () => Date.now() });
    cleanups.push(() => reporter.stop());

    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => daemon.status().products[0]!.lastOutcome === 'committed');
    let received: Array<{ status: number; body: unknown }> = [];
    for (let i = 0; i < 100 && !received.some((r) => (r.body as { version?: string } | null)?.version === '2.0.0'); i++) {
      received = (await op.state()).received;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(received.at(-1)).toMatchObject({
      status: 200,
      body: { deviceId: 'mac-0242ac110002', product: 'robot-ai', version: '2.0.0', state: 'idle', lastOutcome: 'committed', tags: {} },
    });
  });

  it('after a rollback still names the version the run aimed at, so the server counts the outcome against that release', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-checkin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = await startFleetProtocolServer();
    cleanups.push(() => server.close());
    const op = protocolOperator(server.url);
    await op.settings({ autoAccept: true });
    const config = buildConfig({
      server: { url: server.url },
      paths: { stateDir: join(dir, 'state') },
      decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' },
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') }],
    });
    const daemon = new Daemon({ config, logging: createLogging({ level: 'info', stdout: false }), clock: systemClock, deviceId: 'mac-0242ac110003', stepProvider: fakeStepProvider({ fail: { validate: 'HEALTH_CHECK_FAILED' } }) });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    const reporter = startCheckins({ control: daemon, fleet: await fleetFor(dir, 'mac-0242ac110003'), config, logger: silentLogger, memory: newCheckinMemory(), now: () => Date.now() });
    cleanups.push(() => reporter.stop());

    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => daemon.status().products[0]!.lastOutcome === 'rolled-back');
    expect(daemon.status().products[0]!.offeredVersion).toBeNull();
    await reporter.reportAll();
    expect((await op.state()).received.at(-1)).toMatchObject({ body: { lastOutcome: 'rolled-back', targetVersion: '2.0.0', runId: daemon.status().products[0]!.runId } });
  });

  it('costs nothing but a debug line when the server has no check-in endpoint', async () => {
    const logger = createLogging({ level: 'debug', stdout: false });
    const control = { status: () => ({ deviceId: 'd-1', products: [{ product: 'robot-ai', installedVersion: '1.0.0', state: 'idle', lastOutcome: null, error: null, lastDowntime: null }] }), bus: { subscribe: () => () => {} } };
    const dir = mkdtempSync(join(tmpdir(), 'otad-checkin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const config = buildConfig({ server: { url: 'http://127.0.0.1:9/' } });
    const reporter = startCheckins({ control: control as never, fleet: await fleetFor(dir, 'd-1'), config, logger: logger.logger, memory: newCheckinMemory(), now: () => Date.now() });
    cleanups.push(() => reporter.stop());
    await reporter.reportAll();
    expect(logger.tail({ level: 'debug' }).some((l) => l.message === 'check-in failed')).toBe(true);
  });
});

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { FakeSystemInfo } from '../../../src/net/fake-system-info.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import type { HttpClient } from '../../../src/net/http-client.js';
import { createNetworkMonitor, hasUsableLink } from '../../../src/net/network-monitor.js';
import { createSystemInfoAdapter } from '../../../src/net/system-info.js';
import { createFaultyServer } from '../../support/faulty-server.js';
import type { FaultyServer } from '../../support/faulty-server.js';

let server: FaultyServer;
let http: HttpClient;
let clock: ManualClock;

beforeEach(async () => {
  server = await createFaultyServer({ '/healthz': Buffer.from('ok') });
  http = createHttpClient({ connectTimeoutMs: 1_000, headersTimeoutMs: 1_000, idleTimeoutMs: 1_000, userAgent: 'otad-test', logger: silentLogger });
  clock = new ManualClock('2030-01-01T03:00:00Z');
});

afterEach(async () => {
  await http.close();
  await server.close();
});

describe('network monitor', () => {
  it('reports an online snapshot with the external interfaces, the gateway and a reachable server', async () => {
    const si = new FakeSystemInfo({
      interfaces: [FakeSystemInfo.ethernet(), FakeSystemInfo.ethernet({ name: 'lo', internal: true, ip4: '127.0.0.1', type: '' })],
    });
    const monitor = createNetworkMonitor({ si, http, clock, probeUrl: server.url('/healthz') });
    const snap = await monitor.snapshot();
    expect(snap).toMatchObject({
      online: true,
      defaultGateway: '192.0.2.1',
      serverReachable: true,
      recentThroughputBps: null,
      checkedAt: Date.parse('2030-01-01T03:00:00Z'),
    });
    expect(snap.interfaces).toEqual([{ name: 'eth0', mac: '02:00:00:00:00:01', ip4: '192.0.2.10', type: 'wired', operstate: 'up' }]);
    expect(snap.latencyMs).toBe(0); // the manual clock did not move
    expect(() => JSON.stringify(snap)).not.toThrow();
  });

  it('counts any HTTP answer as reachable: a 404 still proves the server is there', async () => {
    const monitor = createNetworkMonitor({ si: new FakeSystemInfo(), http, clock, probeUrl: server.url('/nope') });
    expect((await monitor.snapshot()).serverReachable).toBe(true);
  });

  it('is offline without a usable link, and does not probe the server then', async () => {
    const si = new FakeSystemInfo();
    si.goOffline();
    const monitor = createNetworkMonitor({ si, http, clock, probeUrl: server.url('/healthz') });
    const snap = await monitor.snapshot();
    expect(snap).toMatchObject({ online: false, serverReachable: false, latencyMs: null, defaultGateway: null });
    expect(server.requests).toHaveLength(0);
  });

  it('reports the server unreachable (but the link online) when the probe cannot connect', async () => {
    const port = server.port;
    await server.close();
    const monitor = createNetworkMonitor({ si: new FakeSystemInfo(), http, clock, probeUrl: `http://127.0.0.1:${port}/healthz` });
    expect(await monitor.snapshot()).toMatchObject({ online: true, serverReachable: false, latencyMs: null });
    server = await createFaultyServer({});
  });

  it('is online through a reachable server even without a default route', async () => {
    const monitor = createNetworkMonitor({ si: new FakeSystemInfo({ gateway: null }), http, clock, probeUrl: server.url('/healthz') });
    expect(await monitor.snapshot()).toMatchObject({ online: true, defaultGateway: null, serverReachable: true });
  });

  it('averages recorded throughput over the recent window and forgets old samples', async () => {
    const monitor = createNetworkMonitor({ si: new FakeSystemInfo(), http, clock, probeUrl: null, throughputWindowMs: 60_000 });
    monitor.recordThroughput(1_000_000, 1_000);
    monitor.recordThroughput(3_000_000, 1_000);
    expect((await monitor.snapshot()).recentThroughputBps).toBe(2_000_000);
    clock.advance(61_000);
    expect((await monitor.snapshot()).recentThroughputBps).toBeNull();
  });

  it('waitForNetwork resolves only once the robot is back online', async () => {
    const si = new FakeSystemInfo();
    si.goOffline();
    const monitor = createNetworkMonitor({ si, http, clock, probeUrl: server.url('/healthz') });
    const waiting = monitor.waitForNetwork({ pollMs: 5 });
    while (si.calls < 3) await new Promise((resolve) => setTimeout(resolve, 2));
    expect(server.requests).toHaveLength(0);
    si.goOnline();
    const snap = await waiting;
    expect(snap.online).toBe(true);
  });

  it('waitForNetwork rejects with CANCELLED when its signal aborts', async () => {
    const si = new FakeSystemInfo();
    si.goOffline();
    const controller = new AbortController();
    const monitor = createNetworkMonitor({ si, http, clock, probeUrl: null });
    const waiting = monitor.waitForNetwork({ pollMs: 5, signal: controller.signal });
    setTimeout(() => controller.abort(), 20);
    const error = await waiting.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect((error as OtaError).code).toBe('CANCELLED');
  });

  it('the real systeminformation adapter lists this host\'s interfaces in the port\'s shape', async () => {
    const interfaces = await createSystemInfoAdapter().networkInterfaces();
    expect(Array.isArray(interfaces)).toBe(true);
    for (const i of interfaces) {
      expect(i).toEqual({
        name: expect.any(String),
        mac: expect.any(String),
        ip4: expect.any(String),
        ip6: expect.any(String),
        type: expect.any(String),
        operstate: expect.any(String),
        internal: expect.any(Boolean),
      });
    }
    expect(typeof hasUsableLink(interfaces)).toBe('boolean');
  });
});

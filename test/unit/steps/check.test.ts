import { describe, expect, it, vi } from 'vitest';
import { buildConfig, type Config } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { MemoryLogger, type AuditEvent } from '../../../src/core/logger.js';
import type { Manifest } from '../../../src/manifest/schema.js';
import type { NetworkSnapshot, WaitForNetworkOptions } from '../../../src/net/network-monitor.js';
import { rolloutBucket } from '../../../src/schedule/spread.js';
import { createCheckStep, createNetworkStatus, type CachedRelease, type CheckPorts, type ReleaseCache } from '../../../src/steps/check.js';
import { createFakeRepository, type FakeRepository } from '../../../src/trust/fake-repository.js';
import type { UpdateRepository } from '../../../src/trust/update-repository.js';

const NOW = Date.parse('2026-03-01T12:00:00Z');

function snapshot(online: boolean): NetworkSnapshot {
  return { online, interfaces: [], defaultGateway: online ? '192.0.2.1' : null, latencyMs: online ? 12 : null, serverReachable: online, recentThroughputBps: null, checkedAt: NOW };
}

/** A network port whose link the test switches; waitForNetwork resolves when it comes back. */
class FakeNetwork {
  online = true;
  waits: WaitForNetworkOptions[] = [];
  private waiters: Array<() => void> = [];

  async snapshot(): Promise<NetworkSnapshot> {
    return snapshot(this.online);
  }

  waitForNetwork(options: WaitForNetworkOptions): Promise<NetworkSnapshot> {
    this.waits.push(options);
    if (this.online) return Promise.resolve(snapshot(true));
    return new Promise((resolve, reject) => {
      options.signal?.addEventListener('abort', () => reject(new OtaError('CANCELLED', 'waiting for the network was cancelled')), { once: true });
      this.waiters.push(() => resolve(snapshot(true)));
    });
  }

  comeOnline(): void {
    this.online = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

class MemoryCache implements ReleaseCache {
  readonly entries = new Map<string, CachedRelease>();
  failWrites = false;
  async write(product: string, release: CachedRelease): Promise<void> {
    if (this.failWrites) throw new Error('EROFS: read-only file system');
    this.entries.set(product, release);
  }
  async read(product: string): Promise<CachedRelease | null> {
    return this.entries.get(product) ?? null;
  }
}

function manifest(version: string, extra: Partial<Manifest> = {}): Omit<Manifest, 'package'> {
  return { schema: '1.0', product: 'robot-ai', version, channel: 'stable', releasedAt: '2026-02-01T00:00:00Z', notes: `notes for ${version}`, ...extra };
}

interface Harness {
  step: ReturnType<typeof createCheckStep>;
  repo: FakeRepository;
  network: FakeNetwork;
  cache: MemoryCache;
  logger: MemoryLogger;
  audits: AuditEvent[];
  bad: Set<string>;
  status: ReturnType<typeof createNetworkStatus>;
}

function harness(options: { product?: Record<string, unknown>; deviceId?: string; repository?: UpdateRepository } = {}): Harness {
  const config: Config = buildConfig({
    server: { url: 'http://127.0.0.1:9' },
    paths: { stateDir: '/nonexistent/otad-unit' },
    products: [{ name: 'robot-ai', installPath: '/opt/robot-ai', ...(options.product ?? {}) }],
  });
  const repo = createFakeRepository();
  const network = new FakeNetwork();
  const cache = new MemoryCache();
  const logger = new MemoryLogger();
  const audits: AuditEvent[] = [];
  const bad = new Set<string>();
  const status = createNetworkStatus();
  const ports: CheckPorts = {
    product: config.products[0]!,
    config,
    deviceId: options.deviceId ?? 'robot-0001',
    repository: options.repository ?? repo,
    network,
    isBad: (product, version) => bad.has(`${product}@${version}`),
    clock: new ManualClock(NOW),
    logger,
    audit: { audit: (e) => audits.push(e) },
    networkStatus: status,
    releaseCache: cache,
    offlinePollMs: 5,
    retry: { retries: 2, minDelayMs: 1, maxDelayMs: 2, jitter: false },
  };
  return { step: createCheckStep(ports), repo, network, cache, logger, audits, bad, status };
}

const input = (installedVersion: string | null) => ({ product: 'robot-ai', runId: 'run-1', installedVersion });
const signal = () => new AbortController().signal;

/** Device ids in and out of a release's rollout bucket, found by the same pure hash the step uses. */
function deviceFor(inside: boolean, version: string, percent: number): string {
  for (let i = 0; i < 10_000; i += 1) {
    const id = `robot-${i}`;
    if (rolloutBucket(id, 'robot-ai', version) < percent === inside) return id;
  }
  throw new Error('no device found');
}

describe('check step', () => {
  it('offers the newest release over an older install with its deferral and rollout fields', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.0.0'), Buffer.from('one'));
    h.repo.addRelease(manifest('1.2.0', { installBy: '2026-04-01T00:00:00Z', maxDeferralHours: 48, rolloutPercent: 100, minFromVersion: '1.0.0' }), Buffer.from('two'));
    const out = await h.step(input('1.1.0'), signal());
    expect(out.available).toBe(true);
    if (!out.available) return;
    expect(out.installedVersion).toBe('1.1.0');
    expect(out.offer).toMatchObject({
      product: 'robot-ai',
      version: '1.2.0',
      channel: 'stable',
      notes: 'notes for 1.2.0',
      installBy: Date.parse('2026-04-01T00:00:00Z'),
      maxDeferralMs: 48 * 3_600_000,
      rolloutPercent: 100,
      minFromVersion: '1.0.0',
      package: { name: 'robot-ai/robot-ai-1.2.0.tar.gz', length: 3 },
    });
    expect(h.repo.calls.map((c) => c.op)).toEqual(['refresh', 'latestRelease']);
  });

  it('offers any release when nothing is installed yet', async () => {
    const h = harness();
    h.repo.addRelease(manifest('0.9.0'), Buffer.from('x'));
    const out = await h.step(input(null), signal());
    expect(out).toMatchObject({ available: true, installedVersion: null, offer: { version: '0.9.0' } });
  });

  it('answers not available when the installed version is the latest', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.2.0'), Buffer.from('x'));
    expect(await h.step(input('1.2.0'), signal())).toEqual({ available: false, installedVersion: '1.2.0' });
  });

  it('answers not available when the product has no release on its channel', async () => {
    const h = harness({ product: { channel: 'beta' } });
    h.repo.addRelease(manifest('2.0.0'), Buffer.from('x'));
    expect(await h.step(input('1.0.0'), signal())).toEqual({ available: false, installedVersion: '1.0.0' });
    expect(h.repo.calls[1]?.args[1]).toMatchObject({ channel: 'beta', allowPrerelease: false });
  });

  it('asks for prereleases only when the product allows them', async () => {
    const strict = harness();
    strict.repo.addRelease(manifest('1.0.0'), Buffer.from('a'));
    strict.repo.addRelease(manifest('1.1.0-rc.1'), Buffer.from('b'));
    expect(await strict.step(input('1.0.0'), signal())).toEqual({ available: false, installedVersion: '1.0.0' });

    const beta = harness({ product: { allowPrerelease: true } });
    beta.repo.addRelease(manifest('1.0.0'), Buffer.from('a'));
    beta.repo.addRelease(manifest('1.1.0-rc.1'), Buffer.from('b'));
    expect(await beta.step(input('1.0.0'), signal())).toMatchObject({ available: true, offer: { version: '1.1.0-rc.1' } });
  });

  it('does not offer an older release unless the product allows downgrades', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.0.0'), Buffer.from('old'));
    expect(await h.step(input('1.5.0'), signal())).toEqual({ available: false, installedVersion: '1.5.0' });
    expect(h.logger.lines.find((l) => l.fields.reason === 'downgrade')?.fields.code).toBe('RELEASE_DOWNGRADE');

    const allowed = harness({ product: { allowDowngrade: true } });
    allowed.repo.addRelease(manifest('1.0.0'), Buffer.from('old'));
    expect(await allowed.step(input('1.5.0'), signal())).toMatchObject({ available: true, offer: { version: '1.0.0' } });
  });

  it('does not offer a release whose minimum from-version is above the installed one', async () => {
    const h = harness();
    h.repo.addRelease(manifest('3.0.0', { minFromVersion: '2.0.0' }), Buffer.from('x'));
    expect(await h.step(input('1.0.0'), signal())).toEqual({ available: false, installedVersion: '1.0.0' });
    expect(h.logger.lines.some((l) => l.fields.code === 'RELEASE_INCOMPATIBLE')).toBe(true);
  });

  it('does not offer again a version marked bad after a rollback', async () => {
    const h = harness();
    h.repo.addRelease(manifest('2.0.0'), Buffer.from('x'));
    h.bad.add('robot-ai@2.0.0');
    expect(await h.step(input('1.0.0'), signal())).toEqual({ available: false, installedVersion: '1.0.0' });
    expect(h.logger.lines.some((l) => l.fields.reason === 'marked-bad')).toBe(true);
  });

  it('offers a phased release only to devices inside its rollout percentage', async () => {
    const outside = harness({ deviceId: deviceFor(false, '2.0.0', 30) });
    outside.repo.addRelease(manifest('2.0.0', { rolloutPercent: 30 }), Buffer.from('x'));
    expect(await outside.step(input('1.0.0'), signal())).toEqual({ available: false, installedVersion: '1.0.0' });
    const line = outside.logger.lines.find((l) => l.fields.reason === 'rollout');
    expect(line?.fields.rolloutPercent).toBe(30);

    const inside = harness({ deviceId: deviceFor(true, '2.0.0', 30) });
    inside.repo.addRelease(manifest('2.0.0', { rolloutPercent: 30 }), Buffer.from('x'));
    expect(await inside.step(input('1.0.0'), signal())).toMatchObject({ available: true, offer: { version: '2.0.0', rolloutPercent: 30 } });
  });

  it('caches the verified manifest so its notes can be shown offline', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.2.0', { notes: 'faster planner' }), Buffer.from('x'));
    await h.step(input('1.2.0'), signal());
    const cached = await h.cache.read('robot-ai');
    expect(cached?.manifest.notes).toBe('faster planner');
    expect(cached?.manifestTarget.name).toBe('robot-ai/robot-ai-1.2.0.manifest.json');
    expect(cached?.checkedAt).toBe(NOW);
  });

  it('still answers when the release cache cannot be written', async () => {
    const h = harness();
    h.cache.failWrites = true;
    h.repo.addRelease(manifest('1.2.0'), Buffer.from('x'));
    expect(await h.step(input('1.0.0'), signal())).toMatchObject({ available: true });
    expect(h.logger.lines.some((l) => l.level === 'warn' && l.message.includes('could not cache'))).toBe(true);
  });

  it('waits for the network while offline instead of failing, and publishes each snapshot', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.2.0'), Buffer.from('x'));
    h.network.online = false;
    const running = h.step(input('1.0.0'), signal());
    await vi.waitFor(() => expect(h.network.waits).toHaveLength(1));
    expect(h.repo.calls).toHaveLength(0);
    expect(h.status.latest()?.online).toBe(false);
    expect(h.network.waits[0]?.pollMs).toBe(5);
    h.network.comeOnline();
    expect(await running).toMatchObject({ available: true });
    expect(h.status.latest()?.online).toBe(true);
  });

  it('stops waiting for the network when the run is cancelled, without contacting the repository', async () => {
    const h = harness();
    h.network.online = false;
    const abort = new AbortController();
    const running = h.step(input('1.0.0'), abort.signal);
    await vi.waitFor(() => expect(h.network.waits).toHaveLength(1));
    abort.abort();
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(h.repo.calls).toHaveLength(0);
  });

  it('rethrows trust failures from the repository with their codes', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.2.0'), Buffer.from('x'));
    h.repo.failNext('refresh', 'TRUST_SIGNATURE');
    await expect(h.step(input('1.0.0'), signal())).rejects.toMatchObject({ code: 'TRUST_SIGNATURE', category: 'trust' });
    h.repo.failNext('latestRelease', 'TRUST_EXPIRED');
    await expect(h.step(input('1.0.0'), signal())).rejects.toMatchObject({ code: 'TRUST_EXPIRED' });
  });

  it('retries transient network failures of the metadata refresh, never trust failures', async () => {
    const h = harness();
    h.repo.addRelease(manifest('1.2.0'), Buffer.from('x'));
    h.repo.failNext('refresh', 'NETWORK_RESET', 2);
    expect(await h.step(input('1.0.0'), signal())).toMatchObject({ available: true });
    expect(h.repo.calls.filter((c) => c.op === 'refresh')).toHaveLength(3);

    const t = harness();
    t.repo.failNext('refresh', 'TRUST_ROLLBACK');
    await expect(t.step(input('1.0.0'), signal())).rejects.toMatchObject({ code: 'TRUST_ROLLBACK' });
    expect(t.repo.calls.filter((c) => c.op === 'refresh')).toHaveLength(1);
  });

  it('gives up with the network code once the retries are spent', async () => {
    const h = harness();
    h.repo.failNext('latestRelease', 'HTTP_STATUS', 3);
    await expect(h.step(input('1.0.0'), signal())).rejects.toMatchObject({ code: 'HTTP_STATUS' });
    expect(h.repo.calls.filter((c) => c.op === 'latestRelease')).toHaveLength(3);
  });

  it('rejects and audits a release for another product that a repository let through', async () => {
    const fake = createFakeRepository();
    const foreign = fake.addRelease(manifest('9.0.0', { product: 'vacuum' }), Buffer.from('x'));
    const lying: UpdateRepository = { ...fake, latestRelease: async () => foreign };
    const h = harness({ repository: lying });
    await expect(h.step(input('1.0.0'), signal())).rejects.toMatchObject({ code: 'RELEASE_WRONG_PRODUCT' });
    expect(h.audits).toEqual([expect.objectContaining({ kind: 'trust-failure', product: 'robot-ai', runId: 'run-1' })]);
  });
});

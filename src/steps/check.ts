/**
 * The check step: is there a release this robot should be offered?
 *
 * Order matters and each stage says why it stopped: wait for the network (never fail just because
 * the robot is in a dead zone), refresh TUF metadata, take the newest release of the product's
 * channel, then filter it: semver against the installed version (no downgrade unless the product
 * allows it, prereleases only when allowed), versions marked bad after a rollback, and this
 * device's place in a phased rollout. Only then is it mapped to the machine's Offer.
 *
 * Invariants:
 * - read-only towards the robot: the only writes are the release cache (for offline release notes)
 *   and the published network status, so running it twice is harmless;
 * - whatever the repository returns was proven genuine; trust failures are audited by the
 *   repository that detected them (createTufRepository's audit sink) and rethrown with their codes;
 *   a release the step itself finds inconsistent (wrong product) is audited here.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { CheckInput, CheckOutput, Offer } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { evaluateOffer, toOffer } from '../manifest/offer.js';
import type { NetworkMonitor, NetworkSnapshot } from '../net/network-monitor.js';
import { withRetry, type RetryPolicy } from '../net/retry.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import { inRollout, rolloutBucket } from '../schedule/spread.js';
import type { PassedOverRelease, UpdateRepository, VerifiedRelease } from '../trust/update-repository.js';
import { detectPlatform, unmetRequirements, type Platform } from '../manifest/requirements.js';
import { evaluateDependencies } from '../manifest/dependencies.js';
import { detectProduct } from '../products/registry.js';

/** Where the daemon reads the robot's network quality from (status, API, metrics). */
export interface NetworkStatusSink {
  update(snapshot: NetworkSnapshot): void;
}

/** An in-memory NetworkStatusSink the daemon can hold and read from. */
export interface NetworkStatusHolder extends NetworkStatusSink {
  latest(): NetworkSnapshot | null;
}

export function createNetworkStatus(): NetworkStatusHolder {
  let latest: NetworkSnapshot | null = null;
  return {
    update(snapshot) {
      latest = snapshot;
    },
    latest: () => latest,
  };
}

/** What the check caches about the newest verified release of a product. */
export interface CachedRelease extends VerifiedRelease {
  /** When the check verified it (clock port, ms since the epoch). */
  checkedAt: number;
}

/** Keeps the last verified manifest per product so release notes can be shown offline. */
export interface ReleaseCache {
  write(product: string, release: CachedRelease): Promise<void>;
  read(product: string): Promise<CachedRelease | null>;
}

/** `<cacheDir>/<product>/latest-release.json`, written atomically. */
export function releaseCachePath(cacheDir: string, product: string): string {
  return path.join(cacheDir, product, 'latest-release.json');
}

export function createFileReleaseCache(cacheDir: string): ReleaseCache {
  return {
    async write(product, release) {
      const file = releaseCachePath(cacheDir, product);
      await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await atomicWriteFile(file, `${JSON.stringify(release, null, 2)}\n`, { mode: 0o600 });
    },
    async read(product) {
      try {
        return JSON.parse(await fs.readFile(releaseCachePath(cacheDir, product), 'utf8')) as CachedRelease;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || error instanceof SyntaxError) return null;
        throw error;
      }
    },
  };
}

export interface CheckPorts {
  product: ProductConfig;
  config: Config;
  deviceId: string;
  repository: UpdateRepository;
  network: Pick<NetworkMonitor, 'snapshot' | 'waitForNetwork'>;
  /** A version marked bad (rolled back) is never offered again automatically. */
  isBad(product: string, version: string): boolean;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  /** Receives every network snapshot the step takes (default: dropped). */
  networkStatus?: NetworkStatusSink;
  /** Default: a file cache under config.paths.cacheDir. */
  releaseCache?: ReleaseCache;
  /** How often to look again while offline. Default 30 s. */
  offlinePollMs?: number;
  /** What this robot is, for the manifest's signed requirements. Default: detectPlatform(). */
  platform?: Platform;
  /** Backoff for transient network failures; retries default to config.server.retries. */
  retry?: Partial<RetryPolicy>;
}

export type CheckStep = (input: CheckInput, signal: AbortSignal) => Promise<CheckOutput>;

export const DEFAULT_OFFLINE_POLL_MS = 30_000;

export function createCheckStep(ports: CheckPorts): CheckStep {
  const { product, repository, clock } = ports;
  const cache = ports.releaseCache ?? createFileReleaseCache(ports.config.paths.cacheDir);
  const pollMs = ports.offlinePollMs ?? DEFAULT_OFFLINE_POLL_MS;
  const retryPolicy: Partial<RetryPolicy> = { retries: ports.config.server.retries, ...(ports.retry ?? {}) };
  const platform = ports.platform ?? detectPlatform();

  return async function check(input: CheckInput, signal: AbortSignal): Promise<CheckOutput> {
    const log = ports.logger.child({ step: 'check', runId: input.runId });
    const { installedVersion } = input;
    const none: CheckOutput = { available: false, installedVersion };
    if (input.product !== product.name) {
      throw new OtaError('INTERNAL', `check step for ${product.name} was asked to check product ${input.product}`, {
        details: { expected: product.name, got: input.product },
      });
    }

    await waitUntilOnline(signal, log);
    throwIfAborted(signal);

    // Metadata requests are small and not retried by the TUF client: transport trouble (a reset,
    // a 503, a DNS hiccup) is retried here with backoff; trust failures never are.
    const passedOver: PassedOverRelease[] = [];
    const release = await withRetry(
      async () => {
        await repository.refresh(signal);
        passedOver.length = 0;
        return repository.latestRelease(product.name, {
          channel: product.channel,
          allowPrerelease: product.allowPrerelease,
          signal,
          accept: (manifest) => {
            const unmet = unmetRequirements(manifest.requirements, platform);
            if (unmet.length === 0) return null;
            return new OtaError('RELEASE_REQUIREMENTS_UNMET', `release ${manifest.version} ${unmet.map((u) => u.message).join('; ')}`, {
              details: { version: manifest.version, unmet: unmet.map((u) => u.requirement), platform: { ...platform } },
            });
          },
          onPassedOver: (p) => passedOver.push(p),
        });
      },
      { operation: `check ${product.name}`, logger: log, signal, policy: retryPolicy, shouldRetry: (error) => error.category === 'network' },
    );
    for (const p of passedOver) {
      const fields = { version: p.version, target: p.target, code: p.error.code, installedVersion };
      if (p.error.code === 'RELEASE_REQUIREMENTS_UNMET') {
        log.info(`release ${p.version} passed over: it is not for this robot (${p.error.message})`, fields);
      } else {
        log.warn(`release ${p.version} passed over: ${p.error.message}; an older valid release is considered instead`, fields);
        ports.audit.audit({ kind: 'trust-failure', message: `check: release ${p.version} passed over: ${p.error.message}`, product: product.name, runId: input.runId, details: { code: p.error.code, target: p.target } });
      }
    }
    if (release === null) {
      if (passedOver.length > 0) {
        log.info('no release of this product on its channel fits this robot', { channel: product.channel, installedVersion, passedOver: passedOver.map((p) => p.version) });
        return none;
      }
      log.info('no release of this product on its channel', { channel: product.channel, installedVersion });
      return none;
    }
    const { manifest } = release;
    await cacheRelease(release, log);

    const decision = evaluateOffer({
      manifest,
      product: product.name,
      installedVersion,
      channelAllowsPrerelease: product.allowPrerelease,
      allowDowngrade: product.allowDowngrade,
    });
    if (!decision.offered) {
      if (decision.reason === 'wrong-product') {
        // The repository already checks this; reaching here means a repository implementation let
        // a foreign manifest through: a security event, not an ordinary "no update".
        const error = new OtaError('RELEASE_WRONG_PRODUCT', decision.message, { details: { product: product.name, manifestProduct: manifest.product, version: manifest.version } });
        ports.audit.audit({ kind: 'trust-failure', message: `check: ${decision.message}`, product: product.name, runId: input.runId, details: { code: error.code } });
        log.error('release rejected', { code: error.code, error: error.message });
        throw error;
      }
      const fields = { version: manifest.version, installedVersion, reason: decision.reason, ...(decision.code ? { code: decision.code } : {}) };
      if (decision.reason === 'up-to-date') log.info(decision.message, fields);
      else log.warn(`release not offered: ${decision.message}`, fields);
      return none;
    }

    if (ports.isBad(product.name, manifest.version)) {
      log.warn('release not offered: this version was marked bad (rolled back, or its package was rejected); publish a newer version to update', {
        version: manifest.version,
        installedVersion,
        reason: 'marked-bad',
      });
      return none;
    }

    const percent = manifest.rolloutPercent ?? 100;
    if (!inRollout(ports.deviceId, product.name, manifest.version, percent)) {
      log.info('release not offered yet: this device is outside the phased rollout', {
        version: manifest.version,
        rolloutPercent: percent,
        bucket: Math.floor(rolloutBucket(ports.deviceId, product.name, manifest.version) * 100) / 100,
        reason: 'rollout',
      });
      return none;
    }

    const offer = toOffer(manifest, release.manifestTarget, installedVersion);
    log.info(
      offer.delta !== undefined
        ? `update available: delta from ${offer.delta.fromVersion}, ${offer.delta.target.length} bytes to download (full package ${offer.package.length})`
        : `update available: full package, ${offer.package.length} bytes to download`,
      { version: offer.version, installedVersion, channel: offer.channel, rolloutPercent: percent, downloadBytes: offer.downloadBytes, delta: offer.delta !== undefined },
    );
    if (manifest.dependencies !== undefined && Object.keys(manifest.dependencies).length > 0) {
      offer.dependencies = await siblingDependencies(manifest.dependencies);
      for (const d of offer.dependencies) {
        const fields = { version: offer.version, sibling: d.product, range: d.range, siblingVersion: d.installed };
        // Reported, not enforced: the release is still offered (docs/manifest.md, "dependencies").
        if (d.met) log.info(`release ${offer.version} needs ${d.product} ${d.range}: installed ${d.installed} satisfies it`, fields);
        else log.warn(`release ${offer.version} needs ${d.product} ${d.range}: ${d.installed === null ? 'not installed on this robot' : `installed ${d.installed} does not satisfy it`} (reported only; the update is not held back)`, fields);
      }
    }
    return { available: true, installedVersion, offer };
  };

  /** The release's dependencies against the versions of this robot's other products as installed now. */
  async function siblingDependencies(dependencies: Record<string, string>): Promise<NonNullable<Offer['dependencies']>> {
    const installed = new Map<string, string[]>();
    for (const p of ports.config.products) {
      if (p.name === product.name || !Object.hasOwn(dependencies, p.name)) continue;
      const detected = await detectProduct(p).catch(() => null);
      if (detected?.version) installed.set(p.name, [detected.version]);
    }
    return evaluateDependencies(dependencies, installed, 'installed').map((v) => ({ product: v.product, range: v.range, installed: installed.get(v.product)?.[0] ?? null, met: v.problem === null }));
  }

  async function waitUntilOnline(signal: AbortSignal, log: Logger): Promise<void> {
    const first = await ports.network.snapshot();
    ports.networkStatus?.update(first);
    if (first.online) return;
    log.info('offline: waiting for the network before checking for updates', { pollMs });
    const online = await ports.network.waitForNetwork({ signal, pollMs });
    ports.networkStatus?.update(online);
    log.info('network is back: checking for updates', { latencyMs: online.latencyMs });
  }

  /** Best effort: a full or read-only cache must not stop an update check. */
  async function cacheRelease(release: VerifiedRelease, log: Logger): Promise<void> {
    try {
      await cache.write(product.name, { manifest: release.manifest, manifestTarget: release.manifestTarget, checkedAt: clock.now() });
    } catch (error) {
      log.warn('could not cache the verified release manifest; release notes will not be available offline', {
        error: isOtaError(error) ? error.message : String(error),
      });
    }
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (isOtaError(reason)) throw reason;
    throw new OtaError('CANCELLED', 'the update check was cancelled', { cause: reason });
  }
}

/**
 * Builds the UpdateRepository one product's check and stage steps talk to, from configuration:
 *
 * - kind `tuf` (default): TUF over HTTP(S). Metadata from `<repository.url ?? server.url>/metadata/`,
 *   targets from `repository.targetBaseUrl ?? server.targetBaseUrl ?? <base>/targets/` (targets may
 *   live elsewhere, e.g. release assets). Bytes travel through src/net: the pooled undici client
 *   (server timeouts, optional CA bundle, TLS verification always on) and the resumable downloader
 *   (deadline, throughput floor, retries with backoff).
 * - kind `local`: the same signed repository on a folder (`repository.path`, a USB stick).
 *
 * Either way the trusted metadata cache is `<stateDir>/tuf/<product>` (per product, because products
 * may use different repositories) and the golden copy of the trusted root is `paths.trustedRoot`.
 * Trust failures are logged and audited by the repository itself.
 */
import path from 'node:path';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { createDownloader, type DownloadMeter, type Downloader } from '../net/download.js';
import { createRateLimiter } from '../net/rate-limit.js';
import { createHttpClient, type HttpClient } from '../net/http-client.js';
import type { RetryPolicy } from '../net/retry.js';
import { createLocalFolderRepository } from '../trust/local-folder-repository.js';
import { metadataFetcherFromHttp, targetDownloaderFromNet } from '../trust/net-ports.js';
import { createTufRepository, type TrustLimits } from '../trust/tuf-repository.js';
import type { UpdateRepository } from '../trust/update-repository.js';

export interface RepositoryFactoryDeps {
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  /** A shared HTTP client (the daemon's). Without one the repository makes its own and close() ends it. */
  http?: HttpClient;
  /** Told how many bytes each download attempt moved and how long it took (network monitor). */
  onThroughput?: (bytes: number, ms: number) => void;
  /** Retry schedule override (tests use millisecond delays); retries default to server.retries. */
  retry?: Partial<RetryPolicy>;
  limits?: Partial<TrustLimits>;
  userAgent?: string;
  /** The product's metered-link policy (src/net/metered.ts): gates and counts every byte the repository fetches. */
  meter?: DownloadMeter & { count(bytes: number): void };
}

/** An UpdateRepository that may own a connection pool. */
export interface ProductRepository extends UpdateRepository {
  readonly kind: 'tuf' | 'local';
  /** Where trusted metadata is cached for this product. */
  readonly metadataDir: string;
  /** Releases the HTTP client if this repository created it; otherwise a no-op. */
  close(): Promise<void>;
}

/**
 * `<stateDir>/tuf/<product>`: the TUF metadata cache of one product's repository named `default`;
 * another repository it can be switched to keeps its own, `<stateDir>/tuf/<product>@<name>`, so
 * the version counters of one never judge the metadata of another.
 */
export function metadataDirFor(config: Config, product: string, repository = 'default'): string {
  return path.join(config.paths.stateDir, 'tuf', repository === 'default' ? product : `${product}@${repository}`);
}

/** The metadata and target base URLs a product's TUF client uses. */
export function repositoryUrlsFor(product: ProductConfig, config: Config): { metadataBaseUrl: string; targetBaseUrl: string } {
  const base = product.repository.url ?? config.server.url;
  let metadataBaseUrl: string;
  try {
    metadataBaseUrl = new URL('metadata/', withSlash(base)).toString();
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `repository URL ${JSON.stringify(base)} of product ${product.name} is not a URL; expected e.g. https://ota.example.com/`, {
      cause,
      details: { product: product.name, url: base },
    });
  }
  const targets = product.repository.targetBaseUrl ?? config.server.targetBaseUrl;
  const targetBaseUrl = targets === undefined ? new URL('targets/', withSlash(base)).toString() : withSlash(targets);
  return { metadataBaseUrl, targetBaseUrl };
}

export function createRepositoryForProduct(product: ProductConfig, config: Config, deps: RepositoryFactoryDeps): ProductRepository {
  const metadataDir = metadataDirFor(config, product.name, product.repository.name);
  const logger = deps.logger.child({ product: product.name });
  const common = {
    metadataDir,
    trustedRootPath: config.paths.trustedRoot,
    clock: deps.clock,
    logger,
    audit: deps.audit,
    ...(deps.limits === undefined ? {} : { limits: deps.limits }),
  };

  if (product.repository.kind === 'local') {
    const dir = product.repository.path;
    if (dir === undefined || dir === '') {
      throw new OtaError('CONFIG_INVALID', `product ${product.name} has repository.kind "local" but no repository.path; expected the folder that holds metadata/ and targets/`, {
        details: { product: product.name },
      });
    }
    const repo = createLocalFolderRepository(dir, common);
    return { ...repo, kind: 'local', metadataDir, close: async () => {} };
  }

  const ownHttp = deps.http === undefined;
  const http =
    deps.http ??
    createHttpClient({
      connectTimeoutMs: config.server.connectTimeout,
      headersTimeoutMs: config.server.headersTimeout,
      idleTimeoutMs: config.server.idleTimeout,
      ...(config.server.caFile === undefined ? {} : { caFile: config.server.caFile }),
      userAgent: deps.userAgent ?? 'otad',
      logger,
    });
  const downloader = createProductDownloader(product, config, http, deps);
  const fetcher = metadataFetcherFromHttp(http);
  const meter = deps.meter;
  const repo = createTufRepository({
    ...common,
    ...repositoryUrlsFor(product, config),
    ...(product.repository.mirrorUrl === undefined ? {} : { mirrorBaseUrl: mirrorUrlFor(product) }),
    fetcher:
      meter === undefined
        ? fetcher
        : {
            async getBuffer(url, options) {
              const body = await fetcher.getBuffer(url, options);
              meter.count(body.length);
              return body;
            },
          },
    downloader: targetDownloaderFromNet(downloader),
  });
  return {
    ...repo,
    kind: 'tuf',
    metadataDir,
    close: async () => {
      if (ownHttp) await http.close();
    },
  };
}

/**
 * The downloader a product's targets go through: the server's retries, deadline and throughput
 * floor, the product's rate cap and metered-link policy. Also what `npm run bench` times.
 */
export function createProductDownloader(
  product: ProductConfig,
  config: Config,
  http: HttpClient,
  deps: Pick<RepositoryFactoryDeps, 'clock' | 'logger' | 'retry' | 'onThroughput' | 'meter'>,
): Downloader {
  const maxRate = product.network.maxRateBps;
  return createDownloader({
    http,
    clock: deps.clock,
    logger: deps.logger.child({ product: product.name }),
    retry: { retries: config.server.retries, ...(deps.retry ?? {}) },
    // Judged over a 30 s window: short stalls (a robot passing an access point) are not failures.
    // Under a rate cap the floor is at most half the cap, so the throttle never trips it.
    minThroughput: { bytesPerSec: maxRate > 0 ? Math.min(config.server.minThroughputBps, Math.floor(maxRate / 2)) : config.server.minThroughputBps, graceMs: 30_000 },
    deadlineMs: config.server.downloadDeadline,
    ...(deps.onThroughput === undefined ? {} : { onThroughput: deps.onThroughput }),
    ...(maxRate > 0 ? { rateLimit: createRateLimiter({ bytesPerSec: maxRate }) } : {}),
    ...(deps.meter === undefined ? {} : { meter: deps.meter }),
  });
}

/** The product's mirror base URL (repository.mirrorUrl), checked: http(s) only. */
export function mirrorUrlFor(product: ProductConfig): string {
  const raw = product.repository.mirrorUrl!;
  let url: URL;
  try {
    url = new URL(withSlash(raw));
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `repository.mirrorUrl ${JSON.stringify(raw)} of product ${product.name} is not a URL; expected e.g. https://github.com/acme/robot-ai/releases/download/ota/`, {
      cause,
      details: { product: product.name, url: raw },
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new OtaError('CONFIG_INVALID', `repository.mirrorUrl of product ${product.name} must be http: or https:, got ${url.protocol}`, { details: { product: product.name } });
  }
  return url.toString();
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/**
 * ota-server: the reference update server. It serves a repository folder as static files (the same
 * folder nginx or a CDN could serve), accepts uploads and publishes them through the publisher
 * library ota-repo uses, re-signs the timestamp with the online key, and takes signed device
 * check-ins into the fleet store (SQLite or PostgreSQL, src/server/store/). The fleet page for
 * operators is at /fleet/ (src/server/ui/).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError, toErrorData } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { detectCompression } from '../package/compression.js';
import { createPublisher, type Publisher } from '../repo/repository.js';
import { receiveBody } from './receive-body.js';
import { deviceAdminRouter } from './device-admin.js';
import { checkinHandler } from './device-checkin.js';
import { RateLimiter, type RateLimitOptions } from './rate-limit.js';
import { leaseRouter } from './rollouts/lease-endpoints.js';
import { rolloutAdminRouter } from './rollouts/rollout-admin.js';
import { describeStep } from './rollouts/rollout-model.js';
import type { FleetStore, SiteBudgets } from './store/fleet-store.js';
import { openFleetStore } from './store/open-fleet-store.js';
import { createStudio } from './studio/drafts.js';
import type { SourceRoot } from './studio/source-roots.js';
import { studioApiRouter } from './studio/studio-api.js';
import type { StudioRepository } from './studio/repositories.js';
import { createTemplateStore } from './studio/templates.js';
import { studioToolsRouter } from './studio/studio-tools-api.js';
import { createUploads } from './studio/uploads.js';
import { createFolderUploads } from './studio/folder-uploads.js';
import { fleetPageRouter } from './ui/router.js';
import { shippedProductTypesDir } from '../products/product-types.js';

export interface Timer {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const systemTimer: Timer = {
  setInterval: (fn, ms) => {
    const handle = setInterval(fn, ms);
    handle.unref();
    return handle;
  },
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

export interface ServerOptions {
  repoDir: string;
  /** Online keys (snapshot, timestamp) and, for uploads, the targets key. */
  keysDir: string;
  clock: Clock;
  logger: Logger;
  audit?: AuditSink;
  /** File holding the bearer token for uploads and the fleet view. Absent: those endpoints answer 403. */
  tokenFile?: string;
  maxUploadBytes?: number;
  /** The fleet store, opened by the caller (who also closes it). */
  fleetStore?: FleetStore;
  /** Without `fleetStore`: the database to open, a SQLite file or a postgres:// URL (default `<repo>/fleet.db`). */
  database?: string;
  /** Per source address on the device endpoints (default 5 a second, bursts of 30). */
  deviceRateLimit?: RateLimitOptions;
  /** Unknown devices are refused while this many wait for a decision (default 10,000). */
  maxPendingDevices?: number;
  /** Express's `trust proxy`: set it when a proxy in front sets X-Forwarded-For, so limits apply per robot. */
  trustProxy?: boolean | number | string;
  /** Remove expired nonces and old history this often (default every minute; false: never). */
  prune?: false | { intervalMs: number; timer?: Timer };
  /** Unexpired update leases per site at once (default 2 for every site; 0: no budget). */
  siteBudgets?: SiteBudgets;
  /** What a robot refused a lease for a halt or a closed batch is told to wait (default a minute). */
  leaseRetryMs?: number;
  /** Evaluate the rollouts (open batches after their soak, halt on failures) this often (default every 10 s; false: only on failures reported). */
  rolloutTick?: false | { intervalMs: number; timer?: Timer };
  /** Folders on this machine the publisher studio may build releases from (default: none). */
  sourceRoots?: SourceRoot[];
  /** Product-type templates the studio offers (default: the ones shipped in config/product-types). */
  productTypesDir?: string;
  /** The repositories the studio lists and tests (ota-server --studio-config FILE, `repositories:`). */
  studioRepositories?: StudioRepository[];
  /** Re-sign the timestamp periodically (false: never). */
  timestampRefresh?: false | { intervalMs: number; refreshWithinMs?: number; timer?: Timer };
}

export interface OtaServer {
  app: express.Express;
  publisher: Publisher;
  start(port: number, host?: string): Promise<{ port: number; host: string; url: string }>;
  close(): Promise<void>;
  /** One timestamp refresh tick (what the timer runs). */
  tick(): Promise<void>;
  /** One rollout evaluation (what the rollout timer runs); several processes may run it at once. */
  evaluateRollouts(): Promise<void>;
}

const DEFAULT_MAX_UPLOAD = 1024 * 1024 * 1024;
export const DEFAULT_DEVICE_RATE: RateLimitOptions = { perSecond: 5, burst: 30 };
export const DEFAULT_MAX_PENDING = 10_000;
export const DEFAULT_SITE_BUDGETS: SiteBudgets = { default: 2, sites: {} };
export const DEFAULT_LEASE_RETRY_MS = 60_000;
export const DEFAULT_ROLLOUT_TICK_MS = 10_000;
const QUERY_FIELD = /^[\x20-\x7e\n\r\t\u00a0-\uffff]*$/;

export function createServer(options: ServerOptions): OtaServer {
  const log = options.logger.child({ component: 'ota-server' });
  const publisher = createPublisher({ repoDir: options.repoDir, keysDir: options.keysDir, clock: options.clock, logger: log });
  const ownsStore = options.fleetStore === undefined;
  const storeReady: Promise<FleetStore> =
    options.fleetStore !== undefined ? Promise.resolve(options.fleetStore) : openFleetStore(options.database ?? path.join(options.repoDir, 'fleet.db'));
  // A store that fails to open fails each request that needs it (and the caller's close), not the process.
  storeReady.catch((error: unknown) => log.error('the fleet database could not be opened', { error: toErrorData(error) }));
  const store = () => storeReady;
  const maxUploadBytes = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD;
  let tokenDigest: Buffer | null = null;
  if (options.tokenFile !== undefined) {
    const token = readToken(options.tokenFile);
    tokenDigest = createHash('sha256').update(token).digest();
  }
  // Publishing and timestamp signing never interleave: each reads and bumps the same versions.
  let lock: Promise<unknown> = Promise.resolve();
  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = lock.then(fn);
    lock = run.catch(() => {});
    return run;
  }

  const app = express();
  app.disable('x-powered-by');
  if (options.trustProxy !== undefined) app.set('trust proxy', options.trustProxy);
  app.set('etag', 'strong');

  const staticOptions = {
    etag: true,
    lastModified: true,
    index: false as const,
    dotfiles: 'ignore' as const,
    redirect: false,
    setHeaders(res: Response, file: string) {
      const base = path.basename(file);
      // timestamp.json and root.json change in place: never cached. Everything else is versioned or hash-named.
      if (base === 'timestamp.json' || base === 'root.json') res.setHeader('Cache-Control', 'no-store');
      else res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
    },
  };
  app.use('/metadata', express.static(publisher.metadataDir, staticOptions));
  app.use('/targets', express.static(publisher.targetsDir, staticOptions));

  function authorized(req: Request, res: Response, what: string): boolean {
    if (tokenDigest === null) {
      res.status(403).json(errorBody(new OtaError('API_FORBIDDEN', `${what} is disabled: the server was started without a token file`)));
      return false;
    }
    const header = req.get('authorization') ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    const given = createHash('sha256').update(match?.[1] ?? '').digest();
    // Digests have equal length, so the comparison time does not depend on the token.
    if (match === null || !timingSafeEqual(given, tokenDigest)) {
      options.audit?.audit({ kind: 'api-auth-failure', message: `${what}: ${match === null ? 'no bearer token' : 'wrong bearer token'}`, actor: req.ip ?? 'unknown' });
      res.status(401).set('WWW-Authenticate', 'Bearer').json(errorBody(new OtaError('API_UNAUTHORIZED', `${what} needs a valid bearer token`)));
      return false;
    }
    return true;
  }

  app.post('/api/v1/upload', async (req: Request, res: Response, next: NextFunction) => {
    if (!authorized(req, res, 'upload')) return;
    try {
      const q = req.query as Record<string, unknown>;
      const field = (name: string, max: number): string | undefined => {
        const value = q[name];
        if (value === undefined) return undefined;
        if (typeof value !== 'string' || value.length > max || !QUERY_FIELD.test(value)) {
          throw new OtaError('API_INVALID_REQUEST', `query parameter ${name} must be one text value of at most ${max} characters`);
        }
        return value;
      };
      const product = field('product', 64);
      const version = field('version', 64);
      if (product === undefined || version === undefined) {
        throw new OtaError('API_INVALID_REQUEST', 'upload needs query parameters product and version (and optionally channel, notes, minFromVersion, rolloutPercent, versionFile)');
      }
      const declared = Number(req.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > maxUploadBytes) {
        throw new OtaError('API_TOO_LARGE', `upload of ${declared} bytes exceeds the limit of ${maxUploadBytes} bytes`);
      }
      const uploads = path.join(options.repoDir, '.uploads');
      await fs.mkdir(uploads, { recursive: true });
      // Named by what it is once its first bytes are read: the repository names the target by them too.
      const file = path.join(uploads, `${randomBytes(8).toString('hex')}.upload`);
      try {
        await receiveBody(req, file, maxUploadBytes);
        if ((await detectCompression(file)) === null) {
          throw new OtaError('API_INVALID_REQUEST', 'the uploaded body is neither gzip nor zstd (expected a .tar.gz or .tar.zst package)');
        }
        const rollout = field('rolloutPercent', 5);
        const release = {
          product,
          version,
          packageFile: file,
          ...(field('channel', 32) !== undefined ? { channel: field('channel', 32)! } : {}),
          ...(field('notes', 16_384) !== undefined ? { notes: field('notes', 16_384)! } : {}),
          ...(field('minFromVersion', 64) !== undefined ? { minFromVersion: field('minFromVersion', 64)! } : {}),
          ...(rollout !== undefined ? { rolloutPercent: Number(rollout) } : {}),
          // The scan robots run, before anything is signed (as ota-repo add and the studio do): a
          // release robots would refuse is never published. versionFile=PATH also checks that the
          // package's version file says this version.
          check: { versionFile: field('versionFile', 255) ?? null },
        };
        const result = await exclusive(async () => {
          const { role } = await publisher.signingRoleFor(product, release.channel ?? 'stable');
          const added = await publisher.add(release);
          const published = await publisher.publish(role !== undefined ? { role } : {});
          return { ...added, publish: published };
        });
        options.audit?.audit({ kind: 'upload', message: `published ${product} ${version}`, product, actor: req.ip ?? 'unknown', details: { package: result.packageTarget } });
        res.status(201).json({ product, version, manifestTarget: result.manifestTarget, packageTarget: result.packageTarget, publish: result.publish });
      } finally {
        await fs.rm(file, { force: true });
      }
    } catch (error) {
      if (isOtaError(error) && error.code === 'API_TOO_LARGE') {
        // Do not read the rest of an oversized body: answer, then drop the connection.
        res.setHeader('Connection', 'close');
        res.on('finish', () => req.destroy());
      }
      next(error);
    }
  });

  const deviceOptions = {
    store,
    clock: options.clock,
    ...(options.audit !== undefined ? { audit: options.audit } : {}),
    limiter: new RateLimiter(options.deviceRateLimit ?? DEFAULT_DEVICE_RATE),
    maxPending: options.maxPendingDevices ?? DEFAULT_MAX_PENDING,
    log,
  };
  const budgets = options.siteBudgets ?? DEFAULT_SITE_BUDGETS;
  app.post('/api/v1/checkin', ...checkinHandler(deviceOptions));
  app.use(leaseRouter({ ...deviceOptions, budgets, retryAfterMs: options.leaseRetryMs ?? DEFAULT_LEASE_RETRY_MS }));
  app.use(rolloutAdminRouter({ store, clock: options.clock, ...(options.audit !== undefined ? { audit: options.audit } : {}), budgets, authorized }));
  app.use(deviceAdminRouter({ store, clock: options.clock, ...(options.audit !== undefined ? { audit: options.audit } : {}), authorized }));
  const studio = createStudio({
    publisher,
    sourceRoots: options.sourceRoots ?? [],
    productTypesDir: options.productTypesDir ?? shippedProductTypesDir(),
    draftsDir: path.join(options.repoDir, '.studio-drafts'),
    clock: options.clock,
    exclusive,
    // Each repository the studio may write to gets a publisher with the keys the studio holds for it.
    repositories: (options.studioRepositories ?? []).map((r) => ({
      name: r.name,
      ...(r.local === true ? { local: true } : {}),
      ...(r.path !== undefined && r.keys !== undefined ? { publisher: createPublisher({ repoDir: r.path, keysDir: r.keys, clock: options.clock, logger: log }) } : {}),
    })),
  });
  const folderUploads = createFolderUploads({ dir: path.join(options.repoDir, '.studio-folders'), maxBytes: maxUploadBytes });
  app.use(studioApiRouter({ studio, folderUploads, maxUploadBytes, ...(options.audit !== undefined ? { audit: options.audit } : {}), authorized }));
  const uploads = createUploads({ dir: path.join(options.repoDir, '.studio-uploads'), maxBytes: maxUploadBytes });
  app.use(
    studioToolsRouter({
      studio,
      uploads,
      templates: createTemplateStore(options.productTypesDir ?? shippedProductTypesDir()),
      repositories: options.studioRepositories ?? [],
      clock: options.clock,
      ...(options.audit !== undefined ? { audit: options.audit } : {}),
      authorized,
    }),
  );
  // The operator pages (studio, fleet): static files only, every datum through the API above with the token.
  app.use(fleetPageRouter());

  app.use((_req: Request, res: Response) => {
    res.status(404).json(errorBody(new OtaError('API_NOT_FOUND', 'no such resource')));
  });

  // Express 5 passes rejected async handlers here. Bodies name the code; internals stay in the log.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = statusFor(error);
    // 507 (DISK_FULL) is a condition the publisher must know about, not an internal detail.
    const hidden = status >= 500 && status !== 507;
    if (status >= 500) log.error('request failed', { error: toErrorData(error) });
    res.status(status).json(hidden ? { error: { code: 'INTERNAL', message: 'internal error' } } : errorBody(error));
  });

  let server: Server | null = null;
  let timerHandle: unknown = null;
  let pruneHandle: unknown = null;
  let rolloutHandle: unknown = null;
  const rolloutTick = options.rolloutTick === undefined ? { intervalMs: DEFAULT_ROLLOUT_TICK_MS } : options.rolloutTick;
  const prune = options.prune === undefined ? { intervalMs: 60_000 } : options.prune;
  const refresh = options.timestampRefresh === undefined ? { intervalMs: 3_600_000 } : options.timestampRefresh;

  async function tick(): Promise<void> {
    if (refresh === false) return;
    try {
      const result = await exclusive(() => publisher.refreshTimestamp({ onlyIfExpiringWithinMs: refresh.refreshWithinMs ?? 12 * 3_600_000 }));
      if (result.refreshed) log.info('timestamp re-signed', { version: result.version, expires: result.expires });
    } catch (error) {
      log.error('timestamp re-signing failed', { error: toErrorData(error) });
    }
  }

  async function evaluateRollouts(): Promise<void> {
    const changes = await (await storeReady).evaluateRollouts(options.clock.now());
    for (const { rolloutId, step } of changes) {
      log.info(`rollout ${rolloutId} ${describeStep(step)}`, { rolloutId, step: step.kind });
    }
  }

  return {
    app,
    publisher,
    tick,
    evaluateRollouts,
    async start(port, host = '127.0.0.1') {
      await new Promise<void>((resolve, reject) => {
        server = app.listen(port, host, (error?: Error) => (error ? reject(error) : resolve()));
      });
      const address = server!.address();
      const actualPort = typeof address === 'object' && address !== null ? address.port : port;
      if (refresh !== false) {
        const timer = refresh.timer ?? systemTimer;
        timerHandle = timer.setInterval(() => void tick(), refresh.intervalMs);
      }
      if (prune !== false) {
        pruneHandle = (prune.timer ?? systemTimer).setInterval(() => {
          void storeReady
            .then((s) => s.prune(options.clock.now()))
            .catch((error: unknown) => log.warn('pruning the fleet database failed', { error: toErrorData(error) }));
        }, prune.intervalMs);
      }
      if (rolloutTick !== false) {
        rolloutHandle = (rolloutTick.timer ?? systemTimer).setInterval(() => {
          evaluateRollouts().catch((error: unknown) => log.warn('evaluating the rollouts failed; the next tick tries again', { error: toErrorData(error) }));
        }, rolloutTick.intervalMs);
      }
      log.info('ota-server listening', { host, port: actualPort });
      return { port: actualPort, host, url: `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}` };
    },
    async close() {
      if (timerHandle !== null && refresh !== false) (refresh.timer ?? systemTimer).clearInterval(timerHandle);
      timerHandle = null;
      if (pruneHandle !== null && prune !== false) (prune.timer ?? systemTimer).clearInterval(pruneHandle);
      pruneHandle = null;
      if (rolloutHandle !== null && rolloutTick !== false) (rolloutTick.timer ?? systemTimer).clearInterval(rolloutHandle);
      rolloutHandle = null;
      await lock;
      await uploads.close().catch((error: unknown) => log.warn('removing the studio uploads failed', { error: toErrorData(error) }));
      await folderUploads.close().catch((error: unknown) => log.warn('removing the studio folder uploads failed', { error: toErrorData(error) }));
      await studio.close().catch((error: unknown) => log.warn('removing the studio drafts failed', { error: toErrorData(error) }));
      if (server !== null) {
        const s = server;
        server = null;
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      if (ownsStore) await (await storeReady.catch(() => null))?.close();
    },
  };
}

function readToken(file: string): string {
  // Read synchronously once at start: a missing token file is a configuration error, not a request error.
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (cause) {
    throw new OtaError('CONFIG_NOT_FOUND', `token file ${file} is not readable: ${(cause as Error).message}`, { cause });
  }
  if (text.length < 16) throw new OtaError('CONFIG_INVALID', `token file ${file} holds ${text.length} characters, expected at least 16`);
  return text;
}


function statusFor(error: unknown): number {
  if ((error as { type?: string }).type === 'entity.too.large') return 413;
  if ((error as { type?: string }).type === 'entity.parse.failed') return 400;
  if (!isOtaError(error)) return 500;
  // A package robots would refuse is the sender's mistake, not the server's.
  if (error.code.startsWith('PACKAGE_')) return 400;
  switch (error.code) {
    case 'API_TOO_LARGE':
      return 413;
    case 'API_UNAUTHORIZED':
      return 401;
    case 'API_FORBIDDEN':
    case 'PUBLISH_OUTSIDE_DELEGATION':
    case 'PUBLISH_DELEGATION_EXPIRED':
    case 'PUBLISH_REPOSITORY_NOT_WRITABLE':
      return 403;
    case 'API_NOT_FOUND':
      return 404;
    case 'API_RATE_LIMITED':
      return 429;
    case 'API_INVALID_REQUEST':
    case 'MANIFEST_INVALID':
    case 'RELEASE_VERSION_MISMATCH':
      return 400;
    case 'UPLOAD_PATH_UNSAFE':
      return 400;
    case 'UPLOAD_TOO_MANY_FILES':
      return 413;
    case 'CONFIG_INVALID':
    case 'VERSION_TAKEN':
    case 'PUBLISH_CONTENT_CHANGED':
    case 'TEMPLATE_CHANGED':
    case 'UPLOAD_OFFSET_MISMATCH':
      return 409;
    case 'DISK_FULL':
      return 507;
    default:
      return 500;
  }
}

function errorBody(error: unknown): { error: { code: string; message: string } } {
  if ((error as { type?: string }).type === 'entity.too.large') return { error: { code: 'API_TOO_LARGE', message: 'request body too large' } };
  if ((error as { type?: string }).type === 'entity.parse.failed') return { error: { code: 'API_INVALID_REQUEST', message: 'request body is not valid JSON' } };
  const data = toErrorData(error);
  return { error: { code: data.code, message: data.message } };
}

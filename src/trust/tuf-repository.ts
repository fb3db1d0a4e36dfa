/**
 * The robot's TUF client: tuf-js's Updater for metadata (root chain, timestamp, snapshot, targets,
 * with thresholds, expiry, version and length checks), our own ports for bytes on the wire.
 *
 * Invariants:
 * - the cached trusted root is always loadable: a corrupt or missing one is replaced by the golden
 *   copy (read-only, shipped with the image) before tuf-js reads it, so no crash loop;
 * - every failure leaves as an OtaError with a trust, clock or network code, and trust failures
 *   reach the audit log;
 * - a target download that fails leaves nothing at dest (nor its partial files).
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import semver from 'semver';
import { Metadata, MetadataKind, Targets } from '@tufjs/models';
import type { Root } from '@tufjs/models';
import { Updater } from 'tuf-js';
import type { Fetcher } from 'tuf-js';
import { DownloadHTTPError } from 'tuf-js/dist/error.js';
import type { TargetRef } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import { hashFile, hashInto } from '../core/files.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { MAX_MANIFEST_BYTES, parseManifest } from '../manifest/schema.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import { assessClockAhead, assessClockBehind, DEFAULT_CLOCK_POLICY, type ClockPolicy } from './clock-check.js';
import { mapTufError } from './error-map.js';
import { persistAtomically } from './atomic-metadata.js';
import { tooLargeError } from './fetch-ports.js';
import { readGoldenRoot, readRoot } from './trusted-root.js';
import { mirrorAssetUrl } from './mirror.js';
import { redactUrl } from '../net/http-errors.js';
import type { MetadataFetcher, TargetDownloader } from './ports.js';
import { PASS_OVER_CODES, type DownloadOptions, type LatestReleaseOptions, type UpdateRepository, type VerifiedRelease } from './update-repository.js';

/** How many releases, newest first, a check looks at before it gives up finding a usable one. */
const MAX_CANDIDATES = 16;

/** The field ota-repo writes into signed metadata with the signing time. */
const ISSUED_FIELD = 'x-otad-issued';
/** The field ota-repo's targets role writes into a delegation: the latest expiry its role may sign. */
const DELEGATION_EXPIRES_FIELD = 'x-otad-expires';
/** Delegated roles looked at when listing a product's releases (tuf-js's own walk stops at 32 too). */
const MAX_LISTED_ROLES = 32;

export interface TrustLimits {
  rootMaxBytes: number;
  timestampMaxBytes: number;
  snapshotMaxBytes: number;
  targetsMaxBytes: number;
  manifestMaxBytes: number;
  maxRootRotations: number;
  /** Budget for one metadata request. */
  metadataDeadlineMs: number;
}

export const DEFAULT_TRUST_LIMITS: TrustLimits = {
  rootMaxBytes: 512 * 1024,
  timestampMaxBytes: 16 * 1024,
  snapshotMaxBytes: 2 * 1024 * 1024,
  targetsMaxBytes: 5 * 1024 * 1024,
  manifestMaxBytes: MAX_MANIFEST_BYTES,
  maxRootRotations: 32,
  metadataDeadlineMs: 30_000,
};

export interface TufRepositoryOptions {
  /** Writable cache of trusted metadata (root.json, timestamp.json, …). */
  metadataDir: string;
  metadataBaseUrl: string;
  /** Where targets live (default: metadataBaseUrl's sibling `targets/`). */
  targetBaseUrl?: string;
  /**
   * A mirror with a flat layout (GitHub release assets, src/trust/mirror.ts): target downloads try
   * it first and fall back to targetBaseUrl when it fails, saying so. Metadata and manifests always
   * come from the server.
   */
  mirrorBaseUrl?: string;
  /** The golden copy of the trusted root: read-only, restores a damaged cache. */
  trustedRootPath: string;
  fetcher: MetadataFetcher;
  downloader: TargetDownloader;
  clock: Clock;
  logger: Logger;
  audit?: AuditSink;
  limits?: Partial<TrustLimits>;
  clockPolicy?: Partial<ClockPolicy>;
}

type Json = Parameters<typeof Metadata.fromJSON>[1];

interface OtadCustom {
  kind?: string;
  product?: string;
  version?: string;
  channel?: string;
}

export function createTufRepository(options: TufRepositoryOptions): UpdateRepository {
  const limits: TrustLimits = { ...DEFAULT_TRUST_LIMITS, ...(options.limits ?? {}) };
  const clockPolicy: ClockPolicy = { ...DEFAULT_CLOCK_POLICY, ...(options.clockPolicy ?? {}) };
  const { metadataDir, clock } = options;
  const log = options.logger.child({ component: 'trust' });
  const metadataBaseUrl = ensureSlash(options.metadataBaseUrl);
  const targetBaseUrl = ensureSlash(options.targetBaseUrl ?? new URL('../targets/', metadataBaseUrl).toString());
  let updater: Updater | null = null;

  function report(error: OtaError, what: string): OtaError {
    if (error.category === 'trust') {
      log.error(`${what} rejected`, { code: error.code, error: error.message });
      options.audit?.audit({
        kind: error.code === 'TRUST_SIGNATURE' ? 'signature-failure' : 'trust-failure',
        message: `${what}: ${error.message}`,
        details: { code: error.code },
      });
    } else {
      log.warn(`${what} failed`, { code: error.code, error: error.message });
    }
    return error;
  }

  /** A tuf-js Fetcher over our port, bound to one update's signal, remembering what it saw. */
  function portFetcher(signal: AbortSignal | undefined, seen: { lastError?: OtaError; timestampExpiresMs?: number }): Fetcher {
    const downloadBytes = async (url: string, maxLength: number): Promise<Buffer> => {
      try {
        const fetchOptions: Parameters<MetadataFetcher['getBuffer']>[1] = { maxBytes: maxLength, deadlineMs: limits.metadataDeadlineMs };
        if (signal !== undefined) fetchOptions.signal = signal;
        const bytes = await options.fetcher.getBuffer(url, fetchOptions);
        if (bytes.length > maxLength) throw tooLargeError(url, maxLength);
        if (url.endsWith('/timestamp.json')) seen.timestampExpiresMs = peekExpires(bytes);
        return bytes;
      } catch (error) {
        const status = isOtaError(error) ? (error.details?.status as number | undefined) : undefined;
        // tuf-js ends the root walk on 403/404 only when it sees its own error class.
        if (isOtaError(error) && (error.code === 'HTTP_NOT_FOUND' || status === 403 || status === 404)) {
          throw new DownloadHTTPError(error.message, status ?? 404);
        }
        const mapped = isOtaError(error)
          ? error.details?.tooLarge === true && error.code !== 'TRUST_METADATA_TOO_LARGE'
            ? tooLargeError(url, maxLength)
            : error
          : new OtaError('NETWORK_RESET', `fetching ${url} failed: ${(error as Error).message}`, { cause: error });
        seen.lastError = mapped;
        throw mapped;
      }
    };
    return {
      downloadBytes,
      async downloadFile<T>(url: string, maxLength: number, handler: (file: string) => Promise<T>): Promise<T> {
        const bytes = await downloadBytes(url, maxLength);
        const dir = await fs.mkdtemp(path.join(metadataDir, '.fetch-'));
        try {
          const file = path.join(dir, 'file');
          await fs.writeFile(file, bytes);
          return await handler(file);
        } finally {
          await fs.rm(dir, { recursive: true, force: true });
        }
      },
    };
  }

  /** Make sure metadataDir/root.json is a self-signed root; otherwise take the golden copy. */
  async function ensureTrustedRoot(): Promise<Metadata<Root>> {
    await fs.mkdir(metadataDir, { recursive: true, mode: 0o700 });
    const cachedPath = path.join(metadataDir, 'root.json');
    const golden = await readGoldenRoot(options.trustedRootPath);
    let cached: Metadata<Root> | null = null;
    let problem: string | null = null;
    try {
      cached = (await readRoot(cachedPath)).root;
    } catch (error) {
      problem = (error as NodeJS.ErrnoException).code === 'ENOENT' ? null : (error as Error).message;
    }
    if (cached !== null && cached.signed.version >= golden.root.signed.version) return cached;
    await atomicWriteFile(cachedPath, golden.bytes, { mode: 0o600 });
    if (problem !== null) {
      log.warn('cached trusted root was corrupt; restored from the golden copy', { path: cachedPath, problem });
      options.audit?.audit({ kind: 'recovery', message: `trusted root ${cachedPath} was corrupt (${problem}); restored from the golden copy`, details: { problem } });
    }
    return golden.root;
  }

  async function readIssued(file: string): Promise<number | undefined> {
    try {
      return peekIssued(await fs.readFile(file));
    } catch {
      return undefined;
    }
  }

  function clockError(message: string, cause?: unknown): OtaError {
    return new OtaError('CLOCK_NOT_SYNCED', message, { cause, details: { now: clock.now() } });
  }

  async function refresh(signal?: AbortSignal): Promise<void> {
    updater = null;
    const root = await ensureTrustedRoot();
    const behind = assessClockBehind(
      clock.now(),
      [peekIssuedSigned(root.signed.unrecognizedFields), await readIssued(path.join(metadataDir, 'timestamp.json'))],
      clockPolicy,
    );
    if (!behind.ok) throw report(clockError(behind.message), 'metadata refresh');
    const seen: { lastError?: OtaError; timestampExpiresMs?: number } = {};
    const candidate = persistAtomically(new Updater({
      metadataDir,
      metadataBaseUrl,
      targetBaseUrl,
      fetcher: portFetcher(signal, seen),
      config: {
        rootMaxLength: limits.rootMaxBytes,
        timestampMaxLength: limits.timestampMaxBytes,
        snapshotMaxLength: limits.snapshotMaxBytes,
        targetsMaxLength: limits.targetsMaxBytes,
        maxRootRotations: limits.maxRootRotations,
        prefixTargetsWithHash: true,
      },
    }), metadataDir);
    try {
      await candidate.refresh();
    } catch (error) {
      if (signal?.aborted === true) throw new OtaError('CANCELLED', 'metadata refresh was cancelled', { cause: error });
      const mapped = mapTufError(error, seen.lastError);
      if (mapped.code === 'TRUST_EXPIRED') {
        const ahead = assessClockAhead(clock.now(), seen.timestampExpiresMs, clockPolicy);
        if (!ahead.ok) throw report(clockError(ahead.message, mapped), 'metadata refresh');
      }
      throw report(mapped, 'metadata refresh');
    } finally {
      await privateFiles(metadataDir);
    }
    // tuf-js judges expiry by the system clock; the clock port has the final word (they agree in production).
    const timestampBytes = await fs.readFile(path.join(metadataDir, 'timestamp.json')).catch(() => null);
    if (timestampBytes !== null) {
      const issued = peekIssued(timestampBytes);
      const expiresMs = peekExpires(timestampBytes);
      const after = assessClockBehind(clock.now(), [issued], clockPolicy);
      if (!after.ok) throw report(clockError(after.message), 'metadata refresh');
      const ahead = assessClockAhead(clock.now(), expiresMs, clockPolicy);
      if (!ahead.ok) throw report(clockError(ahead.message), 'metadata refresh');
      if (expiresMs !== undefined && clock.now() > expiresMs) {
        throw report(new OtaError('TRUST_EXPIRED', `timestamp.json expired at ${new Date(expiresMs).toISOString()}`), 'metadata refresh');
      }
    }
    updater = candidate;
    log.debug('metadata refreshed');
  }

  async function current(signal?: AbortSignal): Promise<Updater> {
    if (updater === null) await refresh(signal);
    return updater!;
  }

  async function signedTarget(name: string, signal?: AbortSignal): Promise<{ length: number; sha256: string; custom: OtadCustom }> {
    const info = await (await current(signal)).getTargetInfo(name).catch((error: unknown) => {
      throw report(mapTufError(error), `target ${name}`);
    });
    const sha256 = info?.hashes.sha256;
    if (info === undefined || sha256 === undefined) {
      throw report(new OtaError('TRUST_TARGET_UNKNOWN', `target ${name} is not in the signed targets metadata`, { details: { target: name } }), `target ${name}`);
    }
    return { length: info.length, sha256, custom: ((info.custom as { otad?: OtadCustom }).otad ?? {}) };
  }

  /**
   * The targets that may be releases of `product`: the top-level targets, then the delegated roles
   * that may speak for the product's paths, in the order of the delegations (TUF's pre-order
   * walk). tuf-js loads and verifies those roles (signatures by the delegator's keys, threshold,
   * version against the snapshot, expiry) and persists them; they only nominate candidates here,
   * each of which is looked up again through tuf-js (getTargetInfo) before use. A delegated role
   * that lists targets outside its delegated paths, or signs an expiry later than its delegation
   * allows (ota-repo's `x-otad-expires`), is reported (TRUST_DELEGATION_VIOLATION): the entries
   * outside are ignored, and a role past its allowed expiry nominates nothing. A channel may be
   * delegated on its own (`<product>/<channel>/*`, ota-repo delegate --channel): the roles for the
   * robot's channel's paths are followed too, each path walked as TUF walks it (a terminating role
   * ends the walk for the paths it matches only).
   */
  async function productListing(product: string, channel: string, signal?: AbortSignal): Promise<Record<string, { custom?: { otad?: OtadCustom } }>> {
    const up = await current(signal);
    const probes = [`${product}/${product}.otad-listing`, `${product}/${channel}/${product}.otad-listing`];
    // Walks the delegations for the product's (and its channel's) paths: every role on the way is fetched and verified.
    for (const probe of probes) {
      await up.getTargetInfo(probe).catch((error: unknown) => {
        throw report(mapTufError(error), `metadata of ${product}`);
      });
    }
    const readSigned = async (name: string): Promise<Json | null> => {
      try {
        return (JSON.parse(await fs.readFile(path.join(metadataDir, `${encodeURIComponent(name)}.json`), 'utf8')) as { signed: Json }).signed;
      } catch {
        return null;
      }
    };
    const top = await readSigned('targets');
    const snapshot = (await readSigned('snapshot')) as { meta?: Record<string, { version?: number }> } | null;
    if (top === null) throw report(new OtaError('TRUST_METADATA_INVALID', 'targets.json is missing after a metadata refresh'), `metadata of ${product}`);
    const out: Record<string, { custom?: { otad?: OtadCustom } }> = {};
    const visited = new Set<string>();
    const visit = (signed: Targets, within: (p: string) => boolean): Array<{ name: string; within: (p: string) => boolean; limit: string | null }> => {
      for (const [p, t] of Object.entries(signed.targets)) if (out[p] === undefined && within(p)) out[p] = { custom: t.custom as { otad?: OtadCustom } };
      const roles = Object.values(signed.delegations?.roles ?? {});
      // Per probe, the roles TUF's walk would follow (up to the first terminating one that matches it).
      const follow = new Set<string>();
      for (const probe of probes) {
        for (const role of roles) {
          if (!role.isDelegatedPath(probe)) continue;
          follow.add(role.name);
          if (role.terminating) break;
        }
      }
      const children: Array<{ name: string; within: (p: string) => boolean; limit: string | null }> = [];
      for (const role of roles) {
        if (!follow.has(role.name)) continue;
        const limit = role.unrecognizedFields?.[DELEGATION_EXPIRES_FIELD];
        children.push({ name: role.name, within: (p) => within(p) && role.isDelegatedPath(p), limit: typeof limit === 'string' ? limit : null });
      }
      return children;
    };
    const stack = visit(Targets.fromJSON(top as Parameters<typeof Targets.fromJSON>[0]), () => true).reverse();
    while (stack.length > 0 && visited.size < MAX_LISTED_ROLES) {
      const { name, within, limit } = stack.pop()!;
      if (visited.has(name)) continue;
      visited.add(name);
      const raw = await readSigned(name);
      // Only the version the trusted snapshot names, which tuf-js has just verified and persisted.
      if (raw === null || (raw as { version?: number }).version !== snapshot?.meta?.[`${name}.json`]?.version) continue;
      const signed = Targets.fromJSON(raw as Parameters<typeof Targets.fromJSON>[0]);
      if (limit !== null && Date.parse(signed.expires) > Date.parse(limit)) {
        report(new OtaError('TRUST_DELEGATION_VIOLATION', `delegated role ${name} signs an expiry of ${signed.expires}, later than the ${limit} its delegation allows: none of its targets is used`, { details: { role: name, expires: signed.expires, limit } }), `delegated role ${name}`);
        continue;
      }
      const outside = Object.keys(signed.targets).filter((p) => !within(p));
      if (outside.length > 0) {
        report(new OtaError('TRUST_DELEGATION_VIOLATION', `delegated role ${name} lists ${outside.length} target(s) outside its delegated paths (${outside.slice(0, 3).join(', ')}): they are ignored`, { details: { role: name, outside: outside.slice(0, 16) } }), `delegated role ${name}`);
      }
      stack.push(...visit(signed, within).reverse());
    }
    return out;
  }

  function targetUrl(name: string, sha256: string): string {
    const slash = name.lastIndexOf('/');
    const hashed = slash === -1 ? `${sha256}.${name}` : `${name.slice(0, slash)}/${sha256}.${name.slice(slash + 1)}`;
    return new URL(hashed.split('/').map(encodeURIComponent).join('/'), targetBaseUrl).toString();
  }

  async function verifyFile(target: TargetRef, file: string): Promise<void> {
    const hash = createHash('sha256');
    const bytes = await hashInto(file, hash, target.length);
    if (bytes !== target.length) {
      throw new OtaError('TRUST_LENGTH_MISMATCH', `${file} is ${bytes > target.length ? 'longer than' : `${bytes} bytes, not`} the signed ${target.length} bytes of ${target.name}`, {
        details: { target: target.name, expected: target.length },
      });
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== target.sha256) {
      throw new OtaError('TRUST_HASH_MISMATCH', `${file} has SHA-256 ${sha256}, the signed value for ${target.name} is ${target.sha256}`, {
        details: { target: target.name, expected: target.sha256, actual: sha256 },
      });
    }
  }

  /**
   * The mirror first (Local → Server (manifest) → mirror (download)): null when it failed for any
   * reason but a cancellation, after a warning and a `mirror-fallback` audit event; the caller then
   * downloads from the server. A wrong file (length or hash) is discarded by the downloader, so the
   * server's download starts from zero; a transfer cut short keeps its partial, which the server's
   * download resumes (the final hash judges every byte, wherever it came from).
   */
  async function fromMirror(mirrorBaseUrl: string, target: TargetRef, request: Parameters<TargetDownloader['download']>[0]): Promise<Awaited<ReturnType<TargetDownloader['download']>> | null> {
    const url = mirrorAssetUrl(mirrorBaseUrl, target.name);
    try {
      const result = await options.downloader.download({ ...request, url });
      log.info('target downloaded from the mirror', { target: target.name, mirror: redactUrl(url), bytes: result.bytes });
      return result;
    } catch (error) {
      const e = isOtaError(error) ? error : mapTufError(error);
      if (e.code === 'CANCELLED' || e.category === 'precondition' || e.code === 'DISK_FULL') throw e;
      const message = `mirror ${redactUrl(url)} did not give ${target.name}: ${e.code}: ${e.message}; downloading it from the server instead`;
      log.warn(message, { target: target.name, code: e.code, mirror: redactUrl(url) });
      options.audit?.audit({ kind: 'mirror-fallback', message, details: { target: target.name, code: e.code, mirror: redactUrl(url) } });
      return null;
    }
  }

  return {
    refresh,
    verifyFile,

    async latestRelease(product: string, opts: LatestReleaseOptions = {}): Promise<VerifiedRelease | null> {
      const channel = opts.channel ?? 'stable';
      const listing = await productListing(product, channel, opts.signal);
      const candidates = Object.entries(listing)
        .map(([name, t]) => ({ name, custom: t.custom?.otad ?? {} }))
        .filter(({ custom }) => custom.kind === 'manifest' && custom.product === product && (custom.channel ?? 'stable') === channel)
        .filter(({ custom }) => semver.valid(custom.version ?? '') !== null)
        .filter(({ custom }) => opts.allowPrerelease === true || semver.prerelease(custom.version!) === null)
        .sort((a, b) => semver.rcompare(a.custom.version!, b.custom.version!));
      // The newest release that is genuine, well-formed and for this robot. A malformed manifest
      // (signed, intact, but unusable) or one whose requirements do not fit is passed over and
      // reported, so it cannot hide an older valid release; any other failure ends the check.
      let newestRefusal: OtaError | null = null;
      for (const best of candidates.slice(0, MAX_CANDIDATES)) {
        let verified: VerifiedRelease;
        try {
          verified = await verifyCandidate(best);
        } catch (error) {
          if (!isOtaError(error) || !PASS_OVER_CODES.has(error.code)) throw error;
          opts.onPassedOver?.({ target: best.name, version: best.custom.version!, error });
          if (error.code !== 'RELEASE_REQUIREMENTS_UNMET') newestRefusal ??= error;
          continue;
        }
        const refusal = opts.accept?.(verified.manifest) ?? null;
        if (refusal !== null) {
          opts.onPassedOver?.({ target: best.name, version: best.custom.version!, error: refusal });
          continue;
        }
        return verified;
      }
      // Nothing usable: a malformed newest manifest is an error the operator must see, not "no release".
      if (newestRefusal !== null) throw newestRefusal;
      return null;

      async function verifyCandidate(best: (typeof candidates)[number]): Promise<VerifiedRelease> {
        const signed = await signedTarget(best.name, opts.signal);
        const manifestTarget: TargetRef = { name: best.name, length: signed.length, sha256: signed.sha256 };
        if (signed.length > limits.manifestMaxBytes) {
          throw report(new OtaError('MANIFEST_INVALID', `manifest ${best.name} is ${signed.length} bytes, expected at most ${limits.manifestMaxBytes}`), `manifest ${best.name}`);
        }
        let bytes: Buffer;
        try {
          const fetchOptions: Parameters<MetadataFetcher['getBuffer']>[1] = { maxBytes: signed.length, deadlineMs: limits.metadataDeadlineMs };
          if (opts.signal !== undefined) fetchOptions.signal = opts.signal;
          bytes = await options.fetcher.getBuffer(targetUrl(best.name, signed.sha256), fetchOptions);
        } catch (error) {
          const e = isOtaError(error) ? error : mapTufError(error);
          // More bytes than signed is a length attack on the manifest, not a metadata size problem.
          throw report(e.details?.tooLarge === true || e.code === 'TRUST_METADATA_TOO_LARGE'
            ? new OtaError('TRUST_LENGTH_MISMATCH', `manifest ${best.name} is longer than its signed ${signed.length} bytes`, { cause: e })
            : e, `manifest ${best.name}`);
        }
        const actual = createHash('sha256').update(bytes).digest('hex');
        if (bytes.length !== signed.length) {
          throw report(new OtaError('TRUST_LENGTH_MISMATCH', `manifest ${best.name} is ${bytes.length} bytes, signed length is ${signed.length}`), `manifest ${best.name}`);
        }
        if (actual !== signed.sha256) {
          throw report(new OtaError('TRUST_HASH_MISMATCH', `manifest ${best.name} has SHA-256 ${actual}, signed value is ${signed.sha256}`), `manifest ${best.name}`);
        }
        let manifest;
        try {
          manifest = parseManifest(bytes, best.name);
        } catch (error) {
          throw report(error as OtaError, `manifest ${best.name}`);
        }
        // The signed listing and the signed manifest must tell the same story.
        if (manifest.product !== product) {
          throw report(
            new OtaError('RELEASE_WRONG_PRODUCT', `manifest ${best.name} is for product ${manifest.product}, expected ${product}`, { details: { target: best.name, product: manifest.product } }),
            `manifest ${best.name}`,
          );
        }
        if (manifest.version !== best.custom.version) {
          throw report(new OtaError('MANIFEST_INVALID', `manifest ${best.name} says version ${manifest.version}, its signed target entry says ${best.custom.version}`), `manifest ${best.name}`);
        }
        if ((best.custom.channel ?? 'stable') !== manifest.channel) {
          throw report(new OtaError('MANIFEST_INVALID', `manifest ${best.name} says channel ${manifest.channel}, its signed target entry says ${best.custom.channel ?? 'stable'}`), `manifest ${best.name}`);
        }
        const pkg = await signedTarget(manifest.package.target, opts.signal);
        // Package entries carry the release's product, version and channel too (docs/repository.md);
        // entries signed before they did (no kind) are accepted on the manifest's word.
        if (pkg.custom.kind !== undefined && (pkg.custom.kind !== 'package' || pkg.custom.product !== product || pkg.custom.version !== manifest.version || (pkg.custom.channel !== undefined && pkg.custom.channel !== manifest.channel))) {
          throw report(
            new OtaError('MANIFEST_INVALID', `manifest ${best.name} names package ${manifest.package.target}, whose signed entry is for ${pkg.custom.kind ?? '?'} ${pkg.custom.product ?? '?'} ${pkg.custom.version ?? '?'} on channel ${pkg.custom.channel ?? '?'}`, {
              details: { target: manifest.package.target },
            }),
            `manifest ${best.name}`,
          );
        }
        if (pkg.length !== manifest.package.length || pkg.sha256 !== manifest.package.sha256) {
          throw report(
            new OtaError('MANIFEST_INVALID', `manifest ${best.name} names package ${manifest.package.target} with a length or hash that differs from its signed target`),
            `manifest ${best.name}`,
          );
        }
        // The index and the deltas are targets of their own: signed, of this release, with the manifest's length and hash.
        const extras = [
          ...(manifest.index !== undefined ? [{ kind: 'index', ref: manifest.index, fromVersion: undefined as string | undefined }] : []),
          ...(manifest.deltas ?? []).map((d) => ({ kind: 'delta', ref: d, fromVersion: d.fromVersion as string | undefined })),
        ];
        for (const extra of extras) {
          const t = await signedTarget(extra.ref.target, opts.signal);
          const c = t.custom as OtadCustom & { fromVersion?: string };
          const wrongKind = c.kind !== undefined && (c.kind !== extra.kind || c.product !== product || c.version !== manifest.version || (extra.fromVersion !== undefined && c.fromVersion !== extra.fromVersion));
          if (wrongKind || t.length !== extra.ref.length || t.sha256 !== extra.ref.sha256) {
            throw report(
              new OtaError('MANIFEST_INVALID', `manifest ${best.name} names ${extra.kind} ${extra.ref.target}, whose signed target entry does not match it (kind, release, length or hash)`, {
                details: { target: extra.ref.target },
              }),
              `manifest ${best.name}`,
            );
          }
        }
        return { manifest, manifestTarget };
      }
    },

    async downloadTarget(target: TargetRef, dest: string, opts: DownloadOptions = {}): Promise<{ path: string }> {
      try {
        const signed = await signedTarget(target.name, opts.signal);
        if (signed.length !== target.length || signed.sha256 !== target.sha256) {
          throw new OtaError('TRUST_TARGET_UNKNOWN', `target ${target.name} asked for with length ${target.length} and SHA-256 ${target.sha256}; the signed metadata says ${signed.length} and ${signed.sha256}`, {
            details: { target: target.name },
          });
        }
        const request: Parameters<TargetDownloader['download']>[0] = {
          url: targetUrl(target.name, signed.sha256),
          dest,
          expectedLength: signed.length,
          expectedSha256: signed.sha256,
        };
        if (opts.signal !== undefined) request.signal = opts.signal;
        if (opts.onProgress !== undefined) request.onProgress = opts.onProgress;
        let result: Awaited<ReturnType<TargetDownloader['download']>> | null = null;
        if (options.mirrorBaseUrl !== undefined) result = await fromMirror(options.mirrorBaseUrl, target, request);
        result ??= await options.downloader.download(request);
        // The downloader hashed every byte as it wrote it and renamed the file into place only when
        // length and SHA-256 matched (the TargetDownloader contract); its answer must say so. The
        // file is not read a second time here (256 MiB is 0.2 s of a robot's CPU): whoever uses it
        // hashes it again as it reads it (extraction holds it to the signed SHA-256), and a file
        // reused from an earlier attempt goes through verifyFile first.
        if (result.bytes !== signed.length || result.sha256 !== signed.sha256) {
          throw new OtaError('TRUST_HASH_MISMATCH', `the downloader returned ${target.name} with ${result.bytes} bytes and SHA-256 ${result.sha256}; the signed values are ${signed.length} and ${signed.sha256}`, {
            details: { target: target.name, expected: signed.sha256, actual: result.sha256 },
          });
        }
        return { path: result.path };
      } catch (error) {
        const mapped = isOtaError(error) ? error : mapTufError(error);
        // A cancelled or transient transfer keeps its partial file so the next attempt resumes
        // (the downloader re-hashes it first); a trust failure or anything final starts from nothing.
        // A metered-link refusal (METERED_*) waits for a better link: its partial is kept too.
        const resumable = mapped.code === 'CANCELLED' || mapped.category === 'precondition' || (mapped.category === 'network' && mapped.retryable);
        if (resumable) await fs.rm(dest, { force: true });
        else await removeDownload(dest);
        throw report(mapped, `target ${target.name}`);
      }
    },
  };
}

/** Remove a failed download and any partial file a downloader may keep beside it. */
async function removeDownload(dest: string): Promise<void> {
  await Promise.all([dest, `${dest}.partial`, `${dest}.part`].map((f) => fs.rm(f, { force: true })));
}

function ensureSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

function peekSigned(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(bytes.toString('utf8')) as { signed?: Record<string, unknown> };
    return parsed.signed;
  } catch {
    return undefined;
  }
}

function peekExpires(bytes: Buffer): number | undefined {
  const expires = peekSigned(bytes)?.expires;
  return typeof expires === 'string' ? Date.parse(expires) : undefined;
}

function peekIssued(bytes: Buffer): number | undefined {
  const signed = peekSigned(bytes);
  return signed === undefined ? undefined : peekIssuedSigned(signed);
}

function peekIssuedSigned(fields: Record<string, unknown>): number | undefined {
  const issued = fields[ISSUED_FIELD];
  return typeof issued === 'string' ? Date.parse(issued) : undefined;
}

/** tuf-js writes the metadata it accepted with the process umask (0644): otad's state files are 0600. */
async function privateFiles(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n.endsWith('.json')).map((n) => fs.chmod(path.join(dir, n), 0o600).catch(() => {})));
}

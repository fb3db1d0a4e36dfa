/**
 * What a person next to the robot needs to judge its update source: each product's definition
 * (where it lives, what restarts, what is checked, what is kept), and each product's repository
 * as otad itself sees it: reachable or not and how fast (measured by otad, not by a browser that
 * may sit on another network), when the trusted metadata it holds expires and who signed it, and
 * when a check last succeeded.
 *
 * A probe is one small request (the repository's timestamp.json, or a stat of a local folder's)
 * with a short deadline. Results are kept for PROBE_TTL_MS so a page that re-reads often does not
 * turn into load on the update server.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import { metadataDirFor, repositoryUrlsFor } from '../steps/repository-factory.js';
import { createFileReleaseCache } from '../steps/check.js';

export const PROBE_TTL_MS = 5_000;
export const PROBE_TIMEOUT_MS = 3_000;
const ROLES = ['root', 'timestamp', 'snapshot', 'targets'] as const;

export interface ProductDefinition {
  product: string;
  type: string | null;
  installPath: string;
  channel: string;
  allowPrerelease: boolean;
  /** systemd units, then process units, in the order they restart. */
  services: string[];
  healthChecks: Array<{ kind: string; target: string }>;
  preservedPaths: string[];
  probation: { windowMs: number; intervalMs: number; failureThreshold: number };
  backup: { enabled: boolean; keep: number };
  repository: { name: string; kind: 'tuf' | 'local'; location: string | null };
}

export interface MetadataRole {
  role: string;
  version: number | null;
  expiresAt: number | null;
  /** Key ids (first 16 hex digits) of the signatures on the stored file. */
  signedBy: string[];
}

export interface RepositoryStatus {
  product: string;
  kind: 'tuf' | 'local';
  /** The repository's name among the product's choices (`default` unless configured otherwise). */
  repository: string;
  /** The metadata URL (tuf) or folder (local) otad reads. */
  location: string | null;
  channel: string;
  /** null: never probed (no location configured). */
  reachable: boolean | null;
  latencyMs: number | null;
  httpStatus: number | null;
  probedAt: number | null;
  problem: string | null;
  /** The trusted metadata otad holds for this product (empty before the first check). */
  metadata: MetadataRole[];
  /** The earliest expiry among them: after it, otad must refresh before it trusts anything. */
  metadataExpiresAt: number | null;
  lastSuccessfulCheckAt: number | null;
  /**
   * The newest release the last successful check verified, read from the release cache
   * (`<paths.cacheDir>/<product>/latest-release.json`): its notes are readable while offline.
   */
  latestRelease: { version: string; channel: string; releasedAt: string; notes: string; checkedAt: number } | null;
  /**
   * Every repository the product may be switched to (the one in use among them), each probed by
   * otad the same way: what an operator needs to know before switching.
   */
  choices: RepositoryChoiceStatus[];
}

export interface RepositoryChoiceStatus {
  name: string;
  kind: 'tuf' | 'local';
  location: string | null;
  inUse: boolean;
  reachable: boolean | null;
  latencyMs: number | null;
  httpStatus: number | null;
  probedAt: number | null;
  problem: string | null;
}

export function describeHealthCheck(c: ProductConfig['healthChecks'][number]): { kind: string; target: string } {
  switch (c.kind) {
    case 'unit':
      return { kind: 'unit', target: c.unit };
    case 'http':
      return { kind: 'http', target: `${c.url} answers ${c.expectStatus}` };
    case 'command':
      return { kind: 'command', target: c.command.join(' ') };
    case 'version':
      return { kind: 'version', target: c.command ? c.command.join(' ') : (c.file ?? 'the version file') };
  }
}

export function productDefinition(p: ProductConfig, config: Config): ProductDefinition {
  return {
    product: p.name,
    type: p.type ?? null,
    installPath: p.installPath,
    channel: p.channel,
    allowPrerelease: p.allowPrerelease,
    services: [...p.services, ...p.processUnits.map((u) => u.name)],
    healthChecks: p.healthChecks.map(describeHealthCheck),
    preservedPaths: p.preservedPaths,
    probation: { windowMs: p.probation.window, intervalMs: p.probation.interval, failureThreshold: p.probation.failureThreshold },
    backup: { enabled: p.backup.enabled, keep: p.backup.keep },
    repository: { name: p.repository.name, kind: p.repository.kind, location: repositoryLocation(p, config) },
  };
}

function repositoryLocation(p: ProductConfig, config: Config): string | null {
  if (p.repository.kind === 'local') return p.repository.path ?? null;
  if ((p.repository.url ?? config.server.url) === undefined) return null;
  try {
    return repositoryUrlsFor(p, config).metadataBaseUrl;
  } catch {
    return null;
  }
}

/** Reads version, expiry and signers of one stored metadata file; null when it is absent or unreadable. */
export async function readMetadataRole(dir: string, role: string): Promise<MetadataRole | null> {
  let doc: { signed?: { version?: unknown; expires?: unknown }; signatures?: Array<{ keyid?: unknown }> };
  try {
    doc = JSON.parse(await readFile(path.join(dir, `${role}.json`), 'utf8')) as typeof doc;
  } catch {
    return null;
  }
  const expires = typeof doc.signed?.expires === 'string' ? Date.parse(doc.signed.expires) : NaN;
  return {
    role,
    version: typeof doc.signed?.version === 'number' ? doc.signed.version : null,
    expiresAt: Number.isFinite(expires) ? expires : null,
    signedBy: (doc.signatures ?? []).map((s) => String(s.keyid ?? '').slice(0, 16)).filter((k) => k !== ''),
  };
}

interface Probe {
  reachable: boolean;
  latencyMs: number | null;
  httpStatus: number | null;
  probedAt: number;
  problem: string | null;
}

export interface RepositoryMonitorDeps {
  config: () => Config;
  clock: Clock;
  /** When the product's last check succeeded (null: never, as far as otad knows). */
  lastSuccessfulCheckAt: (product: string) => number | null;
  /** The repositories a product may be switched to (default: only the one in use). */
  choices?: (product: string) => Array<ProductConfig['repository']>;
  fetch?: typeof fetch;
}

export function createRepositoryMonitor(deps: RepositoryMonitorDeps) {
  const doFetch = deps.fetch ?? fetch;
  const cache = new Map<string, { probe: Probe; inFlight: Promise<Probe> | null }>();

  async function probeOnce(p: ProductConfig, location: string): Promise<Probe> {
    const started = deps.clock.monotonic();
    const probedAt = deps.clock.now();
    if (p.repository.kind === 'local') {
      try {
        await stat(path.join(location, 'metadata', 'timestamp.json'));
        return { reachable: true, latencyMs: Math.round(deps.clock.monotonic() - started), httpStatus: null, probedAt, problem: null };
      } catch (error) {
        return { reachable: false, latencyMs: null, httpStatus: null, probedAt, problem: `no metadata/timestamp.json in ${location} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})` };
      }
    }
    try {
      const res = await doFetch(new URL('timestamp.json', location), { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS), headers: { 'User-Agent': 'otad' } });
      await res.arrayBuffer().catch(() => undefined);
      const latencyMs = Math.round(deps.clock.monotonic() - started);
      return { reachable: true, latencyMs, httpStatus: res.status, probedAt, problem: res.ok ? null : `timestamp.json answered HTTP ${res.status}` };
    } catch (error) {
      const e = error as Error & { cause?: { code?: string; message?: string } };
      const why = e.name === 'TimeoutError' ? `no answer within ${PROBE_TIMEOUT_MS} ms` : (e.cause?.code ?? e.cause?.message ?? e.message);
      return { reachable: false, latencyMs: null, httpStatus: null, probedAt, problem: `the repository did not answer: ${why}` };
    }
  }

  async function probe(p: ProductConfig, location: string): Promise<Probe> {
    // Per product and place: after a switch of repository the old one's answer does not count.
    const key = `${p.name}\u0000${location}`;
    const entry = cache.get(key);
    if (entry?.inFlight) return entry.inFlight;
    if (entry && deps.clock.now() - entry.probe.probedAt < PROBE_TTL_MS) return entry.probe;
    const inFlight = probeOnce(p, location);
    cache.set(key, { probe: entry?.probe ?? { reachable: false, latencyMs: null, httpStatus: null, probedAt: 0, problem: null }, inFlight });
    const result = await inFlight;
    cache.set(key, { probe: result, inFlight: null });
    return result;
  }

  async function statusOf(p: ProductConfig): Promise<RepositoryStatus> {
    const config = deps.config();
    const location = repositoryLocation(p, config);
    const dir = metadataDirFor(config, p.name, p.repository.name);
    const [probed, cached, ...roles] = await Promise.all([
      location === null ? null : probe(p, location),
      createFileReleaseCache(config.paths.cacheDir).read(p.name).catch(() => null),
      ...ROLES.map((r) => readMetadataRole(dir, r)),
    ]);
    const metadata = roles.filter((r): r is MetadataRole => r !== null);
    const choices = await Promise.all(
      (deps.choices?.(p.name) ?? [p.repository]).map(async (r): Promise<RepositoryChoiceStatus> => {
        const inUse = r.name === p.repository.name;
        const q = { ...p, repository: r };
        const at = repositoryLocation(q, config);
        const pr = inUse ? probed : at === null ? null : await probe(q, at);
        return {
          name: r.name,
          kind: r.kind,
          location: at,
          inUse,
          reachable: pr ? pr.reachable : null,
          latencyMs: pr?.latencyMs ?? null,
          httpStatus: pr?.httpStatus ?? null,
          probedAt: pr?.probedAt ?? null,
          problem: pr ? pr.problem : 'no location is configured',
        };
      }),
    );
    const expiries = metadata.map((r) => r.expiresAt).filter((e): e is number => e !== null);
    return {
      product: p.name,
      kind: p.repository.kind,
      repository: p.repository.name,
      location,
      channel: p.channel,
      reachable: probed ? probed.reachable : null,
      latencyMs: probed?.latencyMs ?? null,
      httpStatus: probed?.httpStatus ?? null,
      probedAt: probed?.probedAt ?? null,
      problem: probed ? probed.problem : 'no repository location is configured (server.url or repository.url / repository.path)',
      metadata,
      metadataExpiresAt: expiries.length > 0 ? Math.min(...expiries) : null,
      lastSuccessfulCheckAt: deps.lastSuccessfulCheckAt(p.name),
      latestRelease: cached
        ? { version: cached.manifest.version, channel: cached.manifest.channel, releasedAt: cached.manifest.releasedAt, notes: cached.manifest.notes, checkedAt: cached.checkedAt }
        : null,
      choices,
    };
  }

  return {
    repositories: (): Promise<RepositoryStatus[]> => Promise.all(deps.config().products.map(statusOf)),
  };
}

/** The check step's done event out of `checking` ends a successful check (its error, or CANCEL, does not). */
export function isSuccessfulCheckEnd(t: { from: string; event: string }): boolean {
  return t.from === 'checking' && t.event.startsWith('xstate.done');
}

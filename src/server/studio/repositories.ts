/**
 * The repositories a publisher can choose between in the studio (test, staging, production…), each
 * a TUF repository with the root the publisher trusts for it. "Test connection" runs the robot's
 * own TUF client (src/trust/tuf-repository.ts, tuf-js) against the repository from that trusted
 * root: root chain, timestamp, snapshot, targets, every signature and expiry checked. Only then are
 * the roles' expiry dates read, from the metadata the client has just verified.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Clock } from '../../core/clock.js';
import { OtaError, isOtaError, toErrorData, type ErrorData } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { createFetchDownloader, createFetchMetadataFetcher } from '../../trust/fetch-ports.js';
import { createTufRepository } from '../../trust/tuf-repository.js';

/**
 * A role whose metadata expires within this many days is flagged, unless the repository sets
 * warnDays for all its roles. The thresholds follow how each role is re-signed: root and targets
 * offline by people (a month and two weeks to plan a signing), snapshot at each publish, timestamp
 * every hour by ota-server itself (so only a timestamp that stopped being refreshed is flagged).
 * Delegated targets roles count as targets.
 */
export const DEFAULT_EXPIRY_WARN_DAYS: Readonly<Record<string, number>> = { root: 30, targets: 14, snapshot: 2, timestamp: 0.25 };
const warnDaysOf = (repo: StudioRepository, role: string) => repo.warnDays ?? DEFAULT_EXPIRY_WARN_DAYS[role] ?? DEFAULT_EXPIRY_WARN_DAYS.targets!;
const NAME = /^[a-z][a-z0-9-]{0,31}$/;

export interface StudioRepository {
  name: string;
  /** The repository's metadata URL (…/metadata/). */
  url: string;
  /** The root.json the publisher trusts for this repository (a file on the server machine). */
  trustedRoot: string;
  /** Flag roles expiring within this many days (default DEFAULT_EXPIRY_WARN_DAYS). */
  warnDays?: number;
  /** This server's own repository (--repo, --keys): the studio publishes to it by default. */
  local?: boolean;
  /**
   * Writing to another repository: its folder on this machine (a local disk or a mounted share that
   * a static web server such as nginx serves at `url`, ota-server's own static serving included),
   * and the keys folder holding what the studio holds for it: `delegated/<role>/`, `snapshot/`,
   * `timestamp/`. Without both, the repository is tested but not published to.
   */
  path?: string;
  keys?: string;
}

export interface RoleExpiry {
  role: string;
  /** Flagged when fewer days than this are left. */
  warnDays: number;
  version: number;
  expires: string;
  daysLeft: number;
  warning: string | null;
}

export type ConnectionResult =
  | { ok: true; repository: string; url: string; checkedAt: string; roles: RoleExpiry[]; targets: number; warnings: string[] }
  | { ok: false; repository: string; url: string; checkedAt: string; error: ErrorData; problem: 'unreachable' | 'bad-signature' | 'expired' | 'invalid' };

/** `repositories:` of a studio configuration file (YAML), checked; relative root paths are from the file's folder. */
export function readStudioRepositories(file: string): StudioRepository[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `studio configuration ${file}: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
  const list = (doc as { repositories?: unknown } | null)?.repositories;
  if (!Array.isArray(list)) throw new OtaError('CONFIG_INVALID', `studio configuration ${file}: expected repositories: a list of { name, url, trustedRoot, warnDays?, local?, path?, keys? }`);
  return checkStudioRepositories(list, path.dirname(file), file);
}

export function checkStudioRepositories(list: readonly unknown[], baseDir: string, source = 'studio repositories'): StudioRepository[] {
  const out: StudioRepository[] = [];
  list.forEach((item, i) => {
    const r = (item ?? {}) as Record<string, unknown>;
    const where = `${source}: repositories[${i}]`;
    if (typeof r.name !== 'string' || !NAME.test(r.name)) throw new OtaError('CONFIG_INVALID', `${where}.name = ${JSON.stringify(r.name)}: expected a name such as staging ([a-z0-9-])`);
    if (out.some((o) => o.name === r.name)) throw new OtaError('CONFIG_INVALID', `${where}.name = "${r.name}": two repositories have this name`);
    let url: URL;
    try {
      url = new URL(String(r.url));
    } catch {
      throw new OtaError('CONFIG_INVALID', `${where}.url = ${JSON.stringify(r.url)}: expected an http(s) URL of the repository's metadata`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OtaError('CONFIG_INVALID', `${where}.url = ${JSON.stringify(r.url)}: expected http or https`);
    if (typeof r.trustedRoot !== 'string' || r.trustedRoot === '') throw new OtaError('CONFIG_INVALID', `${where}.trustedRoot: expected the path of the root.json trusted for this repository`);
    const folder = (field: 'path' | 'keys'): string | undefined => {
      const v = r[field];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'string' || v === '') throw new OtaError('CONFIG_INVALID', `${where}.${field} = ${JSON.stringify(v)}: expected a folder on this machine`);
      return path.resolve(baseDir, v);
    };
    const repoPath = folder('path');
    const keys = folder('keys');
    if ((repoPath === undefined) !== (keys === undefined)) {
      throw new OtaError('CONFIG_INVALID', `${where}: path and keys go together (the repository folder the studio writes and the keys folder with its delegation keys and the snapshot and timestamp keys)`);
    }
    if (r.local === true && repoPath !== undefined) throw new OtaError('CONFIG_INVALID', `${where}: local: true is this server's own repository (--repo, --keys); it takes no path or keys`);
    const warnDays = r.warnDays === undefined ? undefined : Number(r.warnDays);
    if (warnDays !== undefined && (!Number.isFinite(warnDays) || warnDays < 0 || warnDays > 3650)) throw new OtaError('CONFIG_INVALID', `${where}.warnDays = ${JSON.stringify(r.warnDays)}: expected a number of days from 0 to 3650`);
    out.push({
      name: r.name,
      url: url.toString(),
      trustedRoot: path.resolve(baseDir, r.trustedRoot),
      ...(warnDays !== undefined ? { warnDays } : {}),
      ...(r.local === true ? { local: true } : {}),
      ...(repoPath !== undefined && keys !== undefined ? { path: repoPath, keys } : {}),
    });
  });
  return out;
}

const problemOf = (error: ErrorData): Exclude<ConnectionResult, { ok: true }>['problem'] => {
  if (error.code === 'TRUST_SIGNATURE') return 'bad-signature';
  if (error.code === 'TRUST_EXPIRED') return 'expired';
  if (error.code.startsWith('NETWORK_') || error.code.startsWith('HTTP_')) return 'unreachable';
  return 'invalid';
};

/** Run the TUF client workflow against one repository and report every role's expiry. */
export async function testConnection(repo: StudioRepository, clock: Clock): Promise<ConnectionResult> {
  const checkedAt = new Date(clock.now()).toISOString();
  // A fresh cache each time: every test starts from the trusted root the configuration names.
  const metadataDir = await mkdtemp(path.join(tmpdir(), 'ota-studio-connection-'));
  try {
    const client = createTufRepository({
      metadataDir,
      metadataBaseUrl: repo.url,
      trustedRootPath: repo.trustedRoot,
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock,
      logger: silentLogger,
      limits: { metadataDeadlineMs: 15_000 },
    });
    await client.refresh();
    const roles: RoleExpiry[] = [];
    let targets = 0;
    const files = (await readdir(metadataDir)).filter((f) => f.endsWith('.json'));
    const order = ['root', 'timestamp', 'snapshot', 'targets'];
    files.sort((a, b) => (order.indexOf(a.slice(0, -5)) + 1 || 99) - (order.indexOf(b.slice(0, -5)) + 1 || 99) || a.localeCompare(b));
    for (const f of files) {
      const doc = JSON.parse(await readFile(path.join(metadataDir, f), 'utf8')) as { signed?: { version?: number; expires?: string; targets?: Record<string, unknown> } };
      if (typeof doc.signed?.expires !== 'string') continue;
      const role = f.slice(0, -5);
      const warnDays = warnDaysOf(repo, role);
      const daysLeft = Math.floor(((Date.parse(doc.signed.expires) - clock.now()) / 86_400_000) * 10) / 10;
      if (role === 'targets') targets = Object.keys(doc.signed.targets ?? {}).length;
      roles.push({
        role,
        warnDays,
        version: doc.signed.version ?? 0,
        expires: doc.signed.expires,
        daysLeft,
        warning: daysLeft < warnDays ? `${role} expires in ${daysLeft < 1 ? `${Math.max(0, Math.round(daysLeft * 24))} hours` : `${Math.floor(daysLeft)} day${Math.floor(daysLeft) === 1 ? '' : 's'}`} (${doc.signed.expires}): re-sign it before robots refuse the repository` : null,
      });
    }
    return { ok: true, repository: repo.name, url: repo.url, checkedAt, roles, targets, warnings: roles.flatMap((r) => (r.warning === null ? [] : [r.warning])) };
  } catch (error) {
    const data = isOtaError(error) ? toErrorData(error) : toErrorData(new OtaError('NETWORK_RESET', `${repo.url}: ${(error as Error).message}`, { cause: error }));
    return { ok: false, repository: repo.name, url: repo.url, checkedAt, error: data, problem: problemOf(data) };
  } finally {
    await rm(metadataDir, { recursive: true, force: true });
  }
}

/**
 * `otad --check-config`: everything otad would otherwise find out too late (at start, or at 3 AM
 * in the middle of an update), checked at once and reported all together, each with its code.
 *
 * Errors are what stops otad from starting or an update from working: the configuration itself,
 * the tokens file, the API port, the trusted root, the folders otad creates, the staging and
 * releases filesystems, each product's services. Warnings are what works but should not be so:
 * files and folders of otad that are more open than otad creates them.
 *
 * It reads and probes, never writes: a folder that does not exist is judged by its nearest
 * existing parent, a port by binding it for an instant. Run it as the user otad runs as.
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import type { ConfigIssue } from '../config/load.js';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../config/load.js';
import { isOtaError, type ErrorCode } from '../core/errors.js';
import { readCaFile } from '../net/http-client.js';
import { stagingRootFor } from '../release/layout.js';
import { unresolvableServices } from '../services/resolve.js';
import { loadTokensFile } from '../api/tokens.js';
import { readGoldenRoot } from '../trust/trusted-root.js';
import { lockHolder } from './instance-lock.js';

export interface Finding {
  code: ErrorCode;
  message: string;
  /** The file, folder or key the finding is about. */
  subject?: string;
}

export interface PreflightReport {
  source: string | null;
  config: Config | null;
  errors: Finding[];
  warnings: Finding[];
}

export interface PreflightOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  systemctlPath?: string;
}

/** The modes otad creates its files with; anything that grants more is a warning. */
export const EXPECTED_MODES = { stateDir: 0o700, database: 0o600, log: 0o640 } as const;

export async function preflight(opts: PreflightOptions = {}): Promise<PreflightReport> {
  let config: Config;
  try {
    config = loadConfig({ ...(opts.configPath === undefined ? {} : { path: opts.configPath }), env: opts.env ?? process.env, allowMissingDefault: true });
  } catch (error) {
    return { source: opts.configPath ?? null, config: null, errors: configFindings(error), warnings: [] };
  }
  const serviceOptions = { ...(opts.systemctlPath === undefined ? {} : { systemctlPath: opts.systemctlPath }), ...(opts.env === undefined ? {} : { env: opts.env }) };
  // Every check runs, side by side; the report keeps this order whatever finishes first.
  const found = await Promise.all([
    checkLock(config),
    checkApi(config),
    checkTrustedRoot(config),
    checkCaFile(config),
    checkFolders(config),
    ...config.products.map((p) => checkStagingFilesystem(p)),
    ...config.products.map(async (p) =>
      (await unresolvableServices(p, serviceOptions)).map((s): Finding => ({ code: 'SERVICE_UNRESOLVABLE', message: s.message, subject: `${s.product}/${s.unit}` })),
    ),
  ]);
  const warnings = [...(await checkModes(config)), ...(await checkLocalRepositories(config))];
  // otad itself starts on the defaults without the file, but the unit waits for it
  // (ConditionPathExists=/etc/ota/config.yaml): "valid" alone would mislead right after an install.
  if (config.source === null) {
    warnings.unshift({
      code: 'CONFIG_NOT_FOUND',
      message: `no configuration file ${DEFAULT_CONFIG_PATH}: checked the defaults, which manage no products; otad.service does not start until that file exists`,
      subject: DEFAULT_CONFIG_PATH,
    });
  }
  return { source: config.source, config, errors: found.flat(), warnings };
}

function configFindings(error: unknown): Finding[] {
  if (isOtaError(error)) {
    const issues = error.details?.issues as ConfigIssue[] | undefined;
    if (Array.isArray(issues) && issues.length > 0) return issues.map((i) => ({ code: i.code, message: i.message, subject: i.path }));
    return [{ code: error.code, message: error.message }];
  }
  return [{ code: 'INTERNAL', message: String(error) }];
}

function finding(error: unknown, fallback: ErrorCode, subject?: string): Finding {
  const f: Finding = isOtaError(error) ? { code: error.code, message: error.message } : { code: fallback, message: (error as Error).message ?? String(error) };
  if (subject !== undefined) f.subject = subject;
  return f;
}

async function checkLock(config: Config): Promise<Finding[]> {
  const errors: Finding[] = [];
  const holder = lockHolder(config.paths.lockFile);
  if (holder !== null) {
    errors.push({ code: 'ALREADY_RUNNING', message: `another otad (pid ${holder}) holds the lock ${config.paths.lockFile}; a second one would not start`, subject: config.paths.lockFile });
  }
  return errors;
}

async function checkApi(config: Config): Promise<Finding[]> {
  const errors: Finding[] = [];
  if (!config.api.enabled) return errors;
  try {
    loadTokensFile(config.api.tokensFile);
  } catch (error) {
    errors.push(finding(error, 'CONFIG_INVALID', config.api.tokensFile));
  }
  if (config.api.port !== 0) {
    const problem = await portProblem(config.api.host, config.api.port);
    if (problem !== null) errors.push({ code: problem.code, message: problem.message, subject: `${config.api.host}:${config.api.port}` });
  }
  if (config.api.socketPath !== undefined) {
    const st = await fs.lstat(config.api.socketPath).catch(() => null);
    if (st !== null && !st.isSocket()) {
      errors.push({ code: 'CONFIG_INVALID', message: `api.socketPath ${config.api.socketPath} exists and is not a socket; otad would not replace it`, subject: config.api.socketPath });
    } else if (st === null) {
      const p = await creatableProblem(path.dirname(config.api.socketPath), 'the folder of api.socketPath');
      if (p !== null) errors.push(p);
    }
  }
  return errors;
}

/** Bind the port for an instant, exactly as the API server would (same host), and let it go. */
function portProblem(host: string, port: number): Promise<{ code: ErrorCode; message: string } | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') {
        resolve({ code: 'PORT_IN_USE', message: `api.port ${port} on ${host} is already in use by another process; otad could not listen on it (pick another api.port or stop that process)` });
      } else {
        resolve({ code: 'CONFIG_INVALID', message: `otad could not listen on ${host}:${port} (api.host, api.port): ${error.code ?? error.message}` });
      }
    });
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

async function checkTrustedRoot(config: Config): Promise<Finding[]> {
  if (config.products.length === 0) return [];
  try {
    await readGoldenRoot(config.paths.trustedRoot);
    return [];
  } catch (error) {
    return [finding(error, 'TRUST_ROOT_CORRUPT', config.paths.trustedRoot)];
  }
}

async function checkCaFile(config: Config): Promise<Finding[]> {
  if (config.server.caFile === undefined) return [];
  try {
    readCaFile(config.server.caFile);
    return [];
  } catch (error) {
    return [finding(error, 'CONFIG_INVALID', config.server.caFile)];
  }
}

/** The folders otad creates or writes into, each with what it is for the message. */
function foldersOf(config: Config): Array<[string, string]> {
  const out: Array<[string, string]> = [
    [config.paths.stateDir, 'paths.stateDir'],
    [path.dirname(config.paths.database), 'the folder of paths.database'],
    [config.paths.cacheDir, 'paths.cacheDir'],
    [config.paths.backupDir, 'paths.backupDir'],
    [path.dirname(config.paths.lockFile), 'the folder of paths.lockFile'],
  ];
  if (config.logging.file !== undefined) out.push([path.dirname(config.logging.file), 'the folder of logging.file']);
  if (config.logging.auditFile !== undefined) out.push([path.dirname(config.logging.auditFile), 'the folder of logging.auditFile']);
  config.products.forEach((p, i) => {
    // The switch renames a fresh link over the install path: its parent must be writable.
    out.push([path.dirname(p.installPath), `the folder of products[${i}].installPath (${p.name})`]);
    out.push([p.releasesDir ?? '', `the releases folder of ${p.name}`]);
    out.push([stagingRootFor(p), `the staging folder of ${p.name}`]);
  });
  const seen = new Set<string>();
  return out.filter(([dir]) => dir !== '' && !seen.has(dir) && seen.add(dir));
}

/**
 * A local repository (a USB stick, an offline copy) may rightly be absent when this runs: a warning,
 * not an error, that names what the checks will fail on until it is there.
 */
async function checkLocalRepositories(config: Config): Promise<Finding[]> {
  const found: Finding[] = [];
  for (const p of config.products) {
    for (const r of [p.repository, ...p.repositories]) {
      if (r.kind !== 'local' || r.path === undefined) continue;
      const metadata = path.join(path.resolve(r.path), 'metadata');
      const st = await fs.stat(metadata).catch(() => null);
      if (st === null || !st.isDirectory()) {
        found.push({
          code: 'REPOSITORY_FOLDER_MISSING',
          message: `product ${p.name}: repository ${r.name} is the local folder ${r.path}, which has no metadata/ folder now; checks from it fail until it does`,
          subject: metadata,
        });
      }
    }
  }
  return found;
}

async function checkFolders(config: Config): Promise<Finding[]> {
  const problems = await Promise.all(foldersOf(config).map(([dir, what]) => creatableProblem(dir, what)));
  return problems.filter((p): p is Finding => p !== null);
}

/** The nearest existing folder at or above `dir`, with its stats (null when even / is missing). */
async function nearestExisting(dir: string): Promise<{ at: string; st: Stats } | null> {
  let at = path.resolve(dir);
  for (;;) {
    const st = await fs.stat(at).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' || e.code === 'ENOTDIR' ? null : Promise.reject(e)));
    if (st !== null) return { at, st };
    const up = path.dirname(at);
    if (up === at) return null;
    at = up;
  }
}

/** Null when `dir` is a writable folder or can be created (its nearest existing parent is one). */
async function creatableProblem(dir: string, what: string): Promise<Finding | null> {
  const abs = path.resolve(dir);
  let found: { at: string; st: Stats } | null;
  try {
    found = await nearestExisting(abs);
  } catch (error) {
    return { code: 'PATH_NOT_CREATABLE', message: `${what}: ${abs} cannot be examined: ${(error as Error).message}`, subject: abs };
  }
  if (found === null) return { code: 'PATH_NOT_CREATABLE', message: `${what}: no part of ${abs} exists`, subject: abs };
  const exists = found.at === abs;
  if (!found.st.isDirectory()) {
    return {
      code: 'PATH_NOT_CREATABLE',
      message: exists ? `${what}: ${abs} is not a folder` : `${what}: ${abs} cannot be created: ${found.at} is not a folder`,
      subject: abs,
    };
  }
  try {
    await fs.access(found.at, constants.W_OK | constants.X_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return {
      code: 'PATH_NOT_CREATABLE',
      message: exists ? `${what}: ${abs} is not writable by this user (${code})` : `${what}: ${abs} does not exist and cannot be created: ${found.at} is not writable by this user (${code})`,
      subject: abs,
    };
  }
  return null;
}

/**
 * Staging and releases must share a filesystem: apply imports a staged tree with rename(2).
 * Staging is a sibling of the releases folder, so they differ only when one is a mount point.
 */
async function checkStagingFilesystem(product: Config['products'][number]): Promise<Finding[]> {
  const staging = stagingRootFor(product);
  const releases = product.releasesDir as string;
  const [s, r] = await Promise.all([nearestExisting(staging).catch(() => null), nearestExisting(releases).catch(() => null)]);
  if (s === null || r === null) return []; // reported as not creatable
  if (s.st.dev === r.st.dev) return [];
  return [
    {
      code: 'STAGING_OTHER_FILESYSTEM',
      message: `product ${product.name}: staging ${staging} (measured at ${s.at}) and releases ${releases} (measured at ${r.at}) are on different filesystems (st_dev ${s.st.dev} and ${r.st.dev}); a staged release could not be renamed into place`,
      subject: staging,
    },
  ];
}

async function checkModes(config: Config): Promise<Finding[]> {
  const warnings: Finding[] = [];
  const loose = async (file: string, expected: number, what: string) => {
    const st = await fs.stat(file).catch(() => null);
    if (st === null) return;
    const mode = st.mode & 0o777;
    if ((mode & ~expected) !== 0) {
      warnings.push({
        code: 'FILE_MODE_LOOSE',
        message: `${what} ${file} has mode ${octal(mode)}, more open than the ${octal(expected)} otad creates it with: run chmod ${octal(expected)} ${file}`,
        subject: file,
      });
    }
  };
  const db = config.paths.database;
  await Promise.all([
    loose(config.paths.stateDir, EXPECTED_MODES.stateDir, 'state folder'),
    loose(db, EXPECTED_MODES.database, 'database'),
    loose(`${db}-wal`, EXPECTED_MODES.database, 'database journal'),
    loose(`${db}-shm`, EXPECTED_MODES.database, 'database shared memory'),
    loose(path.join(config.paths.stateDir, 'device-id'), EXPECTED_MODES.database, 'device id'),
    ...(config.logging.file === undefined ? [] : [loose(config.logging.file, EXPECTED_MODES.log, 'log file')]),
    ...(config.logging.auditFile === undefined ? [] : [loose(config.logging.auditFile, EXPECTED_MODES.log, 'audit log')]),
  ]);
  return warnings;
}

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

/** The text `otad --check-config` prints: every error, then every warning, then the verdict. */
export function formatReport(report: PreflightReport): string {
  const lines: string[] = [];
  for (const e of report.errors) lines.push(`error ${e.code}: ${e.message}`);
  for (const w of report.warnings) lines.push(`warning ${w.code}: ${w.message}`);
  const where = report.source ?? '(defaults)';
  if (report.errors.length > 0) {
    lines.push(`configuration ${where}: otad would not start or not work: ${report.errors.length} error(s), ${report.warnings.length} warning(s)`);
  } else {
    lines.push(`configuration ${where} is valid: ${report.config?.products.length ?? 0} product(s), ${report.warnings.length} warning(s)`);
  }
  return lines.join('\n') + '\n';
}

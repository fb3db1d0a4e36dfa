/**
 * The pre-check step: is it safe to update this robot now? It measures (disk, network, power,
 * clock, inhibits, the product's own check commands), then a pure function decides. Every check
 * runs, so the run reports every reason at once; a failed pre-check is an answer, not an error:
 * the machine waits `precheck.retryInterval` and asks again.
 *
 * The step only reads: running it twice has no effect beyond running the product's check
 * commands again, which must themselves be read-only (docs/pre-checks.md).
 */
import type { Offer, PreCheckInput, PreCheckOutput, PreCheckReason } from '../../machines/types.js';
import type { CommandResult, CommandRunner } from '../adapters/system/check-commands.js';
import type { ClockSanityPort } from '../adapters/system/clock-sanity.js';
import type { DiskPort, FilesystemInfo } from '../adapters/system/disk.js';
import { parseInhibitFile, type InhibitFilePort, type ParsedInhibit } from '../adapters/system/inhibit-file.js';
import type { BatteryReading, PowerPort } from '../adapters/system/power.js';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';
import { createReleaseStore, defaultReleasesDir, stagingRootFor } from '../release/layout.js';
import { listBackupFiles } from '../backup/backup-manager.js';
import { DEFAULT_CLOCK_POLICY } from '../trust/clock-check.js';
import type { MeteredAssessment } from '../net/metered.js';

/** Every reason code a pre-check can report; docs/pre-checks.md explains each. */
export const PRECHECK_REASON_CODES = [
  'DISK_SPACE_LOW',
  'NETWORK_OFFLINE',
  'SERVER_UNREACHABLE',
  'BATTERY_LOW',
  'NOT_CHARGING',
  'CLOCK_NOT_SYNCED',
  'INHIBITED',
  'CHECK_COMMAND_FAILED',
  // The fleet gate (src/fleet/fleet-gate.ts), asked after the checks above: a remembered halt, then the update lease.
  'ROLLOUT_HALTED',
  'ROLLOUT_WAIT',
  'SITE_BUDGET_FULL',
  'DEVICE_PENDING',
  'DEVICE_REJECTED',
  'FLEET_UNREACHABLE',
  'FLEET_LEASE_REFUSED',
  // Metered links (src/net/metered.ts): the product's network.metered policy and monthly budget.
  'METERED_WAIT',
  'METERED_BUDGET_EXHAUSTED',
] as const;
export type PreCheckReasonCode = (typeof PRECHECK_REASON_CODES)[number];

/**
 * Space estimates, as multiples of the package's signed length: the download itself, and the
 * extracted tree. Software packages (binaries, Python, models) compress 2-3× with gzip; 3 covers
 * that with room for filesystem block rounding of many small files.
 */
export const DOWNLOAD_FACTOR = 1;
export const EXTRACTION_FACTOR = 3;

/** The backup manager's own margin (backup-manager.ts): 1 MiB + 5 % of the sources. */
export function backupEstimate(sourceBytes: number): number {
  return sourceBytes + 1024 * 1024 + Math.ceil(sourceBytes * 0.05);
}

/** A wall clock this far beyond the release date is taken as wrong rather than as an old release. */
export const DEFAULT_CLOCK_MAX_AHEAD_MS = 5 * 365 * 24 * 3_600_000;
/** The release may have been signed on a machine whose clock ran a little ahead of ours. */
export const RELEASE_CLOCK_SKEW_MS = 24 * 3_600_000;

export interface PreCheckPorts {
  product: ProductConfig;
  config: Config;
  disk: DiskPort;
  power: PowerPort;
  network: { snapshot(): Promise<{ online: boolean; serverReachable: boolean }> };
  clock: Clock;
  clockSanity: ClockSanityPort;
  /** Inhibits held through the API (already without expired ones, but checked again here). */
  inhibits(): Array<{ holder: string; reason: string; expiresAt: number | null }>;
  inhibitFile: InhibitFilePort;
  commands: CommandRunner;
  logger: Logger;
  options?: PreCheckOptions;
  /** The product's metered-link policy (src/net/metered.ts); absent: metered links are not special. */
  metered?: { assess(downloadBytes: number, what: string): Promise<MeteredAssessment> };
}

export interface PreCheckOptions {
  /** No correct clock reads earlier than this (default: the build floor of the trust module). */
  clockFloorMs?: number;
  clockMaxAheadMs?: number;
  /** When false, timedatectl saying "not synchronised" is logged but does not block (default true). */
  requireNtpSync?: boolean;
  /** When false, an unreachable update server does not block (default true). */
  requireServerReachable?: boolean;
}

// ----- measurements (what the step gathered) and the pure decision ------------------------------

export type Measured<T> = { value: T } | { error: string };

export type DiskRole = 'cache' | 'staging' | 'releases' | 'backups';

export interface DiskMeasurement {
  places: Record<DiskRole, { dir: string; fs: FilesystemInfo }>;
  /** Bytes of the current release (preserved paths live inside it); null when no backup is planned. */
  backupSourceBytes: number | null;
  /**
   * What the product's retention does during and after the run (absent: nothing is counted as freed).
   * `installed` is the release that becomes the kept previous one: it is already on disk, so it adds
   * nothing, and it is not freed either. `backupsPruned` are removed right after this run's backup is
   * written (backup.keep), so before the download and extraction; `releasesPruned` only at commit,
   * after the run's peak, so they never reduce what the run needs.
   */
  retention?: {
    installed: { version: string | null; bytes: number } | null;
    backupsPruned: Array<{ name: string; bytes: number }>;
    releasesPruned: Array<{ version: string; bytes: number }>;
  };
}

export interface PreCheckMeasurements {
  now: number;
  offer: Pick<Offer, 'version' | 'releasedAt' | 'package' | 'minFreeBytes' | 'delta' | 'index'>;
  disk: Measured<DiskMeasurement>;
  network: Measured<{ online: boolean; serverReachable: boolean }>;
  battery: Measured<BatteryReading>;
  /** From timedatectl; null when the system cannot say. */
  ntpSynchronized: Measured<boolean | null>;
  apiInhibits: Array<{ holder: string; reason: string; expiresAt: number | null }>;
  inhibitFile: { path: string; read: Measured<{ content: string; mtimeMs: number } | null> };
  commands: Array<{ name: string; command: readonly string[]; timeoutMs: number; result: CommandResult }>;
  /** The metered-link policy's answer for this download, when the product has one. */
  metered?: Measured<MeteredAssessment>;
}

export interface PreCheckPolicy {
  minFreeBytes: number;
  minBatteryPercent: number;
  requireCharging: boolean;
  maxHoldMs: number;
  clockFloorMs: number;
  clockMaxAheadMs: number;
  requireNtpSync: boolean;
  requireServerReachable: boolean;
}

export interface PreCheckDecision {
  reasons: PreCheckReason[];
  /** Things an operator should see that do not block (a stale inhibit file ignored). */
  warnings: string[];
}

export function policyFromConfig(product: ProductConfig, config: Config, options: PreCheckOptions = {}): PreCheckPolicy {
  return {
    minFreeBytes: product.precheck.minFreeBytes,
    minBatteryPercent: product.precheck.minBatteryPercent,
    requireCharging: product.precheck.requireCharging,
    maxHoldMs: config.inhibit.maxHold,
    clockFloorMs: options.clockFloorMs ?? DEFAULT_CLOCK_POLICY.floorMs,
    clockMaxAheadMs: options.clockMaxAheadMs ?? DEFAULT_CLOCK_MAX_AHEAD_MS,
    requireNtpSync: options.requireNtpSync ?? true,
    requireServerReachable: options.requireServerReachable ?? true,
  };
}

/** Pure: every reason the measurements give, in a fixed order. */
export function decidePreCheck(m: PreCheckMeasurements, policy: PreCheckPolicy): PreCheckDecision {
  const out: PreCheckDecision = { reasons: [], warnings: [] };
  decideDisk(m, policy, out);
  decideNetwork(m.network, policy, out);
  decidePower(m.battery, policy, out);
  decideClock(m, policy, out);
  decideInhibits(m, policy, out);
  for (const c of m.commands) decideCommand(c, out);
  decideMetered(m.metered, out);
  return out;
}

interface Need {
  what: string;
  bytes: number;
}

/** What one filesystem must hold during the run, and what retention frees on it. */
export interface FilesystemNeeds {
  dirs: Set<string>;
  freeBytes: number;
  /** Everything the run writes that is there at its peak (download, extraction, new backup). */
  needs: Need[];
  /** Freed before the peak: old backups pruned right after this run's backup is written. */
  freed: Need[];
  /** The new backup, when it lands here: it must fit before the old backups are pruned. */
  backupBytes: number;
  /** Told, not counted: the kept previous release (already on disk) and what commit frees afterwards. */
  notes: string[];
}

/**
 * What each filesystem must hold: the download in the cache, the extracted tree in staging (and
 * again in the releases folder when that is another filesystem, since the tree must then be
 * copied rather than renamed), the backup, less the old backups retention removes before the
 * download starts, and the product's minFreeBytes left over on each (added by the caller).
 */
/** Filesystem block rounding allowed per entry when the unpacked size is known from the signed tree index. */
export const INDEX_BLOCK_SLACK = 4096;

/**
 * What the run will download and unpack: with a delta from the installed release, the delta's
 * length and the release's exact size from its signed tree index; with an index only, the package
 * and that size; without one (schema 1.0), the package and EXTRACTION_FACTOR × its length.
 */
export interface DiskPlan {
  downloadBytes: number;
  downloadWhat: string;
  /** Unpacked size when known (signed index), else null (estimated from the package). */
  unpackedBytes: number | null;
}

export function diskPlanFor(offer: Pick<Offer, 'package' | 'delta' | 'index'>): DiskPlan {
  const unpackedBytes = offer.index !== undefined ? offer.index.bytes + offer.index.entries * INDEX_BLOCK_SLACK : null;
  if (offer.delta !== undefined && offer.index !== undefined) return { downloadBytes: offer.delta.target.length, downloadWhat: `delta from ${offer.delta.fromVersion}`, unpackedBytes };
  return { downloadBytes: offer.package.length, downloadWhat: 'download', unpackedBytes };
}

export function diskNeeds(d: DiskMeasurement, packageBytes: number | DiskPlan, releaseMinFreeBytes = 0): Map<string, FilesystemNeeds> {
  const plan: DiskPlan = typeof packageBytes === 'number' ? { downloadBytes: packageBytes, downloadWhat: 'download', unpackedBytes: null } : packageBytes;
  const byFs = new Map<string, FilesystemNeeds>();
  const on = (role: DiskRole): FilesystemNeeds => {
    const place = d.places[role];
    let entry = byFs.get(place.fs.id);
    if (entry === undefined) {
      entry = { dirs: new Set(), needs: [], freed: [], backupBytes: 0, notes: [], freeBytes: place.fs.freeBytes };
      byFs.set(place.fs.id, entry);
    }
    entry.dirs.add(place.dir);
    return entry;
  };
  const add = (role: DiskRole, what: string, bytes: number): void => {
    const entry = on(role);
    if (bytes > 0) entry.needs.push({ what, bytes });
  };
  add('cache', plan.downloadWhat, plan.downloadBytes * DOWNLOAD_FACTOR);
  // The signed manifest may say the release needs more room than the estimate (requirements.minFreeBytes).
  const extraction = plan.unpackedBytes ?? plan.downloadBytes * EXTRACTION_FACTOR;
  const extractionWhat = plan.unpackedBytes === null ? 'extraction' : plan.downloadWhat === 'download' ? 'extraction (signed tree index)' : 'assembled release (signed tree index)';
  if (releaseMinFreeBytes > extraction) add('staging', 'the release\'s signed requirements.minFreeBytes', releaseMinFreeBytes);
  else add('staging', extractionWhat, extraction);
  const releasesSeparate = d.places.releases.fs.id !== d.places.staging.fs.id;
  add('releases', 'release copy', releasesSeparate ? extraction : 0);
  const backup = d.backupSourceBytes === null || d.backupSourceBytes === 0 ? 0 : backupEstimate(d.backupSourceBytes);
  add('backups', 'backup', backup);
  on('backups').backupBytes = backup;
  const r = d.retention;
  if (r !== undefined) {
    // Old backups go only once this run's backup is written and verified (src/steps/backup.ts).
    const prunedBackups = backup > 0 ? r.backupsPruned.reduce((sum, b) => sum + b.bytes, 0) : 0;
    if (prunedBackups > 0) on('backups').freed.push({ what: `${r.backupsPruned.length} old backup${r.backupsPruned.length === 1 ? '' : 's'} pruned after the backup (backup.keep)`, bytes: prunedBackups });
    if (r.installed !== null && r.installed.bytes > 0) {
      on('releases').notes.push(`kept previous release ${r.installed.version ?? '(current)'} ${formatBytes(r.installed.bytes)} already on disk: adds 0, frees 0`);
    }
    const prunedReleases = r.releasesPruned.reduce((sum, x) => sum + x.bytes, 0);
    if (r.releasesPruned.length > 0) {
      on('releases').notes.push(
        `release${r.releasesPruned.length === 1 ? '' : 's'} ${r.releasesPruned.map((x) => x.version).join(', ')} ${formatBytes(prunedReleases)} freed only at commit, after the peak: not counted`,
      );
    }
  }
  return byFs;
}

/**
 * Bytes one filesystem must have free now: the larger of its two peaks, plus minFreeBytes. The
 * first is while the backup is written (old backups are still there); the second while the
 * package downloads and unpacks (the old backups are gone by then, the new one stays).
 */
export function requiredBytes(fs: FilesystemNeeds, minFreeBytes: number): { total: number; backupFirst: boolean } {
  const added = fs.needs.reduce((s, n) => s + n.bytes, 0);
  const freed = fs.freed.reduce((s, n) => s + n.bytes, 0);
  const staged = added - freed;
  return fs.backupBytes > staged ? { total: fs.backupBytes + minFreeBytes, backupFirst: true } : { total: staged + minFreeBytes, backupFirst: false };
}

/** "download 100 MiB + extraction 300 MiB + backup 211 MiB − 1 old backup … 150 MiB + precheck.minFreeBytes 0 B" */
export function describeNeeds(fs: FilesystemNeeds, minFreeBytes: number): string {
  const { backupFirst } = requiredBytes(fs, minFreeBytes);
  const terms = backupFirst
    ? [`backup ${formatBytes(fs.backupBytes)}, written while the old backups are still there`]
    : fs.needs.map((n) => `${n.what} ${formatBytes(n.bytes)}`);
  let text = terms.join(' + ');
  if (!backupFirst) for (const f of fs.freed) text += ` − ${f.what} ${formatBytes(f.bytes)}`;
  text += ` + precheck.minFreeBytes ${formatBytes(minFreeBytes)}`;
  return fs.notes.length === 0 ? text : `${text}; ${fs.notes.join('; ')}`;
}

function decideDisk(m: PreCheckMeasurements, policy: PreCheckPolicy, out: PreCheckDecision): void {
  if ('error' in m.disk) {
    out.reasons.push({ code: 'DISK_SPACE_LOW', message: `free disk space could not be measured: ${m.disk.error}` });
    return;
  }
  for (const fs of diskNeeds(m.disk.value, diskPlanFor(m.offer), m.offer.minFreeBytes ?? 0).values()) {
    const { total } = requiredBytes(fs, policy.minFreeBytes);
    if (fs.freeBytes >= total) continue;
    out.reasons.push({
      code: 'DISK_SPACE_LOW',
      message:
        `not enough free space on the filesystem of ${[...fs.dirs].join(', ')}: ${formatBytes(fs.freeBytes)} free, ` +
        `${formatBytes(total)} needed (${describeNeeds(fs, policy.minFreeBytes)})`,
    });
  }
}

/** One line per filesystem for the log: need X (the breakdown); free F. */
export function diskSummary(d: DiskMeasurement, offer: Pick<Offer, 'package' | 'minFreeBytes' | 'delta' | 'index'>, minFreeBytes: number): string[] {
  return [...diskNeeds(d, diskPlanFor(offer), offer.minFreeBytes ?? 0).values()].map(
    (fs) => `${[...fs.dirs].join(', ')}: need ${formatBytes(requiredBytes(fs, minFreeBytes).total)} (${describeNeeds(fs, minFreeBytes)}); free ${formatBytes(fs.freeBytes)}`,
  );
}

function decideNetwork(network: PreCheckMeasurements['network'], policy: PreCheckPolicy, out: PreCheckDecision): void {
  if ('error' in network) {
    out.reasons.push({ code: 'NETWORK_OFFLINE', message: `the network state could not be read: ${network.error}` });
  } else if (!network.value.online) {
    out.reasons.push({ code: 'NETWORK_OFFLINE', message: 'the robot is offline: no external interface with an address and a default route, and the update server did not answer' });
  } else if (!network.value.serverReachable && policy.requireServerReachable) {
    out.reasons.push({ code: 'SERVER_UNREACHABLE', message: 'the robot has a network link but the update server did not answer its probe' });
  }
}

function decideMetered(metered: PreCheckMeasurements['metered'], out: PreCheckDecision): void {
  if (metered === undefined) return;
  if ('error' in metered) {
    out.reasons.push({ code: 'METERED_WAIT', message: `the metered-link policy could not be applied: ${metered.error}` });
    return;
  }
  const a = metered.value;
  if (a.refusal !== null) out.reasons.push({ code: a.refusal.code, message: a.refusal.message });
  else if (a.reading.metered === 'unknown' && a.policy !== 'allow') out.warnings.push(`metered state unknown (${a.reading.reason}); the link is treated as not metered`);
}

function decidePower(battery: PreCheckMeasurements['battery'], policy: PreCheckPolicy, out: PreCheckDecision): void {
  if ('error' in battery) {
    out.reasons.push({ code: 'BATTERY_LOW', message: `the battery could not be read: ${battery.error}` });
    return;
  }
  const b = battery.value;
  // No battery: the machine runs on mains power, which is what the battery checks want anyway.
  if (!b.hasBattery) return;
  if (b.percent < policy.minBatteryPercent) {
    out.reasons.push({ code: 'BATTERY_LOW', message: `battery at ${b.percent}%, below the minimum of ${policy.minBatteryPercent}% (precheck.minBatteryPercent)` });
  }
  if (policy.requireCharging && !b.isCharging && !b.acConnected) {
    out.reasons.push({ code: 'NOT_CHARGING', message: `the robot is on battery (${b.percent}%, not charging, no external power) and precheck.requireCharging is true` });
  }
}

function decideClock(m: PreCheckMeasurements, policy: PreCheckPolicy, out: PreCheckDecision): void {
  const floor = Math.max(policy.clockFloorMs, m.offer.releasedAt - RELEASE_CLOCK_SKEW_MS);
  const ceiling = Math.max(policy.clockFloorMs, m.offer.releasedAt) + policy.clockMaxAheadMs;
  if (m.now < floor) {
    out.reasons.push({
      code: 'CLOCK_NOT_SYNCED',
      message: `the clock reads ${iso(m.now)}, earlier than ${iso(floor)} (${floor === policy.clockFloorMs ? 'the build floor of otad' : `a day before release ${m.offer.version} was published`}): the clock is not set`,
    });
  } else if (m.now > ceiling) {
    out.reasons.push({
      code: 'CLOCK_NOT_SYNCED',
      message: `the clock reads ${iso(m.now)}, later than ${iso(ceiling)} (${Math.round(policy.clockMaxAheadMs / 86_400_000)} days after release ${m.offer.version} was published): the clock is ahead`,
    });
  }
  const ntp = m.ntpSynchronized;
  if ('error' in ntp) {
    out.warnings.push(`the clock's synchronisation state could not be read: ${ntp.error}`);
  } else if (ntp.value === false) {
    if (policy.requireNtpSync) {
      out.reasons.push({ code: 'CLOCK_NOT_SYNCED', message: 'the system reports its clock is not synchronised (timedatectl NTPSynchronized=no)' });
    } else {
      out.warnings.push('the system reports its clock is not synchronised (timedatectl NTPSynchronized=no); not required by configuration');
    }
  }
}

function decideInhibits(m: PreCheckMeasurements, policy: PreCheckPolicy, out: PreCheckDecision): void {
  for (const i of m.apiInhibits) {
    if (i.expiresAt !== null && i.expiresAt <= m.now) continue;
    const until = i.expiresAt === null ? 'for as long as it keeps its inhibitor open' : `until ${iso(i.expiresAt)}`;
    out.reasons.push({ code: 'INHIBITED', message: `updates are inhibited by ${i.holder} ${until}${i.reason ? `: ${i.reason}` : ''}` });
  }
  const { path, read } = m.inhibitFile;
  if ('error' in read) {
    // It exists but cannot be read: the app meant something; do not guess that it meant "go".
    out.reasons.push({ code: 'INHIBITED', message: `inhibit file ${path} exists but cannot be read (${read.error}); remove it or make it a readable file` });
    return;
  }
  if (read.value === null) return;
  const file = read.value;
  const parsed: ParsedInhibit = parseInhibitFile(file.content);
  if (parsed.problem !== undefined) out.warnings.push(`inhibit file ${path}: ${parsed.problem}`);
  // The hold is measured from the file's mtime, so a crashed app blocks for maxHold at most. A file
  // stamped in the future (the clock was stepped back since) is honoured only while that keeps the
  // block under 2 × maxHold; further out it is ignored rather than blocking for as long as the gap.
  const holdEnd = file.mtimeMs + policy.maxHoldMs;
  if (file.mtimeMs > m.now + policy.maxHoldMs) {
    out.warnings.push(`inhibit file ${path} was written at ${iso(file.mtimeMs)}, more than the maximum hold ahead of the clock (${iso(m.now)}); ignored, remove it`);
    return;
  }
  if (m.now >= holdEnd) {
    out.warnings.push(
      `inhibit file ${path} (held by ${parsed.holder} since ${iso(file.mtimeMs)}) is older than the maximum hold of ${formatDuration(policy.maxHoldMs)} (inhibit.maxHold); ignored, remove it`,
    );
    return;
  }
  if (parsed.expiresAt !== null && m.now >= parsed.expiresAt) {
    out.warnings.push(`inhibit file ${path} (held by ${parsed.holder}) expired at ${iso(parsed.expiresAt)}; ignored, remove it`);
    return;
  }
  const until = Math.min(holdEnd, parsed.expiresAt ?? Infinity);
  out.reasons.push({
    code: 'INHIBITED',
    message: `updates are inhibited by ${parsed.holder} through ${path} until ${iso(until)}${parsed.reason ? `: ${parsed.reason}` : ''}`,
  });
}

function decideCommand(c: PreCheckMeasurements['commands'][number], out: PreCheckDecision): void {
  const r = c.result;
  if (r.exitCode === 0 && !r.timedOut) return;
  const how =
    r.spawnError !== undefined
      ? `could not be started (${r.spawnError})`
      : r.timedOut
        ? `did not finish within its timeout of ${formatDuration(c.timeoutMs)}`
        : r.exitCode === null
          ? 'was killed by a signal'
          : `exited with status ${r.exitCode} (0 expected)`;
  const last = lastLine(r.output);
  out.reasons.push({ code: 'CHECK_COMMAND_FAILED', message: `check command "${c.name}" (${c.command.join(' ')}) ${how}${last ? `: ${last}` : ''}` });
}

// ----- the step ------------------------------------------------------------------------------------

export type PreCheckStep = (input: PreCheckInput, signal: AbortSignal) => Promise<PreCheckOutput>;

export function createPreCheckStep(ports: PreCheckPorts): PreCheckStep {
  const { product, config } = ports;
  const log = ports.logger.child({ step: 'preCheck' });

  async function measureDisk(): Promise<DiskMeasurement> {
    const dirs: Record<DiskRole, string> = {
      cache: config.paths.cacheDir,
      staging: stagingRootFor(product),
      releases: product.releasesDir ?? defaultReleasesDir(product.installPath, product.name),
      backups: config.paths.backupDir,
    };
    const roles = Object.keys(dirs) as DiskRole[];
    const infos = await Promise.all(roles.map((r) => ports.disk.filesystem(dirs[r])));
    const places = Object.fromEntries(roles.map((r, i) => [r, { dir: dirs[r], fs: infos[i] as FilesystemInfo }])) as DiskMeasurement['places'];
    const backupPlanned = product.backup.enabled && !config.simulation;
    // The install path resolves to the current release; the preserved paths are inside it.
    const installedBytes = await ports.disk.treeBytes(product.installPath);
    const backupSourceBytes = backupPlanned ? installedBytes : null;
    return { places, backupSourceBytes, retention: await measureRetention(dirs, installedBytes, backupPlanned) };
  }

  /** What retention will remove: read only, in the same order the backup step and commit use. */
  async function measureRetention(dirs: Record<DiskRole, string>, installedBytes: number, backupPlanned: boolean): Promise<NonNullable<DiskMeasurement['retention']>> {
    const store = createReleaseStore({ product: product.name, installPath: product.installPath, releasesDir: dirs.releases, logger: ports.logger });
    const releases = await store.list();
    const live = releases.find((r) => r.current);
    const installed = installedBytes > 0 ? { version: live?.version ?? null, bytes: installedBytes } : null;
    // Commit keeps the new release and the one it replaced; every other release goes.
    const releasesPruned = await Promise.all(releases.filter((r) => !r.current).map(async (r) => ({ version: r.version, bytes: await ports.disk.treeBytes(r.dir) })));
    // This run's backup becomes the newest, so the backup step keeps backup.keep − 1 of today's.
    const backups = backupPlanned && installed !== null ? await listBackupFiles(product.name, dirs.backups) : [];
    const backupsPruned = backups.slice(Math.max(0, product.backup.keep - 1)).map((b) => ({ name: b.name, bytes: b.bytes }));
    return { installed, backupsPruned, releasesPruned };
  }

  async function runCommands(input: PreCheckInput, signal: AbortSignal): Promise<PreCheckMeasurements['commands']> {
    const results: PreCheckMeasurements['commands'] = [];
    // One after the other: the product's checks may look at the same things and should not race.
    for (const c of product.precheck.commands) {
      if (signal.aborted) break;
      const result = await ports.commands
        .run({
          name: c.name,
          command: c.command,
          timeoutMs: c.timeout,
          signal,
          env: {
            OTA_PRODUCT: product.name,
            OTA_RUN_ID: input.runId,
            OTA_TARGET_VERSION: input.offer.version,
            OTA_INSTALL_PATH: product.installPath,
          },
        })
        .catch((error: unknown): CommandResult => ({ exitCode: null, timedOut: false, output: '', spawnError: message(error) }));
      const fields = { name: c.name, command: c.command, exitCode: result.exitCode, timedOut: result.timedOut, output: result.output };
      if (result.exitCode === 0 && !result.timedOut) log.debug('check command passed', fields);
      else log.warn('check command failed', { ...fields, ...(result.spawnError === undefined ? {} : { spawnError: result.spawnError }) });
      results.push({ name: c.name, command: c.command, timeoutMs: c.timeout, result });
    }
    return results;
  }

  return async function preCheck(input, signal) {
    const now = ports.clock.now();
    const inhibitPath = config.paths.inhibitFile;
    const plan = diskPlanFor(input.offer);
    const metered = ports.metered;
    const [disk, network, battery, ntpSynchronized, inhibitRead, commands, meteredAnswer] = await Promise.all([
      measure(measureDisk),
      measure(() => ports.network.snapshot()),
      measure(() => ports.power.battery()),
      measure(() => ports.clockSanity.ntpSynchronized(signal)),
      measure(() => ports.inhibitFile.read(inhibitPath)),
      runCommands(input, signal),
      metered === undefined ? Promise.resolve(undefined) : measure(() => metered.assess(plan.downloadBytes, plan.downloadWhat)),
    ]);
    if (signal.aborted) throw new OtaError('CANCELLED', `pre-check of ${product.name} ${input.offer.version} was cancelled`);

    const measurements: PreCheckMeasurements = {
      now,
      offer: input.offer,
      disk,
      network: 'error' in network ? network : { value: { online: network.value.online, serverReachable: network.value.serverReachable } },
      battery,
      ntpSynchronized,
      apiInhibits: ports.inhibits(),
      inhibitFile: { path: inhibitPath, read: inhibitRead },
      commands,
      ...(meteredAnswer === undefined ? {} : { metered: meteredAnswer }),
    };
    const decision = decidePreCheck(measurements, policyFromConfig(product, config, ports.options));
    for (const w of decision.warnings) log.warn(w, { runId: input.runId });
    const meteredFields =
      meteredAnswer !== undefined && 'value' in meteredAnswer
        ? { metered: { value: meteredAnswer.value.reading.value, policy: meteredAnswer.value.policy, month: meteredAnswer.value.month, usedBytes: meteredAnswer.value.usedBytes, budgetBytes: meteredAnswer.value.budgetBytes, downloadBytes: plan.downloadBytes } }
        : {};
    const fields = { runId: input.runId, version: input.offer.version, attempt: input.attempt, ...meteredFields };
    const diskLines = 'value' in measurements.disk ? diskSummary(measurements.disk.value, input.offer, product.precheck.minFreeBytes) : [];
    if (decision.reasons.length === 0) {
      log.info('pre-check passed', { ...fields, disk: diskLines });
      return { ok: true };
    }
    log.warn(`pre-check did not pass: ${decision.reasons.map((r) => r.code).join(', ')}`, { ...fields, reasons: decision.reasons, disk: diskLines });
    return { ok: false, reasons: decision.reasons };
  };
}

async function measure<T>(fn: () => Promise<T>): Promise<Measured<T>> {
  try {
    return { value: await fn() };
  } catch (error) {
    return { error: message(error) };
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function lastLine(output: string): string {
  const line = output.trimEnd().split('\n').at(-1)?.trim() ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

/** "1.5 GiB (1610612736 bytes)": readable, and exact for whoever compares with df -B1. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const short = unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
  return unit === 0 ? short : `${short} (${bytes} bytes)`;
}

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

/**
 * Rehearsal (`otactl rehearse`, POST /api/v1/products/{p}/rehearse, D-Bus Product1.Rehearse): the
 * real check, pre-check, download and staging of what an update would install now, into a scratch
 * folder, stopping before anything that touches the install path or the services. It reports what
 * the update would download, the disk it needs, the services it would restart, the pre-check's
 * verdict on each condition, and the downtime this product's history predicts.
 *
 * Invariants:
 * - nothing under the install path, the releases folder or the product's staging place is written:
 *   the stage step works in `<cacheDir>/rehearsal/<product>` (its own cache, releases and staging),
 *   removed afterwards whatever happened;
 * - the product's machine gets no event (its state, runs and transitions stay as they are); no
 *   fleet lease is taken and no maintenance window asked for (both would tell others an update is coming);
 * - the robot-state gates are read and decided by the same code as a real install's pre-check
 *   (withRobotStateGate), so each verdict and reason is the one an install now would get; the
 *   evaluation is not kept as the status's robotState.lastCheck;
 * - refused while any product is in a run step (REHEARSAL_BUSY), and stopped when one starts (REHEARSAL_INTERRUPTED).
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { PreCheckReason, StageOutput } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError, toErrorData, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import type { Config } from '../config/load.js';
import { backupEstimate } from '../steps/pre-check.js';
import type { RehearsalSteps } from '../steps/stage-ahead.js';
import type { Store } from '../store/store.js';
import { describeGateVerdict, withRobotStateGate, type GateVerdict, type RobotState } from './robot-state.js';

export interface PreCheckVerdict {
  condition: string;
  verdict: 'pass' | 'block' | 'not-asked';
  detail: string;
}

export interface DowntimePrediction {
  /** Null: nothing in this product's history to predict from. */
  predictedMs: number | null;
  /** What the prediction rests on, in words (always set). */
  basis: string;
  /** Runs of the product with a recorded downtime: none are recorded yet ("no history"). */
  downtimeRecords: 'no history';
  /** Time the last committed runs spent in the apply step (services stopped → switched → started), from the transition log. */
  applyStep: { runs: number; medianMs: number; maxMs: number } | null;
  /** Whole committed runs (check to commit), from the run history. */
  wholeRun: { runs: number; medianMs: number } | null;
}

export interface RehearsalReport {
  product: string;
  startedAt: number;
  durationMs: number;
  installedVersion: string | null;
  /** False: the check found nothing newer; nothing was downloaded. */
  available: boolean;
  version: string | null;
  /** Where the rehearsal stopped early, and why (null: it went through staging). */
  stoppedAt: 'check' | 'preCheck' | 'stage' | null;
  error: { code: string; message: string } | null;
  download: { bytes: number; what: string } | null;
  disk: { downloadBytes: number; stagedBytes: number; backupBytes: number; minFreeBytes: number; totalBytes: number; basis: string } | null;
  staged: { via: string; indexVerified: boolean; entries: number; bytes: number } | null;
  services: { manager: string; units: string[]; wouldRestart: string[]; note: string };
  /**
   * ok false: an install now would not start; its pre-check would block with `reasons` (the
   * reasons a real pre-check would give, in its order: the product's own, then the robot-state gates').
   * robotState: each configured robot-state gate's verdict with its readings (empty: none configured).
   */
  preCheck: { ok: boolean; reasons: PreCheckReason[]; verdicts: PreCheckVerdict[]; robotState: GateVerdict[] } | null;
  downtime: DowntimePrediction;
  scratchDir: string;
}

/** The pre-check's conditions, and which reason codes belong to each (src/steps/pre-check.ts). */
const CONDITIONS: Array<{ condition: string; codes: string[] }> = [
  { condition: 'disk space', codes: ['DISK_SPACE_LOW'] },
  { condition: 'network', codes: ['NETWORK_OFFLINE', 'SERVER_UNREACHABLE'] },
  { condition: 'power', codes: ['BATTERY_LOW', 'NOT_CHARGING'] },
  { condition: 'clock', codes: ['CLOCK_NOT_SYNCED'] },
  { condition: 'inhibitors', codes: ['INHIBITED'] },
  { condition: 'check commands', codes: ['CHECK_COMMAND_FAILED'] },
];

/**
 * One verdict per condition: the product's own pre-check's (`reasons`, which must not hold the
 * robot-state gates' reasons), then one per robot-state gate (`robot-state <gate>`), then the
 * gates a rehearsal does not ask.
 */
export function verdictsFrom(reasons: PreCheckReason[], gates: GateVerdict[] = []): PreCheckVerdict[] {
  const out: PreCheckVerdict[] = [];
  const claimed = new Set<PreCheckReason>();
  for (const c of CONDITIONS) {
    const mine = reasons.filter((r) => c.codes.includes(r.code));
    mine.forEach((r) => claimed.add(r));
    out.push({ condition: c.condition, verdict: mine.length === 0 ? 'pass' : 'block', detail: mine.length === 0 ? 'passed' : mine.map((r) => `${r.code}: ${r.message}`).join('; ') });
  }
  for (const r of reasons) if (!claimed.has(r)) out.push({ condition: r.code, verdict: 'block', detail: r.message });
  for (const g of gates) out.push({ condition: `robot-state ${g.gate}`, verdict: g.reasons.length === 0 ? 'pass' : 'block', detail: describeGateVerdict(g) });
  out.push({ condition: 'fleet gate', verdict: 'not-asked', detail: 'not asked in a rehearsal: it would take an update lease from the fleet server' });
  out.push({ condition: 'maintenance window', verdict: 'not-asked', detail: 'not asked in a rehearsal: it would tell the mission side an update is about to start' });
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : Math.round(((s[mid - 1] as number) + (s[mid] as number)) / 2);
};

/** The downtime this product's history predicts: from the apply step of its last committed runs (at most `limit`). */
export function predictDowntime(store: Store, product: string, limit = 20): DowntimePrediction {
  const rows = store.db
    .prepare(
      `SELECT t.run_id AS runId, t.from_state AS fromState, t.to_state AS toState, t.at AS at
         FROM transitions t JOIN runs r ON r.run_id = t.run_id
        WHERE t.product = ? AND r.outcome = 'committed' AND (t.to_state = 'apply' OR t.from_state = 'apply')
        ORDER BY t.seq`,
    )
    .all(product) as Array<{ runId: string; fromState: string; toState: string; at: number }>;
  const entered = new Map<string, number>();
  const spans = new Map<string, number>();
  for (const r of rows) {
    if (r.toState === 'apply' && r.fromState !== 'apply') entered.set(r.runId, r.at);
    else if (r.fromState === 'apply' && r.toState !== 'apply' && entered.has(r.runId)) spans.set(r.runId, r.at - (entered.get(r.runId) as number));
  }
  const applyMs = [...spans.values()].slice(-limit);
  const runs = store.db
    .prepare(`SELECT started_at AS startedAt, ended_at AS endedAt FROM runs WHERE product = ? AND outcome = 'committed' AND ended_at IS NOT NULL ORDER BY started_at DESC LIMIT ?`)
    .all(product, limit) as Array<{ startedAt: number; endedAt: number }>;
  const wholeRun = runs.length === 0 ? null : { runs: runs.length, medianMs: median(runs.map((r) => r.endedAt - r.startedAt)) };
  if (applyMs.length === 0) {
    return {
      predictedMs: null,
      basis: `no history: ${product} has no committed run with its apply step in the transition log, and no downtime records exist yet`,
      downtimeRecords: 'no history',
      applyStep: null,
      wholeRun,
    };
  }
  const applyStep = { runs: applyMs.length, medianMs: median(applyMs), maxMs: Math.max(...applyMs) };
  return {
    predictedMs: applyStep.medianMs,
    basis: `no downtime records yet (no history); predicted from the apply step of the last ${applyStep.runs} committed run${applyStep.runs === 1 ? '' : 's'} in the transition log (services stopped, release switched, services started), median ${applyStep.medianMs} ms, longest ${applyStep.maxMs} ms: the services were down for at most that long`,
    downtimeRecords: 'no history',
    applyStep,
    wholeRun,
  };
}

async function treeBytes(dir: string): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      entries += 1;
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) bytes += (await fs.lstat(p)).size;
    }
  };
  await walk(dir);
  return { entries, bytes };
}

export interface RehearsalDeps {
  product: ProductConfig;
  config: Config;
  steps: RehearsalSteps;
  scratchDir: string;
  installedVersion: string | null;
  store: Store;
  clock: Clock;
  logger: Logger;
  signal: AbortSignal;
  /** The robot-state gates (robotState.gates), asked as a real install's pre-check asks them. */
  robotState?: RobotState;
}

export async function runRehearsal(deps: RehearsalDeps): Promise<RehearsalReport> {
  const { product, config, steps, scratchDir, clock, signal } = deps;
  const log = deps.logger.child({ product: product.name, component: 'rehearsal' });
  const startedAt = clock.now();
  const t0 = clock.monotonic();
  const runId = `rehearsal-${startedAt}`;
  const services = await steps.services().catch((error: unknown) => ({ kind: 'unresolved', units: [] as string[], error: toOtaError(error, 'SERVICE_FAILED', 'resolving the services').message }));
  const report: RehearsalReport = {
    product: product.name,
    startedAt,
    durationMs: 0,
    installedVersion: deps.installedVersion,
    available: false,
    version: null,
    stoppedAt: null,
    error: null,
    download: null,
    disk: null,
    staged: null,
    services: {
      manager: services.kind,
      units: services.units,
      wouldRestart: config.simulation ? [] : services.units,
      note: config.simulation
        ? 'simulation mode: an install would not stop or start any service'
        : 'error' in services
          ? `the services could not be resolved: ${services.error}`
          : services.units.length === 0
            ? 'the product has no services: an install restarts nothing'
            : `an install stops these (in reverse order) and starts them again with the new release (${services.kind})`,
    },
    preCheck: null,
    downtime: predictDowntime(deps.store, product.name),
    scratchDir,
  };
  const stop = (at: RehearsalReport['stoppedAt'], error: unknown): RehearsalReport => {
    const e = toErrorData(error);
    report.stoppedAt = at;
    report.error = { code: e.code, message: e.message };
    return report;
  };
  await fs.rm(scratchDir, { recursive: true, force: true });
  await fs.mkdir(scratchDir, { recursive: true, mode: 0o700 });
  try {
    log.info('rehearsal started: check, pre-check, download and staging into a scratch folder; the install path and the services are not touched', { scratchDir });
    let check;
    try {
      check = await steps.check({ product: product.name, runId, installedVersion: deps.installedVersion }, signal);
    } catch (error) {
      return stop('check', error);
    }
    if (!check.available) return report;
    const offer = check.offer;
    report.available = true;
    report.version = offer.version;
    try {
      let gates: GateVerdict[] = [];
      const preCheck = deps.robotState ? withRobotStateGate(steps.preCheck, deps.robotState, log, { record: false, onVerdicts: (v) => (gates = v) }) : steps.preCheck;
      const pre = await preCheck({ product: product.name, runId, offer, attempt: 1, installedVersion: deps.installedVersion }, signal);
      const gateReasons = new Set(gates.flatMap((g) => g.reasons));
      const own = pre.ok ? [] : pre.reasons.filter((r) => !gateReasons.has(r));
      report.preCheck = { ok: pre.ok, reasons: pre.ok ? [] : pre.reasons, verdicts: verdictsFrom(own, gates), robotState: gates };
    } catch (error) {
      return stop('preCheck', error);
    }
    // Staged whatever the pre-check said: the rehearsal is for seeing what the update would do.
    let staged: StageOutput;
    try {
      staged = await steps.stage({ product: product.name, runId, offer }, signal);
    } catch (error) {
      return stop('stage', error);
    }
    const downloaded = (await fs.stat(staged.packagePath).catch(() => null))?.size ?? 0;
    const tree = await treeBytes(staged.releaseDir);
    report.download = { bytes: downloaded, what: staged.via === 'delta' ? `delta from ${offer.delta?.fromVersion ?? 'the installed release'}` : 'package' };
    report.staged = { via: staged.via ?? 'package', indexVerified: staged.indexVerified === true, entries: tree.entries, bytes: tree.bytes };
    const installDir = await fs.realpath(product.installPath).catch(() => null);
    const installedBytes = installDir === null ? 0 : (await treeBytes(installDir)).bytes;
    const backupBytes = product.backup.enabled && !config.simulation && installedBytes > 0 ? backupEstimate(installedBytes) : 0;
    const minFreeBytes = product.precheck.minFreeBytes;
    report.disk = {
      downloadBytes: downloaded,
      stagedBytes: tree.bytes,
      backupBytes,
      minFreeBytes,
      totalBytes: downloaded + tree.bytes + backupBytes + minFreeBytes,
      basis: `measured in this rehearsal: the download and the staged tree; the backup estimated from the installed tree (${installedBytes} bytes${product.backup.enabled ? '' : ', backups are off'}); plus precheck.minFreeBytes`,
    };
    return report;
  } finally {
    await fs.rm(scratchDir, { recursive: true, force: true }).catch(() => {});
    report.durationMs = Math.round(clock.monotonic() - t0);
    log.info(`rehearsal finished${report.stoppedAt ? ` early at ${report.stoppedAt} (${report.error?.code})` : ''}`, {
      version: report.version,
      available: report.available,
      downloadBytes: report.download?.bytes ?? null,
      diskBytes: report.disk?.totalBytes ?? null,
      durationMs: report.durationMs,
    });
  }
}

export function rehearsalBusy(product: string, state: string, busyProduct: string): OtaError {
  return new OtaError(
    'REHEARSAL_BUSY',
    busyProduct === product
      ? `${product} is in state ${state}: a rehearsal runs only while no update runs; try again once the run has settled`
      : `${busyProduct} is updating (state ${state}): a rehearsal of ${product} waits until no update runs`,
    { details: { product, busyProduct, state } },
  );
}

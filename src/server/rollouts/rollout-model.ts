/**
 * Server-side rollouts, the pure part: which batch a device belongs to, what its product state says
 * about one release, a batch's counts, and what the rollout should do next (open the next batch,
 * halt, finish). No I/O: the store loads the rows, calls these, and applies the decision with a
 * conditional update (sql-rollout-store.ts). docs/rollouts.md says the same in prose.
 */
import { rolloutBucket } from '../../schedule/spread.js';
import type { Tags } from '../store/fleet-store.js';

export type BatchSelector = { percent: number } | { tags: Tags } | { all: true };
export type RolloutState = 'active' | 'halted' | 'done';
export type BatchState = 'waiting' | 'open' | 'done';
export type DeviceOutcome = 'notStarted' | 'running' | 'committed' | 'rolledBack' | 'failed';

export interface BatchCounts {
  devices: number;
  notStarted: number;
  running: number;
  committed: number;
  rolledBack: number;
  failed: number;
}

export interface Batch {
  index: number;
  selector: BatchSelector;
  state: BatchState;
  openedAt: number | null;
}

export interface RolloutHalt {
  by: 'server' | 'operator';
  reason: string;
  at: number;
}

export interface RolloutRecord {
  id: string;
  product: string;
  version: string;
  state: RolloutState;
  createdAt: number;
  createdBy: string;
  soakMs: number;
  failureThreshold: number;
  minReports: number;
  halt: RolloutHalt | null;
  resumedAt: number | null;
  /** Failures per batch index when the operator last resumed: the rules count failures after it. */
  forgiven: Record<string, number>;
  batches: Batch[];
}

/** The rollout as the REST API and the CLI show it: each batch with its counts. */
export interface Rollout extends Omit<RolloutRecord, 'batches'> {
  batches: Array<Batch & { counts: BatchCounts }>;
}

/** One accepted device as the rollout sees it: its tags and its product's last report. */
export interface DeviceProgress {
  deviceId: string;
  tags: Tags;
  version: string | null;
  state: string | null;
  lastOutcome: string | null;
  runId: string | null;
  targetVersion: string | null;
  /** The run id the server saw aiming at this release (a check-in with targetVersion = version). */
  rolloutRunId: string | null;
}

/** States between the backup and the end of the run: the robot is being changed. */
export const RUNNING_STATES: ReadonlySet<string> = new Set(['backup', 'staging', 'apply', 'validate', 'commit', 'rollback']);

/**
 * The first batch whose selector takes the device, or null (the device is in no batch). Percentage
 * batches use the signed rollout's bucket (schedule/spread.ts), so the batch at p % is always a
 * subset of a signed rollout at p % or more.
 */
export function batchOf(batches: readonly Pick<Batch, 'index' | 'selector'>[], deviceId: string, tags: Tags, product: string, version: string): number | null {
  let bucket: number | null = null;
  for (const b of batches) {
    const s = b.selector;
    if ('all' in s) return b.index;
    if ('percent' in s) {
      bucket ??= rolloutBucket(deviceId, product, version);
      if (s.percent >= 100 || bucket < s.percent) return b.index;
    } else if (Object.entries(s.tags).every(([k, v]) => tags[k] === v)) {
      return b.index;
    }
  }
  return null;
}

/**
 * What a device's product state says about the release `version`, the first rule that fits:
 * - committed: it runs `version`;
 * - failed: it stopped in the failed state in a run for `version`;
 * - running: it works on `version` (targetVersion) in a state between backup and commit;
 * - rolledBack / failed: its run for `version` ended with lastOutcome `rolled-back` / `failed`;
 * - notStarted: anything else (no report yet, offered but waiting, deciding, pre-checking).
 * "Its run for `version`": the report's targetVersion is `version` (otad reports the version the
 * current or last run aimed at), or its run id is the one the server saw aiming at `version`.
 * otad clears lastOutcome when a run starts, so an outcome always belongs to the last run.
 */
export function outcomeOf(p: Omit<DeviceProgress, 'deviceId' | 'tags'>, version: string): DeviceOutcome {
  if (p.version === version) return 'committed';
  const forVersion = p.targetVersion === version || (p.rolloutRunId !== null && p.runId === p.rolloutRunId);
  if (!forVersion) return 'notStarted';
  if (p.state === 'failed') return 'failed';
  if (p.state !== null && RUNNING_STATES.has(p.state)) return 'running';
  if (p.lastOutcome === 'rolled-back') return 'rolledBack';
  if (p.lastOutcome === 'failed') return 'failed';
  return 'notStarted';
}

export const emptyCounts = (): BatchCounts => ({ devices: 0, notStarted: 0, running: 0, committed: 0, rolledBack: 0, failed: 0 });

/** Counts per batch index; devices in no batch are not counted. */
export function countBatches(r: Pick<RolloutRecord, 'product' | 'version' | 'batches'>, devices: readonly DeviceProgress[]): Map<number, BatchCounts> {
  const counts = new Map(r.batches.map((b) => [b.index, emptyCounts()]));
  for (const d of devices) {
    const k = batchOf(r.batches, d.deviceId, d.tags, r.product, r.version);
    if (k === null) continue;
    const c = counts.get(k)!;
    c.devices += 1;
    c[outcomeOf(d, r.version)] += 1;
  }
  return counts;
}

/** A batch's health since the operator's last resume: failures forgiven then are not counted again. */
export function health(c: BatchCounts, forgiven: number): { failures: number; outcomes: number; ratio: number } {
  const allFailures = c.failed + c.rolledBack;
  const failures = Math.max(0, allFailures - forgiven);
  const outcomes = c.committed + failures;
  return { failures, outcomes, ratio: outcomes === 0 ? 0 : failures / outcomes };
}

const pct = (x: number) => `${Number((x * 100).toFixed(2))} %`;

export function haltReason(batchIndex: number, failures: number, outcomes: number, threshold: number): string {
  return `${failures} of ${outcomes} robots that reported in batch ${batchIndex} failed: ${pct(failures / outcomes)} > ${pct(threshold)}`;
}

export type RolloutStep =
  | { kind: 'none' }
  | { kind: 'halt'; batch: number; reason: string }
  | { kind: 'open'; batch: number }
  | { kind: 'done' };

/** A step as the log says it. */
export function describeStep(step: RolloutStep): string {
  return step.kind === 'halt' ? `halted: ${step.reason}` : step.kind === 'open' ? `batch ${step.batch} opened` : step.kind === 'done' ? 'done' : 'unchanged';
}

/**
 * What an active rollout does next, one step at a time (the store applies it and asks again):
 * 1. any open batch whose failures pass the threshold with at least minReports outcomes halts it;
 * 2. the newest open batch, open for the soak time, with enough reports (minReports, or every one
 *    of its robots) and its failure ratio below the threshold, opens the next batch, or, when it was
 *    the last, finishes the rollout.
 */
export function nextStep(r: RolloutRecord, counts: ReadonlyMap<number, BatchCounts>, now: number): RolloutStep {
  if (r.state !== 'active') return { kind: 'none' };
  const open = r.batches.filter((b) => b.state === 'open');
  for (const b of open) {
    const h = health(counts.get(b.index) ?? emptyCounts(), r.forgiven[String(b.index)] ?? 0);
    if (h.outcomes >= r.minReports && h.outcomes > 0 && h.ratio > r.failureThreshold) {
      return { kind: 'halt', batch: b.index, reason: haltReason(b.index, h.failures, h.outcomes, r.failureThreshold) };
    }
  }
  const newest = open.at(-1);
  if (newest === undefined || newest.openedAt === null) return { kind: 'none' };
  if (now - newest.openedAt < r.soakMs) return { kind: 'none' };
  const c = counts.get(newest.index) ?? emptyCounts();
  const h = health(c, r.forgiven[String(newest.index)] ?? 0);
  const reported = c.committed + c.failed + c.rolledBack;
  if (reported < Math.min(r.minReports, c.devices)) return { kind: 'none' };
  if (h.failures > 0 && h.ratio >= r.failureThreshold) return { kind: 'none' };
  const next = r.batches.find((b) => b.index === newest.index + 1);
  return next === undefined ? { kind: 'done' } : { kind: 'open', batch: next.index };
}

/** What a device is told about a rollout of a release it does not run yet: null means go. */
export function gateFor(r: Pick<RolloutRecord, 'state' | 'halt' | 'batches' | 'product' | 'version'>, deviceId: string, tags: Tags): { code: 'ROLLOUT_HALTED' | 'ROLLOUT_WAIT'; reason: string } | null {
  if (r.state === 'done') return null;
  if (r.state === 'halted') return { code: 'ROLLOUT_HALTED', reason: r.halt?.reason ?? 'halted' };
  const k = batchOf(r.batches, deviceId, tags, r.product, r.version);
  if (k === null) return { code: 'ROLLOUT_WAIT', reason: `this robot is in no batch of the rollout of ${r.product} ${r.version}; it waits until the rollout is done` };
  const b = r.batches.find((x) => x.index === k)!;
  if (b.state === 'waiting') return { code: 'ROLLOUT_WAIT', reason: `batch ${k} of the rollout of ${r.product} ${r.version} is not open yet` };
  return null;
}

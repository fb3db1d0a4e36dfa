/**
 * Download ahead (docs/scheduling.md): while a product waits in `scheduled` for its install slot,
 * its release is downloaded, verified and staged by the stage step (src/steps/stage-ahead.ts), as
 * the product's `schedule.downloadAhead` policy allows: `immediately`, `unmetered` (only on a link
 * known not to be metered), or `never`. The install in the slot then finds it staged, verifies it
 * again and only backs up, switches and validates.
 *
 * This runs beside the machine, never inside it: the machine's state does not change, no step of
 * a run is started, and the slot's stage step first stops any download ahead still in flight.
 * Invariants:
 * - at most one download ahead per product at a time, and none once the product left `scheduled`;
 * - a staged-ahead release whose release is no longer the one on offer is discarded (superseded),
 *   as is one that fails its verification after a restart; both are said in the log, the audit
 *   trail and status;
 * - a record is kept across a cancelled run: when the same release is offered and scheduled again
 *   it is used after verification, a different one supersedes it.
 */
import type { Offer, UpdateContext } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { isOtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import type { MeteredSource } from '../net/metered.js';
import { recordMismatch, type AheadOps, type AheadRecord } from '../steps/stage-ahead.js';

export type DownloadAheadPolicy = ProductConfig['schedule']['downloadAhead'];

export interface DownloadAheadStatus {
  policy: DownloadAheadPolicy;
  /**
   * off: the policy is never; idle: nothing to download ahead now; waiting: for an unmetered link
   * or a retry; staging: downloading and staging now; staged: ready for the slot; failed: the last
   * attempt failed (the slot downloads normally if nothing else works before it); used: the run in
   * the slot took the staged tree (verified again) instead of downloading.
   */
  state: 'off' | 'idle' | 'waiting' | 'staging' | 'staged' | 'failed' | 'used';
  /** The release staged (or being staged) ahead. */
  version: string | null;
  stagedAt: number | null;
  /** When the staged tree was last verified against the signed tree index (staging or a restart). */
  verifiedAt: number | null;
  /** What was downloaded for it. */
  downloadBytes: number | null;
  /** Why it waits or failed. */
  reason: string | null;
  nextAttemptAt: number | null;
  /** The last staged-ahead release thrown away, and why. */
  lastDiscard: { version: string; reason: string; at: number } | null;
}

export interface DownloadAheadDeps {
  clock: Clock;
  logger: Logger;
  metered: MeteredSource;
  /** The product as its steps use it (policy and retry interval). */
  product(name: string): ProductConfig | undefined;
  /** The product's machine state and context now. */
  machine(name: string): { state: string; context: UpdateContext } | null;
  /** Called when a download ahead ends (the daemon clears the progress it reported). */
  onSettled?(product: string): void;
}

/** States in which the run itself owns the staging place: download ahead keeps out. */
const RUN_OWNS_STAGING: ReadonlySet<string> = new Set(['checking', 'preCheck', 'preCheckWaiting', 'backup', 'staging', 'apply', 'validate', 'commit', 'rollback']);

interface Entry {
  ops: AheadOps | null;
  status: DownloadAheadStatus;
  record: AheadRecord | null;
  inflight: { controller: AbortController; done: Promise<void>; runId: string } | null;
  retry: NodeJS.Timeout | null;
  chain: Promise<void>;
  restored: boolean;
}

export class DownloadAhead {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;

  constructor(private readonly deps: DownloadAheadDeps) {}

  private entry(product: string): Entry {
    let e = this.entries.get(product);
    if (!e) {
      const policy = this.deps.product(product)?.schedule.downloadAhead ?? 'never';
      e = {
        ops: null,
        status: { policy, state: policy === 'never' ? 'off' : 'idle', version: null, stagedAt: null, verifiedAt: null, downloadBytes: null, reason: null, nextAttemptAt: null, lastDiscard: null },
        record: null,
        inflight: null,
        retry: null,
        chain: Promise.resolve(),
        restored: false,
      };
      this.entries.set(product, e);
    }
    return e;
  }

  /** The operations of the product's newest step set. */
  setOps(product: string, ops: AheadOps): void {
    const e = this.entry(product);
    e.ops = ops;
    ops.events.used = (version) => {
      e.record = null;
      this.setStatus(e, { state: 'used', version, reason: null, nextAttemptAt: null });
    };
    ops.events.discarded = (version, reason) => {
      e.record = null;
      this.setStatus(e, { state: 'idle', version: null, stagedAt: null, verifiedAt: null, downloadBytes: null, reason: null, nextAttemptAt: null, lastDiscard: { version, reason, at: this.deps.clock.now() } });
    };
  }

  status(product: string): DownloadAheadStatus {
    const e = this.entry(product);
    const policy = this.deps.product(product)?.schedule.downloadAhead ?? 'never';
    return { ...e.status, policy, ...(policy === 'never' && e.status.state === 'idle' ? { state: 'off' as const } : {}) };
  }

  /** Look at the product again (after a transition, at start, when a retry is due). Serialised per product. */
  evaluate(product: string): Promise<void> {
    const e = this.entry(product);
    e.chain = e.chain
      .then(() => this.evaluateNow(product, e))
      .catch((error: unknown) => this.deps.logger.warn('download ahead: could not evaluate', { product, error: String(error) }));
    return e.chain;
  }

  /** The slot's stage step is about to run: stop a download ahead in flight and wait for it to end. */
  async settle(product: string, why: string): Promise<void> {
    const e = this.entry(product);
    if (e.retry) clearTimeout(e.retry);
    e.retry = null;
    const inflight = e.inflight;
    if (inflight) {
      this.deps.logger.info(`download ahead stopped: ${why}`, { product, runId: inflight.runId });
      inflight.controller.abort(new Error(why));
      await inflight.done.catch(() => {});
    }
    await e.chain.catch(() => {});
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.entries.keys()].map((p) => this.settle(p, 'otad is stopping')));
  }

  private async evaluateNow(product: string, e: Entry): Promise<void> {
    if (this.stopped || e.ops === null) return;
    const ops = e.ops;
    const m = this.deps.machine(product);
    const config = this.deps.product(product);
    if (m === null || config === undefined) return;
    const { state, context } = m;
    const log = this.deps.logger.child({ product, component: 'download-ahead' });
    if (RUN_OWNS_STAGING.has(state)) {
      // The run owns the staging place now (its stage step uses or discards the record).
      if (e.inflight && state !== 'checking') e.inflight.controller.abort(new Error(`the run moved to ${state}`));
      e.record = null;
      if (e.status.state === 'waiting' || e.status.state === 'failed') this.setStatus(e, { state: 'idle', reason: null, nextAttemptAt: null });
      if (state !== 'checking') {
        e.restored = true;
        return;
      }
    }

    if (!e.restored) {
      // First look after otad started: a record from before is verified again, or discarded.
      e.restored = true;
      await ops.clearLeftovers();
      const record = await ops.record();
      if (record !== null) {
        const against: Pick<Offer, 'version' | 'package' | 'index'> = context.offer ?? recordAsOffer(record);
        try {
          await ops.reverify(record, against as Offer);
          e.record = record;
          this.setStatus(e, { state: 'staged', version: record.version, stagedAt: record.stagedAt, verifiedAt: this.deps.clock.now(), downloadBytes: record.downloadBytes, reason: null, nextAttemptAt: null });
          log.info(`staged-ahead release ${record.version} verified again after otad started: kept for the install slot`, { version: record.version, releaseDir: record.releaseDir });
        } catch (error) {
          const err = toOtaError(error, 'IO_FAILED', 'verifying the staged-ahead release');
          await this.discard(e, ops, record, err.code === 'STAGED_AHEAD_SUPERSEDED' ? err.message : `it failed verification after otad started (${err.code}: ${err.message})`);
        }
      }
    } else if (e.record === null) {
      e.record = await ops.record();
    }

    if (state === 'checking') return;

    if (e.record !== null) {
      const offer = context.offer;
      if (state === 'failed') await this.discard(e, ops, e.record, 'the run failed');
      else if (offer !== null && recordMismatch(e.record, offer) !== null) await this.discard(e, ops, e.record, recordMismatch(e.record, offer) as string);
      else if (offer === null && state === 'idle' && context.lastOutcome !== 'cancelled') await this.discard(e, ops, e.record, `no release is on offer any more (last run: ${context.lastOutcome ?? 'none'})`);
    }

    if (state !== 'scheduled') {
      if (e.inflight) e.inflight.controller.abort(new Error(`the product left scheduled for ${state}`));
      if (e.retry) clearTimeout(e.retry);
      e.retry = null;
      if (e.record === null && e.status.state !== 'off' && !(e.status.state === 'used' && state !== 'idle' && state !== 'failed')) this.setStatus(e, { state: 'idle', version: null, stagedAt: null, verifiedAt: null, downloadBytes: null, reason: null, nextAttemptAt: null });
      return;
    }

    // Scheduled: stage the release ahead if the policy allows and it is not staged yet.
    const policy = config.schedule.downloadAhead;
    const offer = context.offer;
    if (offer === null || context.runId === null) return;
    if (e.record !== null) {
      if (e.status.state !== 'staged') this.setStatus(e, { state: 'staged', version: e.record.version, stagedAt: e.record.stagedAt, verifiedAt: e.status.verifiedAt ?? e.record.stagedAt, downloadBytes: e.record.downloadBytes, reason: null, nextAttemptAt: null });
      return;
    }
    if (policy === 'never') {
      this.setStatus(e, { state: 'off', version: null, reason: null, nextAttemptAt: null });
      return;
    }
    if (e.inflight || e.retry) return;
    if (policy === 'unmetered') {
      const reading = await this.deps.metered();
      if (reading.metered !== 'no') {
        const reason = reading.metered === 'yes' ? `the link is metered (${reading.source}): waiting for an unmetered one` : `not known to be unmetered: ${reading.reason}; downloadAhead: unmetered never downloads over a link of unknown cost`;
        log.info(`download ahead of ${offer.version} waits: ${reason}`, { policy, metered: reading.metered });
        this.scheduleRetry(product, e, config, { state: 'waiting', version: offer.version, reason });
        return;
      }
    }
    this.start(product, e, ops, config, context.runId, offer, log);
  }

  private start(product: string, e: Entry, ops: AheadOps, config: ProductConfig, runId: string, offer: Offer, log: Logger): void {
    const controller = new AbortController();
    this.setStatus(e, { state: 'staging', version: offer.version, reason: null, nextAttemptAt: null });
    log.info(`downloading ${offer.version} ahead of the install slot (downloadAhead: ${config.schedule.downloadAhead})`, { runId, version: offer.version, bytes: offer.downloadBytes ?? offer.package.length });
    const done = ops
      .stageAhead({ product, runId, offer }, controller.signal)
      .then((record) => {
        e.record = record;
        this.setStatus(e, { state: 'staged', version: record.version, stagedAt: record.stagedAt, verifiedAt: record.stagedAt, downloadBytes: record.downloadBytes, reason: null, nextAttemptAt: null });
      })
      .catch((error: unknown) => {
        const err = toOtaError(error, 'IO_FAILED', `staging ${offer.version} ahead`);
        if (controller.signal.aborted) {
          this.setStatus(e, { state: 'idle', reason: `stopped: ${String((controller.signal.reason as Error | undefined)?.message ?? 'aborted')}`, nextAttemptAt: null });
          return;
        }
        const retryable = isOtaError(err) && err.retryable && err.category !== 'package' && err.category !== 'trust';
        const reason = `${err.code}: ${err.message}${retryable ? '' : '; not tried again ahead: the install slot stages it normally'}`;
        log.warn(`download ahead of ${offer.version} failed`, { runId, code: err.code, error: err.message });
        if (retryable) this.scheduleRetry(product, e, config, { state: 'failed', version: offer.version, reason });
        else this.setStatus(e, { state: 'failed', version: offer.version, reason, nextAttemptAt: null });
      })
      .finally(() => {
        if (e.inflight?.controller === controller) e.inflight = null;
        this.deps.onSettled?.(product);
      });
    e.inflight = { controller, done, runId };
  }

  private scheduleRetry(product: string, e: Entry, config: ProductConfig, s: Partial<DownloadAheadStatus>): void {
    const waitMs = config.schedule.downloadAheadRetry;
    this.setStatus(e, { ...s, nextAttemptAt: this.deps.clock.now() + waitMs });
    if (e.retry) clearTimeout(e.retry);
    e.retry = setTimeout(() => {
      e.retry = null;
      void this.evaluate(product);
    }, waitMs);
    e.retry.unref();
  }

  private async discard(e: Entry, ops: AheadOps, record: AheadRecord, reason: string): Promise<void> {
    // ops.discard tells events.discarded, which updates the status.
    await ops.discard(record, reason);
    e.record = null;
  }

  private setStatus(e: Entry, s: Partial<DownloadAheadStatus>): void {
    e.status = { ...e.status, ...s };
  }
}

function recordAsOffer(r: AheadRecord): Pick<Offer, 'version' | 'package' | 'index'> {
  return { version: r.version, package: r.package, ...(r.index ? { index: { ...r.index, entries: 0, bytes: 0 } } : {}) };
}

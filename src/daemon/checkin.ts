/**
 * Fleet check-ins: after otad starts, whenever a run ends and every fleet.checkinInterval (with
 * jitter, so a fleet started together does not check in together), each product reports its
 * device id, installed version, state, last outcome, run and target to the fleet server
 * (POST /api/v1/checkin, signed with the device key; docs/fleet-protocol.md). The answer carries
 * the rollouts that are halted or paused: they go to the halt memory the pre-check consults.
 *
 * Best effort: a server that does not answer (or a static host without the endpoint) costs one
 * debug line, never a failed run. What the operator must act on is said once, not every interval:
 * the device waiting for acceptance (with its fingerprint), or the server refusing its signature.
 */
import type { Config } from '../config/load.js';
import type { Logger } from '../core/logger.js';
import { sendCheckin, type CheckinBody, type CheckinMemory } from '../fleet/checkin-client.js';
import type { DeviceFleet } from '../fleet/device-fleet.js';
import type { DaemonControl, ProductStatus } from './control.js';

export { newCheckinMemory, type CheckinMemory } from '../fleet/checkin-client.js';

export interface CheckinOptions {
  control: DaemonControl;
  fleet: DeviceFleet;
  config: Config;
  logger: Logger;
  memory: CheckinMemory;
  now: () => number;
  /** Random in [0, 1) for the interval's jitter (tests pass a fixed one). */
  random?: () => number;
  refusalWarnEveryMs?: number;
}

export interface CheckinReporter {
  /** Report every product now. */
  reportAll(): Promise<void>;
  stop(): void;
}

/**
 * The version the current run aims at or, once an update run has ended, the version it aimed at:
 * otad drops the offer when it rolls back, and the fleet server needs the version to count the
 * outcome against that release's rollout.
 */
export function targetOf(control: Pick<DaemonControl, 'history'>, p: ProductStatus): string | null {
  if (p.offeredVersion !== null) return p.offeredVersion;
  if (p.runId === null || p.lastOutcome === null || p.runKind !== 'update') return null;
  return control.history({ product: p.product, runId: p.runId, limit: 1 })[0]?.toVersion ?? null;
}

/** The last measured downtime as the check-in carries it (nothing while none is measured). */
export function downtimeReportOf(p: Pick<ProductStatus, 'lastDowntime'>): { downtime?: NonNullable<CheckinBody['downtime']> } {
  const d = p.lastDowntime;
  if (d === null || d.totalMs === null || d.otadMs === null || d.greenOn === null || d.greenAt === null) return {};
  return {
    downtime: { runId: d.runId, totalMs: d.totalMs, stopMs: d.stopMs, switchMs: d.switchMs, startMs: d.startMs, probeMs: d.probeMs, otadMs: d.otadMs, greenOn: d.greenOn, acrossRestart: d.acrossRestart, greenAt: d.greenAt },
  };
}

/** The next periodic check-in: the interval, give or take 10 %. */
export function nextCheckinDelay(intervalMs: number, random: number): number {
  return Math.round(intervalMs * (0.9 + 0.2 * random));
}

export function startCheckins(opts: CheckinOptions): CheckinReporter {
  const log = opts.logger.child({ component: 'checkin' });
  const http = opts.fleet.http(opts.config);
  const random = opts.random ?? Math.random;
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  async function report(product: string): Promise<void> {
    if (!http.configured || stopped) return;
    const status = opts.control.status();
    const p = status.products.find((x) => x.product === product);
    if (!p) return;
    const body = {
      deviceId: status.deviceId,
      product: p.product,
      version: p.installedVersion,
      state: p.state,
      lastOutcome: p.lastOutcome,
      error: p.error ? `${p.error.code}: ${p.error.message}`.slice(0, 512) : null,
      runId: p.runId,
      targetVersion: targetOf(opts.control, p),
      tags: opts.config.fleet.tags,
      ...downtimeReportOf(p),
    };
    await sendCheckin(
      { http, halts: opts.fleet.halts, memory: opts.memory, log, fingerprint: opts.fleet.fingerprint, publicKey: opts.fleet.key.publicKey, now: opts.now, stopped: () => stopped, ...(opts.refusalWarnEveryMs === undefined ? {} : { refusalWarnEveryMs: opts.refusalWarnEveryMs }) },
      body,
    );
  }

  const reportAll = async (): Promise<void> => {
    await Promise.all(opts.control.status().products.map((p) => report(p.product)));
  };

  const schedule = (): void => {
    if (stopped || !http.configured) return;
    timer = setTimeout(() => {
      void reportAll().finally(schedule);
    }, nextCheckinDelay(opts.config.fleet.checkinInterval, random()));
    timer.unref();
  };

  const unsubscribe = opts.control.bus.subscribe('notification', (n) => {
    if (n.kind === 'run-ended') void report(n.product);
  });
  schedule();

  return {
    reportAll,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      unsubscribe();
    },
  };
}

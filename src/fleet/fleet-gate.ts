/**
 * The pre-check's fleet gate, asked after the robot's own checks: a halt the server told this
 * robot about stops the install (ROLLOUT_HALTED, with the server's reason), so does a wait (its
 * batch is not open yet: ROLLOUT_WAIT). Before the backup the robot asks the server afresh: with
 * fleet.lease.enabled it takes an update lease, otherwise it checks in and obeys that answer's halts
 * and waits. A refusal is a pre-check that did not pass: the run waits and asks again. Thin on
 * purpose: the protocol lives in lease-client.ts and checkin-client.ts, the halts in halts.ts.
 */
import type { PreCheckInput, PreCheckOutput, PreCheckReason } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../core/logger.js';
import { newCheckinMemory, sendCheckin } from './checkin-client.js';
import type { DeviceFleet } from './device-fleet.js';
import type { HaltRecord } from './halts.js';

export interface FleetGate {
  /** A remembered halt of this product and version, as a reason (local: no request). */
  halted(product: string, version: string): PreCheckReason | null;
  /** Asked only when every other check passed: take the update lease, or say why not. */
  admit(input: { product: string; runId: string; version: string; fromVersion: string | null }, signal: AbortSignal): Promise<{ ok: true } | { ok: false; reason: PreCheckReason; retryAfterMs?: number }>;
}

/** A halt or wait the server said, as the pre-check's reason. */
function reasonOf(product: string, version: string, h: HaltRecord): PreCheckReason {
  if (h.state === 'wait') {
    return { code: 'ROLLOUT_WAIT', message: `the fleet server holds this robot back from ${product} ${version}${h.reason ? `: ${h.reason}` : ''}` };
  }
  return {
    code: 'ROLLOUT_HALTED',
    message: `the fleet server ${h.state === 'halted' ? 'halted' : `has ${h.state}`} the rollout of ${product} ${version}${h.reason ? `: ${h.reason}` : ''}`,
  };
}

export function createFleetGate(fleet: DeviceFleet, config: Config, logger: Logger): FleetGate {
  const log = logger.child({ step: 'preCheck', component: 'fleet-gate' });
  const checkinLog = logger.child({ component: 'checkin' });
  const memory = newCheckinMemory();
  const refuse = (product: string, version: string, h: HaltRecord): PreCheckReason => {
    log.warn(`fleet gate: the rollout of ${product} ${version} is ${h.state} on the fleet server; not installing`, { product, version, reason: h.reason });
    return reasonOf(product, version, h);
  };
  /** The gate asks the server before an install: with a lease request, or else with a check-in. */
  const asksServer = () => config.fleet.lease.enabled || (config.fleet.checkins && fleet.http(config).configured);
  return {
    halted(product, version) {
      const h = fleet.halts.find(product, version);
      if (h === null) return null;
      // `wait`: this robot's batch is not open yet; anything else not active stops installs as a halt.
      // A wait is left to the answer admit() asks for (a lease, or a check-in), which is fresher: the
      // batch may have opened since the last check-in.
      if (h.state === 'wait' && asksServer()) return null;
      return refuse(product, version, h);
    },
    async admit(input, signal) {
      const lease = config.fleet.lease;
      const http = fleet.http(config);
      if (!lease.enabled) {
        // Without a lease the check-in answer is the server's word: ask for it now rather than trust
        // the last one, which may be older than a rollout created since (a robot told to wait must
        // hear it whether or not it uses leases). No answer: what was remembered decides.
        if (config.fleet.checkins && http.configured) {
          await sendCheckin(
            { http, halts: fleet.halts, memory, log: checkinLog, fingerprint: fleet.fingerprint, publicKey: fleet.key.publicKey, now: fleet.now },
            {
              deviceId: fleet.deviceId,
              product: input.product,
              version: input.fromVersion,
              state: 'preCheck',
              lastOutcome: null,
              error: null,
              runId: input.runId,
              targetVersion: input.version,
              tags: config.fleet.tags,
            },
            signal,
          );
        }
        const h = fleet.halts.find(input.product, input.version);
        return h === null ? { ok: true } : { ok: false, reason: refuse(input.product, input.version, h) };
      }
      if (!http.configured) {
        log.warn('fleet.lease.enabled is set but server.url is not an HTTP(S) URL: no lease is asked for', { product: input.product, runId: input.runId });
        return { ok: true };
      }
      const d = await fleet.leases.acquire({
        http,
        deviceId: fleet.deviceId,
        product: input.product,
        runId: input.runId,
        version: input.version,
        fromVersion: input.fromVersion,
        ttlMs: lease.ttl,
        renewEveryMs: lease.renewEvery,
        unreachable: lease.unreachable,
        signal,
      });
      if (d.ok) return { ok: true };
      log.warn(`fleet gate did not pass: ${d.code}`, { product: input.product, runId: input.runId, version: input.version, message: d.message, ...(d.retryAfterMs === undefined ? {} : { retryAfterMs: d.retryAfterMs }) });
      return { ok: false, reason: { code: d.code, message: d.message }, ...(d.retryAfterMs === undefined ? {} : { retryAfterMs: d.retryAfterMs }) };
    },
  };
}

type PreCheckStep = (input: PreCheckInput, signal: AbortSignal) => Promise<PreCheckOutput>;

/** The provider's pre-check, then the halt, then (only for a robot otherwise ready) the lease. */
export function withFleetGate(preCheck: PreCheckStep, gate: FleetGate): PreCheckStep {
  return async function fleetGatedPreCheck(input, signal) {
    const local = await preCheck(input, signal);
    const halt = gate.halted(input.product, input.offer.version);
    if (!local.ok) return halt ? { ...local, reasons: [...local.reasons, halt] } : local;
    if (halt) return { ok: false, reasons: [halt] };
    const admitted = await gate.admit({ product: input.product, runId: input.runId, version: input.offer.version, fromVersion: input.installedVersion ?? null }, signal);
    if (admitted.ok) return local;
    return { ok: false, reasons: [admitted.reason], ...(admitted.retryAfterMs === undefined ? {} : { retryAfterMs: admitted.retryAfterMs }) };
  };
}

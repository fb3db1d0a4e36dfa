/**
 * The pre-check's fleet gate, asked after the robot's own checks: a halt the server told this
 * robot about stops the install (ROLLOUT_HALTED, with the server's reason), so does a wait (its
 * batch is not open yet: ROLLOUT_WAIT), and with
 * fleet.lease.enabled the robot takes an update lease before the backup. Either answer is a
 * pre-check that did not pass: the run waits and asks again. Thin on purpose: the protocol lives in
 * lease-client.ts, the halts in halts.ts.
 */
import type { PreCheckInput, PreCheckOutput, PreCheckReason } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../core/logger.js';
import type { DeviceFleet } from './device-fleet.js';

export interface FleetGate {
  /** A remembered halt of this product and version, as a reason (local: no request). */
  halted(product: string, version: string): PreCheckReason | null;
  /** Asked only when every other check passed: take the update lease, or say why not. */
  admit(input: { product: string; runId: string; version: string; fromVersion: string | null }, signal: AbortSignal): Promise<{ ok: true } | { ok: false; reason: PreCheckReason; retryAfterMs?: number }>;
}

export function createFleetGate(fleet: DeviceFleet, config: Config, logger: Logger): FleetGate {
  const log = logger.child({ step: 'preCheck', component: 'fleet-gate' });
  return {
    halted(product, version) {
      const h = fleet.halts.find(product, version);
      if (h === null) return null;
      // `wait`: this robot's batch is not open yet; anything else not active stops installs as a halt.
      // With leases on, the lease answer is the fresher word on the batch (it lifts the wait when it
      // grants): ask it rather than wait for the next check-in's answer.
      if (h.state === 'wait' && config.fleet.lease.enabled) return null;
      log.warn(`fleet gate: the rollout of ${product} ${version} is ${h.state} on the fleet server; not installing`, { product, version, reason: h.reason });
      if (h.state === 'wait') {
        return { code: 'ROLLOUT_WAIT', message: `the fleet server holds this robot back from ${product} ${version}${h.reason ? `: ${h.reason}` : ''}` };
      }
      return {
        code: 'ROLLOUT_HALTED',
        message: `the fleet server ${h.state === 'halted' ? 'halted' : `has ${h.state}`} the rollout of ${product} ${version}${h.reason ? `: ${h.reason}` : ''}`,
      };
    },
    async admit(input, signal) {
      const lease = config.fleet.lease;
      if (!lease.enabled) return { ok: true };
      const http = fleet.http(config);
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

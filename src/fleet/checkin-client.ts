/**
 * One check-in, robot side (docs/fleet-protocol.md): send the signed report, take the halts and
 * waits of an accepted answer into the halt memory, and say what the operator must act on once,
 * not at every check-in (the device waiting for acceptance, the server refusing its signature).
 * otad's periodic reporter (src/daemon/checkin.ts), the pre-check's fleet gate of a robot without
 * leases (src/fleet/fleet-gate.ts) and the fleet simulator (src/bench/fleet-sim.ts) all check in
 * through this function.
 */
import type { Logger } from '../core/logger.js';
import { errorCode, errorMessage, type FleetHttp } from './fleet-http.js';
import type { HaltMemory } from './halts.js';

/** The check-in body: one product's report. */
export interface CheckinBody {
  deviceId: string;
  product: string;
  version: string | null;
  state: string;
  lastOutcome: string | null;
  error: string | null;
  runId: string | null;
  targetVersion: string | null;
  tags?: Record<string, string>;
  /** The product's newest measured downtime (omitted when none). */
  downtime?: { runId: string; totalMs: number; stopMs: number; switchMs: number; startMs: number; probeMs: number; otadMs: number; greenOn: 'new' | 'old'; acrossRestart: boolean; greenAt: number };
}

/** What has been said already: kept across reporters (a reload makes a new one). */
export interface CheckinMemory {
  pendingLogged: boolean;
  /** The refusal last warned about, and when: the same refusal is warned about again only after refusalWarnEveryMs. */
  refusal: { status: number; code: string | null; at: number } | null;
}

export const newCheckinMemory = (): CheckinMemory => ({ pendingLogged: false, refusal: null });

export interface CheckinClient {
  http: FleetHttp;
  halts: HaltMemory;
  memory: CheckinMemory;
  /** Logger with component checkin. */
  log: Logger;
  fingerprint: string;
  publicKey: string;
  now: () => number;
  refusalWarnEveryMs?: number;
  /** True once the reporter is stopped: an answer that arrives after that is not acted on. */
  stopped?: () => boolean;
}

export type CheckinResult =
  | { kind: 'accepted'; status: 200 }
  | { kind: 'pending'; status: 202 }
  | { kind: 'refused'; status: number; code: string | null }
  | { kind: 'other'; status: number }
  | { kind: 'unreached'; error: string }
  | { kind: 'stopped' };

export async function sendCheckin(c: CheckinClient, body: CheckinBody, signal?: AbortSignal): Promise<CheckinResult> {
  const { log, memory } = c;
  const product = body.product;
  const answer = await c.http.request('POST', '/api/v1/checkin', body, signal);
  if (c.stopped?.()) return { kind: 'stopped' };
  if (!answer.reached) {
    log.debug('check-in failed', { product, error: answer.error });
    return { kind: 'unreached', error: answer.error };
  }
  const { status: code, body: reply } = answer;
  if (code === 200) {
    if (memory.pendingLogged || memory.refusal) log.info('the fleet server accepts this device', { product, fingerprint: c.fingerprint });
    memory.pendingLogged = false;
    memory.refusal = null;
    c.halts.replaceAll(reply?.rollouts, c.now());
    return { kind: 'accepted', status: 200 };
  }
  if (code === 202) {
    if (!memory.pendingLogged) {
      log.info(`device is pending acceptance on the fleet server; fingerprint ${c.fingerprint}`, { deviceId: body.deviceId, fingerprint: c.fingerprint, publicKey: c.publicKey });
      memory.pendingLogged = true;
    }
    return { kind: 'pending', status: 202 };
  }
  if (code === 401 || code === 403) {
    const errCode = errorCode(reply);
    const now = c.now();
    const same = memory.refusal !== null && memory.refusal.status === code && memory.refusal.code === errCode;
    if (!same || now - (memory.refusal?.at ?? 0) >= (c.refusalWarnEveryMs ?? 3_600_000)) {
      log.warn(`the fleet server refused the check-in (HTTP ${code}${errCode ? ` ${errCode}` : ''})${errorMessage(reply) ? `: ${errorMessage(reply)}` : ''}`, {
        product,
        status: code,
        code: errCode,
        fingerprint: c.fingerprint,
      });
      memory.refusal = { status: code, code: errCode, at: now };
    } else {
      log.debug('check-in refused again', { product, status: code, code: errCode });
    }
    return { kind: 'refused', status: code, code: errCode };
  }
  log.debug('check-in not accepted', { product, status: code });
  return { kind: 'other', status: code };
}

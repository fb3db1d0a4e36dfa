/**
 * The update lease, robot side (docs/fleet-protocol.md): ask the fleet server for a lease before
 * an install's backup, renew it while the run works, return it when the run ends. At most one
 * lease per product is held. A renewal that fails is logged and never stops the run: once an
 * install has begun, finishing or rolling it back matters more than the site's budget, and a
 * robot that dies holding a lease frees its slot when the TTL passes.
 */
import type { Logger } from '../core/logger.js';
import { errorCode, errorMessage, type FleetHttp } from './fleet-http.js';
import type { HaltMemory } from './halts.js';

export interface LeaseRequest {
  http: FleetHttp;
  deviceId: string;
  product: string;
  runId: string;
  version: string;
  fromVersion: string | null;
  ttlMs: number;
  renewEveryMs: number;
  unreachable: 'wait' | 'proceed';
  signal?: AbortSignal;
}

export type LeaseDecision =
  | { ok: true; leaseId: string | null }
  | { ok: false; code: string; message: string; retryAfterMs?: number };

export interface HeldLease {
  id: string;
  product: string;
  runId: string;
  version: string;
  expiresAt: number;
  renewals: number;
}

export interface LeaseClient {
  acquire(req: LeaseRequest): Promise<LeaseDecision>;
  /** Return the product's lease, if one is held (best effort). */
  release(product: string): Promise<void>;
  held(product: string): HeldLease | null;
  /** Stop renewing (shutdown); the leases expire on the server. */
  stop(): void;
}

export interface LeaseClientOptions {
  halts: HaltMemory;
  logger: Logger;
  now: () => number;
  setInterval?: (fn: () => void, ms: number) => { unref?(): void };
  clearInterval?: (handle: unknown) => void;
}

/** Codes a 409 or 403 lease answer may carry; anything else is reported as the server's refusal. */
const REFUSALS = new Set(['ROLLOUT_HALTED', 'ROLLOUT_WAIT', 'SITE_BUDGET_FULL', 'DEVICE_PENDING', 'DEVICE_REJECTED']);

export function createLeaseClient(opts: LeaseClientOptions): LeaseClient {
  const log = opts.logger.child({ component: 'lease' });
  const every = opts.setInterval ?? ((fn, ms) => setInterval(fn, ms));
  const clear = opts.clearInterval ?? ((h) => clearInterval(h as NodeJS.Timeout));
  const held = new Map<string, { lease: HeldLease; http: FleetHttp; timer: unknown; expiredLogged: boolean }>();

  async function renew(product: string): Promise<void> {
    const h = held.get(product);
    if (!h) return;
    const answer = await h.http.request('POST', `/api/v1/leases/${encodeURIComponent(h.lease.id)}/renew`);
    if (held.get(product) !== h) return;
    const fields = { product, runId: h.lease.runId, leaseId: h.lease.id };
    if (!answer.reached) {
      log.warn('lease renewal failed: the fleet server did not answer; the run goes on', { ...fields, error: answer.error });
    } else if (answer.status === 200) {
      const expiresAt = answer.body?.expiresAt;
      if (typeof expiresAt === 'number') h.lease.expiresAt = expiresAt;
      h.lease.renewals++;
      log.debug('lease renewed', { ...fields, expiresAt: h.lease.expiresAt });
    } else if (!h.expiredLogged) {
      // 404 LEASE_EXPIRED: the server gave the slot away; the run still finishes (safety first).
      h.expiredLogged = true;
      log.warn(`lease renewal refused (HTTP ${answer.status}${errorCode(answer.body) ? ` ${errorCode(answer.body)}` : ''}); the run goes on without a lease`, fields);
    }
  }

  function hold(lease: HeldLease, http: FleetHttp, renewEveryMs: number): void {
    const timer = every(() => void renew(lease.product), renewEveryMs);
    timer.unref?.();
    held.set(lease.product, { lease, http, timer, expiredLogged: false });
  }

  return {
    async acquire(req) {
      // A run that asks again (a re-check after a crash in pre-check) must not hold two.
      if (held.has(req.product)) await this.release(req.product);
      const fields = { product: req.product, runId: req.runId, version: req.version };
      const answer = await req.http.request(
        'POST',
        '/api/v1/leases',
        { deviceId: req.deviceId, product: req.product, version: req.version, fromVersion: req.fromVersion, ttlMs: req.ttlMs },
        req.signal,
      );
      if (!answer.reached) {
        if (req.unreachable === 'proceed') {
          log.warn('the fleet server did not answer the lease request; proceeding without a lease (fleet.lease.unreachable: proceed)', { ...fields, error: answer.error });
          return { ok: true, leaseId: null };
        }
        return { ok: false, code: 'FLEET_UNREACHABLE', message: `the fleet server did not answer the lease request (${answer.error}); waiting (fleet.lease.unreachable: wait)` };
      }
      if (answer.status === 200) {
        const lease = answer.body?.lease as { id?: unknown; expiresAt?: unknown } | undefined;
        if (typeof lease?.id !== 'string') {
          return { ok: false, code: 'FLEET_UNREACHABLE', message: 'the fleet server granted a lease without an id; waiting' };
        }
        // A grant for this version says the rollout is not halted for us any more.
        opts.halts.lift(req.product, req.version);
        const expiresAt = typeof lease.expiresAt === 'number' ? lease.expiresAt : opts.now() + req.ttlMs;
        hold({ id: lease.id, product: req.product, runId: req.runId, version: req.version, expiresAt, renewals: 0 }, req.http, req.renewEveryMs);
        log.info('update lease granted', { ...fields, leaseId: lease.id, expiresAt });
        return { ok: true, leaseId: lease.id };
      }
      const code = errorCode(answer.body);
      const serverMessage = errorMessage(answer.body) ?? '';
      const retryAfterMs = typeof answer.body?.retryAfterMs === 'number' && answer.body.retryAfterMs > 0 ? answer.body.retryAfterMs : undefined;
      if (code === 'ROLLOUT_HALTED') opts.halts.set({ product: req.product, version: req.version, state: 'halted', reason: serverMessage, learnedAt: opts.now() });
      const known = code !== null && REFUSALS.has(code);
      return {
        ok: false,
        code: known ? code : 'FLEET_LEASE_REFUSED',
        message: `the fleet server refused the update lease for ${req.product} ${req.version} (HTTP ${answer.status}${code ? ` ${code}` : ''})${serverMessage ? `: ${serverMessage}` : ''}`,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      };
    },

    async release(product) {
      const h = held.get(product);
      if (!h) return;
      clear(h.timer);
      held.delete(product);
      const answer = await h.http.request('DELETE', `/api/v1/leases/${encodeURIComponent(h.lease.id)}`);
      const fields = { product, runId: h.lease.runId, leaseId: h.lease.id, renewals: h.lease.renewals };
      if (answer.reached && (answer.status === 204 || answer.status === 200 || answer.status === 404)) log.info('update lease returned', fields);
      else log.warn('could not return the update lease; it expires on the server', { ...fields, ...(answer.reached ? { status: answer.status } : { error: answer.error }) });
    },

    held: (product) => (held.get(product) ? { ...(held.get(product) as { lease: HeldLease }).lease } : null),

    stop() {
      for (const h of held.values()) clear(h.timer);
      held.clear();
    },
  };
}

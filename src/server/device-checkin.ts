/**
 * POST /api/v1/checkin: the signed device check-in (docs/fleet-protocol.md). In order: the source's
 * rate limit, the signature over the raw body bytes, the body, then one store transaction that
 * refuses a replayed nonce and decides on the device's record. Every refusal answers
 * `{ error: { code, message } }`, is audited, and leaves nothing the request sent in the database
 * (the one exception: a key conflict is recorded, which is the point of it).
 */
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import { DEFAULT_MAX_SKEW_MS, verifyRequest } from '../fleet/signing.js';
import { checkinSchema } from './checkin-body.js';
import { describeStep } from './rollouts/rollout-model.js';
import type { RateLimiter } from './rate-limit.js';
import type { CheckinOutcome, DeviceRefusal, FleetStore, ProductReport } from './store/fleet-store.js';

export const MAX_CHECKIN_BYTES = 16 * 1024;

export interface DeviceEndpointOptions {
  store: () => Promise<FleetStore>;
  clock: Clock;
  audit?: AuditSink;
  limiter: RateLimiter;
  maxPending: number;
  maxSkewMs?: number;
  log?: Logger;
}

/** What a refused device request answers and audits. */
export async function refuseDevice(o: DeviceEndpointOptions, req: Request, res: Response, error: OtaError, deviceId: string | null): Promise<void> {
  const source = req.ip ?? 'unknown';
  const message = `device request refused: ${error.code}: ${error.message}`;
  o.audit?.audit({ kind: 'device-refused', message, actor: source, details: { code: error.code, deviceId } });
  try {
    const store = await o.store();
    await store.audit({ at: o.clock.now(), kind: 'device-refused', code: error.code, message: error.message, deviceId, source });
  } finally {
    res.status(statusOfDeviceError(error.code)).json({ error: { code: error.code, message: error.message } });
  }
}

/** What a refusal of the device record answers, the same on every device endpoint (check-in, lease, renew, return). */
export function deviceRefusalError(r: DeviceRefusal, deviceId: string): OtaError {
  switch (r.kind) {
    case 'replay':
      return new OtaError('DEVICE_REPLAY', 'this nonce was already used by this device inside the skew window: a replayed request');
    case 'unknown':
      return new OtaError('DEVICE_PENDING', `device ${deviceId} is not known to the fleet server: its first check-in registers it, and an operator accepts it`);
    case 'pending':
      return new OtaError('DEVICE_PENDING', `device ${deviceId} is pending an operator's decision; it takes no part in rollouts until accepted`);
    case 'rejected':
      return new OtaError('DEVICE_REJECTED', `device ${deviceId} was rejected by an operator`);
    case 'conflict':
      return new OtaError(
        'DEVICE_KEY_CONFLICT',
        `device ${deviceId} is known with key ${r.device.fingerprint}; this request was signed with key ${r.conflict.fingerprint} (recorded as a key conflict, ${r.conflict.count} time(s))`,
      );
  }
}

export function statusOfDeviceError(code: string): number {
  switch (code) {
    case 'DEVICE_REJECTED':
    case 'DEVICE_PENDING':
      return 403;
    case 'API_RATE_LIMITED':
      return 429;
    case 'DEVICE_PENDING_LIMIT':
      return 503;
    case 'API_INVALID_REQUEST':
      return 400;
    default:
      return 401;
  }
}

/** Express middleware: the per-source token bucket of the device endpoints. */
export function deviceRateLimit(o: DeviceEndpointOptions) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const decision = o.limiter.take(req.ip ?? 'unknown', o.clock.monotonic());
    if (decision.allowed) return next();
    const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
    res.setHeader('Retry-After', String(seconds));
    const error = new OtaError('API_RATE_LIMITED', `too many device requests from this address; retry in ${seconds} s`);
    // One audit entry when a source starts being refused, not one per refused request.
    if (decision.firstRefusal) return refuseDevice(o, req, res, error, null);
    res.status(429).json({ error: { code: error.code, message: error.message } });
  };
}

export function checkinHandler(o: DeviceEndpointOptions): express.RequestHandler[] {
  const raw = express.raw({ type: () => true, limit: MAX_CHECKIN_BYTES });
  const handle = async (req: Request, res: Response, next: NextFunction) => {
    const body: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const now = o.clock.now();
    const maxSkewMs = o.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    let claimed: string | null = req.get('ota-device-id') ?? null;
    try {
      const verified = verifyRequest({ method: req.method, path: req.originalUrl, header: (name) => req.get(name), body, now, maxSkewMs });
      claimed = verified.deviceId;
      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        throw new OtaError('API_INVALID_REQUEST', 'the check-in body is not valid JSON');
      }
      const parsed = checkinSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new OtaError('API_INVALID_REQUEST', `check-in field ${issue.path.join('.') || '(body)'}: ${issue.message}`);
      }
      const c = parsed.data;
      if (c.deviceId !== verified.deviceId) {
        throw new OtaError('DEVICE_SIGNATURE_INVALID', `the body's deviceId ${c.deviceId} is not the signing device ${verified.deviceId}`);
      }
      const store = await o.store();
      const report: ProductReport = { product: c.product, version: c.version, state: c.state, lastOutcome: c.lastOutcome ?? null, error: c.error ?? null, runId: c.runId ?? null, targetVersion: c.targetVersion ?? null, downtime: c.downtime ?? null };
      const outcome = await store.checkin({
        deviceId: verified.deviceId,
        publicKey: verified.publicKey,
        nonce: verified.nonce,
        nonceExpiresAt: verified.timestamp + maxSkewMs,
        source: req.ip ?? 'unknown',
        now,
        report,
        reportedTags: c.tags ?? null,
        maxPending: o.maxPending,
      });
      await answer(o, req, res, outcome, store, now);
    } catch (error) {
      if (isOtaError(error) && error.code !== 'INTERNAL') return refuseDevice(o, req, res, error, claimed);
      next(error);
    }
  };
  return [deviceRateLimit(o), raw, handle];
}

async function answer(o: DeviceEndpointOptions, req: Request, res: Response, outcome: CheckinOutcome, store: FleetStore, now: number): Promise<void> {
  const source = req.ip ?? 'unknown';
  switch (outcome.kind) {
    case 'accepted': {
      let rollouts = outcome.rollouts;
      // This check-in made the device a failure of an active rollout, which may pass its threshold:
      // evaluate that rollout now rather than at the next tick (it reads the rollout's counters, not
      // the fleet), so this very answer (and every one after it, in any process) carries the halt.
      if (outcome.failedIn.length > 0) {
        try {
          const steps = await store.evaluateRollouts(now, outcome.failedIn);
          for (const { rolloutId, step } of steps) o.log?.info(`rollout ${rolloutId} ${describeStep(step)}`, { rolloutId, step: step.kind });
          if (steps.length > 0) rollouts = await store.rolloutNotices(outcome.device.id);
        } catch (error) {
          o.log?.error('evaluating rollouts after a check-in failed; the next tick tries again', { error: String(error) });
        }
      }
      res.status(200).json({ status: 'accepted', lastSeen: outcome.device.lastSeen, rollouts });
      return;
    }
    case 'pending':
      if (outcome.created) {
        const message = `new device ${outcome.device.id} is pending (key ${outcome.device.fingerprint})`;
        o.audit?.audit({ kind: 'device-pending', message, actor: source, details: { deviceId: outcome.device.id, fingerprint: outcome.device.fingerprint } });
        await store.audit({ at: o.clock.now(), kind: 'device-pending', message, deviceId: outcome.device.id, source });
      }
      res.status(202).json({ status: 'pending' });
      return;
    case 'replay':
    case 'rejected':
    case 'conflict':
      throw deviceRefusalError(outcome, outcome.kind === 'replay' ? '' : outcome.device.id);
    case 'pending-full':
      throw new OtaError('DEVICE_PENDING_LIMIT', `${outcome.pending} devices are already waiting for an operator's decision; new devices are refused until some are accepted or rejected`);
  }
}

/**
 * The device's update lease endpoints (docs/fleet-protocol.md): POST /api/v1/leases,
 * POST /api/v1/leases/:id/renew and DELETE /api/v1/leases/:id. They go through the check-in's path:
 * the same per-source rate limit, the same signature check over the raw body, the same nonce table
 * and device decision (in the store's transaction), and the same refusal answers and audit.
 */
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import { z } from 'zod';
import { OtaError, isOtaError } from '../../core/errors.js';
import { DEFAULT_MAX_SKEW_MS, verifyRequest } from '../../fleet/signing.js';
import { deviceRateLimit, deviceRefusalError, refuseDevice, type DeviceEndpointOptions } from '../device-checkin.js';
import type { DeviceRefusal, DeviceRequestAuth, SiteBudgets } from '../store/fleet-store.js';

export const MAX_LEASE_BODY_BYTES = 4 * 1024;
export const DEFAULT_LEASE_TTL_MS = 10 * 60_000;
export const MIN_LEASE_TTL_MS = 1_000;
export const MAX_LEASE_TTL_MS = 6 * 3_600_000;

export interface LeaseEndpointOptions extends DeviceEndpointOptions {
  budgets: SiteBudgets;
  /** What a refused robot is told to wait before asking again (a halt, a batch not open yet). */
  retryAfterMs: number;
}

const leaseBodySchema = z
  .object({
    deviceId: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/),
    product: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'expected a product name' }),
    version: z.string().min(1).max(64),
    fromVersion: z.string().max(64).nullable().optional(),
    ttlMs: z.number().int().min(MIN_LEASE_TTL_MS).max(MAX_LEASE_TTL_MS).optional(),
  })
  .strict();

const isRefusal = (x: { kind: string }): x is DeviceRefusal => ['replay', 'unknown', 'pending', 'rejected', 'conflict'].includes(x.kind);

export function leaseRouter(o: LeaseEndpointOptions): express.Router {
  const router = express.Router();
  const raw = express.raw({ type: () => true, limit: MAX_LEASE_BODY_BYTES });
  const maxSkewMs = o.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;

  /** Verifies the signature and hands the handler the identity the store checks with its nonce. */
  const signed =
    (handle: (req: Request, res: Response, auth: DeviceRequestAuth, body: Buffer) => Promise<void>) =>
    async (req: Request, res: Response, next: NextFunction) => {
      const body: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const now = o.clock.now();
      let claimed: string | null = req.get('ota-device-id') ?? null;
      try {
        const v = verifyRequest({ method: req.method, path: req.originalUrl, header: (name) => req.get(name), body, now, maxSkewMs });
        claimed = v.deviceId;
        await handle(req, res, { deviceId: v.deviceId, publicKey: v.publicKey, nonce: v.nonce, nonceExpiresAt: v.timestamp + maxSkewMs, now, source: req.ip ?? 'unknown' }, body);
      } catch (error) {
        if (isOtaError(error) && error.code !== 'INTERNAL') return refuseDevice(o, req, res, error, claimed);
        next(error);
      }
    };

  const notNow = (res: Response, code: 'ROLLOUT_HALTED' | 'ROLLOUT_WAIT' | 'SITE_BUDGET_FULL', message: string, retryAfterMs: number) =>
    res.status(409).json({ error: { code, message }, retryAfterMs: Math.max(1_000, Math.round(retryAfterMs)) });

  router.post(
    '/api/v1/leases',
    deviceRateLimit(o),
    raw,
    signed(async (_req, res, auth, body) => {
      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch {
        throw new OtaError('API_INVALID_REQUEST', 'the lease request body is not valid JSON');
      }
      const parsed = leaseBodySchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new OtaError('API_INVALID_REQUEST', `lease field ${issue.path.join('.') || '(body)'}: ${issue.message}`);
      }
      const b = parsed.data;
      if (b.deviceId !== auth.deviceId) throw new OtaError('DEVICE_SIGNATURE_INVALID', `the body's deviceId ${b.deviceId} is not the signing device ${auth.deviceId}`);
      const store = await o.store();
      const outcome = await store.requestLease({ ...auth, product: b.product, version: b.version, fromVersion: b.fromVersion ?? null, ttlMs: b.ttlMs ?? DEFAULT_LEASE_TTL_MS, budgets: o.budgets });
      if (isRefusal(outcome)) throw deviceRefusalError(outcome, auth.deviceId);
      switch (outcome.kind) {
        case 'granted':
          res.status(200).json({ lease: { id: outcome.lease.id, expiresAt: outcome.lease.expiresAt, ttlMs: outcome.lease.ttlMs } });
          return;
        case 'halted':
          notNow(res, 'ROLLOUT_HALTED', `the rollout of ${b.product} ${b.version} is halted: ${outcome.reason}`, o.retryAfterMs);
          return;
        case 'wait':
          notNow(res, 'ROLLOUT_WAIT', outcome.reason, o.retryAfterMs);
          return;
        case 'budget-full':
          notNow(res, 'SITE_BUDGET_FULL', `site ${outcome.site} already has ${outcome.held} of ${outcome.max} robots updating`, Math.min(outcome.retryAfterMs, o.retryAfterMs));
          return;
      }
    }),
  );

  const change = (verb: 'renew' | 'return') =>
    signed(async (req, res, auth) => {
      const id = String(req.params.id);
      const store = await o.store();
      const outcome = verb === 'renew' ? await store.renewLease(auth, id) : await store.returnLease(auth, id);
      if (isRefusal(outcome)) throw deviceRefusalError(outcome, auth.deviceId);
      if (outcome.kind === 'expired') {
        res.status(404).json({ error: { code: 'LEASE_EXPIRED', message: `lease ${id} is not held: it expired, was returned, or belongs to another device` } });
      } else if (outcome.kind === 'renewed') {
        res.status(200).json({ expiresAt: outcome.lease.expiresAt });
      } else {
        res.status(204).end();
      }
    });
  router.post('/api/v1/leases/:id/renew', deviceRateLimit(o), raw, change('renew'));
  router.delete('/api/v1/leases/:id', deviceRateLimit(o), raw, change('return'));
  return router;
}

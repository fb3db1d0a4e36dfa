/**
 * The operator's device endpoints, behind the bearer token: list the fleet page by page (by status,
 * and by a text the id or site contains), look at one device, accept, reject, set tags. Decisions
 * are audited with who made them.
 */
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { AuditSink } from '../core/logger.js';
import { tagsSchema } from './checkin-body.js';
import type { DeviceStatus, FleetStore } from './store/fleet-store.js';

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

export interface DeviceAdminOptions {
  store: () => Promise<FleetStore>;
  clock: Clock;
  audit?: AuditSink;
  /** Answers the request itself (401/403) and false when the bearer token is missing or wrong. */
  authorized: (req: Request, res: Response, what: string) => boolean;
}

const STATUSES: readonly DeviceStatus[] = ['pending', 'accepted', 'rejected'];

function pageNumber(value: unknown, name: string, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  const n = typeof value === 'string' && /^[0-9]{1,9}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n > max) throw new OtaError('API_INVALID_REQUEST', `query parameter ${name} must be a whole number from 0 to ${max}`);
  return n;
}

export function deviceAdminRouter(o: DeviceAdminOptions): express.Router {
  const router = express.Router();
  const actorOf = (req: Request) => `token@${req.ip ?? 'unknown'}`;

  router.get('/api/v1/devices', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'fleet view')) return;
    try {
      const q = req.query as Record<string, unknown>;
      const limit = pageNumber(q.limit, 'limit', DEFAULT_PAGE, MAX_PAGE);
      const offset = pageNumber(q.offset, 'offset', 0, 1_000_000_000);
      const status = q.status;
      if (status !== undefined && !STATUSES.includes(status as DeviceStatus)) throw new OtaError('API_INVALID_REQUEST', 'query parameter status must be pending, accepted or rejected');
      const search = q.q;
      if (search !== undefined && (typeof search !== 'string' || search.length > 128)) throw new OtaError('API_INVALID_REQUEST', 'query parameter q must be one text of at most 128 characters');
      const store = await o.store();
      const page = await store.listDevices({
        limit,
        offset,
        ...(status !== undefined ? { status: status as DeviceStatus } : {}),
        ...(search !== undefined && search !== '' ? { search } : {}),
      });
      res.json({ ...page, limit, offset });
    } catch (error) {
      next(error);
    }
  });

  router.get('/api/v1/devices/:id', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'fleet view')) return;
    try {
      const store = await o.store();
      const device = await store.getDevice(String(req.params.id));
      if (device === null) throw new OtaError('API_NOT_FOUND', `no device ${String(req.params.id)}`);
      res.json({ device, checkins: await store.checkinHistory(device.id, 20) });
    } catch (error) {
      next(error);
    }
  });

  for (const [verb, status] of [
    ['accept', 'accepted'],
    ['reject', 'rejected'],
  ] as const) {
    router.post(`/api/v1/devices/:id/${verb}`, async (req: Request, res: Response, next: NextFunction) => {
      if (!o.authorized(req, res, `device ${verb}`)) return;
      try {
        const id = String(req.params.id);
        const store = await o.store();
        const actor = actorOf(req);
        const device = await store.decide(id, status, actor, o.clock.now());
        if (device === null) throw new OtaError('API_NOT_FOUND', `no device ${id}`);
        const message = `device ${id} ${status} (key ${device.fingerprint})`;
        await store.audit({ at: o.clock.now(), kind: `device-${status}`, message, deviceId: id, actor });
        o.audit?.audit({ kind: `device-${status}`, message, actor, details: { deviceId: id } });
        res.json({ device });
      } catch (error) {
        next(error);
      }
    });
  }

  router.put('/api/v1/devices/:id/tags', express.json({ limit: '8kb' }), async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'device tags')) return;
    try {
      const parsed = tagsSchema.safeParse((req.body as { tags?: unknown } | undefined)?.tags);
      if (!parsed.success) throw new OtaError('API_INVALID_REQUEST', `body must be { "tags": { name: value } }: ${parsed.error.issues[0]!.message}`);
      const id = String(req.params.id);
      const store = await o.store();
      const device = await store.setOperatorTags(id, parsed.data, actorOf(req), o.clock.now());
      if (device === null) throw new OtaError('API_NOT_FOUND', `no device ${id}`);
      o.audit?.audit({ kind: 'device-tags', message: `tags of ${id} set`, actor: actorOf(req), details: { deviceId: id, tags: parsed.data } });
      res.json({ device });
    } catch (error) {
      next(error);
    }
  });

  return router;
}

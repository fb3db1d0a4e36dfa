/**
 * The operator's rollout and lease endpoints, behind the bearer token (docs/rollouts.md): create,
 * list, look at, halt and resume rollouts, and see the leases held with each site's budget. Each
 * change is made and audited by the store in one transaction.
 */
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import type { Clock } from '../../core/clock.js';
import { OtaError } from '../../core/errors.js';
import type { AuditSink } from '../../core/logger.js';
import type { FleetStore, Lease, SiteBudgets } from '../store/fleet-store.js';
import { budgetOf } from '../store/sql-lease-store.js';
import { parseRolloutInput } from './rollout-input.js';

export interface RolloutAdminOptions {
  store: () => Promise<FleetStore>;
  clock: Clock;
  audit?: AuditSink;
  budgets: SiteBudgets;
  authorized: (req: Request, res: Response, what: string) => boolean;
}

const conflict = (res: Response, message: string) => res.status(409).json({ error: { code: 'ROLLOUT_CONFLICT', message } });

/** Each site with a lease or a budget of its own: its budget (0: none) and the leases it holds. */
export function budgetView(budgets: SiteBudgets, leases: readonly Lease[]): Record<string, { max: number; held: number }> {
  const out: Record<string, { max: number; held: number }> = {};
  for (const site of Object.keys(budgets.sites)) out[site] = { max: budgetOf(budgets, site), held: 0 };
  for (const l of leases) {
    if (l.site === null) continue;
    out[l.site] ??= { max: budgetOf(budgets, l.site), held: 0 };
    out[l.site]!.held += 1;
  }
  return out;
}

export function rolloutAdminRouter(o: RolloutAdminOptions): express.Router {
  const router = express.Router();
  const actorOf = (req: Request) => `token@${req.ip ?? 'unknown'}`;
  const json = express.json({ limit: '16kb' });

  router.post('/api/v1/rollouts', json, async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'rollout create')) return;
    try {
      const input = parseRolloutInput(req.body);
      const store = await o.store();
      const result = await store.createRollout(input, actorOf(req), o.clock.now());
      if (result.kind === 'exists') return conflict(res, `${input.product} ${input.version} already has rollout ${result.id}, which is not done`);
      o.audit?.audit({ kind: 'rollout-created', message: `rollout ${result.rollout.id} of ${input.product} ${input.version} created`, actor: actorOf(req), product: input.product });
      res.status(201).json(result.rollout);
    } catch (error) {
      next(error);
    }
  });

  router.get('/api/v1/rollouts', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'rollout view')) return;
    try {
      res.json({ rollouts: await (await o.store()).listRollouts() });
    } catch (error) {
      next(error);
    }
  });

  router.get('/api/v1/rollouts/:id', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'rollout view')) return;
    try {
      const rollout = await (await o.store()).getRollout(String(req.params.id));
      if (rollout === null) throw new OtaError('API_NOT_FOUND', `no rollout ${String(req.params.id)}`);
      res.json(rollout);
    } catch (error) {
      next(error);
    }
  });

  router.post('/api/v1/rollouts/:id/halt', json, async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'rollout halt')) return;
    try {
      const given = (req.body as { reason?: unknown } | undefined)?.reason;
      if (given !== undefined && (typeof given !== 'string' || given.length > 500)) throw new OtaError('API_INVALID_REQUEST', 'reason must be a text of at most 500 characters');
      const reason = typeof given === 'string' && given.trim() !== '' ? given.trim() : 'halted by an operator';
      const id = String(req.params.id);
      const result = await (await o.store()).haltRollout(id, reason, actorOf(req), o.clock.now());
      if (result === null) throw new OtaError('API_NOT_FOUND', `no rollout ${id}`);
      if (result.kind === 'unchanged') return conflict(res, `rollout ${id} is ${result.rollout.state}, not active: nothing to halt`);
      o.audit?.audit({ kind: 'rollout-halted', message: `rollout ${id} halted: ${reason}`, actor: actorOf(req) });
      res.json(result.rollout);
    } catch (error) {
      next(error);
    }
  });

  router.post('/api/v1/rollouts/:id/resume', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'rollout resume')) return;
    try {
      const id = String(req.params.id);
      const result = await (await o.store()).resumeRollout(id, actorOf(req), o.clock.now());
      if (result === null) throw new OtaError('API_NOT_FOUND', `no rollout ${id}`);
      if (result.kind === 'unchanged') return conflict(res, `rollout ${id} is ${result.rollout.state}, not halted: nothing to resume`);
      o.audit?.audit({ kind: 'rollout-resumed', message: `rollout ${id} resumed`, actor: actorOf(req) });
      res.json(result.rollout);
    } catch (error) {
      next(error);
    }
  });

  router.get('/api/v1/leases', async (req: Request, res: Response, next: NextFunction) => {
    if (!o.authorized(req, res, 'lease view')) return;
    try {
      const leases = await (await o.store()).listLeases(o.clock.now());
      res.json({ leases, budgets: budgetView(o.budgets, leases) });
    } catch (error) {
      next(error);
    }
  });

  return router;
}

/**
 * What every interface (REST, Socket.IO, D-Bus) does with a control request, in one place:
 * validate the body, spend the caller's rate-limit budget, call the daemon, and audit refusals
 * (the daemon audits the actions it performs). Handlers stay thin and behave the same everywhere.
 */
import type { z } from 'zod';
import type { EventSource } from '../../machines/types.js';
import { isOtaError, OtaError } from '../core/errors.js';
import type { AuditSink } from '../core/logger.js';
import type { DaemonControl, DispatchResult, FdInhibitRequest } from '../daemon/control.js';
import type { InhibitRecord } from '../store/store.js';
import type { RateLimiter } from './rate-limit.js';
import { ackRequestSchema, describeIssues, maintenanceAnswerSchema, eventRequestSchema, inhibitRenewSchema, inhibitRequestSchema, productPathSchema, robotStateReportSchema, releasePathSchema, sourceRequestSchema } from './schemas.js';

export interface Caller {
  /** Token name, D-Bus sender or user: recorded in the audit log. */
  actor: string;
  source: EventSource;
}

export interface EdgeDeps {
  control: DaemonControl;
  limiter: RateLimiter;
  audit: AuditSink;
}

export interface Edge {
  dispatch(body: unknown, caller: Caller): Promise<DispatchResult>;
  holdInhibit(body: unknown, caller: Caller): InhibitRecord;
  releaseInhibit(holder: string, caller: Caller): { released: true; holder: string };
  /** Heartbeat of a REST inhibit lease: API_NOT_FOUND once it has expired or was released. */
  renewInhibit(holder: string, body: unknown, caller: Caller): InhibitRecord;
  /** A file-descriptor inhibitor (D-Bus Inhibit); the caller releases it when the fd closes. */
  holdFdInhibit(request: Omit<FdInhibitRequest, 'source' | 'actor'>, caller: Caller): ReturnType<DaemonControl['holdFdInhibit']>;
  acknowledge(body: unknown, caller: Caller): { acknowledged: number };
  /** The app's robot state for the robot-state gates (REST POST /api/v1/robot-state). */
  reportRobotState(body: unknown, caller: Caller): { accepted: string[]; at: number };
  /** GrantMaintenance / DenyMaintenance, body `{ answer: grant|deny, requestId?, reason? }`. */
  answerMaintenance(product: string, body: unknown, caller: Caller): { product: string; requestId: string; answer: 'grant' | 'deny' };
  /** Clear a release's bad mark (path parameters as given by the caller). */
  unmarkRelease(params: unknown, caller: Caller): ReturnType<DaemonControl['unmarkRelease']>;
  /** Switch the channel and/or repository a product follows (path parameters and body as given). */
  selectSource(params: unknown, body: unknown, caller: Caller): ReturnType<DaemonControl['selectSource']>;
  /** Rehearse an update of a product (path parameters as given; an empty product: the only one). */
  rehearse(params: unknown, caller: Caller): ReturnType<DaemonControl['rehearse']>;
}

export function parseBody<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  if (body === undefined || body === null || typeof body !== 'object') {
    throw new OtaError('API_INVALID_REQUEST', `${what}: expected a JSON object body (Content-Type: application/json)`);
  }
  const r = schema.safeParse(body);
  if (!r.success) {
    const problems = describeIssues(r.error);
    throw new OtaError('API_INVALID_REQUEST', `${what}: ${problems.join('; ')}`, { details: { problems } });
  }
  return r.data;
}

export function createEdge(deps: EdgeDeps): Edge {
  const { control, limiter, audit } = deps;

  function spend(caller: Caller): void {
    const r = limiter.take(`${caller.source}:${caller.actor}`);
    if (!r.ok) {
      throw new OtaError('API_RATE_LIMITED', `too many control requests from ${caller.actor}; try again in ${Math.ceil(r.retryAfterMs / 1000)} s`, {
        details: { retryAfterMs: r.retryAfterMs },
      });
    }
  }

  function auditRefusal(what: string, caller: Caller, error: unknown): void {
    if (!isOtaError(error) || error.category !== 'api') return;
    audit.audit({
      kind: 'api-control',
      message: `refused ${what} from ${caller.source} (${caller.actor}): ${error.code}`,
      actor: caller.actor,
      details: { code: error.code, source: caller.source },
    });
  }

  async function guarded<T>(what: string, caller: Caller, fn: () => T | Promise<T>): Promise<T> {
    try {
      spend(caller);
      return await fn();
    } catch (error) {
      auditRefusal(what, caller, error);
      throw error;
    }
  }

  function guardedSync<T>(what: string, caller: Caller, fn: () => T): T {
    try {
      spend(caller);
      return fn();
    } catch (error) {
      auditRefusal(what, caller, error);
      throw error;
    }
  }

  return {
    rehearse(params, caller) {
      return guarded('a rehearsal', caller, () => {
        const p = (params ?? {}) as { product?: unknown };
        const product = p.product === undefined || p.product === '' ? undefined : parseBody(productPathSchema, { product: p.product }, 'product').product;
        return control.rehearse({ source: caller.source, actor: caller.actor, ...(product !== undefined ? { product } : {}) });
      });
    },
    dispatch(body, caller) {
      return guarded('an event', caller, () => {
        const req = parseBody(eventRequestSchema, body, 'event');
        return control.dispatch({
          type: req.type,
          source: caller.source,
          actor: caller.actor,
          ...(req.product !== undefined ? { product: req.product } : {}),
          ...(req.reason !== undefined ? { reason: req.reason } : {}),
          ...(req.markBad !== undefined ? { markBad: req.markBad } : {}),
        });
      });
    },
    unmarkRelease(params, caller) {
      return guardedSync('a bad-mark removal', caller, () => {
        const p = parseBody(releasePathSchema, params, 'release');
        return control.unmarkRelease({ product: p.product, version: p.version, source: caller.source, actor: caller.actor });
      });
    },
    selectSource(params, body, caller) {
      return guardedSync('a switch of channel or repository', caller, () => {
        const { product } = parseBody(productPathSchema, params, 'product');
        const req = parseBody(sourceRequestSchema, body, 'source');
        return control.selectSource({
          product,
          source: caller.source,
          actor: caller.actor,
          ...(req.channel !== undefined ? { channel: req.channel } : {}),
          ...(req.repository !== undefined ? { repository: req.repository } : {}),
        });
      });
    },
    holdInhibit(body, caller) {
      return guardedSync('an inhibit', caller, () => {
        const req = parseBody(inhibitRequestSchema, body, 'inhibit');
        return control.holdInhibit({
          holder: req.holder,
          reason: req.reason,
          source: caller.source,
          actor: caller.actor,
          ...(req.durationMs !== undefined ? { durationMs: req.durationMs } : {}),
        });
      });
    },
    renewInhibit(holder, body, caller) {
      return guardedSync('an inhibit renewal', caller, () => {
        const req = parseBody(inhibitRenewSchema, body ?? {}, 'inhibit renewal');
        const r = control.renewInhibit(holder, req.durationMs, caller.source, caller.actor);
        if (!r) throw new OtaError('API_NOT_FOUND', `no inhibit lease is held by "${holder}" (it expired or was released); take a new one`, { details: { holder } });
        return r;
      });
    },
    holdFdInhibit(request, caller) {
      return guardedSync('an inhibitor', caller, () => control.holdFdInhibit({ ...request, source: caller.source, actor: caller.actor }));
    },
    releaseInhibit(holder, caller) {
      return guardedSync('an inhibit release', caller, () => {
        if (!control.releaseInhibit(holder, caller.source, caller.actor)) {
          throw new OtaError('API_NOT_FOUND', `no inhibit is held by "${holder}"`, { details: { holder } });
        }
        return { released: true as const, holder };
      });
    },
    answerMaintenance(product, body, caller) {
      return guardedSync('a maintenance answer', caller, () => {
        const p = parseBody(productPathSchema, { product }, 'maintenance answer');
        const req = parseBody(maintenanceAnswerSchema, body, 'maintenance answer');
        const r = control.answerMaintenance({ product: p.product, requestId: req.requestId ?? '', grant: req.answer === 'grant', reason: req.reason ?? null, source: caller.source, actor: caller.actor });
        return { product: r.product, requestId: r.requestId, answer: req.answer };
      });
    },
    reportRobotState(body, caller) {
      return guardedSync('a robot-state report', caller, () => {
        const req = parseBody(robotStateReportSchema, body, 'robot state');
        if (!control.reportRobotState) throw new OtaError('API_NOT_FOUND', 'this otad does not take robot-state reports');
        const clean = Object.fromEntries(Object.entries(req).filter(([, v]) => v !== undefined));
        return control.reportRobotState(clean, caller.source, caller.actor);
      });
    },
    acknowledge(body, caller) {
      return guardedSync('an acknowledgement', caller, () => {
        const req = parseBody(ackRequestSchema, body, 'acknowledgement');
        return { acknowledged: control.acknowledge(req.product, req.version ?? null, caller.source, caller.actor) };
      });
    },
  };
}

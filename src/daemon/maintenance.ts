/**
 * The two-way mission lease. Before a run goes on to the steps that disrupt the robot (backup,
 * stage, then apply stops its services), otad asks the robot's mission side for a maintenance
 * window: it publishes `maintenance-requested` (D-Bus signal MaintenanceRequested, a Socket.IO
 * notification, and the request in the REST status) and waits up to maintenance.answerTimeout for
 * GrantMaintenance or DenyMaintenance (D-Bus, REST or Socket.IO, all through the Edge).
 *  - granted: the window opens and the install goes on;
 *  - denied: the pre-check does not pass (MAINTENANCE_DENIED) and is retried like any other;
 *  - no answer: maintenance.onNoAnswer decides: `proceed` opens the window, `wait` keeps the run
 *    waiting (MAINTENANCE_NO_ANSWER) and asks again at the next pre-check.
 * While the window is open, `maintenance` is true for the product (a dispatcher stops sending
 * missions); it closes when the run leaves the install steps (committed, rolled back, failed).
 * With maintenance.request false nothing is asked; the window still opens when the install starts,
 * so `maintenance` tells a dispatcher the truth either way.
 */
import { randomBytes } from 'node:crypto';
import type { PreCheckInput, PreCheckOutput } from '../../machines/types.js';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { EventSource } from '../../machines/types.js';
import type { EventBus } from './event-bus.js';

export interface MaintenancePolicy {
  request: boolean;
  answerTimeout: number;
  onNoAnswer: 'wait' | 'proceed';
}

export interface MaintenanceRequest {
  requestId: string;
  product: string;
  runId: string;
  version: string;
  requestedAt: number;
  /** When otad stops waiting and follows maintenance.onNoAnswer. */
  answerBy: number;
}

export interface MaintenanceAnswer {
  requestId: string;
  answer: 'granted' | 'denied' | 'no-answer';
  /** Who answered (token name, D-Bus, Socket.IO client); null for no answer. */
  by: string | null;
  reason: string | null;
  at: number;
}

export interface MaintenanceStatus {
  /** True while the robot is (about to be) disrupted by an install: do not dispatch missions. */
  active: boolean;
  since: number | null;
  /** The request waiting for an answer, if any. */
  request: MaintenanceRequest | null;
  lastAnswer: MaintenanceAnswer | null;
}

interface Pending {
  req: MaintenanceRequest;
  resolve: (a: MaintenanceAnswer) => void;
}

export interface MaintenanceDeps {
  policy: () => MaintenancePolicy;
  clock: Clock;
  bus: EventBus;
  audit: AuditSink;
  logger: Logger;
}

const formatDuration = (ms: number): string => (ms % 60_000 === 0 ? `${ms / 60_000} min` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`);

export class MaintenanceWindows {
  private readonly pending = new Map<string, Pending>();
  private readonly open = new Map<string, number>();
  private readonly last = new Map<string, MaintenanceAnswer>();

  constructor(private readonly deps: MaintenanceDeps) {}

  status(product: string): MaintenanceStatus {
    const since = this.open.get(product) ?? null;
    return { active: since !== null, since, request: this.pending.get(product)?.req ?? null, lastAnswer: this.last.get(product) ?? null };
  }

  /** Ask for the window (when configured) after the pre-check passed; the answer decides whether the install goes on. */
  async ask(input: PreCheckInput, signal: AbortSignal): Promise<PreCheckOutput> {
    const policy = this.deps.policy();
    const { product } = input;
    if (!policy.request) {
      this.openWindow(product, 'the install starts (maintenance.request is off: nobody is asked)');
      return { ok: true };
    }
    const now = this.deps.clock.now();
    const req: MaintenanceRequest = { requestId: randomBytes(8).toString('hex'), product, runId: input.runId, version: input.offer.version, requestedAt: now, answerBy: now + policy.answerTimeout };
    const answer = await new Promise<MaintenanceAnswer>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (a: MaintenanceAnswer) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (this.pending.get(product)?.req.requestId === req.requestId) this.pending.delete(product);
        resolve(a);
      };
      const onAbort = () => finish({ requestId: req.requestId, answer: 'no-answer', by: null, reason: 'the run was stopped', at: this.deps.clock.now() });
      this.pending.set(product, { req, resolve: finish });
      timer = setTimeout(() => finish({ requestId: req.requestId, answer: 'no-answer', by: null, reason: null, at: this.deps.clock.now() }), policy.answerTimeout);
      signal.addEventListener('abort', onAbort, { once: true });
      this.deps.logger.info('maintenance window requested', { product, requestId: req.requestId, version: req.version, timeoutMs: policy.answerTimeout });
      this.deps.bus.publish('notification', { product, kind: 'maintenance-requested', version: req.version, runId: req.runId, maintenance: { requestId: req.requestId, answerBy: req.answerBy, timeoutMs: policy.answerTimeout } });
    });
    this.last.set(product, answer);
    if (signal.aborted) return { ok: false, reasons: [{ code: 'MAINTENANCE_NO_ANSWER', message: 'the run was stopped while waiting for a maintenance window' }] };
    if (answer.answer === 'granted') {
      this.openWindow(product, `granted by ${answer.by}${answer.reason ? `: ${answer.reason}` : ''}`);
      return { ok: true };
    }
    if (answer.answer === 'denied') {
      this.deps.bus.publish('notification', { product, kind: 'maintenance-answered', version: req.version, runId: req.runId, maintenance: { requestId: req.requestId, answer: 'denied' } });
      return { ok: false, reasons: [{ code: 'MAINTENANCE_DENIED', message: `${answer.by} denied the maintenance window${answer.reason ? `: ${answer.reason}` : ''}; otad asks again at the next pre-check` }] };
    }
    const waited = formatDuration(policy.answerTimeout);
    if (policy.onNoAnswer === 'proceed') {
      this.deps.audit.audit({ kind: 'api-control', message: `no answer to the maintenance request for ${product} ${req.version} within ${waited}; proceeding (maintenance.onNoAnswer: proceed)`, product });
      this.openWindow(product, `no answer within ${waited} (maintenance.onNoAnswer: proceed)`);
      return { ok: true };
    }
    this.deps.bus.publish('notification', { product, kind: 'maintenance-answered', version: req.version, runId: req.runId, maintenance: { requestId: req.requestId, answer: 'no-answer' } });
    return { ok: false, reasons: [{ code: 'MAINTENANCE_NO_ANSWER', message: `nobody answered the maintenance request within ${waited}; otad waits for a grant (maintenance.onNoAnswer: wait) and asks again at the next pre-check` }] };
  }

  /** GrantMaintenance / DenyMaintenance. An empty requestId answers the pending request, whatever its id. */
  answer(product: string, requestId: string, grant: boolean, reason: string | null, source: EventSource, actor: string): MaintenanceRequest {
    const p = this.pending.get(product);
    if (!p) throw new OtaError('API_NOT_FOUND', `no maintenance request is waiting for an answer for ${product}`, { details: { product } });
    if (requestId !== '' && requestId !== p.req.requestId) {
      throw new OtaError('API_NOT_FOUND', `maintenance request ${requestId} is not the one waiting for ${product} (${p.req.requestId}); it was answered or timed out`, { details: { product, requestId, pending: p.req.requestId } });
    }
    const by = `${actor} (${source})`;
    this.deps.audit.audit({
      kind: 'api-control',
      message: `maintenance window for ${product} ${p.req.version} ${grant ? 'granted' : 'denied'} by ${by}${reason ? `: ${reason}` : ''}`,
      product,
      actor,
      details: { requestId: p.req.requestId, source },
    });
    p.resolve({ requestId: p.req.requestId, answer: grant ? 'granted' : 'denied', by, reason, at: this.deps.clock.now() });
    return p.req;
  }

  /** The run left the install steps (committed, rolled back, failed, cancelled): missions may be dispatched again. */
  close(product: string, why: string): void {
    if (!this.open.delete(product)) return;
    this.deps.logger.info('maintenance window closed', { product, why });
    this.deps.bus.publish('notification', { product, kind: 'maintenance-ended', version: null });
  }

  private openWindow(product: string, why: string): void {
    if (this.open.has(product)) return;
    this.open.set(product, this.deps.clock.now());
    this.deps.logger.info('maintenance window open: the robot is in maintenance until the install ends', { product, why });
    this.deps.bus.publish('notification', { product, kind: 'maintenance-started', version: null });
  }
}

/**
 * The Socket.IO stream (same HTTP server, path /socket.io). Each message is one versioned envelope
 * `{ v: 1, type, time, seq, payload }` sent as the `message` event. A client authenticates with
 * `auth: { token }` in the handshake; a browser page from a foreign Origin is refused before the
 * handshake completes. A client that gives `auth.lastSeq` first receives the transitions it missed
 * (read from the database, at most MAX_REPLAY), then live ones, with no gap and no duplicate; when
 * the log no longer holds what it missed (retention, or too far behind) it gets one `resync`
 * message instead and should refetch the full state. Clients with the control
 * scope may emit `event` with the REST body and get an acknowledgement `{ ok, result | error }`;
 * likewise `maintenance` (GrantMaintenance / DenyMaintenance) and `robot-state` (the app's robot state).
 */
import type { Server as HttpServer } from 'node:http';
import { Server, type Socket } from 'socket.io';
import type { Clock } from '../core/clock.js';
import { transitionCause } from '../daemon/transition-cause.js';
import type { AuthFailureGuard } from './auth-failures.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { DaemonControl } from '../daemon/control.js';
import type { BusTopics, Topic } from '../daemon/event-bus.js';
import type { Edge } from './edge.js';
import { isAllowedHost, isAllowedOrigin, isSameOrigin } from './host-check.js';
import { apiError, toApiError } from './http-errors.js';
import { queryHasCredential, type Principal, type TokenVerifier } from './tokens.js';

export const ENVELOPE_VERSION = 1;
export const TOPICS: readonly Topic[] = ['transition', 'progress', 'notification', 'log'];

export interface Envelope<T extends Topic = Topic> {
  v: typeof ENVELOPE_VERSION;
  type: T;
  /** When the thing happened (ms since the epoch). */
  time: number;
  /** The transition log's sequence number: a transition's own; for other types the latest one at the time. */
  seq: number;
  payload: BusTopics[T];
}

export type EventAck = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string; details?: Record<string, unknown> } };

export interface SocketDeps {
  control: DaemonControl;
  edge: Edge;
  tokens: TokenVerifier;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
  maxMessageBytes: number;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
  /** The same per-remote counting, coalescing and throttling of refusals as REST. */
  authFailures: AuthFailureGuard;
}

export interface SocketStream {
  io: Server;
  close(): Promise<void>;
}

/**
 * The most transitions a resuming client is sent from the database. Further behind, or behind
 * what retention removed, it is told to `resync` (refetch the full state) instead: a replay is a
 * bounded read of the primary-key range, never a walk of the whole log.
 */
export const MAX_REPLAY = 1000;

/** Sent instead of a replay the log can no longer give, before any live message. */
export interface ResyncEnvelope {
  v: typeof ENVELOPE_VERSION;
  type: 'resync';
  time: number;
  /** The latest seq: live transitions continue after it. */
  seq: number;
  payload: {
    reason: 'pruned' | 'too-far-behind' | 'unknown-seq';
    /** The client's auth.lastSeq. */
    lastSeq: number;
    oldestSeq: number | null;
    latestSeq: number;
  };
}

export function attachSocketStream(server: HttpServer, deps: SocketDeps): SocketStream {
  const { control, tokens } = deps;
  // MAX(seq) through the primary key: one lookup however long the log is.
  let latestSeq = control.transitionRange().latest;
  const offSeq = control.bus.subscribe('transition', (t) => {
    latestSeq = Math.max(latestSeq, t.seq);
  });

  const io = new Server(server, {
    path: '/socket.io',
    serveClient: false,
    maxHttpBufferSize: deps.maxMessageBytes,
    allowRequest: (req, callback) => {
      const origin = req.headers.origin;
      const remote = req.socket.remoteAddress ?? 'unix socket';
      if (!isAllowedHost(req.headers.host, deps.allowedHosts)) {
        if (deps.authFailures.throttledFor(remote) === 0) deps.authFailures.refuse({ remote, reason: 'host', message: 'Socket.IO handshake with a foreign Host header refused' });
        callback('foreign Host', false);
        return;
      }
      if (!isAllowedOrigin(origin, deps.allowedOrigins) && !isSameOrigin(origin, req.headers.host)) {
        if (deps.authFailures.throttledFor(remote) === 0) {
          deps.authFailures.refuse({ remote, reason: 'origin', message: 'Socket.IO handshake from a foreign Origin refused', details: { origin: String(origin).slice(0, 200) } });
        }
        callback('foreign Origin', false);
        return;
      }
      callback(null, true);
    },
  });

  io.use((socket, next) => {
    const query = socket.handshake.query as Record<string, unknown>;
    const refuse = (reason: string, message: string) => {
      const remote = socket.handshake.address || 'unknown';
      const waitMs = deps.authFailures.throttledFor(remote);
      if (waitMs > 0) {
        const err = new Error(`too many refused requests from ${remote}; try again in ${Math.ceil(waitMs / 1000)} s`) as Error & { data?: unknown };
        err.data = { code: 'API_RATE_LIMITED', retryAfterMs: waitMs };
        return next(err);
      }
      deps.authFailures.refuse({ remote, reason, message: `Socket.IO connection refused: ${message}` });
      const err = new Error(message) as Error & { data?: unknown };
      err.data = { code: 'API_UNAUTHORIZED' };
      next(err);
    };
    // The same rule as REST: a credential under any query parameter is refused, even next to a
    // valid auth.token, because the handshake URL is what proxies and access logs keep.
    if (queryHasCredential(query, tokens)) return refuse('query-token', 'credentials are never accepted in the query string; use auth.token');
    const auth = (socket.handshake.auth ?? {}) as { token?: unknown };
    if (typeof auth.token !== 'string' || auth.token === '') return refuse('no-token', 'auth.token is required');
    const principal = tokens.verify(auth.token);
    if (!principal) return refuse('wrong-token', 'the token is not valid');
    socket.data.principal = principal;
    next();
  });

  io.on('connection', (socket) => onConnection(socket));

  function envelope<T extends Topic>(type: T, payload: BusTopics[T], seq: number, time: number): Envelope<T> {
    return { v: ENVELOPE_VERSION, type, time, seq, payload };
  }

  function onConnection(socket: Socket): void {
    const principal = socket.data.principal as Principal;
    const auth = socket.handshake.auth as { lastSeq?: unknown; topics?: unknown };
    const topics = Array.isArray(auth.topics) ? TOPICS.filter((t) => (auth.topics as unknown[]).includes(t)) : TOPICS;
    let lastSent = typeof auth.lastSeq === 'number' && Number.isInteger(auth.lastSeq) && auth.lastSeq >= 0 ? auth.lastSeq : null;

    const offs: Array<() => void> = [];
    // Subscribing before the catch-up read: the read is synchronous, so every later transition
    // arrives through the bus with a greater seq, and the seq check drops nothing but duplicates.
    for (const topic of topics) {
      offs.push(
        control.bus.subscribe(topic, (message: BusTopics[typeof topic]) => {
          if (!socket.connected) return;
          if (topic === 'transition') {
            const t = message as BusTopics['transition'];
            if (lastSent !== null && t.seq <= lastSent) return;
            lastSent = t.seq;
            socket.send(envelope('transition', t, t.seq, t.at));
            return;
          }
          const time = topic === 'log' ? (message as BusTopics['log']).time : deps.clock.now();
          socket.send(envelope(topic, message as never, latestSeq, time));
        }),
      );
    }
    socket.on('disconnect', () => {
      for (const off of offs) off();
    });

    if (lastSent !== null && topics.includes('transition')) lastSent = replay(socket, lastSent);

    // GrantMaintenance / DenyMaintenance: `{ product, answer: grant|deny, requestId?, reason? }`.
    socket.on('maintenance', (body: unknown, ack: unknown) => {
      if (typeof ack !== 'function') return;
      const reply = ack as (a: EventAck) => void;
      try {
        if (principal.scope !== 'control') throw apiError('API_FORBIDDEN', `token "${principal.name}" has the read scope; answering a maintenance request needs a control token`);
        const { product, ...rest } = (body ?? {}) as { product?: unknown };
        reply({ ok: true, result: deps.edge.answerMaintenance(typeof product === 'string' ? product : '', rest, { actor: principal.name, source: 'socket' }) });
      } catch (error) {
        const mapped = toApiError(error);
        if (mapped.internal) deps.logger.error('a Socket.IO maintenance handler failed', { error: String(error) });
        reply({ ok: false, error: mapped.body.error });
      }
    });
    // The app's robot state for the robot-state gates: the body of REST POST /api/v1/robot-state.
    socket.on('robot-state', (body: unknown, ack: unknown) => {
      if (typeof ack !== 'function') return;
      const reply = ack as (a: EventAck) => void;
      try {
        if (principal.scope !== 'control') throw apiError('API_FORBIDDEN', `token "${principal.name}" has the read scope; reporting the robot state needs a control token`);
        reply({ ok: true, result: deps.edge.reportRobotState(body, { actor: principal.name, source: 'socket' }) });
      } catch (error) {
        const mapped = toApiError(error);
        if (mapped.internal) deps.logger.error('a Socket.IO robot-state handler failed', { error: String(error) });
        reply({ ok: false, error: mapped.body.error });
      }
    });
    socket.on('event', async (body: unknown, ack: unknown) => {
      if (typeof ack !== 'function') return;
      const reply = ack as (a: EventAck) => void;
      try {
        if (principal.scope !== 'control') throw apiError('API_FORBIDDEN', `token "${principal.name}" has the read scope; sending events needs a control token`);
        reply({ ok: true, result: await deps.edge.dispatch(body, { actor: principal.name, source: 'socket' }) });
      } catch (error) {
        const mapped = toApiError(error);
        if (mapped.internal) deps.logger.error('a Socket.IO event handler failed', { error: String(error) });
        reply({ ok: false, error: mapped.body.error });
      }
    });
  }

  /** Sends what a client resuming after `from` missed, or a resync; returns the seq it now has. */
  function replay(socket: Socket, from: number): number {
    const range = control.transitionRange();
    const resync = (reason: ResyncEnvelope['payload']['reason']): number => {
      const message: ResyncEnvelope = { v: ENVELOPE_VERSION, type: 'resync', time: deps.clock.now(), seq: range.latest, payload: { reason, lastSeq: from, oldestSeq: range.oldest, latestSeq: range.latest } };
      socket.send(message);
      return range.latest;
    };
    // A seq this log never handed out (a database replaced under the client): nothing to resume from.
    if (from > range.latest) return resync('unknown-seq');
    // Rows after `from` were removed by retention: a replay would have a hole.
    if (from < range.prunedThrough) return resync('pruned');
    const page = control.transitions({ afterSeq: from, limit: MAX_REPLAY + 1 });
    if (page.length > MAX_REPLAY) return resync('too-far-behind');
    let after = from;
    for (const t of page) {
      socket.send(envelope('transition', { seq: t.seq, product: t.product, runId: t.runId, from: t.from, to: t.to, event: t.eventType, cause: replayedCause(t), at: t.at }, t.seq, t.at));
      after = t.seq;
    }
    return after;
  }

  return {
    io,
    close: () =>
      new Promise<void>((resolve) => {
        offSeq();
        io.disconnectSockets(true);
        // The HTTP server is closed by its owner; closing io here would close it twice.
        io.engine.close();
        resolve();
      }),
  };
}

/**
 * The cause of a transition read back from the log for a resuming client: the log keeps the event,
 * not the context the machine entered the state with, so versions and error codes are left out.
 */
function replayedCause(t: { from: string; to: string; eventType: string }): string {
  return transitionCause({ from: t.from, to: t.to, event: t.eventType }, { offer: null, error: null, installedVersion: null, preCheckReasons: [], lastOutcome: null });
}

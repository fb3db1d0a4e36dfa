// The live stream: Socket.IO with the token in the handshake's auth (never the query string).
// On a reconnect the daemon replays the transitions after the last seq seen, so none is missed, or,
// when its retained history no longer reaches back that far, sends `resync`: the page refetches.
//
// Socket.IO reconnects by itself after a lost transport, but not after the server closed the
// connection ('io server disconnect', which is what a stopping otad does) nor after a refused
// handshake: then this module calls socket.connect() again itself, with a growing delay, until
// the daemon is back. Only a refusal with a code (a wrong token) stops it.
import { io } from './vendor/socket.io.esm.min.js';

/** Delays before each manual reconnect (ms); the last one repeats. */
export const RETRY_DELAYS_MS = [500, 1000, 2000, 3000, 5000];

/**
 * @typedef {{ state: 'connecting' | 'connected' | 'reconnecting' | 'disconnected', since: number, reason: string | null, retryAt: number | null, attempt: number, lastMessageAt: number | null }} Connectivity
 * @param {{
 *   token: string,
 *   onMessage: (envelope: { v: number, type: string, time: number, seq: number, payload: any }) => void,
 *   onConnectivity: (c: Connectivity) => void,
 *   onConnected: () => void,
 *   onRefused: (code: string, message: string) => void,
 * }} opts
 */
export function openStream(opts) {
  /** @type {number | null} */
  let lastSeq = null;
  let closed = false;
  let failures = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  /** @type {Connectivity} */
  const c = { state: 'connecting', since: Date.now(), reason: null, retryAt: null, attempt: 0, lastMessageAt: null };
  const tell = (/** @type {Partial<Connectivity>} */ change) => {
    const stateChanged = change.state !== undefined && change.state !== c.state;
    Object.assign(c, change);
    if (stateChanged) c.since = Date.now();
    opts.onConnectivity({ ...c });
  };

  const socket = io({
    path: '/socket.io',
    // A function: every reconnect sends the seq reached so far.
    auth: (cb) => cb(lastSeq === null ? { token: opts.token } : { token: opts.token, lastSeq }),
    reconnectionDelay: 500,
    reconnectionDelayMax: 5000,
  });

  /** The connection is down and Socket.IO will not retry by itself: try again after a delay. */
  function retryLater(reason) {
    if (closed || timer !== null) return;
    const delay = RETRY_DELAYS_MS[Math.min(failures, RETRY_DELAYS_MS.length - 1)];
    failures++;
    tell({ state: 'disconnected', reason, retryAt: Date.now() + delay });
    timer = setTimeout(() => {
      timer = null;
      if (closed || socket.connected) return;
      tell({ state: 'reconnecting', retryAt: null, attempt: c.attempt + 1 });
      socket.connect();
    }, delay);
  }

  socket.on('connect', () => {
    failures = 0;
    tell({ state: 'connected', reason: null, retryAt: null, attempt: 0 });
    opts.onConnected();
  });
  socket.on('disconnect', (reason) => {
    if (closed) return;
    // socket.active: Socket.IO itself will reconnect (a lost transport); otherwise it is up to us.
    if (socket.active) tell({ state: 'disconnected', reason: String(reason), retryAt: null });
    else retryLater(String(reason));
  });
  socket.io.on('reconnect_attempt', (n) => {
    if (!closed) tell({ state: 'reconnecting', attempt: n, retryAt: null });
  });
  socket.on('connect_error', (error) => {
    if (closed) return;
    const code = error && error.data && typeof error.data.code === 'string' ? error.data.code : null;
    if (code === 'API_UNAUTHORIZED') {
      tell({ state: 'disconnected', reason: error.message, retryAt: null });
      opts.onRefused(code, error.message);
      return;
    }
    if (socket.active) tell({ state: 'disconnected', reason: error.message, retryAt: null });
    else retryLater(error.message);
  });
  socket.on('message', (envelope) => {
    if (!envelope || envelope.v !== 1) return;
    // A resync carries the latest seq: the stream goes on from there after the page refetches.
    if (envelope.type === 'transition' || envelope.type === 'resync') lastSeq = envelope.seq;
    c.lastMessageAt = Date.now();
    opts.onMessage(envelope);
  });
  return {
    close: () => {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      socket.disconnect();
    },
  };
}

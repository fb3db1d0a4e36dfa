// The live stream: Socket.IO with the token in the handshake's auth (never the query string).
// On a reconnect the daemon replays the transitions after the last seq seen, so none is missed, or,
// when its retained history no longer reaches back that far, sends `resync`: the page refetches.
import { io } from './vendor/socket.io.esm.min.js';

/**
 * @param {{
 *   token: string,
 *   onMessage: (envelope: { v: number, type: string, time: number, seq: number, payload: any }) => void,
 *   onConnected: () => void,
 *   onDisconnected: (reason: string) => void,
 *   onRefused: (code: string, message: string) => void,
 * }} opts
 */
export function openStream(opts) {
  /** @type {number | null} */
  let lastSeq = null;
  const socket = io({
    path: '/socket.io',
    // A function: every reconnect sends the seq reached so far.
    auth: (cb) => cb(lastSeq === null ? { token: opts.token } : { token: opts.token, lastSeq }),
    reconnectionDelayMax: 5000,
  });
  socket.on('connect', () => opts.onConnected());
  socket.on('disconnect', (reason) => opts.onDisconnected(String(reason)));
  socket.on('connect_error', (error) => {
    const code = error && error.data && typeof error.data.code === 'string' ? error.data.code : null;
    if (code) opts.onRefused(code, error.message);
    else opts.onDisconnected(error.message);
  });
  socket.on('message', (envelope) => {
    if (!envelope || envelope.v !== 1) return;
    // A resync carries the latest seq: the stream goes on from there after the page refetches.
    if (envelope.type === 'transition' || envelope.type === 'resync') lastSeq = envelope.seq;
    opts.onMessage(envelope);
  });
  return { close: () => socket.disconnect() };
}

/**
 * A real loopback HTTP server (node:http on 127.0.0.1, port 0) that serves in-memory files with
 * faults switched on by the test: resets mid-body, error statuses, a drip feed, extra bytes, a
 * flipped bit, an ignored or falsified Range, a hang before headers. It records every request and
 * counts the body bytes it actually handed to the socket, so a test can prove a download resumed
 * (total sent ≈ file size) rather than started over (≈ 2 × size).
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Faults {
  /** Answer the first requests with these statuses, in order (e.g. [500, 503]). */
  statusesFirst?: number[];
  /** Cut the connection after this many body bytes of a response... */
  resetAfterBytes?: number;
  /** ...for this many responses (default 1). */
  resetTimes?: number;
  /** 'close': FIN after the bytes were sent (client sees "other side closed"); 'rst': TCP reset. */
  resetMode?: 'close' | 'rst';
  /** Send the body one byte every `dripMs` milliseconds. */
  dripMs?: number;
  /** Append this many bytes after the file. */
  extraBytes?: number;
  /** With extraBytes: announce them in Content-Length (honest about the longer body). Default: chunked. */
  announceExtra?: boolean;
  /** Flip one bit of the content (length unchanged). */
  flipBit?: { byte: number; bit: number };
  /** Answer Range requests with 200 and the whole file. */
  ignoreRange?: boolean;
  /** Answer Range requests with 206 claiming (and sending) bytes from 0 instead of the asked offset. */
  lieRange?: boolean;
  /** Never send headers for the first N requests (the connection just hangs). */
  hangFirst?: number;
  /** Send no Content-Length (chunked) even for a plain body. */
  chunked?: boolean;
  /** Apply the faults only to requests for this URL path (default: every request). */
  onlyPath?: string;
}

export interface RequestRecord {
  path: string;
  range: string | null;
  headers: http.IncomingHttpHeaders;
  status: number | null;
  /** Body bytes whose write the socket acknowledged. */
  bytesSent: number;
  /** The response ended before its whole body was sent (cut, reset, client went away). */
  cut: boolean;
}

export interface FaultyServer {
  readonly port: number;
  url(path?: string): string;
  setFaults(faults: Faults): void;
  setFile(path: string, content: Buffer): void;
  readonly requests: RequestRecord[];
  /** Resolves once every response so far has finished or been cut (the server noticed). */
  settled(): Promise<void>;
  /** Sum of body bytes sent, optionally for one path only. */
  bytesSent(path?: string): number;
  close(): Promise<void>;
}

const CHUNK = 16 * 1024;

export async function createFaultyServer(files: Record<string, Buffer>, initial: Faults = {}): Promise<FaultyServer> {
  const content = new Map(Object.entries(files));
  let faults: Faults = { ...initial };
  let statusQueue = [...(faults.statusesFirst ?? [])];
  let resetsLeft = faults.resetAfterBytes === undefined ? 0 : (faults.resetTimes ?? 1);
  let hangsLeft = faults.hangFirst ?? 0;
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const inFlight = new Set<Promise<void>>();

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });

  const server = http.createServer((req, res) => {
    // A handler is in flight until it stopped writing: the body ended or the server saw the cut.
    const done = handle(req, res).catch(() => {
      res.destroy();
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const range = req.headers.range ?? null;
    const record: RequestRecord = { path, range, headers: req.headers, status: null, bytesSent: 0, cut: false };
    requests.push(record);
    // Requests for other paths (with onlyPath) are served cleanly and consume no fault.
    const active = faults.onlyPath === undefined || path === faults.onlyPath;
    const fx: Faults = active ? faults : {};

    if (active && hangsLeft > 0) {
      hangsLeft--;
      return; // no headers, ever: the client's headers timeout must fire
    }
    const forced = active ? statusQueue.shift() : undefined;
    if (forced !== undefined) {
      record.status = forced;
      res.writeHead(forced, { 'content-type': 'text/plain' }).end(`forced ${forced}`);
      return;
    }
    const file = content.get(path);
    if (file === undefined) {
      record.status = 404;
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }

    let body = Buffer.from(file);
    if (fx.flipBit !== undefined && fx.flipBit.byte < body.length) {
      body[fx.flipBit.byte] = (body[fx.flipBit.byte] ?? 0) ^ (1 << fx.flipBit.bit);
    }
    const extra = fx.extraBytes ?? 0;
    const fullLength = body.length + extra;
    if (extra > 0) body = Buffer.concat([body, Buffer.alloc(extra, 0x5a)]);

    let status = 200;
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
    const asked = range === null ? null : /^bytes=(\d+)-(\d*)$/.exec(range);
    if (asked !== null && asked !== undefined && fx.ignoreRange !== true) {
      const start = Number(asked[1]);
      if (fx.lieRange === true) {
        status = 206;
        headers['content-range'] = `bytes 0-${fullLength - 1}/${fullLength}`;
      } else if (start >= fullLength) {
        record.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${fullLength}` }).end();
        return;
      } else {
        const end = asked[2] === '' || asked[2] === undefined ? fullLength - 1 : Math.min(Number(asked[2]), fullLength - 1);
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${fullLength}`;
        body = body.subarray(start, end + 1);
      }
    }
    const chunked = fx.chunked === true || (extra > 0 && fx.announceExtra !== true);
    if (!chunked) headers['content-length'] = String(body.length);
    record.status = status;
    res.writeHead(status, headers);

    const resetAt = active && resetsLeft > 0 ? fx.resetAfterBytes : undefined;
    if (resetAt !== undefined) resetsLeft--;
    const stopAt = resetAt === undefined ? body.length : Math.min(resetAt, body.length);
    const step = fx.dripMs === undefined ? CHUNK : 1;

    let offset = 0;
    while (offset < stopAt) {
      if (res.destroyed || res.socket === null || res.socket.destroyed) {
        record.cut = true;
        return;
      }
      const piece = body.subarray(offset, Math.min(offset + step, stopAt));
      const ok = await new Promise<boolean>((resolve) => res.write(piece, (error) => resolve(error == null)));
      if (!ok) {
        record.cut = true;
        return;
      }
      record.bytesSent += piece.length;
      offset += piece.length;
      if (fx.dripMs !== undefined && offset < stopAt) await sleep(fx.dripMs);
    }
    if (resetAt !== undefined && resetAt < body.length) {
      record.cut = true;
      const socket = res.socket;
      if (socket !== null) {
        if (fx.resetMode === 'rst') socket.resetAndDestroy();
        else socket.destroy();
      }
      return;
    }
    res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    port,
    url: (path = '/file') => `http://127.0.0.1:${port}${path}`,
    setFaults(next) {
      faults = { ...next };
      statusQueue = [...(next.statusesFirst ?? [])];
      resetsLeft = next.resetAfterBytes === undefined ? 0 : (next.resetTimes ?? 1);
      hangsLeft = next.hangFirst ?? 0;
    },
    setFile(path, buffer) {
      content.set(path, buffer);
    },
    requests,
    async settled() {
      await Promise.all([...inFlight]);
    },
    bytesSent(path) {
      return requests.filter((r) => path === undefined || r.path === path).reduce((sum, r) => sum + r.bytesSent, 0);
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

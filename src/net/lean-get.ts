/**
 * The GET that target downloads use: HTTP/1.1 over one fresh TCP or TLS connection, read into one
 * fixed 512 KiB buffer used as a ring (ReadRing), whose bytes are handed to the caller as views.
 *
 * Why not undici here (it stays for metadata, src/net/http-client.ts): a body read through undici
 * allocates a new Buffer for every chunk and passes it through a Readable stream; for a 256 MiB
 * package that cost 2.4× the CPU of `curl -o` + `openssl dgst` + `sync -f` and an 82 MiB peak RSS
 * over idle (garbage the collector had not caught up with), measured by `npm run bench`. Reading
 * with net.Socket's `onread` option into one buffer brings both under the baseline's
 * (docs/network.md, "Benchmark").
 *
 * How reading goes: reads land in the ring (at most 128 KiB each); what arrived in one turn of
 * the event loop is handed to the caller as one view (merged when contiguous) and the socket is
 * paused until the caller asks for more, so nothing piles up in memory while the caller hashes
 * and writes. With the ring nearly full the socket is paused at once. TLS may still hand over the
 * records it had decrypted; the ring gives them free room, never room over a view the caller
 * holds.
 *
 * The contract this buys: a chunk the body yields is valid only until the caller asks for the
 * next one (its room is then read into again). The downloader hashes and writes each chunk before
 * it asks for the next; nothing else reads bodies this way.
 *
 * What it speaks: status line and headers (at most 64 KiB), 1xx answers skipped, redirects
 * (301/302/303/307/308 with Location, to any host, at most `maxRedirections`, the same headers
 * sent again), a body framed by Content-Length, by chunked transfer coding (extensions and
 * trailers read and dropped), or by the end of the connection. Every request says
 * `Connection: close` and `Accept-Encoding: identity`: one package per connection, the bytes
 * hashed are the bytes the server stores. TLS verifies the certificate and the host name always.
 * Timeouts: connect, headers (from the request written to the end of the head), idle (silence
 * while the caller waits for body bytes; the time the caller spends writing does not count).
 * Every failure is an OtaError with the network codes of http-errors.ts.
 */
import { isIP, connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { OtaError } from '../core/errors.js';
import { abortReasonToError, errorForStatus, mapNetworkError, redactUrl } from './http-errors.js';
import type { HttpHeaders } from './http-client.js';

/** The one buffer a connection reads into, used as a ring. */
export const LEAN_RING_BYTES = 512 * 1024;
/** The most one read is given: a 256 MiB package takes at least two thousand reads. */
export const LEAN_READ_BYTES = 128 * 1024;
/**
 * Room kept free when the caller is handed its bytes: TLS delivers the records it has already
 * decrypted (up to one 64 KiB read of the TCP socket) even after it was asked to pause.
 */
const STRAGGLER_ROOM = 64 * 1024;
/** The least a read is given in the ring (one TLS record); with less free, a spare buffer is read into and copied. */
const MIN_READ_BYTES = 16 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

export interface LeanGetOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  userAgent: string;
  /** Trusted CAs for https (the system roots plus server.caFile); undefined: Node's roots. */
  ca?: string[];
  maxRedirections: number;
  headers?: HttpHeaders;
  signal: AbortSignal;
}

export interface LeanResponse {
  status: number;
  headers: HttpHeaders;
  /** The URL that answered (after redirects). */
  url: string;
  /** Body chunks, each valid until the next is asked for. Errors are OtaErrors. */
  body: AsyncIterable<Buffer>;
  cancel(): void;
}

/** GET `url`, following redirects; answers >= 400 throw (errorForStatus) with the connection closed. */
export async function leanGet(url: string, options: LeanGetOptions): Promise<LeanResponse> {
  const headers = options.headers ?? {};
  for (const [name, value] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value)) {
      throw new OtaError('INTERNAL', `header ${JSON.stringify(name)} cannot be sent: it is not a valid HTTP header`);
    }
  }
  let current = url;
  for (let redirects = 0; ; redirects++) {
    const exchange = await openExchange(current, headers, options);
    const location = exchange.headers.location;
    if (REDIRECT_STATUSES.has(exchange.status) && location !== undefined && location !== '') {
      exchange.cancel();
      if (redirects >= options.maxRedirections) {
        throw new OtaError('HTTP_STATUS', `GET ${redactUrl(url)} was redirected more than ${options.maxRedirections} times; the last hop was ${redactUrl(current)}`, {
          details: { url: redactUrl(url), status: exchange.status, redirects },
        });
      }
      let next: URL;
      try {
        next = new URL(location, current);
      } catch (cause) {
        throw new OtaError('HTTP_STATUS', `GET ${redactUrl(current)} redirected to an invalid location`, { cause, retryable: false, details: { url: redactUrl(current), status: exchange.status } });
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new OtaError('HTTP_STATUS', `GET ${redactUrl(current)} redirected to a ${next.protocol} URL; only http: and https: are followed`, {
          retryable: false,
          details: { url: redactUrl(current), status: exchange.status },
        });
      }
      current = next.toString();
      continue;
    }
    const failure = errorForStatus(exchange.status, { url: current });
    if (failure !== null) {
      exchange.cancel();
      throw failure;
    }
    return exchange;
  }
}

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

/** One request on one connection: resolves when the head has arrived. */
function openExchange(url: string, headers: HttpHeaders, options: LeanGetOptions): Promise<LeanResponse> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    return Promise.reject(new OtaError('CONFIG_INVALID', `"${redactUrl(url)}" is not a valid URL`, { cause, details: { url: redactUrl(url) } }));
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return Promise.reject(new OtaError('CONFIG_INVALID', `unsupported URL scheme "${parsed.protocol}" in ${redactUrl(url)}; expected http: or https:`));
  }
  const { signal } = options;
  const safeUrl = redactUrl(url);
  if (signal.aborted) return Promise.reject(abortReasonToError(signal.reason, `GET ${safeUrl}`));

  const tls = parsed.protocol === 'https:';
  const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const port = parsed.port === '' ? (tls ? 443 : 80) : Number(parsed.port);
  const ring = new ReadRing(LEAN_RING_BYTES, LEAN_READ_BYTES, MIN_READ_BYTES);

  return new Promise<LeanResponse>((resolveHead, rejectHead) => {
    let phase: 'connect' | 'head' | 'body' | 'done' = 'connect';
    let head: Buffer[] = [];
    let headBytes = 0;
    let framing: Framing = { kind: 'none' };
    const chunked = new ChunkedDecoder();
    // Body bytes read and not yet taken by the caller: views into the ring (or, rarely, copies),
    // oldest first.
    const queue: Buffer[] = [];
    let handOffScheduled = false;
    let ended = false;
    let failure: OtaError | null = null;
    let waiting: (() => void) | null = null;
    let paused = false;
    let headSettled = false;

    const wake = (): void => {
      const w = waiting;
      waiting = null;
      w?.();
    };
    const fail = (error: OtaError): void => {
      if (phase === 'done') return;
      failure ??= error;
      finish();
      if (!headSettled) {
        headSettled = true;
        rejectHead(failure);
      }
      wake();
    };
    const finish = (): void => {
      phase = 'done';
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (!socket.destroyed) socket.destroy();
    };
    const onAbort = (): void => fail(abortReasonToError(signal.reason, `GET ${safeUrl}`));

    let timerFor: 'connect' | 'headers' | 'idle' = 'connect';
    const onTimer = (): void => {
      const ms = timerFor === 'connect' ? options.connectTimeoutMs : timerFor === 'headers' ? options.headersTimeoutMs : options.idleTimeoutMs;
      const what = timerFor === 'connect' ? 'connecting to' : timerFor === 'headers' ? 'waiting for the response headers of' : 'waiting for the next body bytes of';
      fail(new OtaError('NETWORK_TIMEOUT', `timed out ${what} ${safeUrl} (${ms} ms)`, { details: { url: safeUrl, timeout: timerFor, timeoutMs: ms } }));
    };
    let timer: NodeJS.Timeout | undefined = setTimeout(onTimer, options.connectTimeoutMs);
    const arm = (kind: 'headers' | 'idle'): void => {
      clearTimeout(timer);
      timerFor = kind;
      timer = setTimeout(onTimer, kind === 'headers' ? options.headersTimeoutMs : options.idleTimeoutMs);
    };
    /** The body is complete (or unwanted): nothing more is read from this connection. */
    const complete = (): void => {
      ended = true;
      if (phase !== 'done') finish();
    };

    /** Queues a view, merged into the last one when it continues it in the same memory. */
    const enqueue = (view: Buffer): void => {
      const last = queue[queue.length - 1];
      if (last !== undefined && last.buffer === view.buffer && last.byteOffset + last.length === view.byteOffset) {
        queue[queue.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + view.length);
      } else {
        queue.push(view);
      }
    };

    /** Body bytes from the current read: framed, queued as views. True when any were queued. */
    const takeBody = (view: Buffer): boolean => {
      let queued = false;
      if (framing.kind === 'length') {
        const take = Math.min(view.length, framing.remaining);
        if (take > 0) {
          enqueue(view.subarray(0, take));
          queued = true;
        }
        framing.remaining -= take;
        if (framing.remaining === 0) ended = true;
      } else if (framing.kind === 'chunked') {
        const error = chunked.push(view, (segment) => {
          enqueue(segment);
          queued = true;
        });
        if (error !== null) {
          fail(new OtaError('NETWORK_RESET', `${safeUrl} sent a malformed chunked body: ${error}`, { details: { url: safeUrl } }));
          return false;
        }
        if (chunked.done) ended = true;
      } else if (framing.kind === 'close') {
        if (view.length > 0) {
          enqueue(view);
          queued = true;
        }
      }
      if (ended) complete();
      return queued;
    };

    const onHead = (): boolean => {
      // The head is complete in `head` (copied); what follows it in this read is body.
      const all = head.length === 1 ? head[0]! : Buffer.concat(head, headBytes);
      let end = all.indexOf('\r\n\r\n');
      let start = 0;
      let parsedHead: ParsedHead | string;
      for (;;) {
        parsedHead = parseHead(all.subarray(start, end));
        if (typeof parsedHead === 'string') break;
        if (parsedHead.status >= 200 || parsedHead.status === 101) break;
        // 1xx interim answer: the real one follows.
        start = end + 4;
        end = all.indexOf('\r\n\r\n', start);
        if (end < 0) {
          head = [all.subarray(start)];
          headBytes = head[0]!.length;
          return true;
        }
      }
      if (typeof parsedHead === 'string') {
        fail(new OtaError('NETWORK_RESET', `${safeUrl} did not answer with HTTP/1.1: ${parsedHead}`, { details: { url: safeUrl } }));
        return false;
      }
      const framingOrError = framingOf(parsedHead);
      if (typeof framingOrError === 'string') {
        fail(new OtaError('NETWORK_RESET', `${safeUrl} answered with ${framingOrError}`, { details: { url: safeUrl, status: parsedHead.status } }));
        return false;
      }
      framing = framingOrError;
      head = [];
      phase = 'body';
      const rest = all.subarray(end + 4);
      clearTimeout(timer);
      // The head is good: from here a failure reaches the caller through the body, after the
      // bytes that came before it.
      headSettled = true;
      // The leftover was copied into `all`: queued as a chunk of its own, not tied to the ring.
      if (framing.kind === 'none' || (framing.kind === 'length' && framing.remaining === 0)) complete();
      else if (rest.length > 0) takeBody(Buffer.from(rest));
      resolveHead(response(parsedHead));
      // Paused until the caller asks for body bytes.
      paused = true;
      return false;
    };

    const onRead = (nread: number, buf: Buffer): boolean => {
      if (phase === 'head') {
        const searchFrom = Math.max(0, headBytes - 3);
        head.push(Buffer.from(buf.subarray(0, nread)));
        headBytes += nread;
        const joined = head.length === 1 ? head[0]! : Buffer.concat(head, headBytes);
        if (head.length > 1) head = [joined];
        const end = joined.indexOf('\r\n\r\n', searchFrom);
        if ((end < 0 ? headBytes : end) > MAX_HEAD_BYTES) {
          fail(new OtaError('NETWORK_RESET', `${safeUrl} sent a response head over ${MAX_HEAD_BYTES} bytes`, { details: { url: safeUrl } }));
          return false;
        }
        return end < 0 ? true : onHead();
      }
      if (phase !== 'body') return false;
      const queued = takeBody(ring.landed(buf, nread));
      if (phase !== 'body') {
        // The body ended or failed with this read: the caller takes what is queued, then the end.
        wake();
        return false;
      }
      // Paused already: TLS hands over the records it had decrypted before the pause took effect.
      if (paused) return false;
      if (!queued) return true;
      if (ring.room() < LEAN_READ_BYTES + STRAGGLER_ROOM) {
        // Not enough room for another full read: hand off now and stop reading. The room left is
        // at least STRAGGLER_ROOM (the read before found more than a full read plus it).
        handOff();
        return false;
      }
      // More may be waiting in this same turn of the event loop (a TLS read is one 16 KiB record):
      // keep reading into the rest of the buffer, and hand off what came once this turn is over.
      if (!handOffScheduled) {
        handOffScheduled = true;
        setImmediate(() => {
          handOffScheduled = false;
          if (phase === 'body' && !paused && queue.length > 0) {
            socket.pause();
            handOff();
          }
        });
      }
      return true;
    };

    /** Stops the idle clock and gives the queued views to the caller; reading is paused. */
    const handOff = (): void => {
      clearTimeout(timer);
      paused = true;
      wake();
    };

    /** Node asks, after every read, where the next one goes (net.Socket `onread.buffer` as a function). */
    const nextReadBuffer = (): Buffer =>
      // Head bytes are copied as they come: the whole ring is free for them.
      phase === 'body' ? ring.next() : ring.buffer.subarray(0, LEAN_READ_BYTES);

    const connectOptions = { host, port, onread: { buffer: nextReadBuffer, callback: onRead } };
    const socket: Socket = tls
      ? tlsConnect({
          ...connectOptions,
          ...(isIP(host) === 0 ? { servername: host } : {}),
          ALPNProtocols: ['http/1.1'],
          rejectUnauthorized: true,
          ...(options.ca === undefined ? {} : { ca: options.ca }),
        })
      : netConnect(connectOptions);
    signal.addEventListener('abort', onAbort, { once: true });

    socket.once(tls ? 'secureConnect' : 'connect', () => {
      if (phase !== 'connect') return;
      phase = 'head';
      arm('headers');
      let request = `GET ${parsed.pathname}${parsed.search} HTTP/1.1\r\nHost: ${parsed.host}\r\nUser-Agent: ${options.userAgent}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n`;
      for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`;
      socket.write(`${request}\r\n`);
    });
    socket.on('error', (error) => fail(mapNetworkError(error, { url })));
    socket.on('end', () => {
      if (phase === 'done') return;
      if (phase === 'body' && framing.kind === 'close') {
        complete();
        wake();
        return;
      }
      const where = phase === 'body' ? 'in the middle of the body' : 'before the response headers';
      fail(new OtaError('NETWORK_RESET', `${safeUrl} closed the connection ${where}`, { details: { url: safeUrl } }));
    });
    socket.on('close', () => {
      if (phase !== 'done') fail(new OtaError('NETWORK_RESET', `connection to ${safeUrl} closed`, { details: { url: safeUrl } }));
    });

    function response(h: ParsedHead): LeanResponse {
      return {
        status: h.status,
        headers: h.headers,
        url,
        cancel: () => {
          queue.length = 0;
          complete();
          wake();
        },
        body: {
          [Symbol.asyncIterator]() {
            return {
              async next(): Promise<IteratorResult<Buffer>> {
                // Asking for the next chunk gives the last one back.
                ring.release(queue);
                for (;;) {
                  const chunk = queue.shift();
                  if (chunk !== undefined) return { value: chunk, done: false };
                  if (failure !== null) throw failure;
                  if (ended) return { value: undefined, done: true };
                  if (paused && phase === 'body') {
                    paused = false;
                    arm('idle');
                    socket.resume();
                  }
                  await new Promise<void>((resolve) => {
                    waiting = resolve;
                  });
                }
              },
              async return(): Promise<IteratorResult<Buffer>> {
                queue.length = 0;
                complete();
                return { value: undefined, done: true };
              },
            };
          },
        },
      };
    }

  });
}

interface ParsedHead {
  status: number;
  headers: HttpHeaders;
}

/** Status line and header fields; a string says what is wrong. */
function parseHead(raw: Buffer): ParsedHead | string {
  const text = raw.toString('latin1');
  const lines = text.split('\r\n');
  const statusLine = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '');
  if (statusLine === null) return `a status line of ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`;
  const headers: HttpHeaders = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0 || line.startsWith(' ') || line.startsWith('\t')) return `a malformed header line ${JSON.stringify(line.slice(0, 80))}`;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status: Number(statusLine[1]), headers };
}

/**
 * One buffer used as a ring by the reads of one connection. Bytes from `tail` up to `head`
 * (where the last read ended) may still be the caller's: queued, or the chunk it holds now. With
 * `wrapAt` set, reading went back to 0 and those bytes run from `tail` to `wrapAt`, then from 0
 * to `head`. `next()` never hands out room over them: that is what makes giving the caller views
 * of one buffer safe, whatever the socket does after it was asked to pause (TLS still hands over
 * the records it has decrypted).
 */
export class ReadRing {
  readonly buffer: Buffer;
  private head = 0;
  private tail = 0;
  private wrapAt: number | null = null;
  private spare: Buffer | null = null;

  constructor(
    capacity: number,
    private readonly maxRead: number,
    private readonly minRead: number,
  ) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  /** The largest free stretch the next read could get. */
  room(): number {
    return this.wrapAt === null ? Math.max(this.buffer.length - this.head, this.tail) : this.tail - this.head;
  }

  /**
   * Where the next read goes: at most `maxRead` bytes of the free stretch after `head`, or of the
   * one before `tail` (wrapping round) when that is the larger; with less than `minRead` free, a
   * spare buffer of its own, whose bytes `landed` copies out.
   */
  next(): Buffer {
    if (this.wrapAt === null) {
      const after = this.buffer.length - this.head;
      if (after >= this.minRead && (after >= this.maxRead || after >= this.tail)) {
        return this.buffer.subarray(this.head, this.head + Math.min(after, this.maxRead));
      }
      if (this.tail >= this.minRead) {
        this.wrapAt = this.head;
        this.head = 0;
        return this.buffer.subarray(0, Math.min(this.tail, this.maxRead));
      }
    } else if (this.tail - this.head >= this.minRead) {
      return this.buffer.subarray(this.head, this.head + Math.min(this.tail - this.head, this.maxRead));
    }
    this.spare ??= Buffer.allocUnsafe(this.minRead);
    return this.spare;
  }

  /** `nread` bytes landed in `buf` (what `next()` gave): the view to queue (a copy when it was the spare). */
  landed(buf: Buffer, nread: number): Buffer {
    if (buf.buffer !== this.buffer.buffer) return Buffer.from(buf.subarray(0, nread));
    this.head = buf.byteOffset - this.buffer.byteOffset + nread;
    return buf.subarray(0, nread);
  }

  /** The caller gave back the chunk it held; `outstanding` is what is still queued, oldest first. */
  release(outstanding: readonly Buffer[]): void {
    const oldest = outstanding.find((view) => view.buffer === this.buffer.buffer);
    if (oldest === undefined) {
      this.tail = this.head;
      this.wrapAt = null;
      return;
    }
    const at = oldest.byteOffset - this.buffer.byteOffset;
    // A view before the old tail is past the wrap: the stretch up to wrapAt is all given back.
    if (this.wrapAt !== null && at < this.tail) this.wrapAt = null;
    this.tail = at;
  }
}

/** How the body ends (RFC 9112 §6.3); a string names a framing this client refuses. */
function framingOf(h: ParsedHead): Framing | string {
  if (h.status === 204 || h.status === 304) return { kind: 'none' };
  const te = h.headers['transfer-encoding'];
  if (te !== undefined) {
    const codings = te.toLowerCase().split(',').map((c) => c.trim());
    return codings[codings.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  const cl = h.headers['content-length'];
  if (cl !== undefined) {
    const values = new Set(cl.split(',').map((v) => v.trim()));
    const [only] = values;
    if (values.size !== 1 || only === undefined || !/^\d{1,15}$/.test(only)) return `an invalid Content-Length of ${JSON.stringify(cl.slice(0, 40))}`;
    return { kind: 'length', remaining: Number(only) };
  }
  return { kind: 'close' };
}

/**
 * Chunked transfer coding, decoded in place: data segments are views into the bytes pushed, so
 * they share their lifetime. State survives across pushes (a size line or CRLF split by a read).
 */
export class ChunkedDecoder {
  private state: 'size' | 'data' | 'data-cr' | 'data-lf' | 'trailer' = 'size';
  private line = '';
  private remaining = 0;
  done = false;

  /** Feeds bytes; `emit` gets each data segment. Returns an error text, or null. */
  push(bytes: Buffer, emit: (segment: Buffer) => void): string | null {
    let i = 0;
    while (i < bytes.length && !this.done) {
      switch (this.state) {
        case 'data': {
          const take = Math.min(this.remaining, bytes.length - i);
          emit(bytes.subarray(i, i + take));
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'data-cr';
          break;
        }
        case 'data-cr':
        case 'data-lf': {
          const want = this.state === 'data-cr' ? 0x0d : 0x0a;
          if (bytes[i] !== want) return 'a chunk was not followed by CRLF';
          i += 1;
          this.state = this.state === 'data-cr' ? 'data-lf' : 'size';
          break;
        }
        case 'size':
        case 'trailer': {
          const lf = bytes.indexOf(0x0a, i);
          const end = lf < 0 ? bytes.length : lf;
          this.line += bytes.toString('latin1', i, end);
          if (this.line.length > MAX_CHUNK_LINE) return `a chunk line over ${MAX_CHUNK_LINE} bytes`;
          i = end;
          if (lf < 0) break;
          i += 1;
          const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
          this.line = '';
          if (this.state === 'trailer') {
            if (line === '') this.done = true;
            break;
          }
          const size = /^([0-9a-fA-F]{1,13})[ \t]*(?:;.*)?$/.exec(line);
          if (size === null) return `a chunk size line of ${JSON.stringify(line.slice(0, 40))}`;
          this.remaining = Number.parseInt(size[1]!, 16);
          this.state = this.remaining === 0 ? 'trailer' : 'data';
          break;
        }
      }
    }
    return null;
  }
}

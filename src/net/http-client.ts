/**
 * The HTTP transport of otad: one pooled keep-alive undici Agent per client for metadata
 * (getBuffer), a fixed-buffer GET of its own for target bodies (stream, lean-get.ts), TLS
 * verification always on, every failure mapped to an OtaError (see http-errors.ts and docs/network.md).
 * Redirects are followed (at most 5): targets may live behind a CDN or release-asset redirect,
 * and integrity never depends on the transport (TUF signatures and SHA-256 do).
 */
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { Agent, interceptors } from 'undici';
import type { Dispatcher } from 'undici';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { leanGet } from './lean-get.js';
import { TOO_LARGE_MARKER, abortReasonToError, errorForStatus, mapNetworkError, redactUrl } from './http-errors.js';

export interface HttpClientOptions {
  /** TCP (+TLS) connect budget. */
  connectTimeoutMs: number;
  /** From request sent to the complete response headers. */
  headersTimeoutMs: number;
  /** Longest silence allowed between two body chunks. */
  idleTimeoutMs: number;
  /** Extra PEM bundle trusted in addition to the system roots (a private update server's CA). */
  caFile?: string;
  userAgent: string;
  logger: Logger;
  /** Redirects followed per request; 0 turns redirects off. Default 5. */
  maxRedirections?: number;
}

export type HttpHeaders = Record<string, string>;

export interface GetBufferOptions {
  /** The body is cut off (and the call fails) as soon as it passes this many bytes. */
  maxBytes: number;
  /** Whole-request budget, from connect to the last body byte. */
  deadlineMs: number;
  signal?: AbortSignal;
  headers?: HttpHeaders;
}

export interface BufferResponse {
  status: number;
  headers: HttpHeaders;
  body: Buffer;
}

export interface StreamOptions {
  headers?: HttpHeaders;
  signal?: AbortSignal;
}

export interface StreamResponse {
  status: number;
  headers: HttpHeaders;
  /**
   * The body, chunk by chunk. A chunk is valid only until the next one is asked for: the next read
   * reuses its memory (src/net/lean-get.ts), so hash and write it, or copy it, before going on.
   * Errors raised while reading are already OtaErrors; an abort raised with an OtaError reason
   * surfaces as that very error. Breaking out of the loop releases it.
   */
  body: AsyncIterable<Buffer>;
  /** Stops reading and releases the connection (the body was not wanted). */
  cancel(): void;
}

export interface HttpClient {
  /** GET into memory with a hard size cap. Non-2xx answers throw (see errorForStatus). */
  getBuffer(url: string, options: GetBufferOptions): Promise<BufferResponse>;
  /**
   * GET as a stream, on a connection of its own read into one reused buffer (lean-get.ts): what
   * target downloads use. Redirects are followed; answers >= 400 throw with the connection closed.
   */
  stream(url: string, options?: StreamOptions): Promise<StreamResponse>;
  close(): Promise<void>;
}

export function createHttpClient(options: HttpClientOptions): HttpClient {
  const log = options.logger.child({ component: 'http' });
  const ca = options.caFile === undefined ? undefined : [...rootCertificates, readCaFile(options.caFile)];
  const agent = new Agent({
    connect: {
      timeout: options.connectTimeoutMs,
      // Verification is never switched off; the extra CA is added to, not substituted for, the roots.
      rejectUnauthorized: true,
      ...(ca === undefined ? {} : { ca }),
    },
    headersTimeout: options.headersTimeoutMs,
    bodyTimeout: options.idleTimeoutMs,
    keepAliveTimeout: 30_000,
    connections: 8,
  });
  const maxRedirections = options.maxRedirections ?? 5;
  const dispatcher: Dispatcher = maxRedirections > 0 ? agent.compose(interceptors.redirect({ maxRedirections })) : agent;

  async function open(url: string, headers: HttpHeaders | undefined, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    const ctx = { url };
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (cause) {
      throw new OtaError('CONFIG_INVALID', `"${redactUrl(url)}" is not a valid URL`, { cause, details: { url: redactUrl(url) } });
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new OtaError('CONFIG_INVALID', `unsupported URL scheme "${parsed.protocol}" in ${redactUrl(url)}; expected http: or https:`);
    }
    if (signal.aborted) throw abortReasonToError(signal.reason, `GET ${redactUrl(url)}`);
    try {
      return await dispatcher.request({
        origin: parsed.origin,
        path: `${parsed.pathname}${parsed.search}`,
        method: 'GET',
        headers: { 'user-agent': options.userAgent, ...headers },
        signal,
      });
    } catch (error) {
      throw signal.aborted ? abortReasonToError(signal.reason, `GET ${redactUrl(url)}`) : mapNetworkError(error, ctx);
    }
  }

  async function failOnStatus(url: string, response: Dispatcher.ResponseData): Promise<void> {
    const failure = errorForStatus(response.statusCode, { url });
    if (failure === null) return;
    // Read nothing: destroying the body closes that socket instead of reading an unbounded error page.
    discard(response.body);
    log.debug('http error status', { url: redactUrl(url), status: response.statusCode });
    throw failure;
  }

  return {
    async getBuffer(url, opts) {
      const ctx = { url };
      const deadline = new AbortController();
      const timer = setTimeout(() => {
        deadline.abort(
          new OtaError('NETWORK_TIMEOUT', `GET ${redactUrl(url)} did not finish within its ${opts.deadlineMs} ms deadline`, {
            details: { url: redactUrl(url), deadlineMs: opts.deadlineMs },
          }),
        );
      }, opts.deadlineMs);
      const signal = opts.signal === undefined ? deadline.signal : AbortSignal.any([opts.signal, deadline.signal]);
      try {
        const response = await open(url, opts.headers, signal);
        await failOnStatus(url, response);
        const headers = flattenHeaders(response.headers);
        const announced = Number(headers['content-length']);
        if (Number.isFinite(announced) && announced > opts.maxBytes) {
          discard(response.body);
          throw tooLarge(url, opts.maxBytes, 0, announced);
        }
        const chunks: Buffer[] = [];
        let received = 0;
        try {
          for await (const chunk of response.body as AsyncIterable<Buffer>) {
            received += chunk.length;
            if (received > opts.maxBytes) {
              discard(response.body);
              throw tooLarge(url, opts.maxBytes, received, Number.isFinite(announced) ? announced : null);
            }
            chunks.push(chunk);
          }
        } catch (error) {
          if (error instanceof OtaError) throw error;
          throw signal.aborted ? abortReasonToError(signal.reason, `GET ${redactUrl(url)}`) : mapNetworkError(error, ctx);
        }
        return { status: response.statusCode, headers, body: Buffer.concat(chunks, received) };
      } finally {
        clearTimeout(timer);
      }
    },

    async stream(url, opts = {}) {
      const response = await leanGet(url, {
        connectTimeoutMs: options.connectTimeoutMs,
        headersTimeoutMs: options.headersTimeoutMs,
        idleTimeoutMs: options.idleTimeoutMs,
        userAgent: options.userAgent,
        ...(ca === undefined ? {} : { ca }),
        maxRedirections,
        ...(opts.headers === undefined ? {} : { headers: opts.headers }),
        signal: opts.signal ?? new AbortController().signal,
      });
      if (response.url !== url) log.debug('redirected', { from: redactUrl(url), to: redactUrl(response.url) });
      return { status: response.status, headers: response.headers, body: response.body, cancel: response.cancel };
    },

    async close() {
      await agent.close();
    },
  };
}

/** Releases a body we will not read; the abort error it then emits is expected, not a crash. */
function discard(body: Dispatcher.ResponseData['body']): void {
  if (body.destroyed) return;
  body.on('error', () => {});
  body.destroy();
}

function tooLarge(url: string, maxBytes: number, receivedBytes: number, announcedBytes: number | null): OtaError {
  return new OtaError(
    'TRUST_LENGTH_MISMATCH',
    `GET ${redactUrl(url)} returned more than the allowed ${maxBytes} bytes` +
      (announcedBytes === null ? '' : ` (announced ${announcedBytes})`) +
      '; reading stopped at the cap',
    { details: { url: redactUrl(url), maxBytes, receivedBytes, announcedBytes, [TOO_LARGE_MARKER]: true } },
  );
}

function flattenHeaders(headers: Dispatcher.ResponseData['headers']): HttpHeaders {
  const flat: HttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    flat[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return flat;
}

/** The extra CA bundle of server.caFile, as PEM; CONFIG_INVALID when unreadable or holding no certificate. */
export function readCaFile(path: string): string {
  try {
    const pem = readFileSync(path, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      throw new OtaError('CONFIG_INVALID', `CA file ${path} holds no PEM certificate; expected one or more "BEGIN CERTIFICATE" blocks`);
    }
    return pem;
  } catch (error) {
    if (error instanceof OtaError) throw error;
    throw new OtaError('CONFIG_INVALID', `cannot read the CA file ${path}: ${(error as Error).message}`, { cause: error });
  }
}

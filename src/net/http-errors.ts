/**
 * Pure mapping from transport failures (Node errno, undici errors, HTTP statuses) to OtaError.
 * Every error that leaves src/net is an OtaError with one of the network codes, so callers and
 * the retry policy decide on `code` and `retryable` alone.
 */
import { OtaError, isOtaError, toErrorData } from '../core/errors.js';
import type { ErrorCode } from '../core/errors.js';

/** Marker in `details` of the error getBuffer throws when a body passes its cap. */
export const TOO_LARGE_MARKER = 'tooLarge';

const TRANSPORT_CODES: Record<string, ErrorCode> = {
  ECONNRESET: 'NETWORK_RESET',
  EPIPE: 'NETWORK_RESET',
  ECONNABORTED: 'NETWORK_RESET',
  UND_ERR_SOCKET: 'NETWORK_RESET', // "other side closed" mid-response
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'NETWORK_RESET', // body shorter than announced
  UND_ERR_CLOSED: 'NETWORK_RESET',
  ECONNREFUSED: 'NETWORK_OFFLINE',
  ENOTFOUND: 'NETWORK_OFFLINE',
  EAI_AGAIN: 'NETWORK_OFFLINE',
  EAI_NONAME: 'NETWORK_OFFLINE',
  ENETUNREACH: 'NETWORK_OFFLINE',
  EHOSTUNREACH: 'NETWORK_OFFLINE',
  ENETDOWN: 'NETWORK_OFFLINE',
  EHOSTDOWN: 'NETWORK_OFFLINE',
  ETIMEDOUT: 'NETWORK_TIMEOUT',
  UND_ERR_CONNECT_TIMEOUT: 'NETWORK_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'NETWORK_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'NETWORK_TIMEOUT',
};

/**
 * TLS verification failures. Retrying at once will not help (a wrong CA, a MITM, a captive
 * portal): they are reported as NETWORK_OFFLINE with retryable=false and details.tls=true.
 */
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|HOSTNAME_MISMATCH)/;

export interface RequestContext {
  url: string;
  method?: string;
}

/** The HTTP status policy: 2xx/3xx pass, 404 is final, 429/5xx retryable, other 4xx final. */
export function errorForStatus(status: number, ctx: RequestContext): OtaError | null {
  if (status < 400) return null;
  const details = { url: redactUrl(ctx.url), status };
  if (status === 404 || status === 410) {
    return new OtaError('HTTP_NOT_FOUND', `GET ${redactUrl(ctx.url)} answered ${status}: the file is not on the server`, { details });
  }
  const retryable = status >= 500 || status === 429 || status === 408;
  return new OtaError(
    'HTTP_STATUS',
    `GET ${redactUrl(ctx.url)} answered HTTP ${status}; expected 2xx${retryable ? ' (server-side trouble, will retry)' : ''}`,
    { details, retryable },
  );
}

/** Finds the first errno-like code on an error or its cause chain (undici nests them). */
export function transportCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current !== null && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (code in TRANSPORT_CODES || TLS_CODE.test(code))) return code;
    // AggregateError from happy-eyeballs connect: take the first inner error.
    const inner = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(inner) && inner.length > 0) {
      const found = transportCode(inner[0]);
      if (found !== undefined) return found;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Turns anything a request threw into an OtaError. An OtaError passes through unchanged (an abort
 * reason we chose, a status error). Unknown failures become NETWORK_RESET: a transport that broke
 * in an unexpected way is worth another attempt, and the retry budget bounds it.
 */
export function mapNetworkError(error: unknown, ctx: RequestContext): OtaError {
  if (isOtaError(error)) return error;
  const url = redactUrl(ctx.url);
  const code = transportCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (code !== undefined && TLS_CODE.test(code)) {
    return new OtaError('NETWORK_OFFLINE', `TLS verification failed for ${url}: ${message} (${code})`, {
      cause: error,
      retryable: false,
      details: { url, tls: true, errno: code },
    });
  }
  const mapped = code === undefined ? undefined : TRANSPORT_CODES[code];
  if (mapped !== undefined) {
    return new OtaError(mapped, `${describe(mapped)} while fetching ${url}: ${message}`, {
      cause: error,
      details: { url, errno: code },
    });
  }
  if (error instanceof Error && error.name === 'AbortError') {
    return new OtaError('CANCELLED', `request for ${url} was cancelled`, { cause: error, details: { url } });
  }
  const data = toErrorData(error);
  if (data.code !== 'INTERNAL') return new OtaError(data.code, data.message, { cause: error, details: { url } });
  return new OtaError('NETWORK_RESET', `transport failed while fetching ${url}: ${message}`, { cause: error, details: { url } });
}

/** Turns the reason of an aborted signal into the error to report: our own reasons keep their code. */
export function abortReasonToError(reason: unknown, what: string): OtaError {
  if (isOtaError(reason)) return reason;
  const message = reason instanceof Error ? reason.message : reason === undefined ? 'aborted' : String(reason);
  return new OtaError('CANCELLED', `${what} was cancelled: ${message}`, { cause: reason });
}

export function isTooLarge(error: unknown): boolean {
  return isOtaError(error) && error.details?.[TOO_LARGE_MARKER] === true;
}

/** URLs may carry credentials (user:pass@, signed query strings): never log or report them. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username !== '' || parsed.password !== '') {
      parsed.username = 'redacted';
      parsed.password = '';
    }
    if (parsed.search !== '') parsed.search = '?…';
    return parsed.toString();
  } catch {
    return '<invalid url>';
  }
}

function describe(code: ErrorCode): string {
  switch (code) {
    case 'NETWORK_RESET':
      return 'connection reset';
    case 'NETWORK_OFFLINE':
      return 'server unreachable';
    case 'NETWORK_TIMEOUT':
      return 'timed out';
    default:
      return code;
  }
}

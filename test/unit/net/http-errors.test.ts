import { describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { abortReasonToError, errorForStatus, mapNetworkError, redactUrl } from '../../../src/net/http-errors.js';

const ctx = { url: 'https://updates.example/targets/pkg.tar.gz' };

function errno(code: string, message = code): Error {
  return Object.assign(new Error(message), { code });
}

describe('errorForStatus', () => {
  it.each([
    [200, null, null],
    [206, null, null],
    [304, null, null],
    [404, 'HTTP_NOT_FOUND', false],
    [410, 'HTTP_NOT_FOUND', false],
    [500, 'HTTP_STATUS', true],
    [503, 'HTTP_STATUS', true],
    [429, 'HTTP_STATUS', true],
    [408, 'HTTP_STATUS', true],
    [403, 'HTTP_STATUS', false],
    [416, 'HTTP_STATUS', false],
  ])('status %i → %s (retryable %s)', (status, code, retryable) => {
    const error = errorForStatus(status, ctx);
    if (code === null) {
      expect(error).toBeNull();
      return;
    }
    expect(error).toMatchObject({ code, retryable, details: { status } });
  });
});

describe('mapNetworkError', () => {
  it.each([
    ['ECONNRESET', 'NETWORK_RESET'],
    ['UND_ERR_SOCKET', 'NETWORK_RESET'],
    ['ECONNREFUSED', 'NETWORK_OFFLINE'],
    ['ENOTFOUND', 'NETWORK_OFFLINE'],
    ['EAI_AGAIN', 'NETWORK_OFFLINE'],
    ['ENETUNREACH', 'NETWORK_OFFLINE'],
    ['UND_ERR_CONNECT_TIMEOUT', 'NETWORK_TIMEOUT'],
    ['UND_ERR_HEADERS_TIMEOUT', 'NETWORK_TIMEOUT'],
    ['UND_ERR_BODY_TIMEOUT', 'NETWORK_TIMEOUT'],
    ['ETIMEDOUT', 'NETWORK_TIMEOUT'],
  ])('%s → %s, retryable', (code, expected) => {
    const error = mapNetworkError(errno(code), ctx);
    expect(error).toMatchObject({ code: expected, retryable: true, details: { errno: code } });
  });

  it('finds the errno in a nested cause and in an AggregateError from happy eyeballs', () => {
    const nested = new Error('fetch failed', { cause: errno('ECONNRESET') });
    expect(mapNetworkError(nested, ctx).code).toBe('NETWORK_RESET');
    const aggregate = Object.assign(new AggregateError([errno('ECONNREFUSED')], 'connect failed'), {});
    expect(mapNetworkError(aggregate, ctx).code).toBe('NETWORK_OFFLINE');
  });

  it('reports TLS verification failures as final, never silently retried', () => {
    const error = mapNetworkError(errno('DEPTH_ZERO_SELF_SIGNED_CERT'), ctx);
    expect(error).toMatchObject({ code: 'NETWORK_OFFLINE', retryable: false, details: { tls: true } });
    expect(mapNetworkError(errno('ERR_TLS_CERT_ALTNAME_INVALID'), ctx).retryable).toBe(false);
  });

  it('passes an OtaError through unchanged', () => {
    const original = new OtaError('NETWORK_TOO_SLOW', 'slow');
    expect(mapNetworkError(original, ctx)).toBe(original);
  });

  it('treats an unknown transport failure as a retryable reset', () => {
    expect(mapNetworkError(new Error('weird'), ctx)).toMatchObject({ code: 'NETWORK_RESET', retryable: true });
  });

  it('maps ENOSPC through the core table', () => {
    expect(mapNetworkError(errno('ENOSPC'), ctx).code).toBe('DISK_FULL');
  });
});

describe('abortReasonToError', () => {
  it('keeps our own OtaError reasons and turns anything else into CANCELLED', () => {
    const slow = new OtaError('NETWORK_TOO_SLOW', 'slow');
    expect(abortReasonToError(slow, 'GET x')).toBe(slow);
    expect(abortReasonToError(new DOMException('aborted', 'AbortError'), 'GET x').code).toBe('CANCELLED');
    expect(abortReasonToError(undefined, 'GET x').code).toBe('CANCELLED');
  });
});

describe('redactUrl', () => {
  it('hides credentials and query strings', () => {
    expect(redactUrl('https://user:secret@host/a?token=abc')).toBe('https://redacted@host/a?%E2%80%A6');
    expect(redactUrl('not a url')).toBe('<invalid url>');
    expect(redactUrl('http://127.0.0.1:8080/x')).toBe('http://127.0.0.1:8080/x');
  });
});

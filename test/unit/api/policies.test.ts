import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { createFixedWindowLimiter } from '../../../src/api/rate-limit.js';
import { hostOf, isAllowedHost, isAllowedOrigin, isSameOrigin } from '../../../src/api/host-check.js';
import { toApiError } from '../../../src/api/http-errors.js';
import { bearerToken, createTokenVerifier, queryHasCredential } from '../../../src/api/tokens.js';

describe('fixed-window rate limiter', () => {
  it('allows max actions per window per key, then refuses with the time left, and resets on the injected clock', () => {
    const clock = new ManualClock(0);
    const l = createFixedWindowLimiter({ windowMs: 60_000, max: 2, clock });
    expect(l.take('a')).toEqual({ ok: true });
    expect(l.take('a')).toEqual({ ok: true });
    clock.advance(10_000);
    expect(l.take('a')).toEqual({ ok: false, retryAfterMs: 50_000 });
    expect(l.take('b')).toEqual({ ok: true });
    clock.advance(50_000);
    expect(l.take('a')).toEqual({ ok: true });
  });

  it('is not fooled by a wall-clock jump backwards (it uses the monotonic clock)', () => {
    const clock = new ManualClock(1_000_000);
    const l = createFixedWindowLimiter({ windowMs: 1000, max: 1, clock });
    l.take('a');
    clock.jumpTo(0);
    expect(l.take('a').ok).toBe(false);
  });
});

describe('Host and Origin checks', () => {
  it('extracts the host of a Host header with and without a port, IPv6 included', () => {
    expect(hostOf('LocalHost:7780')).toBe('localhost');
    expect(hostOf('[::1]:7780')).toBe('[::1]');
    expect(hostOf('127.0.0.1')).toBe('127.0.0.1');
    expect(hostOf(undefined)).toBeNull();
  });
  it('allows only listed hosts; a rebinding name is refused', () => {
    const allowed = ['localhost', '127.0.0.1', '[::1]'];
    expect(isAllowedHost('127.0.0.1:1', allowed)).toBe(true);
    expect(isAllowedHost('[::1]:7780', allowed)).toBe(true);
    expect(isAllowedHost('attacker.example:7780', allowed)).toBe(false);
    expect(isAllowedHost('localhost.attacker.example', allowed)).toBe(false);
    expect(isAllowedHost(undefined, allowed)).toBe(false);
  });
  it('parses Host as an authority: userinfo, paths, bad ports and non-canonical forms are refused, not cut at the first colon', () => {
    for (const bad of ['localhost:80@evil', 'localhost:80@evil.example:80', 'evil@localhost', 'localhost:', 'localhost:x', 'localhost/x', 'localhost?x', 'localhost#x', 'a b', '']) {
      expect(hostOf(bad), bad).toBeNull();
    }
    const allowed = ['localhost', '127.0.0.1', '[::1]'];
    expect(isAllowedHost('localhost:80@evil', allowed)).toBe(false);
    expect(isAllowedHost('127.0.0.1:1@attacker.example', allowed)).toBe(false);
  });
  it('handles IPv6 literals: bracketed with or without a port; unbracketed, unterminated or non-canonical forms refused', () => {
    expect(hostOf('[::1]')).toBe('[::1]');
    expect(hostOf('[::1]:80')).toBe('[::1]');
    expect(hostOf('[::1]:7780')).toBe('[::1]');
    expect(hostOf('[FE80::1]:7780')).toBe('[fe80::1]');
    for (const bad of ['::1', '[::1', '[::1]x', '[::1]:', '[::1]:99999', '[0:0:0:0:0:0:0:1]', '[::1]@evil', '[::ffff:127.0.0.1]']) expect(hostOf(bad), bad).toBeNull();
    expect(isAllowedHost('[::1]:7780', ['[::1]'])).toBe(true);
    expect(isAllowedHost('[::2]:7780', ['[::1]'])).toBe(false);
  });
  it('allows a missing Origin (non-browser), a listed origin, and the same origin', () => {
    expect(isAllowedOrigin(undefined, [])).toBe(true);
    expect(isAllowedOrigin('http://dash.local/', ['http://dash.local'])).toBe(true);
    expect(isAllowedOrigin('http://evil.example', ['http://dash.local'])).toBe(false);
    expect(isSameOrigin('http://127.0.0.1:7780', '127.0.0.1:7780')).toBe(true);
    expect(isSameOrigin('http://127.0.0.1:9999', '127.0.0.1:7780')).toBe(false);
    expect(isSameOrigin('null', '127.0.0.1:7780')).toBe(false);
  });
});

describe('error mapping', () => {
  it('maps each API code to its HTTP status and anything else to a generic 500', () => {
    const cases: Array<[ConstructorParameters<typeof OtaError>[0], number]> = [
      ['API_INVALID_REQUEST', 400],
      ['API_INVALID_EVENT', 400],
      ['API_UNAUTHORIZED', 401],
      ['API_FORBIDDEN', 403],
      ['API_NOT_FOUND', 404],
      ['API_EVENT_NOT_ALLOWED', 409],
      ['API_TOO_LARGE', 413],
      ['API_RATE_LIMITED', 429],
      ['STORE_FAILED', 500],
    ];
    for (const [code, status] of cases) expect(toApiError(new OtaError(code, 'm')).status, code).toBe(status);
    expect(toApiError(new OtaError('PRODUCT_UNKNOWN', 'm', { details: { product: 'x' } })).status).toBe(404);
    expect(toApiError(new OtaError('PRODUCT_UNKNOWN', 'name a product', { details: { known: [] } })).status).toBe(400);
    const internal = toApiError(new Error('secret path /var/lib/ota'));
    expect(internal).toMatchObject({ status: 500, internal: true });
    expect(JSON.stringify(internal.body)).not.toContain('secret');
  });
});

describe('tokens', () => {
  const verifier = createTokenVerifier([
    { name: 'ai', token: 'control-token-0123456789', scope: 'control' },
    { name: 'dash', token: 'read-token-0123456789ab', scope: 'read' },
  ]);

  it('verifies a token to its principal and refuses near misses', () => {
    expect(verifier.verify('control-token-0123456789')).toEqual({ name: 'ai', scope: 'control' });
    expect(verifier.verify('read-token-0123456789ab')).toEqual({ name: 'dash', scope: 'read' });
    expect(verifier.verify('control-token-012345678')).toBeNull();
    expect(verifier.verify('')).toBeNull();
  });

  it('reads only a Bearer credential from the Authorization header', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer a b')).toBeNull();
    expect(bearerToken(undefined)).toBeNull();
  });

  it('finds a credential in a query string by name or by value', () => {
    expect(queryHasCredential({ token: 'x' }, verifier)).toBe(true);
    expect(queryHasCredential({ access_token: 'x' }, verifier)).toBe(true);
    expect(queryHasCredential({ contains: 'read-token-0123456789ab' }, verifier)).toBe(true);
    expect(queryHasCredential({ limit: '5', contains: 'commit' }, verifier)).toBe(false);
  });
});

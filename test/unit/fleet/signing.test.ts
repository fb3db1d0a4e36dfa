import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADER, keyFingerprint, loadOrCreateDeviceKey, signRequest, verifyRequest } from '../../../src/fleet/signing.js';

const now = 1_764_700_000_000;

async function key(name = 'k') {
  const dir = mkdtempSync(path.join(tmpdir(), 'sign-'));
  return { file: path.join(dir, `${name}.pem`), ...(await loadOrCreateDeviceKey(path.join(dir, `${name}.pem`))) };
}

function check(headers: Record<string, string>, overrides: { method?: string; path?: string; body?: string; now?: number } = {}) {
  return verifyRequest({
    method: overrides.method ?? 'POST',
    path: overrides.path ?? '/api/v1/checkin',
    header: (n) => headers[n],
    body: overrides.body ?? '{"a":1}',
    now: overrides.now ?? now,
  });
}

describe('signed device requests', () => {
  it('creates a 0600 key once and loads the same key again', async () => {
    const k = await key();
    expect(k.created).toBe(true);
    expect(statSync(k.file).mode & 0o777).toBe(0o600);
    const again = await loadOrCreateDeviceKey(k.file);
    expect(again.created).toBe(false);
    expect(again.publicKey).toBe(k.publicKey);
    expect(Buffer.from(k.publicKey, 'base64')).toHaveLength(32);
    expect(keyFingerprint(k.publicKey)).toMatch(/^[0-9a-f]{16}$/);
  });

  it('verifies what it signed and names the device and key', async () => {
    const k = await key();
    const headers = signRequest({ method: 'post', path: '/api/v1/checkin', deviceId: 'dev-1', body: '{"a":1}', key: k, now });
    expect(check(headers)).toMatchObject({ deviceId: 'dev-1', publicKey: k.publicKey, timestamp: now });
  });

  it('refuses a changed body, path, method, device id or a different key', async () => {
    const k = await key();
    const other = await key('other');
    const headers = signRequest({ method: 'POST', path: '/api/v1/checkin', deviceId: 'dev-1', body: '{"a":1}', key: k, now });
    expect(() => check(headers, { body: '{"a":2}' })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check(headers, { path: '/api/v1/leases' })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check(headers, { method: 'DELETE' })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check({ ...headers, [HEADER.deviceId]: 'dev-2' })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check({ ...headers, [HEADER.publicKey]: other.publicKey })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check({ ...headers, [HEADER.publicKey]: 'not-a-key' })).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
  });

  it('refuses unsigned requests, missing headers and skewed clocks', async () => {
    const k = await key();
    const headers = signRequest({ method: 'POST', path: '/api/v1/checkin', deviceId: 'dev-1', body: '{"a":1}', key: k, now });
    expect(() => check({})).toThrow(expect.objectContaining({ code: 'DEVICE_AUTH_REQUIRED' }));
    const { [HEADER.nonce]: _n, ...noNonce } = headers;
    expect(() => check(noNonce)).toThrow(expect.objectContaining({ code: 'DEVICE_SIGNATURE_INVALID' }));
    expect(() => check(headers, { now: now + 5 * 60_000 + 1 })).toThrow(expect.objectContaining({ code: 'DEVICE_CLOCK_SKEW' }));
    expect(() => check(headers, { now: now - 5 * 60_000 - 1 })).toThrow(expect.objectContaining({ code: 'DEVICE_CLOCK_SKEW' }));
    expect(check(headers, { now: now + 5 * 60_000 }).deviceId).toBe('dev-1');
  });
});

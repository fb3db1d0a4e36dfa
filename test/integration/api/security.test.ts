/**
 * threats.md, "Local API": every line is a test here (the Socket.IO lines are in socket.test.ts,
 * the 409 and generic-500 lines in rest.test.ts too).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { bearer, CONTROL_TOKEN, READ_TOKEN, startHarness, waitFor, type Harness } from './harness.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness({ fake: { offerVersion: '2.0.0', delayMs: { check: 30_000 } }, extra: { api: { controlRateLimit: { window: '1m', max: 5 }, bodyLimitBytes: 65536 } } });
});
afterAll(async () => h.close());

const api = () => request(h.url);

function everythingLogged(): string {
  const tail = JSON.stringify(h.logging.tail({ limit: 5000 }));
  let audit = '';
  try {
    audit = readFileSync(join(h.dir, 'audit.log'), 'utf8');
  } catch {
    // No audit file yet.
  }
  return tail + audit;
}

describe('threat: no token, a wrong token, a token in the query string → 401, the token never logged', () => {
  it('refuses a request without a token with 401 and a WWW-Authenticate challenge', async () => {
    const res = await api().get('/api/v1/status');
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe('API_UNAUTHORIZED');
    expect(res.headers['www-authenticate']).toContain('Bearer');
  });

  it('refuses a wrong token, and a token of the right length that differs in its last character', async () => {
    for (const token of ['nope', CONTROL_TOKEN.slice(0, -1) + 'X', `${CONTROL_TOKEN} extra`]) {
      const res = await api().get('/api/v1/status').set('Authorization', `Bearer ${token}`);
      expect(res.status, token).toBe(401);
    }
    const basic = await api().get('/api/v1/status').set('Authorization', `Basic ${Buffer.from(`u:${CONTROL_TOKEN}`).toString('base64')}`);
    expect(basic.status).toBe(401);
  });

  it('refuses a token in the query string even when a valid header is present, and never logs it', async () => {
    const urls = [`/api/v1/status?token=${CONTROL_TOKEN}`, `/api/v1/status?access_token=${READ_TOKEN}`, `/api/v1/logs?contains=${CONTROL_TOKEN}`, `/api/v1/health?token=${CONTROL_TOKEN}`, `/metrics?token=${READ_TOKEN}`];
    for (const url of urls) {
      const res = await api().get(url).set(bearer(READ_TOKEN));
      expect(res.status, url).toBe(401);
      expect(res.body.error.code).toBe('API_UNAUTHORIZED');
      expect(JSON.stringify(res.body)).not.toContain(CONTROL_TOKEN);
    }
    const post = await api().post(`/api/v1/events?token=${CONTROL_TOKEN}`).send({ type: 'CHECK_NOW' });
    expect(post.status).toBe(401);
    expect(h.daemon.status().products[0]?.state).toBe('idle');
    const logged = everythingLogged();
    expect(logged).toContain('credential in the query string refused');
    expect(logged).not.toContain(CONTROL_TOKEN);
    expect(logged).not.toContain(READ_TOKEN);
  });

  it('audits refusals as security events (the first of each kind per remote and window at once; the rest are summarised)', async () => {
    await api().get('/api/v1/status').set('Authorization', 'Bearer wrong-token-123456789');
    // The audit file is written asynchronously by its transport.
    await waitFor(() => existsSync(join(h.dir, 'audit.log')) && readFileSync(join(h.dir, 'audit.log'), 'utf8').includes('request with a wrong token refused'), 'the audit entry');
    const audit = readFileSync(join(h.dir, 'audit.log'), 'utf8');
    expect(audit).toContain('api-auth-failure');
    expect(audit).toContain('request with a wrong token refused');
  });
});

describe('threat: a foreign Host header (DNS rebinding) → 403', () => {
  it('refuses a foreign Host on every endpoint, including those that need no token', async () => {
    for (const path of ['/api/v1/status', '/api/v1/health', '/api/v1/openapi.json', '/metrics']) {
      const res = await api().get(path).set('Host', `attacker.example:${h.interfaces.api?.port}`).set(bearer(READ_TOKEN));
      expect(res.status, path).toBe(403);
      expect(res.body.error.code).toBe('API_FORBIDDEN');
    }
  });

  it('refuses a Host that is not a plain authority (localhost:80@evil, a path, an unbracketed IPv6 literal)', async () => {
    for (const host of ['localhost:80@evil', '127.0.0.1:80@attacker.example', 'localhost/x', '::1', '[::1', '[::1]:80@evil']) {
      const res = await api().get('/api/v1/health').set('Host', host);
      expect(res.status, host).toBe(403);
      expect(res.body.error.code).toBe('API_FORBIDDEN');
    }
    expect((await api().get('/api/v1/health').set('Host', '[::1]:7780')).status).toBe(200);
  });

  it('accepts the allowed names with any port', async () => {
    for (const host of ['localhost:1234', '127.0.0.1', `127.0.0.1:${h.interfaces.api?.port}`]) {
      const res = await api().get('/api/v1/health').set('Host', host);
      expect(res.status, host).toBe(200);
    }
  });
});

describe('threat: a 2 MB body → 413', () => {
  const big = JSON.stringify({ type: 'CHECK_NOW', reason: 'x'.repeat(2 * 1024 * 1024) });

  it('refuses a declared 2 MB body with 413 API_TOO_LARGE before reading it', async () => {
    const res = await api().post('/api/v1/events').set(bearer(CONTROL_TOKEN)).set('Content-Type', 'application/json').send(big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('API_TOO_LARGE');
  });

  it('refuses a chunked 2 MB body (no Content-Length) with 413', async () => {
    const url = new URL(h.url);
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { host: url.hostname, port: url.port, path: '/api/v1/events', method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', ...bearer(CONTROL_TOKEN) } },
        (res) => {
          let data = '';
          res.on('data', (c: Buffer) => (data += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
        },
      );
      req.on('error', reject);
      for (let i = 0; i < big.length; i += 65536) req.write(big.slice(i, i + 65536));
      req.end();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body).error.code).toBe('API_TOO_LARGE');
  });
});

describe('threat: a read token on a control endpoint → 403', () => {
  it('refuses every control endpoint to a read token', async () => {
    const calls = [
      api().post('/api/v1/events').set(bearer(READ_TOKEN)).send({ type: 'CHECK_NOW' }),
      api().post('/api/v1/inhibit').set(bearer(READ_TOKEN)).send({ holder: 'x', reason: 'y' }),
      api().delete('/api/v1/inhibit/x').set(bearer(READ_TOKEN)),
      api().post('/api/v1/notifications/ack').set(bearer(READ_TOKEN)).send({ product: 'robot-ai' }),
    ];
    for (const res of await Promise.all(calls)) {
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('API_FORBIDDEN');
    }
    expect(h.daemon.status().products[0]?.state).toBe('idle');
  });
});

describe('threat: a flood of control requests → 429; never two update runs at once', () => {
  it('answers 429 with Retry-After once the window budget is spent, and accepts again after the window', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await api().post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CHECK_NOW' });
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.body.error.code).toBe('API_RATE_LIMITED');
        expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      }
    }
    // One run started; the next four were refused as not allowed now (409); the rest were throttled.
    expect(statuses).toEqual([202, 409, 409, 409, 409, 429, 429, 429]);
    expect(h.daemon.history({ limit: 10 }).length).toBe(1);
    // Reads are not throttled.
    expect((await api().get('/api/v1/status').set(bearer(READ_TOKEN))).status).toBe(200);
    h.clock.advance(61_000);
    const res = await api().post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CANCEL' });
    expect(res.status).toBe(202);
    await waitFor(() => h.daemon.status().products[0]?.state === 'idle', 'cancel');
  });
});

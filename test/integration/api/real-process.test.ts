/**
 * REST v1 against the real `otad` entry point (src/cli/otad.ts, real steps; no update server answers
 * here, so a check fails cleanly, but every interface works), over loopback and the process
 * boundary; and the start-up refusals.
 */
import { chmodSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { spawnOtad } from '../../support/otad-process.js';
import { bearer, CONTROL_TOKEN, READ_TOKEN } from './harness.js';
import { assertMatchesDocument } from './openapi-check.js';
import { makeApiSandbox, startRealOtad, type RealOtad } from './real-otad.js';

let d: RealOtad;
let doc: Record<string, unknown>;
beforeAll(async () => {
  d = await startRealOtad({ entry: 'source', extra: { server: { url: 'http://127.0.0.1:9/', retries: 0, connectTimeout: '1s' } } });
  doc = (await request(d.url).get('/api/v1/openapi.json')).body as Record<string, unknown>;
});
afterAll(async () => d?.stop());

describe('REST v1 on a real otad process', () => {
  it('listens on 127.0.0.1 and records its address in <stateDir>/api.json', () => {
    const a = JSON.parse(readFileSync(join(d.sandbox.stateDir, 'api.json'), 'utf8')) as { host: string; port: number; url: string };
    expect(a.host).toBe('127.0.0.1');
    expect(a.port).toBeGreaterThan(0);
    expect(a.url).toBe(`http://127.0.0.1:${a.port}`);
  });

  it('serves every read endpoint matching the OpenAPI document', async () => {
    const rd = bearer(READ_TOKEN);
    const cases: Array<[string, string]> = [
      ['/api/v1/status', '/status'],
      ['/api/v1/history', '/history'],
      ['/api/v1/transitions?afterSeq=0&limit=10', '/transitions'],
      ['/api/v1/logs?level=info&limit=10', '/logs'],
      ['/api/v1/health', '/health'],
    ];
    for (const [url, template] of cases) {
      const res = await request(d.url).get(url).set(rd);
      expect(res.status, url).toBe(200);
      assertMatchesDocument(doc, template, 'get', 200, res.body);
    }
    const status = await request(d.url).get('/api/v1/status').set(rd);
    expect(status.body.stepsConfigured).toBe(true);
    const metrics = await request(d.url).get('/metrics').set(rd);
    expect(metrics.text).toContain('otad_product_state');
  });

  it('runs a check that fails cleanly without an update server, recorded in history and exportable', async () => {
    const res = await request(d.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CHECK_NOW' });
    expect(res.status).toBe(202);
    assertMatchesDocument(doc, '/events', 'post', 202, res.body);
    let runs: Array<{ outcome: string; error: { code: string } | null }> = [];
    for (let i = 0; i < 800; i++) {
      runs = (await request(d.url).get('/api/v1/history').set(bearer(READ_TOKEN))).body.runs;
      if (runs[0]?.outcome) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(runs[0]).toMatchObject({ outcome: 'failed', error: { code: expect.stringMatching(/^(NETWORK_|TRUST_|HTTP_|CONFIG_)/) } });
    const exp = await request(d.url).get(`/api/v1/runs/${res.body.runId}/export`).set(bearer(READ_TOKEN));
    expect(exp.status).toBe(200);
    assertMatchesDocument(doc, '/runs/{runId}/export', 'get', 200, exp.body);
  });

  it('answers each error code with its status', async () => {
    const ctl = bearer(CONTROL_TOKEN);
    const cases: Array<[() => request.Test, number, string]> = [
      [() => request(d.url).get('/api/v1/status'), 401, 'API_UNAUTHORIZED'],
      [() => request(d.url).get('/api/v1/status').set('Host', 'rebind.example'), 403, 'API_FORBIDDEN'],
      [() => request(d.url).post('/api/v1/events').set(bearer(READ_TOKEN)).send({ type: 'CHECK_NOW' }), 403, 'API_FORBIDDEN'],
      [() => request(d.url).post('/api/v1/events').set(ctl).send({ type: 'REBOOT' }), 400, 'API_INVALID_EVENT'],
      [() => request(d.url).post('/api/v1/events').set(ctl).send({ type: 'UPDATE_NOW' }), 409, 'API_EVENT_NOT_ALLOWED'],
      [() => request(d.url).post('/api/v1/events').set(ctl).send({ product: 'vacuum', type: 'CHECK_NOW' }), 404, 'PRODUCT_UNKNOWN'],
      [() => request(d.url).get('/api/v1/runs/nope/export').set(ctl), 404, 'API_NOT_FOUND'],
      [() => request(d.url).post('/api/v1/events').set(ctl).set('Content-Type', 'application/json').send(JSON.stringify({ type: 'CHECK_NOW', reason: 'x'.repeat(2_000_000) })), 413, 'API_TOO_LARGE'],
    ];
    for (const [call, status, code] of cases) {
      const res = await call();
      expect(res.status, code).toBe(status);
      expect(res.body.error.code).toBe(code);
    }
    expect(readFileSync(d.sandbox.logPath, 'utf8')).not.toContain(CONTROL_TOKEN);
  });
});

describe('otad refuses to start with an unsafe tokens file', () => {
  it('exits 78 (EX_CONFIG) with a message naming the file and the fix when group or other can read it', async () => {
    const sandbox = makeApiSandbox();
    chmodSync(sandbox.tokensFile, 0o644);
    const proc = spawnOtad(sandbox, { entry: 'source' });
    const { code } = await proc.exited;
    expect(code).toBe(78);
    const log = readFileSync(sandbox.logPath, 'utf8');
    expect(log).toContain(`API tokens file ${sandbox.tokensFile} has mode 0644`);
    expect(log).toContain('chmod 600');
    expect(existsSync(join(sandbox.stateDir, 'api.json'))).toBe(false);
    rmSync(sandbox.dir, { recursive: true, force: true });
  });
});

describe('otad without a tokens file', () => {
  it('keeps running its products with the REST API off, and says how to fix it', async () => {
    const sandbox = makeApiSandbox();
    rmSync(sandbox.tokensFile);
    const proc = spawnOtad(sandbox, { entry: 'source' });
    await proc.ready();
    const log = readFileSync(sandbox.logPath, 'utf8');
    expect(log).toContain('the REST API and Socket.IO stay off: there is no API tokens file');
    expect(log).toContain(sandbox.tokensFile);
    expect(existsSync(join(sandbox.stateDir, 'api.json'))).toBe(false);
    const { code } = await proc.kill('SIGTERM');
    expect(code).toBe(0);
    rmSync(sandbox.dir, { recursive: true, force: true });
  });
});

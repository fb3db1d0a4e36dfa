import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { bearer, CONTROL_TOKEN, READ_TOKEN, startHarness, waitFor, type Harness } from './harness.js';
import { assertMatchesDocument } from './openapi-check.js';
import { createAuthFailureGuard } from '../../../src/api/auth-failures.js';
import { createRestApp } from '../../../src/api/rest.js';
import { createEdge } from '../../../src/api/edge.js';
import { createFixedWindowLimiter } from '../../../src/api/rate-limit.js';
import { createTokenVerifier } from '../../../src/api/tokens.js';
import { createMetrics } from '../../../src/api/metrics.js';
import type { DaemonControl } from '../../../src/daemon/control.js';

let h: Harness;
let doc: Record<string, unknown>;

beforeAll(async () => {
  h = await startHarness({ fake: { offerVersion: '2.0.0', delayMs: { check: 50 } }, extra: { api: { controlRateLimit: { window: '1m', max: 1000 } } } });
  doc = (await request(h.url).get('/api/v1/openapi.json')).body as Record<string, unknown>;
});
afterAll(async () => h.close());

const api = () => request(h.url);
const ctl = bearer(CONTROL_TOKEN);
const rd = bearer(READ_TOKEN);

async function settle(state: string): Promise<void> {
  await waitFor(() => h.daemon.status().products[0]?.state === state, `robot-ai to reach ${state}`);
}

describe('REST v1: reading state', () => {
  it('serves the status with a read token, matching the OpenAPI document', async () => {
    const res = await api().get('/api/v1/status').set(rd);
    expect(res.status).toBe(200);
    expect(res.body.deviceId).toBe('robot-0001');
    expect(res.body.products[0].product).toBe('robot-ai');
    expect(res.body.products[0].allowedEvents).toContain('CHECK_NOW');
    assertMatchesDocument(doc, '/status', 'get', 200, res.body);
  });

  it('serves health without a token, matching the document', async () => {
    const res = await api().get('/api/v1/health');
    expect(res.status).toBe(200);
    expect(res.body.ok).toBe(true);
    assertMatchesDocument(doc, '/health', 'get', 200, res.body);
  });

  it('serves an OpenAPI 3.1 document that lists every endpoint', async () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths as object).sort()).toEqual(
      ['/events', '/health', '/history', '/inhibit', '/inhibit/{holder}', '/inhibit/{holder}/heartbeat', '/logs', '/notifications/ack', '/products', '/products/{product}/maintenance', '/products/{product}/rehearse', '/products/{product}/releases', '/products/{product}/releases/{version}/bad', '/products/{product}/source', '/repositories', '/robot-state', '/runs/{runId}/export', '/status', '/transitions'].sort(),
    );
  });

  it('answers an unknown endpoint with 404 API_NOT_FOUND in the one error shape', async () => {
    const res = await api().get('/api/v1/nothing-here').set(rd);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('API_NOT_FOUND');
  });

  it('refuses a query parameter outside its bounds with 400 API_INVALID_REQUEST', async () => {
    for (const q of ['limit=0', 'limit=abc', 'afterSeq=-1', 'bogus=1']) {
      const res = await api().get(`/api/v1/transitions?${q}`).set(rd);
      expect(res.status, q).toBe(400);
      expect(res.body.error.code).toBe('API_INVALID_REQUEST');
      assertMatchesDocument(doc, '/transitions', 'get', 400, res.body);
    }
  });
});

describe('REST v1: a whole run driven through the API', () => {
  it('checks, takes the UPDATE_NOW choice, commits, and shows it in history, transitions, logs, export and metrics', async () => {
    const check = await api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' });
    expect(check.status).toBe(202);
    expect(check.body).toMatchObject({ product: 'robot-ai', event: 'CHECK_NOW', state: 'checking' });
    assertMatchesDocument(doc, '/events', 'post', 202, check.body);
    const runId = check.body.runId as string;
    await settle('awaitingChoice');

    const status = await api().get('/api/v1/status').set(rd);
    expect(status.body.products[0].offeredVersion).toBe('2.0.0');
    expect(status.body.products[0].releaseNotes).toContain('2.0.0');
    assertMatchesDocument(doc, '/status', 'get', 200, status.body);

    const now = await api().post('/api/v1/events').set(ctl).send({ product: 'robot-ai', type: 'UPDATE_NOW', reason: 'operator asked' });
    expect(now.status).toBe(202);
    await waitFor(() => h.daemon.status().products[0]?.lastOutcome === 'committed', 'the run to commit');

    const history = await api().get('/api/v1/history?product=robot-ai&limit=5').set(rd);
    expect(history.status).toBe(200);
    expect(history.body.runs[0]).toMatchObject({ runId, outcome: 'committed', toVersion: '2.0.0' });
    assertMatchesDocument(doc, '/history', 'get', 200, history.body);

    const page1 = await api().get('/api/v1/transitions?limit=2').set(rd);
    expect(page1.status).toBe(200);
    expect(page1.body.transitions).toHaveLength(2);
    assertMatchesDocument(doc, '/transitions', 'get', 200, page1.body);
    const page2 = await api().get(`/api/v1/transitions?afterSeq=${page1.body.nextAfterSeq}&limit=1000`).set(rd);
    expect(page2.body.transitions[0].seq).toBeGreaterThan(page1.body.nextAfterSeq);
    const tos = [...page1.body.transitions, ...page2.body.transitions].map((t: { to: string }) => t.to);
    expect(tos).toEqual(expect.arrayContaining(['checking', 'awaitingChoice', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']));
    const byRun = await api().get(`/api/v1/transitions?runId=${runId}`).set(rd);
    expect(byRun.body.transitions.every((t: { runId: string }) => t.runId === runId)).toBe(true);

    const logs = await api().get('/api/v1/logs?level=info&contains=commit&limit=5').set(rd);
    expect(logs.status).toBe(200);
    expect(logs.body.lines.length).toBeGreaterThan(0);
    expect(logs.body.lines.length).toBeLessThanOrEqual(5);
    expect(logs.body.lines.every((l: { message: string; level: string }) => l.message.includes('commit') && l.level !== 'debug')).toBe(true);
    assertMatchesDocument(doc, '/logs', 'get', 200, logs.body);
    // By product: only lines about robot-ai; '-': otad's own lines about no product.
    const mine = await api().get('/api/v1/logs?product=robot-ai&limit=50').set(rd);
    expect(mine.body.lines.length).toBeGreaterThan(0);
    expect(mine.body.lines.every((l: { fields: { product?: string } }) => l.fields.product === 'robot-ai')).toBe(true);
    const own = await api().get('/api/v1/logs?product=-&limit=50').set(rd);
    expect(own.body.lines.length).toBeGreaterThan(0);
    expect(own.body.lines.every((l: { fields: { product?: string } }) => l.fields.product === undefined)).toBe(true);
    expect((await api().get('/api/v1/logs?product=nothing-like-it').set(rd)).body.lines).toEqual([]);

    const exp = await api().get(`/api/v1/runs/${runId}/export`).set(rd);
    expect(exp.status).toBe(200);
    expect(exp.body.format).toBe('otad-run/1');
    expect(exp.body.transitions.at(-1).to).toBe('idle');
    assertMatchesDocument(doc, '/runs/{runId}/export', 'get', 200, exp.body);

    const metrics = await api().get('/metrics').set(rd);
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('otad_product_state{product="robot-ai",state="idle"} 1');
    expect(metrics.text).toMatch(/otad_transitions_total\{product="robot-ai",from="apply",to="validate"\} 1/);
    expect(metrics.text).toMatch(/otad_run_duration_seconds_count\{product="robot-ai",outcome="committed"\} 1/);
    expect(metrics.text).toMatch(/otad_last_successful_check_timestamp_seconds\{product="robot-ai"\} \d+/);
  });

  it('answers an export of an unknown run with 404 API_NOT_FOUND', async () => {
    const res = await api().get('/api/v1/runs/no-such-run/export').set(rd);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('API_NOT_FOUND');
    assertMatchesDocument(doc, '/runs/{runId}/export', 'get', 404, res.body);
  });
});

describe('REST v1: control endpoints', () => {
  afterEach(async () => {
    if (h.daemon.status().products[0]?.state !== 'idle') {
      await api().post('/api/v1/events').set(ctl).send({ type: 'CANCEL' });
      await settle('idle');
    }
  });

  it('refuses an event that is not allowed now with 409 and the current state', async () => {
    const res = await api().post('/api/v1/events').set(ctl).send({ type: 'UPDATE_NOW' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('API_EVENT_NOT_ALLOWED');
    expect(res.body.error.details.state).toBe('idle');
    expect(res.body.error.details.allowed).toContain('CHECK_NOW');
    assertMatchesDocument(doc, '/events', 'post', 409, res.body);
  });

  it('refuses anything that is not an allow-listed event with 400 API_INVALID_EVENT naming the two choices', async () => {
    for (const type of ['DROP_TABLES', 'TICK', 'DETECTED', 'CONFIGURE', 'update_now', 'xstate.done.actor.0.update.checking']) {
      const res = await api().post('/api/v1/events').set(ctl).send({ type });
      expect(res.status, type).toBe(400);
      expect(res.body.error.code).toBe('API_INVALID_EVENT');
      expect(res.body.error.details.choices).toEqual(['UPDATE_NOW', 'SCHEDULE_3AM']);
      assertMatchesDocument(doc, '/events', 'post', 400, res.body);
    }
    expect(h.daemon.status().products[0]?.state).toBe('idle');
  });

  it('refuses a malformed body with 400: not JSON, extra fields, missing type', async () => {
    const notJson = await api().post('/api/v1/events').set(ctl).set('Content-Type', 'application/json').send('{"type":');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('API_INVALID_REQUEST');
    const extra = await api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW', now: 0 });
    expect(extra.status).toBe(400);
    const missing = await api().post('/api/v1/events').set(ctl).send({ product: 'robot-ai' });
    expect(missing.status).toBe(400);
    const text = await api().post('/api/v1/events').set(ctl).set('Content-Type', 'text/plain').send('CHECK_NOW');
    expect(text.status).toBe(400);
  });

  it('answers an unknown product with 404 PRODUCT_UNKNOWN', async () => {
    const res = await api().post('/api/v1/events').set(ctl).send({ product: 'vacuum', type: 'CHECK_NOW' });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('PRODUCT_UNKNOWN');
    assertMatchesDocument(doc, '/events', 'post', 404, res.body);
  });

  it('never starts two update runs at once: of two simultaneous CHECK_NOW, one is accepted and one refused with 409', async () => {
    const [a, b] = await Promise.all([
      api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' }),
      api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' }),
    ]);
    expect([a.status, b.status].sort()).toEqual([202, 409]);
    const refused = a.status === 409 ? a : b;
    expect(refused.body.error.details.state).toBe('checking');
    await settle('awaitingChoice');
    const again = await api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' });
    expect(again.status).toBe(409);
  });

  it('schedules for 3 AM through SCHEDULE_3AM and cancels', async () => {
    await api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' });
    await settle('awaitingChoice');
    const res = await api().post('/api/v1/events').set(ctl).send({ type: 'SCHEDULE_3AM' });
    expect(res.status).toBe(202);
    expect(res.body.state).toBe('scheduled');
    const status = await api().get('/api/v1/status').set(rd);
    expect(status.body.products[0].deadlines.scheduledAt).toBeGreaterThan(h.clock.now());
  });

  it('holds and releases an inhibit, and says 404 for a holder that holds none', async () => {
    const hold = await api().post('/api/v1/inhibit').set(ctl).send({ holder: 'robot-ai.mission', reason: 'delivering a parcel', durationMs: 60_000 });
    expect(hold.status).toBe(201);
    expect(hold.body).toMatchObject({ holder: 'robot-ai.mission', expiresAt: h.clock.now() + 60_000 });
    assertMatchesDocument(doc, '/inhibit', 'post', 201, hold.body);
    const status = await api().get('/api/v1/status').set(rd);
    expect(status.body.inhibits.map((i: { holder: string }) => i.holder)).toContain('robot-ai.mission');
    const rel = await api().delete('/api/v1/inhibit/robot-ai.mission').set(ctl);
    expect(rel.status).toBe(200);
    assertMatchesDocument(doc, '/inhibit/{holder}', 'delete', 200, rel.body);
    const again = await api().delete('/api/v1/inhibit/robot-ai.mission').set(ctl);
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe('API_NOT_FOUND');
    const bad = await api().post('/api/v1/inhibit').set(ctl).send({ holder: 'has spaces', reason: 'x' });
    expect(bad.status).toBe(400);
    const audit = h.daemon.audit(50).map((a) => a.message);
    expect(audit.some((m) => m.includes('inhibit held by robot-ai.mission'))).toBe(true);
    expect(audit.some((m) => m.includes('inhibit released by robot-ai.mission'))).toBe(true);
  });

  it('acknowledges release notifications, and 404 for an unknown product', async () => {
    const ack = await api().post('/api/v1/notifications/ack').set(ctl).send({ product: 'robot-ai', version: '2.0.0' });
    expect(ack.status).toBe(200);
    expect(typeof ack.body.acknowledged).toBe('number');
    assertMatchesDocument(doc, '/notifications/ack', 'post', 200, ack.body);
    const unknown = await api().post('/api/v1/notifications/ack').set(ctl).send({ product: 'vacuum' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('PRODUCT_UNKNOWN');
  });

  it('refuses a rehearsal where there are no real steps (409 REHEARSAL_UNAVAILABLE), a read token, and an unknown product', async () => {
    const res = await api().post('/api/v1/products/robot-ai/rehearse').set(ctl);
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('REHEARSAL_UNAVAILABLE');
    assertMatchesDocument(doc, '/products/{product}/rehearse', 'post', 409, res.body);
    expect((await api().post('/api/v1/products/robot-ai/rehearse').set(rd)).status).toBe(403);
    const unknown = await api().post('/api/v1/products/vacuum/rehearse').set(ctl);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('PRODUCT_UNKNOWN');
  });

  it('audits every accepted control action with the token name as the actor', async () => {
    await api().post('/api/v1/events').set(ctl).send({ type: 'CHECK_NOW' });
    const audit = h.daemon.audit(20);
    expect(audit.some((a) => a.kind === 'api-control' && a.actor === 'robot-ai' && a.message.startsWith('CHECK_NOW for robot-ai from rest'))).toBe(true);
  });
});

describe('REST v1: a handler that throws', () => {
  it('answers a generic 500 without internals, and the daemon keeps serving', async () => {
    const d = h.daemon;
    const broken: DaemonControl = {
      status: () => {
        throw new Error('secret internal detail /var/lib/ota/otad.db');
      },
      dispatch: (r) => d.dispatch(r),
      history: (q) => d.history(q),
      downtimeSummary: (p) => d.downtimeSummary(p),
      transitions: (q) => d.transitions(q),
      transitionRange: () => d.transitionRange(),
      logs: (q) => d.logs(q),
      audit: (l) => d.audit(l),
      releases: (p) => d.releases(p),
      releaseHistory: (p) => d.releaseHistory(p),
      unmarkRelease: (r) => d.unmarkRelease(r),
      acknowledge: (...a) => d.acknowledge(...a),
      holdInhibit: (r) => d.holdInhibit(r),
      releaseInhibit: (...a) => d.releaseInhibit(...a),
      renewInhibit: (...a) => d.renewInhibit(...a),
      holdFdInhibit: (r) => d.holdFdInhibit(r),
      heldInhibits: () => d.heldInhibits(),
      answerMaintenance: (r) => d.answerMaintenance(r),
      exportRun: (id) => d.exportRun(id),
      productDefinitions: () => d.productDefinitions(),
      repositories: () => d.repositories(),
      productSource: (p) => d.productSource(p),
      selectSource: (r) => d.selectSource(r),
      rehearse: (r) => d.rehearse(r),
      health: () => d.health(),
      bus: d.bus,
    };
    const tokens = createTokenVerifier([{ name: 'ops', token: READ_TOKEN, scope: 'read' }]);
    const app = createRestApp({
      control: broken,
      edge: createEdge({ control: broken, limiter: createFixedWindowLimiter({ windowMs: 1000, max: 10, clock: h.clock }), audit: h.logging.audit }),
      tokens,
      allowedHosts: ['127.0.0.1'],
      bodyLimitBytes: 65536,
      metrics: createMetrics(d),
      logger: h.logging.logger,
      audit: h.logging.audit,
      authFailures: createAuthFailureGuard({ audit: h.logging.audit, windowMs: 60_000, max: 20 }),
    });
    const res = await request(app).get('/api/v1/status').set('Host', '127.0.0.1').set(rd);
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('INTERNAL');
    expect(JSON.stringify(res.body)).not.toContain('secret');
    expect(res.text).not.toContain('otad.db');
    assertMatchesDocument(doc, '/status', 'get', 500, res.body);
    expect(h.logging.tail({ contains: 'generic 500' }).length).toBeGreaterThan(0);
    const after = await request(app).get('/api/v1/health').set('Host', '127.0.0.1');
    expect(after.status).toBe(200);
    expect((await api().get('/api/v1/status').set(rd)).status).toBe(200);
  });
});

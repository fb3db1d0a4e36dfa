import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import request from 'supertest';
import { bearer, CONTROL_TOKEN, READ_TOKEN, startHarness, waitFor, type Harness } from './harness.js';
import type { Envelope, EventAck } from '../../../src/api/socket.js';

let h: Harness;
const open: Socket[] = [];

beforeAll(async () => {
  h = await startHarness({
    fake: { offerVersion: '2.0.0', delayMs: { check: 100, backup: 100 } },
    extra: { api: { allowedOrigins: ['http://dashboard.robot.local'], controlRateLimit: { window: '1m', max: 1000 } } },
  });
});
afterAll(async () => {
  for (const s of open) s.disconnect();
  await h.close();
});

function client(auth: Record<string, unknown>, opts: { origin?: string; query?: Record<string, string>; transports?: string[] } = {}): Socket {
  const s = connect(h.url, {
    path: '/socket.io',
    auth,
    reconnection: false,
    transports: (opts.transports ?? ['websocket']) as never,
    ...(opts.origin ? { extraHeaders: { Origin: opts.origin } } : {}),
    ...(opts.query ? { query: opts.query } : {}),
  });
  open.push(s);
  return s;
}

function outcome(s: Socket): Promise<{ ok: true } | { ok: false; message: string; data: unknown }> {
  return new Promise((resolve) => {
    s.once('connect', () => resolve({ ok: true }));
    s.once('connect_error', (e: Error & { data?: unknown }) => resolve({ ok: false, message: e.message, data: e.data }));
  });
}

function collect(s: Socket): Envelope[] {
  const got: Envelope[] = [];
  s.on('message', (m: Envelope) => got.push(m));
  return got;
}

const emitEvent = (s: Socket, body: unknown) => s.emitWithAck('event', body) as Promise<EventAck>;
const state = () => h.daemon.status().products[0]?.state;

describe('Socket.IO: handshake', () => {
  it('accepts a valid token in the handshake auth', async () => {
    expect(await outcome(client({ token: READ_TOKEN }))).toEqual({ ok: true });
  });

  it('refuses a missing or wrong token with API_UNAUTHORIZED', async () => {
    for (const auth of [{}, { token: 'wrong-token-0123456789' }, { token: CONTROL_TOKEN.slice(0, -1) }]) {
      const r = await outcome(client(auth));
      expect(r.ok).toBe(false);
      expect(r).toMatchObject({ data: { code: 'API_UNAUTHORIZED' } });
    }
  });

  it('refuses a token in the query string', async () => {
    const r = await outcome(client({ token: CONTROL_TOKEN }, { query: { token: CONTROL_TOKEN } }));
    expect(r.ok).toBe(false);
  });

  it('refuses a valid token under an ordinary query parameter (io(url, { auth: { token }, query: { x: token } })), on both transports', async () => {
    for (const transports of [['websocket'], ['polling']]) {
      for (const query of [{ x: CONTROL_TOKEN }, { x: READ_TOKEN }, { lastSeq: '0', q: `Bearer ${CONTROL_TOKEN}` }, { auth: 'anything' }] as Array<Record<string, string>>) {
        const r = await outcome(client({ token: CONTROL_TOKEN }, { query, transports }));
        expect(r.ok, `${transports[0]} ${JSON.stringify(Object.keys(query))}`).toBe(false);
        expect(r).toMatchObject({ data: { code: 'API_UNAUTHORIZED' } });
      }
    }
    // An ordinary query value still connects: only credential-shaped values are refused.
    expect(await outcome(client({ token: READ_TOKEN }, { query: { x: 'dashboard-v2' } }))).toEqual({ ok: true });
    await waitFor(() => existsSync(join(h.dir, 'audit.log')) && readFileSync(join(h.dir, 'audit.log'), 'utf8').includes('credentials are never accepted in the query string'), 'the audit entry');
    const audit = readFileSync(join(h.dir, 'audit.log'), 'utf8');
    expect(audit).not.toContain(CONTROL_TOKEN);
  });

  it('refuses a foreign Origin before the handshake completes, on both transports', async () => {
    for (const transports of [['websocket'], ['polling']]) {
      const r = await outcome(client({ token: CONTROL_TOKEN }, { origin: 'http://attacker.example', transports }));
      expect(r.ok, transports[0]).toBe(false);
    }
    // The audit file is written asynchronously by its transport.
    await waitFor(() => existsSync(join(h.dir, 'audit.log')) && readFileSync(join(h.dir, 'audit.log'), 'utf8').includes('Socket.IO handshake from a foreign Origin refused'), 'the audit entry');
  });

  it('accepts a listed Origin and the daemon\'s own origin', async () => {
    expect(await outcome(client({ token: READ_TOKEN }, { origin: 'http://dashboard.robot.local' }))).toEqual({ ok: true });
    expect(await outcome(client({ token: READ_TOKEN }, { origin: h.url }))).toEqual({ ok: true });
  });
});

describe('Socket.IO: the stream during a run', () => {
  it('streams transitions, progress, notifications and log lines in the versioned envelope, and accepts events with an ack', async () => {
    const s = client({ token: CONTROL_TOKEN });
    await outcome(s);
    const got = collect(s);

    const ack = await emitEvent(s, { type: 'CHECK_NOW' });
    expect(ack).toMatchObject({ ok: true, result: { product: 'robot-ai', event: 'CHECK_NOW', state: 'checking' } });
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    expect((await emitEvent(s, { product: 'robot-ai', type: 'UPDATE_NOW' })).ok).toBe(true);
    await waitFor(() => state() === 'backup', 'backup');
    h.daemon.bus.publish('progress', { product: 'robot-ai', runId: 'r', step: 'stage', bytes: 2048, total: 4096, rateBps: 1000, etaMs: 2000 });
    await waitFor(() => h.daemon.status().products[0]?.lastOutcome === 'committed', 'commit');
    await waitFor(() => got.some((m) => m.type === 'transition' && (m.payload as { from: string }).from === 'commit'), 'the last transition on the socket');
    // Notifications travel beside transitions, not behind them: wait for the run's last one too.
    await waitFor(() => got.some((m) => m.type === 'notification' && (m.payload as { kind: string }).kind === 'run-ended'), 'the run-ended notification');

    for (const m of got) {
      expect(m.v).toBe(1);
      expect(['transition', 'progress', 'notification', 'log']).toContain(m.type);
      expect(typeof m.time).toBe('number');
      expect(Number.isInteger(m.seq)).toBe(true);
    }
    const transitions = got.filter((m) => m.type === 'transition').map((m) => (m.payload as { to: string }).to);
    expect(transitions).toEqual(['checking', 'awaitingChoice', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']);
    const seqs = got.filter((m) => m.type === 'transition').map((m) => m.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    expect(got.find((m) => m.type === 'progress')?.payload).toMatchObject({ step: 'stage', bytes: 2048, total: 4096 });
    const kinds = got.filter((m) => m.type === 'notification').map((m) => (m.payload as { kind: string }).kind);
    expect(kinds).toEqual(expect.arrayContaining(['update-available', 'committed', 'run-ended']));
    expect(got.some((m) => m.type === 'log' && (m.payload as { message: string }).message.startsWith('awaitingChoice → preCheck: '))).toBe(true);
    expect(got.filter((m) => m.type === 'transition').every((m) => typeof (m.payload as { cause?: unknown }).cause === 'string')).toBe(true);
  });

  it('acknowledges refusals with the same codes as REST: invalid event, not allowed now, read scope', async () => {
    const ctl = client({ token: CONTROL_TOKEN });
    await outcome(ctl);
    const invalid = await emitEvent(ctl, { type: 'TICK' });
    expect(invalid).toMatchObject({ ok: false, error: { code: 'API_INVALID_EVENT', details: { choices: ['UPDATE_NOW', 'SCHEDULE_3AM'] } } });
    const notNow = await emitEvent(ctl, { type: 'UPDATE_NOW' });
    expect(notNow).toMatchObject({ ok: false, error: { code: 'API_EVENT_NOT_ALLOWED', details: { state: 'idle' } } });
    const junk = await emitEvent(ctl, 'CHECK_NOW');
    expect(junk).toMatchObject({ ok: false, error: { code: 'API_INVALID_REQUEST' } });
    const rd = client({ token: READ_TOKEN });
    await outcome(rd);
    expect(await emitEvent(rd, { type: 'CHECK_NOW' })).toMatchObject({ ok: false, error: { code: 'API_FORBIDDEN' } });
    expect(state()).toBe('idle');
  });

  it('streams only the topics a client asks for', async () => {
    const s = client({ token: READ_TOKEN, topics: ['transition'] });
    await outcome(s);
    const got = collect(s);
    h.daemon.bus.publish('progress', { product: 'robot-ai', runId: 'r', step: 'stage', bytes: 1, total: null, rateBps: null, etaMs: null });
    await request(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CHECK_NOW' });
    await waitFor(() => got.length >= 2, 'two transitions');
    expect(got.every((m) => m.type === 'transition')).toBe(true);
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    await request(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CANCEL' });
    await waitFor(() => state() === 'idle', 'idle');
  });
});

describe('Socket.IO: resume after reconnect', () => {
  it('sends a reconnecting client the transitions it missed, from the database, then live ones, without gap or duplicate', async () => {
    const first = client({ token: READ_TOKEN, topics: ['transition'] });
    await outcome(first);
    const seen = collect(first);
    await request(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CHECK_NOW' });
    await waitFor(() => seen.length >= 1, 'checking on the first connection');
    const lastSeq = (seen.at(-1) as Envelope).seq;
    first.disconnect();

    // Missed while disconnected: checking → awaitingChoice → scheduled.
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    await request(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'SCHEDULE_3AM' });
    const missed = h.daemon.transitions({ afterSeq: lastSeq, limit: 100 }).map((t) => t.seq);
    expect(missed.length).toBe(2);

    const again = client({ token: READ_TOKEN, topics: ['transition'], lastSeq });
    const got = collect(again);
    await outcome(again);
    await waitFor(() => got.length >= 2, 'the missed transitions');
    await request(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type: 'CANCEL' });
    await waitFor(() => got.length >= 3, 'the live transition');
    await new Promise((r) => setTimeout(r, 50));
    expect(got.map((m) => m.seq)).toEqual([...missed, missed.at(-1)! + 1]);
    expect(got.map((m) => (m.payload as { to: string }).to)).toEqual(['awaitingChoice', 'scheduled', 'idle']);
  });
});

describe('threat: a 2 MB socket message → disconnect', () => {
  it('disconnects a client that sends a message above the size cap, and the daemon keeps serving', async () => {
    const s = client({ token: CONTROL_TOKEN });
    await outcome(s);
    const closed = new Promise<string>((resolve) => s.once('disconnect', (reason) => resolve(reason)));
    s.emit('event', { type: 'CHECK_NOW', reason: 'x'.repeat(2 * 1024 * 1024) });
    expect(await closed).toMatch(/transport (close|error)/);
    expect(state()).toBe('idle');
    expect((await request(h.url).get('/api/v1/health')).status).toBe(200);
  });
});

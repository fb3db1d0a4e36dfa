/**
 * Retention seen from outside: a spawned otad (fake steps, real store and API) configured to keep
 * two runs, driven over REST through many check cycles; the database stays bounded, and a
 * Socket.IO client resuming behind what was pruned is told to resync, while one resuming inside the
 * retained history gets exactly what it missed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as connect, type Socket } from 'socket.io-client';
import { startRealOtad, type RealOtad } from './real-otad.js';
import { CONTROL_TOKEN, READ_TOKEN, waitFor } from './harness.js';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { query, REPO_ROOT } from '../../support/otad-process.js';
import type { Envelope, ResyncEnvelope } from '../../../src/api/socket.js';
import { startHarness, type Harness } from './harness.js';
import { MAX_REPLAY } from '../../../src/api/socket.js';

let d: RealOtad;
const open: Socket[] = [];

beforeAll(async () => {
  d = await startRealOtad({ fake: { offerVersion: null }, extra: { history: { keepRuns: 2, maxAge: '30d' }, api: { controlRateLimit: { window: '1m', max: 1000 } } } });
});
afterAll(async () => {
  for (const s of open) s.disconnect();
  await d?.stop();
});

async function api(method: 'GET' | 'POST', path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${d.url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${method === 'GET' ? READ_TOKEN : CONTROL_TOKEN}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return res.json();
}

/** Connects with `lastSeq` and collects what arrives until `until` says enough. */
async function resume(url: string, lastSeq: number, until: (got: Array<Envelope | ResyncEnvelope>) => boolean): Promise<Array<Envelope | ResyncEnvelope>> {
  const got: Array<Envelope | ResyncEnvelope> = [];
  const s = connect(url, { path: '/socket.io', auth: { token: READ_TOKEN, lastSeq, topics: ['transition'] }, reconnection: false, transports: ['websocket'] });
  open.push(s);
  s.on('message', (m: Envelope | ResyncEnvelope) => got.push(m));
  await waitFor(() => until(got), `messages after seq ${lastSeq}`, 10_000);
  s.disconnect();
  return got;
}

describe('history retention through a running otad', () => {
  it('keeps two finished runs however many checks run, and a client resuming behind them is told to resync', async () => {
    for (let i = 0; i < 8; i++) {
      // 202 means the machine already moved to checking: idle again means this check ended.
      expect((await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' })).state).toBe('checking');
      await waitFor(() => query<{ state: string }>(d.sandbox.dbPath, 'SELECT state FROM snapshots')[0]?.state === 'idle', 'the check to end');
    }
    const runs = (await api('GET', '/api/v1/history?limit=100')).runs as Array<{ outcome: string }>;
    expect(runs).toHaveLength(2);
    expect(runs.every((r) => r.outcome === 'up-to-date')).toBe(true);
    const rows = query<{ n: number }>(d.sandbox.dbPath, 'SELECT COUNT(*) AS n FROM transitions')[0]?.n as number;
    // Two runs of idle → checking → idle, and at most the start's transition.
    expect(rows).toBeLessThanOrEqual(5);

    const { transitions } = (await api('GET', '/api/v1/transitions?afterSeq=0&limit=100')) as { transitions: Array<{ seq: number; to: string }> };
    const latest = transitions.at(-1)?.seq as number;
    expect(latest).toBeGreaterThanOrEqual(16);

    // Behind the pruned history: one resync naming the latest seq, no partial replay.
    const behind = await resume(d.url, 1, (got) => got.length > 0);
    expect(behind).toEqual([{ v: 1, type: 'resync', time: expect.any(Number), seq: latest, payload: { reason: 'pruned', lastSeq: 1, oldestSeq: transitions[0]?.seq, latestSeq: latest } }]);

    // Inside the retained history: exactly the transitions after it, in order, no resync.
    const inside = await resume(d.url, latest - 2, (got) => got.length >= 2);
    expect(inside.map((m) => [m.type, m.seq])).toEqual([
      ['transition', latest - 1],
      ['transition', latest],
    ]);

    // otactl watch says so and carries on from the latest seq.
    const watch = spawn(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), '--config', d.sandbox.configPath, 'watch', '--since-seq', '1', '--until', 'checking', '--timeout', '30s'], {
      env: { ...process.env, OTA_TOKEN_FILE: d.tokensFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    watch.stdout.on('data', (c: Buffer) => (out += c.toString()));
    watch.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((res) => watch.on('close', (code) => res(code)));
    await waitFor(() => out.includes('no longer holds'), 'otactl watch to report the resync', 20_000);
    await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    expect(await exited).toBe(0);
    expect(err).toContain('watching otad');
    // The current state first, then the resync, then the stream from the latest seq on.
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^\S+ robot-ai: idle {2}installed /);
    expect(lines[1]).toBe(`otad no longer holds the transitions after 1 (pruned); continuing from ${latest} (otactl history and status show the rest)`);
    expect(lines[2]).toMatch(/^\S+ robot-ai: idle → checking /);

    // A seq this database never handed out.
    const ahead = await resume(d.url, latest + 50, (got) => got.length > 0);
    expect(ahead[0]).toMatchObject({ type: 'resync', payload: { reason: 'unknown-seq', lastSeq: latest + 50 } });
  });
});

describe('a client further behind than one bounded replay', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ fake: { offerVersion: null } });
  });
  afterAll(async () => h?.close());

  it(`gets a resync instead of more than ${MAX_REPLAY} transitions`, async () => {
    const start = h.daemon.transitionRange().latest;
    for (let i = 0; i < MAX_REPLAY + 5; i++) {
      h.daemon.store.writeTransition({ product: 'other', machineVersion: 1, snapshot: {}, state: i % 2 ? 'idle' : 'checking', runId: `r${i}`, at: i, transition: { from: 'idle', to: 'checking', eventType: 'CHECK_NOW', event: {} } });
    }
    const latest = h.daemon.transitionRange().latest;
    const far = await resume(h.url, start, (got) => got.length > 0);
    expect(far).toHaveLength(1);
    expect(far[0]).toMatchObject({ type: 'resync', seq: latest, payload: { reason: 'too-far-behind', lastSeq: start, latestSeq: latest } });
    const near = await resume(h.url, latest - MAX_REPLAY, (got) => got.length >= MAX_REPLAY);
    expect(near).toHaveLength(MAX_REPLAY);
    expect(near.every((m) => m.type === 'transition')).toBe(true);
  });
});

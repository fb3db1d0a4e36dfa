/**
 * Failed authentication is cheap and quiet (threats: local API abuse). A real otad with its API on
 * loopback takes 2,000 requests with a wrong bearer token, as the attack round sent them: the first
 * api.authFailures.max of each window answer 401, the rest 429 with Retry-After; the audit log gets one
 * entry for the first refusal and one summary with the counts when the window ends, not 2,000 lines; a caller
 * with a valid token is served throughout; the Socket.IO handshake shares the same budget.
 */
import { existsSync, readFileSync } from 'node:fs';
import { io } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { READ_TOKEN, waitFor } from '../api/harness.js';
import { startRealOtad, type RealOtad } from '../api/real-otad.js';

const FLOOD = 2000;
const MAX = 20;
let d: RealOtad;

beforeAll(async () => {
  // A 5 s window keeps the test short; the default is 1 minute (docs/api.md).
  d = await startRealOtad({ extra: { api: { authFailures: { window: '5s', max: MAX } }, logging: { level: 'info', stdout: true } } });
}, 60_000);
afterAll(async () => d?.stop());

/** The audit entries otad wrote to its main stream (stdout, captured in the log file): each once. */
function authAudits(): Array<{ message: string; remote?: string; reason?: string; counts?: Record<string, number>; throttled?: number }> {
  if (!existsSync(d.sandbox.logPath)) return [];
  return readFileSync(d.sandbox.logPath, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.kind === 'api-auth-failure') as never;
}

describe('a flood of wrong bearer tokens against a real otad', () => {
  it('answers 401 up to the budget, then 429 with Retry-After, audits two entries, and keeps serving a valid token', async () => {
    const before = authAudits().length;
    const statuses = new Map<number, number>();
    let retryAfter: string | null = null;
    let validDuringFlood = 0;
    for (let i = 0; i < FLOOD; i++) {
      const res = await fetch(`${d.url}/api/v1/status`, { headers: { Authorization: 'Bearer not-the-right-token-0000' } });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 429) retryAfter ??= res.headers.get('retry-after');
      if (i === FLOOD / 2) {
        const ok = await fetch(`${d.url}/api/v1/status`, { headers: { Authorization: `Bearer ${READ_TOKEN}` } });
        await ok.arrayBuffer();
        if (ok.status === 200) validDuringFlood += 1;
      }
    }
    // Requests may span more than one window on a slow machine: each window answers at most MAX
    // with 401, the rest 429, and writes at most two audit entries (the first refusal, the summary).
    const unauthorized = statuses.get(401) ?? 0;
    const throttled = statuses.get(429) ?? 0;
    expect(unauthorized + throttled).toBe(FLOOD);
    expect(unauthorized % MAX).toBe(0);
    const windows = unauthorized / MAX;
    expect(windows).toBeGreaterThanOrEqual(1);
    expect(throttled).toBeGreaterThan(0);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(validDuringFlood).toBe(1);

    // Every refusal is accounted for once the last window has been summarised.
    const accounted = (): number =>
      authAudits()
        .slice(before)
        .reduce((n, e) => n + (e.reason === 'summary' ? Object.values(e.counts ?? {}).reduce((a, b) => a + b, 0) + (e.throttled ?? 0) : 1), 0);
    await waitFor(() => accounted() === FLOOD, 'summaries accounting for every refused request', 30_000);
    const entries = authAudits().slice(before);
    expect(entries.length).toBeLessThanOrEqual(2 * windows);
    const firsts = entries.filter((e) => e.reason !== 'summary');
    expect(firsts).toHaveLength(windows);
    for (const e of firsts) {
      expect(e).toMatchObject({ reason: 'wrong-token', remote: '127.0.0.1' });
      expect(e.message).toBe('audit: request with a wrong token refused: GET /api/v1/status');
    }
    const summaries = entries.filter((e) => e.reason === 'summary');
    expect(summaries.reduce((n, e) => n + (e.throttled ?? 0), 0)).toBe(throttled);
    expect(summaries[0]!.message).toMatch(/^audit: \d+ more refused API requests from 127\.0\.0\.1 in the last 5 s \(wrong-token \d+\); \d+ more answered 429 \(throttled\)$/);
    // The main log does not carry the refused requests one by one either.
    const lines = readFileSync(d.sandbox.logPath, 'utf8').split('\n').filter((l) => l.includes('wrong token'));
    expect(lines.length).toBeLessThanOrEqual(2 * windows);
  }, 120_000);

  it('counts refused Socket.IO handshakes in the same budget, and throttles them with API_RATE_LIMITED', async () => {
    // A new window: the previous one was summarised.
    const codes: string[] = [];
    for (let i = 0; i < MAX + 3; i++) {
      const socket = io(d.url, { path: '/socket.io', transports: ['websocket'], auth: { token: 'wrong-token-0123456789' }, reconnection: false, forceNew: true });
      const code = await new Promise<string>((resolve) => {
        socket.on('connect_error', (err: Error & { data?: { code?: string } }) => resolve(err.data?.code ?? err.message));
        socket.on('connect', () => resolve('connected'));
      });
      socket.close();
      codes.push(code);
    }
    expect(codes.slice(0, MAX).every((c) => c === 'API_UNAUTHORIZED')).toBe(true);
    expect(codes.slice(MAX)).toEqual(['API_RATE_LIMITED', 'API_RATE_LIMITED', 'API_RATE_LIMITED']);
    // A valid token still connects.
    const good = io(d.url, { path: '/socket.io', transports: ['websocket'], auth: { token: READ_TOKEN }, reconnection: false, forceNew: true });
    const result = await new Promise<string>((resolve) => {
      good.on('connect', () => resolve('connected'));
      good.on('connect_error', (err: Error) => resolve(err.message));
    });
    good.close();
    expect(result).toBe('connected');
  }, 60_000);
});

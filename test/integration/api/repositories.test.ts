/**
 * GET /api/v1/products and GET /api/v1/repositories against a real loopback repository server and
 * a closed port: otad probes the repository itself, reads the trusted metadata it holds, and
 * remembers the last successful check.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../../../src/api/openapi.js';
import { assertMatchesDocument } from './openapi-check.js';
import { CONTROL_TOKEN, READ_TOKEN, startHarness, waitFor, type Harness } from './harness.js';

let h: Harness;
let repo: http.Server;
let repoUrl: string;
let hits: string[] = [];
const doc = buildOpenApiDocument();

beforeAll(async () => {
  repo = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    if (req.url === '/metadata/timestamp.json') res.end('{"signed":{}}');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => repo.listen(0, '127.0.0.1', r));
  repoUrl = `http://127.0.0.1:${(repo.address() as AddressInfo).port}`;
  // A port that was just free and is closed again: nobody answers there.
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise<void>((r) => closed.close(() => r()));

  h = await startHarness({
    fake: { offerVersion: '2.0.0' },
    products: ['robot-ai', 'nav-maps'],
    extra: {
      server: { url: repoUrl },
      products: [
        {
          name: 'robot-ai',
          type: 'robot-ai',
          installPath: '/opt/robot-ai',
          services: ['robot-ai.service'],
          processUnits: [{ name: 'robot-ai-helper', command: ['/bin/true'] }],
          healthChecks: [{ kind: 'unit', unit: 'robot-ai.service' }, { kind: 'http', url: 'http://127.0.0.1:9/health' }],
          preservedPaths: ['config', 'data/maps'],
          probation: { window: '90s', interval: '15s', failureThreshold: 2 },
        },
        { name: 'nav-maps', installPath: '/opt/nav-maps', channel: 'beta', repository: { url: closedUrl } },
      ],
    },
  });
  const meta = join(h.config.paths.stateDir, 'tuf', 'robot-ai');
  mkdirSync(meta, { recursive: true });
  writeFileSync(join(meta, 'timestamp.json'), JSON.stringify({ signed: { version: 7, expires: '2026-03-03T10:00:00Z' }, signatures: [{ keyid: 'abcdef0123456789abcdef', sig: '00' }] }));
  writeFileSync(join(meta, 'targets.json'), JSON.stringify({ signed: { version: 3, expires: '2026-06-01T00:00:00Z' }, signatures: [{ keyid: '1111222233334444ffff', sig: '00' }] }));
});
afterAll(async () => {
  await h?.close();
  await new Promise<void>((r) => repo?.close(() => r()));
});

const get = async (path: string, token = READ_TOKEN) => {
  const res = await fetch(`${h.url}/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
};

describe('GET /api/v1/products', () => {
  it("gives each product's definition from configuration, in the document's shape", async () => {
    const { status, body } = await get('/products');
    expect(status).toBe(200);
    assertMatchesDocument(doc, '/products', 'get', 200, body);
    const ai = body.products.find((p: any) => p.product === 'robot-ai');
    expect(ai).toMatchObject({
      type: 'robot-ai',
      installPath: '/opt/robot-ai',
      services: ['robot-ai.service', 'robot-ai-helper'],
      healthChecks: [{ kind: 'unit', target: 'robot-ai.service' }, { kind: 'http', target: 'http://127.0.0.1:9/health answers 200' }],
      preservedPaths: ['config', 'data/maps'],
      probation: { windowMs: 90_000, intervalMs: 15_000, failureThreshold: 2 },
      backup: { enabled: true, keep: 2 },
      repository: { kind: 'tuf', location: `${repoUrl}/metadata/` },
    });
  });

  it('needs a token', async () => {
    expect((await fetch(`${h.url}/api/v1/products`)).status).toBe(401);
  });
});

describe('GET /api/v1/repositories', () => {
  it("reports otad's own probe: reachable with a latency, or not reachable with the reason", async () => {
    hits = [];
    const { status, body } = await get('/repositories');
    expect(status).toBe(200);
    assertMatchesDocument(doc, '/repositories', 'get', 200, body);
    const [ai, maps] = ['robot-ai', 'nav-maps'].map((n) => body.repositories.find((r: any) => r.product === n));
    expect(ai).toMatchObject({ kind: 'tuf', location: `${repoUrl}/metadata/`, channel: 'stable', reachable: true, httpStatus: 200, problem: null, probedAt: h.clock.now() });
    expect(ai.latencyMs).toBeGreaterThanOrEqual(0);
    expect(hits).toEqual(['/metadata/timestamp.json']);
    expect(maps).toMatchObject({ channel: 'beta', reachable: false, latencyMs: null });
    expect(maps.problem).toMatch(/^the repository did not answer: /);
  });

  it('keeps a probe for 5 s, then probes again', async () => {
    hits = [];
    await get('/repositories');
    expect(hits).toEqual([]);
    h.clock.advance(5_000);
    await get('/repositories');
    expect(hits).toEqual(['/metadata/timestamp.json']);
  });

  it('lists the trusted metadata otad holds with version, expiry and signers, and the earliest expiry', async () => {
    const { body } = await get('/repositories');
    const ai = body.repositories.find((r: any) => r.product === 'robot-ai');
    expect(ai.metadata).toEqual([
      { role: 'timestamp', version: 7, expiresAt: Date.parse('2026-03-03T10:00:00Z'), signedBy: ['abcdef0123456789'] },
      { role: 'targets', version: 3, expiresAt: Date.parse('2026-06-01T00:00:00Z'), signedBy: ['1111222233334444'] },
    ]);
    expect(ai.metadataExpiresAt).toBe(Date.parse('2026-03-03T10:00:00Z'));
    const maps = body.repositories.find((r: any) => r.product === 'nav-maps');
    expect(maps.metadata).toEqual([]);
    expect(maps.metadataExpiresAt).toBeNull();
  });

  it('remembers when the last check succeeded', async () => {
    expect((await get('/repositories')).body.repositories[0].lastSuccessfulCheckAt).toBeNull();
    const res = await fetch(`${h.url}/api/v1/events`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${CONTROL_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ product: 'robot-ai', type: 'CHECK_NOW' }),
    });
    expect(res.status).toBe(202);
    await waitFor(() => h.daemon.status().products.find((p) => p.product === 'robot-ai')?.state === 'awaitingChoice', 'the offer');
    const ai = (await get('/repositories')).body.repositories.find((r: any) => r.product === 'robot-ai');
    expect(ai.lastSuccessfulCheckAt).toBe(h.clock.now());
  });
});

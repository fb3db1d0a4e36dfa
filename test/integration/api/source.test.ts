/**
 * GET and PUT /api/v1/products/{product}/source: the channel and repository a product follows,
 * chosen among the configured ones through the real REST API of an in-process otad, validated
 * with stable codes, audited, refused by policy or while a run is in flight, kept in the store
 * across a restart, and dropped (back to the configured default) when the configuration no
 * longer offers the choice.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOpenApiDocument } from '../../../src/api/openapi.js';
import type { Clock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { fakeStepProvider } from '../../support/fake-steps.js';
import { assertMatchesDocument } from './openapi-check.js';
import { CONTROL_TOKEN, makeConfig, READ_TOKEN, startHarness, waitFor, type Harness } from './harness.js';

let h: Harness;
const doc = buildOpenApiDocument();
const PRODUCTS = (robotAi: Record<string, unknown> = {}) => [
  {
    name: 'robot-ai',
    installPath: '/opt/robot-ai',
    channels: ['beta'],
    repository: { url: 'http://127.0.0.1:9/main/' },
    repositories: [{ name: 'mirror', url: 'http://127.0.0.1:9/mirror/' }],
    ...robotAi,
  },
  { name: 'nav-maps', installPath: '/opt/nav-maps', channels: ['beta'], allowSourceSwitch: false },
];

beforeAll(async () => {
  h = await startHarness({ fake: { offerVersion: '2.0.0' }, products: ['robot-ai', 'nav-maps'], extra: { products: PRODUCTS() } });
});
afterAll(async () => h?.close());

async function call(method: 'GET' | 'PUT', path: string, body?: unknown, token = CONTROL_TOKEN) {
  const res = await fetch(`${h.url}/api/v1${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe('the channel and repository a product follows', () => {
  it('reports the configured default and the choices, in the document\'s shape', async () => {
    const r = await call('GET', '/products/robot-ai/source', undefined, READ_TOKEN);
    expect(r.status).toBe(200);
    assertMatchesDocument(doc, '/products/{product}/source', 'get', 200, r.body);
    expect(r.body).toEqual({
      product: 'robot-ai',
      channel: 'stable',
      repository: 'default',
      defaults: { channel: 'stable', repository: 'default' },
      channels: ['stable', 'beta'],
      repositories: [
        { name: 'default', kind: 'tuf', location: 'http://127.0.0.1:9/main/' },
        { name: 'mirror', kind: 'tuf', location: 'http://127.0.0.1:9/mirror/' },
      ],
      switchAllowed: true,
      selected: null,
    });
    expect((await call('GET', '/products/nope/source')).body.error.code).toBe('PRODUCT_UNKNOWN');
  });

  it('refuses a read token, a bad body, an unknown choice and a product whose policy forbids switching, and changes nothing', async () => {
    const read = await call('PUT', '/products/robot-ai/source', { channel: 'beta' }, READ_TOKEN);
    expect([read.status, read.body.error.code]).toEqual([403, 'API_FORBIDDEN']);
    for (const body of [{}, { channel: 'Beta!' }, { channel: 'beta', extra: 1 }]) {
      const r = await call('PUT', '/products/robot-ai/source', body);
      expect([r.status, r.body.error.code]).toEqual([400, 'API_INVALID_REQUEST']);
    }
    const unknown = await call('PUT', '/products/robot-ai/source', { channel: 'nightly' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toMatchObject({ code: 'SOURCE_UNKNOWN', details: { channel: 'nightly', channels: ['stable', 'beta'] } });
    expect(unknown.body.error.message).toBe('channel "nightly" is not configured for robot-ai; choose one of: stable, beta (products[].channel and channels)');
    const repo = await call('PUT', '/products/robot-ai/source', { repository: 'usb' });
    expect(repo.body.error).toMatchObject({ code: 'SOURCE_UNKNOWN', details: { repository: 'usb', repositories: ['default', 'mirror'] } });
    const forbidden = await call('PUT', '/products/nav-maps/source', { channel: 'beta' });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.error.code).toBe('SOURCE_SWITCH_FORBIDDEN');
    expect((await call('GET', '/products/nav-maps/source')).body).toMatchObject({ channel: 'stable', switchAllowed: false, selected: null });
    expect((await call('GET', '/products/robot-ai/source')).body).toMatchObject({ channel: 'stable', repository: 'default', selected: null });
    // Refusals are audited like every refused control request.
    expect(readFileSync(join(h.dir, 'audit.log'), 'utf8')).toContain('refused a switch of channel or repository from rest (robot-ai): SOURCE_SWITCH_FORBIDDEN');
  });

  it('switches through the API: audited, announced on the stream, seen by definitions and repositories', async () => {
    const notes: string[] = [];
    const off = h.daemon.bus.subscribe('notification', (n) => {
      notes.push(`${n.product}:${n.kind}`);
    });
    const r = await call('PUT', '/products/robot-ai/source', { channel: 'beta', repository: 'mirror' });
    off();
    expect(r.status).toBe(200);
    assertMatchesDocument(doc, '/products/{product}/source', 'put', 200, r.body);
    expect(r.body).toMatchObject({ channel: 'beta', repository: 'mirror', changed: true, selected: { at: h.clock.now(), actor: 'robot-ai', via: 'rest' } });
    expect(notes).toEqual(['robot-ai:source-changed']);
    const again = await call('PUT', '/products/robot-ai/source', { channel: 'beta' });
    expect(again.body.changed).toBe(false);

    const def = (await call('GET', '/products')).body.products.find((p: any) => p.product === 'robot-ai');
    expect(def).toMatchObject({ channel: 'beta', repository: { name: 'mirror', location: 'http://127.0.0.1:9/mirror/metadata/' } });
    const repos = (await call('GET', '/repositories')).body;
    assertMatchesDocument(doc, '/repositories', 'get', 200, repos);
    const repo = repos.repositories.find((x: any) => x.product === 'robot-ai');
    expect(repo).toMatchObject({ channel: 'beta', repository: 'mirror', location: 'http://127.0.0.1:9/mirror/metadata/' });
    // Both choices, each probed by otad (nothing listens on port 9).
    expect(repo.choices.map((c: any) => [c.name, c.location, c.inUse, c.reachable])).toEqual([
      ['default', 'http://127.0.0.1:9/main/metadata/', false, false],
      ['mirror', 'http://127.0.0.1:9/mirror/metadata/', true, false],
    ]);
    expect(repo.choices[0].problem).toMatch(/^the repository did not answer: /);
    const audit = h.daemon.audit(20).find((a) => a.message.startsWith('robot-ai switched'));
    expect(audit?.message).toBe('robot-ai switched from rest (robot-ai) to channel beta of repository mirror (was channel stable of repository default); the next check uses it');
    expect(readFileSync(join(h.dir, 'audit.log'), 'utf8')).toContain('robot-ai switched from rest (robot-ai) to channel beta');
  });

  it('refuses a switch while a run is in flight (SOURCE_SWITCH_BUSY) and keeps the source', async () => {
    const check = await fetch(`${h.url}/api/v1/events`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${CONTROL_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ product: 'robot-ai', type: 'CHECK_NOW' }),
    });
    expect(check.status).toBe(202);
    await waitFor(() => h.daemon.status().products.find((p) => p.product === 'robot-ai')?.state === 'awaitingChoice', 'the offer');
    const busy = await call('PUT', '/products/robot-ai/source', { channel: 'stable' });
    expect(busy.status).toBe(409);
    expect(busy.body.error).toMatchObject({ code: 'SOURCE_SWITCH_BUSY', details: { product: 'robot-ai', state: 'awaitingChoice' } });
    expect((await call('GET', '/products/robot-ai/source')).body.channel).toBe('beta');
    await fetch(`${h.url}/api/v1/events`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${CONTROL_TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ product: 'robot-ai', type: 'CANCEL' }),
    });
    await waitFor(() => h.daemon.status().products.find((p) => p.product === 'robot-ai')?.state === 'idle', 'idle again');
  });

  it('keeps the choice across a restart, and falls back to the configured default when the configuration no longer offers it', async () => {
    await h.daemon.stop(0);
    const start = async (products: unknown[]) => {
      const config = { ...makeConfig(h.dir, { products }, ['robot-ai', 'nav-maps']), paths: h.config.paths };
      const logging = createLogging({ level: 'debug', stdout: false, file: join(h.dir, 'otad-2.log'), auditFile: join(h.dir, 'audit-2.log') });
      const d = new Daemon({ config, logging, clock: h.clock as Clock, deviceId: 'robot-0001', stepProvider: fakeStepProvider({}), uncleanStart: false });
      await d.start();
      return { d, logging };
    };
    const same = await start(PRODUCTS());
    expect(same.d.productSource('robot-ai')).toMatchObject({ channel: 'beta', repository: 'mirror', selected: { actor: 'robot-ai' } });
    expect(same.d.productDefinitions().find((p) => p.product === 'robot-ai')?.channel).toBe('beta');
    await same.d.stop(0);
    await same.logging.close();

    // beta is no longer configured: the product follows the configured channel again, and says so.
    const fewer = await start(PRODUCTS({ channels: [] }));
    expect(fewer.d.productSource('robot-ai')).toMatchObject({ channel: 'stable', repository: 'default', channels: ['stable'], selected: null });
    await fewer.d.stop(0);
    await fewer.logging.close();
    expect(readFileSync(join(h.dir, 'otad-2.log'), 'utf8')).toContain('the channel and repository an operator chose no longer apply: the configured ones are used');
  });
});

/**
 * The fleet page (/fleet/) driven in a real headless Chromium against a real ota-server on
 * 127.0.0.1 port 0 with a real SQLite fleet store; robots are signed check-ins over HTTP (the same
 * signing module otad uses), and a rollout made over REST whose counts come from their check-ins.
 * Set OTA_E2E_SCREENSHOT_DIR=/some/folder to keep screenshots of the page at 1280 px and 400 px wide.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import type { DeviceKey } from '../../src/fleet/signing.js';
import { createPublisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer, type ServerOptions } from '../../src/server/app.js';
import { FLEET_PAGE_CSP } from '../../src/server/ui/router.js';
import { newDeviceKey, postCheckin, report } from '../support/fleet-db.js';
import { askLease } from '../support/signed-requests.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`fleet page browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SHOTS = process.env.OTA_E2E_SCREENSHOT_DIR;

const TOKEN = 'fleet-page-token-0123456789';
const FLEET = 60;

let dir: string;
let server: OtaServer;
let url: string;
const keys = new Map<string, DeviceKey>();

const idOf = (i: number) => `robot-${String(i).padStart(3, '0')}`;
const siteOf = (i: number) => (i % 3 === 0 ? 'lab' : i % 3 === 1 ? 'dock' : 'warehouse-3');

function checkin(id: string, key = keys.get(id)!, extra: Record<string, unknown> = {}) {
  const i = Number(id.slice(-3));
  return postCheckin({ url, key, body: report(id, { tags: { site: siteOf(i), model: 'r2' }, ...extra }), now: Date.now() });
}

const serverOptions = (): ServerOptions => ({
  repoDir: path.join(dir, 'repo'),
  keysDir: path.join(dir, 'keys'),
  clock: systemClock,
  logger: silentLogger,
  tokenFile: path.join(dir, 'token'),
  database: path.join(dir, 'fleet.db'),
  timestampRefresh: false,
  prune: false,
  // Every robot of this test checks in from 127.0.0.1.
  deviceRateLimit: { perSecond: 10_000, burst: 10_000 },
  siteBudgets: { default: 2, sites: { dock: 1 } },
  // The test's halts are the operator's; the rules still run on every reported failure.
  rolloutTick: false,
});

async function operator(method: string, route: string, body?: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

// robot-002 reports an update's downtime, robot-005 a rollback's (green again on the old release).
const DOWNTIME_2 = { runId: 'run-2', totalMs: 612.4, stopMs: 41.2, switchMs: 3.4, startMs: 19.8, probeMs: 548, otadMs: 72.4, greenOn: 'new', acrossRestart: false, greenAt: Date.now() - 60_000 };
const DOWNTIME_5 = { runId: 'run-5', totalMs: 4170, stopMs: 88, switchMs: 7.5, startMs: 31, probeMs: 4043.5, otadMs: 143, greenOn: 'old', acrossRestart: false, greenAt: Date.now() - 30_000 };
function extraOf(i: number): Record<string, unknown> {
  if (i === 2) return { lastOutcome: 'committed', runId: 'run-2', downtime: DOWNTIME_2 };
  if (i === 5) return { state: 'failed', lastOutcome: 'rolled-back', error: 'HEALTH_CHECK_FAILED: planner did not start', runId: 'run-5', downtime: DOWNTIME_5 };
  return {};
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'otad-fleet-page-'));
  await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
  writeFileSync(path.join(dir, 'token'), `${TOKEN}\n`);
  server = createServer(serverOptions());
  url = (await server.start(0, '127.0.0.1')).url;
  for (let i = 1; i <= FLEET; i++) {
    const id = idOf(i);
    keys.set(id, newDeviceKey());
    expect((await checkin(id, keys.get(id)!, extraOf(i))).status).toBe(202);
  }
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('fleet page files over HTTP', () => {
  it('redirects /fleet to /fleet/ and / to the publisher studio', async () => {
    for (const [from, status, to] of [
      ['/', 302, '/studio/'],
      ['/fleet', 301, '/fleet/'],
    ] as const) {
      const res = await fetch(`${url}${from}`, { redirect: 'manual' });
      expect(res.status).toBe(status);
      expect(res.headers.get('location')).toBe(to);
    }
  });

  it('serves the page without a token under a strict Content-Security-Policy, with no inline script and no data', async () => {
    const res = await fetch(`${url}/fleet/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toBe(FLEET_PAGE_CSP);
    const html = await res.text();
    expect(html.match(/<script(?![^>]*\bsrc=)[^>]*>/g)).toBeNull();
    expect(html).not.toContain('robot-001');
  });

  it('serves Preact and htm from their installed packages, and nothing else under vendor/', async () => {
    const preact = await fetch(`${url}/fleet/vendor/preact.mjs`);
    expect(preact.status).toBe(200);
    expect(preact.headers.get('content-type')).toMatch(/javascript/);
    expect(await preact.text()).toMatch(/export\s*\{/);
    expect((await fetch(`${url}/fleet/vendor/htm.mjs`)).status).toBe(200);
    expect((await fetch(`${url}/fleet/vendor/package.json`)).status).toBe(404);
    expect((await fetch(`${url}/fleet/nothing.js`)).status).toBe(404);
  });
});

describe('device search over REST', () => {
  const get = (query: string) => fetch(`${url}/api/v1/devices?${query}`, { headers: { authorization: `Bearer ${TOKEN}` } });

  it('keeps the devices whose id or site contains q, counts only those, and refuses an overlong q', async () => {
    const lab = (await (await get('q=LAB&limit=5')).json()) as { devices: Array<{ site: string }>; total: number };
    expect(lab.total).toBe(FLEET / 3);
    expect(lab.devices.map((d) => d.site)).toEqual(Array(5).fill('lab'));
    const one = (await (await get('q=robot-01')).json()) as { devices: Array<{ id: string }>; total: number };
    expect(one.devices.map((d) => d.id)).toEqual(Array.from({ length: 10 }, (_, i) => idOf(10 + i)));
    const long = await get(`q=${'x'.repeat(129)}`);
    expect(long.status).toBe(400);
    expect(((await long.json()) as { error: { code: string } }).error.code).toBe('API_INVALID_REQUEST');
  });
});

describe.skipIf(!haveChromium)('fleet page in headless Chromium', () => {
  let context: BrowserContext;
  let profile: string;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    profile = mkdtempSync(path.join(tmpdir(), 'otad-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1100 },
    });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    page.on('console', (m) => {
      // The browser logs each refused request; the test provokes 401s, 403s and 404s on purpose.
      if (m.type() === 'error' && !/status of (401|403|404)/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  const row = (id: string) => page.locator(`tr[data-device="${id}"]`);

  async function shoot(name: string, width: number): Promise<void> {
    await page.setViewportSize({ width, height: 1100 });
    await page.evaluate('document.activeElement?.blur()');
    // At any width the page itself never scrolls sideways: wide content scrolls inside its card or wraps.
    const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
    expect(overflow).toBeLessThanOrEqual(0);
    if (SHOTS) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, `${name}-${width}.png`), fullPage: true });
    }
  }

  it('refuses a wrong token with a clear message and keeps nothing of it', async () => {
    await page.goto(`${url}/fleet`);
    expect(page.url()).toBe(`${url}/fleet/`);
    await page.getByLabel('Operator token').fill('not-the-token-0123456789');
    await page.getByRole('button', { name: 'Connect' }).click();
    await page.getByRole('alert').filter({ hasText: 'The server refused this token' }).waitFor();
    expect(await page.evaluate("sessionStorage.getItem('ota-server.token')")).toBeNull();
  });

  it('tells the operator when the server was started without a token file', async () => {
    const tokenless = createServer({
      repoDir: path.join(dir, 'repo'),
      keysDir: path.join(dir, 'keys'),
      clock: systemClock,
      logger: silentLogger,
      database: path.join(dir, 'tokenless.db'),
      timestampRefresh: false,
      prune: false,
    });
    const other = await context.newPage();
    try {
      await other.goto(`${(await tokenless.start(0, '127.0.0.1')).url}/fleet/`);
      await other.getByLabel('Operator token').fill(TOKEN);
      await other.getByRole('button', { name: 'Connect' }).click();
      await other.getByRole('alert').filter({ hasText: 'This ota-server was started without --token-file' }).waitFor();
    } finally {
      await other.close();
      await tokenless.close();
    }
  });

  it('signs in with the operator token, keeps it for the tab, and lists the pending devices page by page', async () => {
    await page.getByLabel('Operator token').fill(TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    await row('robot-001').waitFor();
    expect(await page.evaluate("sessionStorage.getItem('ota-server.token')")).toBe(TOKEN);
    expect(await page.locator('tbody tr[data-device]').count()).toBe(25);
    await page.getByText(`1–25 of ${FLEET}`).waitFor();
    await expect.poll(() => row('robot-001').locator('[data-status]').textContent()).toBe('pending');
    expect(await row('robot-001').textContent()).toContain('dock');
    expect(await row('robot-001').textContent()).toContain('model=r2');
    expect(await row('robot-001').textContent()).toContain('robot-ai 1.0.0');
    expect(await row('robot-005').textContent()).toContain('HEALTH_CHECK_FAILED');
    // The last downtime each robot reported, with otad's share and the split.
    const d2 = row('robot-002').locator('.downtime');
    expect((await d2.textContent())!.replace(/\u00a0/g, ' ')).toBe('downtime 612 ms · otad 72 ms · stop 41 ms, switch 3.4 ms, start 20 ms, first green probe 548 ms');
    expect(await d2.getAttribute('title')).toContain('green on the new release');
    expect((await row('robot-005').locator('.downtime').textContent())!.replace(/\u00a0/g, ' ')).toContain('downtime 4.17 s (until the old release was green)');
    expect(await row('robot-003').locator('.downtime').count()).toBe(0);
    await page.getByText(/^Refreshed /).waitFor();

    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByText(`26–50 of ${FLEET}`).waitFor();
    await row('robot-026').waitFor();
    await page.getByRole('button', { name: 'Previous' }).click();
    await row('robot-001').waitFor();
    // A reload keeps the token: the page does not ask again.
    await page.reload();
    await row('robot-001').waitFor();
  });

  it('says that rollouts need a server with rollouts when the server answers 404 on them, and still shows the devices', async () => {
    // An ota-server from before rollouts: its answers on the rollout endpoints, replayed in the browser.
    const old = await context.newPage();
    const notFound = { status: 404, contentType: 'application/json', body: JSON.stringify({ error: { code: 'API_NOT_FOUND', message: 'no such resource' } }) };
    await old.route('**/api/v1/rollouts', (r) => r.fulfill(notFound));
    await old.route('**/api/v1/leases', (r) => r.fulfill(notFound));
    await old.goto(`${url}/fleet/`);
    await old.getByLabel('Operator token').fill(TOKEN);
    await old.getByRole('button', { name: 'Connect' }).click();
    await old.getByText('Rollouts need a server with rollouts').waitFor();
    await old.locator('tr[data-device="robot-001"]').waitFor();
    expect(await old.getByRole('alert').filter({ hasText: /\S/ }).count()).toBe(0);
    await old.close();
  });

  it('shows no rollouts yet on a server that has none', async () => {
    await page.getByText('No rollouts yet.').waitFor();
  });

  it('searches by id and by site, and filters by status', async () => {
    const search = page.getByLabel('Search id or site');
    await search.fill('robot-007');
    await page.getByText('1–1 of 1').waitFor();
    await search.fill('warehouse');
    await page.getByText(`1–20 of 20`).waitFor();
    expect(await page.locator('tbody tr[data-device]').first().textContent()).toContain('warehouse-3');
    await search.fill('');
    await page.getByText(`1–25 of ${FLEET}`).waitFor();
    await page.getByLabel('Status').selectOption('rejected');
    await page.getByText('No device matches this filter.').waitFor();
    await page.getByLabel('Status').selectOption('');
    await row('robot-001').waitFor();
  });

  it('accepts a device in place, and its next check-in is answered accepted', async () => {
    await row('robot-002').getByRole('button', { name: 'Accept robot-002' }).click();
    await expect.poll(() => row('robot-002').locator('[data-status]').textContent()).toBe('accepted');
    await page.getByRole('status').filter({ hasText: 'robot-002 accepted.' }).waitFor();
    expect(await row('robot-002').getByRole('button', { name: 'Accept robot-002' }).count()).toBe(0);
    const next = await checkin('robot-002');
    expect(next.status).toBe(200);
    expect(next.body.status).toBe('accepted');
  });

  it('rejects a device only after a confirmation; Cancel leaves it pending', async () => {
    await row('robot-003').getByRole('button', { name: 'Reject robot-003' }).click();
    const dialog = page.getByRole('dialog', { name: 'Reject robot-003?' });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'detached' });
    expect(await row('robot-003').locator('[data-status]').textContent()).toBe('pending');

    await row('robot-003').getByRole('button', { name: 'Reject robot-003' }).click();
    await dialog.getByRole('button', { name: 'Reject' }).click();
    await expect.poll(() => row('robot-003').locator('[data-status]').textContent()).toBe('rejected');
    const next = await checkin('robot-003');
    expect(next.status).toBe(403);
    expect(next.body.error.code).toBe('DEVICE_REJECTED');
    await page.getByLabel('Status').selectOption('rejected');
    await page.getByText('1–1 of 1').waitFor();
    await page.getByLabel('Status').selectOption('');
    await row('robot-001').waitFor();
  });

  it('flags a cloned robot, another key under a known id, as a key conflict', async () => {
    const clone = await checkin('robot-004', newDeviceKey());
    expect(clone.body.error.code).toBe('DEVICE_KEY_CONFLICT');
    // The page's own polling picks it up.
    await row('robot-004').getByText('key conflict', { exact: true }).waitFor();
    expect(await row('robot-004').textContent()).toMatch(/Another key [0-9a-f]{16} presented 1 time/);
  });

  const rollout = () => page.locator('article.rollout').filter({ has: page.getByRole('heading', { name: 'robot-ai 2.0.0' }) });
  const batch = (n: number) => rollout().locator(`tr[data-batch="${n}"]`);
  const cell = (n: number, label: string) => batch(n).locator(`td[data-label="${label}"]`);
  const lab = [6, 9, 12, 15, 18, 21].map(idOf);

  it('shows a rollout with its batches, their counts from the check-ins and a progress bar each', async () => {
    for (const id of lab) expect((await operator('POST', `/api/v1/devices/${id}/accept`)).status).toBe(200);
    const created = await operator('POST', '/api/v1/rollouts', { product: 'robot-ai', version: '2.0.0', batches: [{ tags: { site: 'lab' } }, { all: true }], soak: '1h', failureThreshold: 0.5, minReports: 3 });
    expect(created.status).toBe(201);
    // In batch 1 (site=lab): one committed, one installing, one failed; the other three not started.
    expect((await checkin(idOf(6), undefined, { version: '2.0.0' })).status).toBe(200);
    expect((await checkin(idOf(9), undefined, { state: 'apply', targetVersion: '2.0.0', runId: 'run-9' })).status).toBe(200);
    expect((await checkin(idOf(12), undefined, { state: 'failed', targetVersion: '2.0.0', runId: 'run-12', error: 'HEALTH_CHECK_FAILED: planner did not start' })).status).toBe(200);
    // A lease held by a lab robot, under the default budget of 2.
    expect((await askLease(url, { id: idOf(9), key: keys.get(idOf(9))! }, '2.0.0', Date.now())).status).toBe(200);

    await rollout().waitFor();
    expect(await rollout().locator('[data-rollout-state]').textContent()).toBe('active');
    await expect.poll(() => cell(1, 'Committed').textContent()).toBe('1');
    expect(await cell(1, 'Selects').textContent()).toBe('site=lab');
    expect(await cell(1, 'State').textContent()).toMatch(/^open opened/);
    for (const [label, n] of [['Devices', '6'], ['Not started', '3'], ['Running', '1'], ['Rolled back', '0'], ['Failed', '1']]) expect(await cell(1, label!).textContent()).toBe(n);
    expect(await cell(1, 'Progress').textContent()).toContain('1 of 6 committed (16.7\u00a0%), 1 failed or rolled back (16.7\u00a0%), 1 running');
    // The bar: committed and failure shares as widths.
    expect(await batch(1).locator('.bar-committed').evaluate((el) => (el as unknown as { style: { width: string } }).style.width)).toMatch(/^16\.66/);
    expect(await batch(1).locator('.bar-failed').evaluate((el) => (el as unknown as { style: { width: string } }).style.width)).toMatch(/^16\.66/);
    // Batch 2 takes every other accepted robot (robot-002 at warehouse-3) and waits.
    expect(await cell(2, 'Selects').textContent()).toBe('all remaining devices');
    expect(await cell(2, 'State').textContent()).toBe('waiting');
    expect(await cell(2, 'Devices').textContent()).toBe('1');
    // Site budgets and the lease.
    await page.locator('.budgets li[data-site="lab"]').filter({ hasText: 'lab: 1 lease held of 2 allowed' }).waitFor();
    await page.locator('.lease-list li').filter({ hasText: `${idOf(9)} at lab: robot-ai 2.0.0, expires in` }).waitFor();
  });

  it('halts the rollout with the reason the operator gives, and robots learn of it at their next check-in', async () => {
    await rollout().getByRole('button', { name: 'Halt' }).click();
    const dialog = page.getByRole('dialog', { name: 'Halt robot-ai 2.0.0?' });
    await dialog.waitFor();
    await dialog.getByLabel('Reason').fill('battery complaints at the lab');
    await dialog.getByRole('button', { name: 'Halt rollout' }).click();
    await expect.poll(() => rollout().locator('[data-rollout-state]').textContent()).toBe('halted');
    expect(await rollout().locator('.halt-note').textContent()).toMatch(/^Halted by an operator just now: battery complaints at the lab$/);
    const listed = await operator('GET', '/api/v1/rollouts');
    expect(listed.body.rollouts[0]).toMatchObject({ state: 'halted', halt: { by: 'operator', reason: 'battery complaints at the lab' } });
    const next = await checkin(idOf(15));
    expect(next.body.rollouts).toEqual([expect.objectContaining({ product: 'robot-ai', version: '2.0.0', state: 'halted' })]);
    expect(await rollout().getByRole('button', { name: 'Halt' }).count()).toBe(0);
  });

  it('shows a halt the server made by itself when failures passed the threshold, with its reason', async () => {
    const created = await operator('POST', '/api/v1/rollouts', { product: 'nav-stack', version: '1.0.0', batches: [{ all: true }], soak: '1h', failureThreshold: 0.05, minReports: 1 });
    expect(created.status).toBe(201);
    expect((await checkin(idOf(15), undefined, { product: 'nav-stack', version: '0.9.0', state: 'failed', targetVersion: '1.0.0', runId: 'run-15' })).status).toBe(200);
    const nav = page.locator('article.rollout').filter({ has: page.getByRole('heading', { name: 'nav-stack 1.0.0' }) });
    await expect.poll(() => nav.locator('[data-rollout-state]').textContent()).toBe('halted');
    expect(await nav.locator('.halt-note').textContent()).toMatch(/^Halted by the server (just now|\d+ s ago): 1 of 1 robots that reported in batch 1 failed/);
    expect(await nav.getByRole('button', { name: 'Resume' }).count()).toBe(1);
  });

  it('is legible at 1280 px and at 400 px without sideways scrolling', async () => {
    await shoot('fleet-page-all', 1280);
    // The screenshots show the first nine robots: pending, accepted, rejected, a conflict, a failure.
    await page.getByLabel('Search id or site').fill('robot-00');
    await page.getByText('1–9 of 9').waitFor();
    await shoot('fleet-page', 1280);
    await shoot('fleet-page', 400);
    // At 400 px each row is a card of labelled lines.
    const display = await page.evaluate(`getComputedStyle(document.querySelector('tr[data-device="robot-004"]')).display`);
    expect(display).toBe('block');
    await page.setViewportSize({ width: 1280, height: 1100 });
    await page.getByLabel('Search id or site').fill('');
    await page.getByText(`1–25 of ${FLEET}`).waitFor();
  });

  it('resumes a halted rollout', async () => {
    await rollout().getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => rollout().locator('[data-rollout-state]').textContent()).toBe('active');
    await rollout().getByText(/^Resumed just now/).waitFor();
    expect(await rollout().locator('.halt-note').count()).toBe(0);
    const listed = (await operator('GET', '/api/v1/rollouts')).body.rollouts as Array<{ product: string }>;
    expect(listed.find((r) => r.product === 'robot-ai')).toMatchObject({ state: 'active', halt: null });
  });

  it('shows a disconnected notice when the server stops answering, with the data it had, and picks up again when it is back', async () => {
    expect(problems).toEqual([]);
    const port = Number(new URL(url).port);
    await server.close();
    await page.getByText(/^Disconnected: ota-server does not answer since/).waitFor({ timeout: 15_000 });
    await row('robot-001').waitFor();
    // The same database behind a new process on the same port: the page carries on with the same token.
    server = createServer(serverOptions());
    await server.start(port, '127.0.0.1');
    await page.getByText(/^Refreshed /).waitFor({ timeout: 15_000 });
    expect(await row('robot-002').locator('[data-status]').textContent()).toBe('accepted');
  });
});

/**
 * The operator dashboard (/ui/) driven in a real headless Chromium against an in-process otad with
 * fake steps and the real API on 127.0.0.1 port 0. Set OTA_E2E_SCREENSHOT_DIR=/tmp/x to keep
 * screenshots (1280 px and 400 px wide) of the idle, offered, downloading and validating states.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, READ_TOKEN, startHarness, waitFor, type Harness } from '../integration/api/harness.js';
import { DASHBOARD_CSP } from '../../src/api/ui/router.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`dashboard browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);

const NOTES = 'Release 2.0.0: faster planning, fewer stops.';

let h: Harness;

beforeAll(async () => {
  h = await startHarness({
    // The first pre-check finds the battery low; the backup lasts long enough for the test to
    // publish a progress message and see the bar.
    fake: { offerVersion: '2.0.0', preCheckFailures: 1, delayMs: { check: 2000, backup: 2500, stage: 3000, validate: 3000 } },
    extra: { api: { controlRateLimit: { window: '1m', max: 1000 } } },
  });
});
afterAll(async () => h?.close());

/** fetch() will not send a foreign Host header; node:http will. */
function statusWithHost(url: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { headers: { Host: host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
}

/** Evaluated in the page (the test's own TypeScript has no DOM types). */
const storedToken = "sessionStorage.getItem('otad.token')";

const productState = () => h.daemon.status().products[0]?.state;
const shots = process.env.OTA_E2E_SCREENSHOT_DIR;

/** A screenshot at 1280 px and one at 400 px wide (full page), when OTA_E2E_SCREENSHOT_DIR is set. */
async function shoot(page: Page, name: string): Promise<void> {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${name}.png`) });
  await page.setViewportSize({ width: 400, height: 900 });
  // Readable at 400 px: nothing wider than the screen.
  expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(400);
  await page.screenshot({ path: join(shots, `${name}-400px.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
}

describe('dashboard files over HTTP', () => {
  it('serves the page without a token, under a strict Content-Security-Policy, and holds no data', async () => {
    const res = await fetch(`${h.url}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toBe(DASHBOARD_CSP);
    expect(DASHBOARD_CSP).toContain("script-src 'self'");
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await res.text();
    // No inline script: every <script> has a src.
    expect(html.match(/<script(?![^>]*\bsrc=)[^>]*>/g)).toBeNull();
    expect(html).not.toContain('robot-0001');
  });

  it('redirects /ui to /ui/ so the page\'s relative module URLs resolve', async () => {
    const res = await fetch(`${h.url}/ui`, { redirect: 'manual' });
    expect(res.status).toBe(301);
    expect(res.headers.get('location')).toBe('/ui/');
  });

  it('serves the Socket.IO ES module client that the socket.io server package ships', async () => {
    const res = await fetch(`${h.url}/ui/vendor/socket.io.esm.min.js`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/javascript/);
    expect(await res.text()).toContain('Socket.IO v4.8');
  });

  it('serves the marked and dompurify ES modules the installed packages ship, for the release notes', async () => {
    for (const [file, banner] of [['marked.esm.js', 'marked v18'], ['purify.es.mjs', 'DOMPurify']]) {
      const res = await fetch(`${h.url}/ui/vendor/${file}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/javascript/);
      expect(await res.text()).toContain(banner);
    }
  });

  it('tells a token its scope at /ui/session and refuses a missing or wrong token with 401 in the API error shape', async () => {
    const ok = await fetch(`${h.url}/ui/session`, { headers: { Authorization: `Bearer ${READ_TOKEN}` } });
    expect(await ok.json()).toEqual({ name: 'dashboard', scope: 'read' });
    for (const headers of [{}, { Authorization: 'Bearer wrong-token-0123456789' }] as Array<Record<string, string>>) {
      const res = await fetch(`${h.url}/ui/session`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toContain('Bearer');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('API_UNAUTHORIZED');
    }
  });

  it('answers an unknown file under /ui/ with 404 and keeps the Host allow-list', async () => {
    expect((await fetch(`${h.url}/ui/nothing.js`)).status).toBe(404);
    expect((await fetch(`${h.url}/ui/vendor/socket.io.js`)).status).toBe(404);
    expect(await statusWithHost(`${h.url}/ui/`, 'attacker.example')).toBe(403);
  });
});

describe.skipIf(!haveChromium)('dashboard in headless Chromium', () => {
  let context: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    profile = mkdtempSync(join(tmpdir(), 'otad-chromium-'));
    // A persistent context on a fresh profile folder: Playwright takes the profile this way
    // (it refuses --user-data-dir in args). Each page has its own sessionStorage, so pages
    // signed in with different tokens do not share one.
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 900 },
    });
    context.setDefaultTimeout(10_000);
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  async function signIn(token: string, prepare?: (page: Page) => Promise<unknown>): Promise<Page> {
    const page = await context.newPage();
    await prepare?.(page);
    await page.goto(`${h.url}/ui/`);
    await page.getByLabel('API token').fill(token);
    await page.getByRole('button', { name: 'Connect' }).click();
    return page;
  }

  const product = (page: Page): Locator => page.getByRole('region', { name: 'robot-ai' });
  const stateOf = (page: Page): Locator => product(page).locator('.state');

  async function waitForState(page: Page, label: string): Promise<void> {
    await product(page).locator('.state', { hasText: new RegExp(`^${label}$`) }).waitFor();
  }

  it('takes a control token, checks, offers both choices with the notes, shows pre-check reasons and progress, and follows the update to idle with the new version in history', async () => {
    const problems: string[] = [];
    const urls: string[] = [];
    const page = await signIn(CONTROL_TOKEN, async (p) => {
      p.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      p.on('pageerror', (e) => problems.push(e.message));
      p.on('request', (r) => urls.push(r.url()));
      p.on('response', (r) => {
        if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
      });
    });

    await waitForState(page, 'Idle');
    await page.locator('#connection .conn-state', { hasText: /^Connected$/ }).waitFor();
    const idleButtons = await product(page).getByRole('button').allTextContents();
    expect(idleButtons).toContain('Check now');
    expect(idleButtons).not.toContain('Update now');
    await page.getByRole('status').filter({ hasText: 'Signed in as robot-ai (control)' }).waitFor();
    await shoot(page, 'idle');

    await product(page).getByRole('button', { name: 'Check now' }).click();
    // While the check runs: an indeterminate bar (no value) labelled as such.
    const checking = product(page).getByRole('progressbar', { name: 'Checking for updates…' });
    await checking.waitFor();
    expect(await checking.getAttribute('value')).toBeNull();
    await product(page).getByRole('button', { name: 'Update now' }).waitFor();
    expect(await checking.count()).toBe(0);
    await product(page).getByRole('button', { name: 'Update at 3 AM' }).waitFor();
    expect((await product(page).locator('.notes-text').textContent())?.trim()).toBe(NOTES);
    // The release details, each in its own collapsible section; overview and notes open.
    const sections = product(page).locator('details.section');
    expect(await sections.locator('summary').allTextContents()).toEqual([
      'Release 2.0.0 (offered)', 'Checksums', 'Requirements', 'Compatibility', 'Rollout', 'Signed by, metadata expiry', 'Release notes 2.0.0',
    ]);
    expect(await sections.evaluateAll((ds) => ds.map((d) => (d as unknown as { open: boolean }).open))).toEqual([true, false, false, false, false, false, true]);
    const checksums = product(page).locator('details[data-section="checksums"]');
    await checksums.locator('summary').focus();
    await page.keyboard.press('Enter');
    expect(await checksums.locator('dd').allTextContents()).toEqual([`sha256:${'b'.repeat(64)}`, `sha256:${'a'.repeat(64)}`]);
    expect(await product(page).locator('details[data-section="rollout"] dd').first().textContent()).toBe('100%');
    // Search: only the sections and rows holding the words stay, opened; clearing brings all back.
    const search = product(page).getByLabel('Search the release details and history of robot-ai');
    await search.fill('100%');
    await expect.poll(() => sections.evaluateAll((ds) => ds.filter((d) => !(d as unknown as { hidden: boolean }).hidden).map((d) => d.getAttribute('data-section')))).toEqual(['rollout']);
    expect(await product(page).locator('details[data-section="rollout"]').getAttribute('open')).toBe('');
    expect(await product(page).locator('.search-count').textContent()).toBe('1 match for “100%”');
    await search.fill('up-to-date');
    await expect.poll(() => product(page).locator('table.history tbody tr:not([hidden])').count()).toBe(0);
    await search.fill('');
    await expect.poll(() => sections.evaluateAll((ds) => ds.filter((d) => !(d as unknown as { hidden: boolean }).hidden).length)).toBe(7);
    // The operator's opened section stays open across re-renders.
    expect(await checksums.getAttribute('open')).toBe('');
    expect(await stateOf(page).textContent()).toBe('Update available: waiting for a choice');
    expect(await product(page).locator('dl.facts').first().locator('dd').nth(2).textContent()).toBe('2.0.0');
    await shoot(page, 'offered');

    // Update now asks first, saying what will happen; "Keep as is" (or Escape) sends nothing.
    await product(page).getByRole('button', { name: 'Update now' }).click();
    const dialog = page.getByRole('dialog', { name: 'Update now: robot-ai 2.0.0?' });
    await dialog.waitFor();
    const facts = async () => (await dialog.locator('dt, dd').allTextContents()).join('|');
    expect(await facts()).toContain('Install|robot-ai 2.0.0 now (installed: none)');
    expect(await facts()).toContain('Backup first|yes, of the current install (the last 2 kept)');
    expect(await facts()).toContain('Download|4.0 KiB (robot-ai-2.0.0.tar.gz)');
    expect(await facts()).toContain('Services that stop and restart|none configured');
    expect(await facts()).toMatch(/Probation\|[^|]+, health checks every [^|]+; \d+ failed rounds? roll back/);
    // The dialog has the focus, on the harmless choice.
    expect(await page.evaluate('document.activeElement.textContent')).toBe('Keep as is');
    await page.keyboard.press('Escape');
    await expect.poll(() => dialog.count()).toBe(0);
    await page.getByRole('status').filter({ hasText: 'Nothing was changed' }).waitFor();
    expect(productState()).toBe('awaitingChoice');
    await product(page).getByRole('button', { name: 'Update now' }).click();
    await dialog.getByRole('button', { name: 'Keep as is' }).click();
    expect(productState()).toBe('awaitingChoice');
    // Closed and opened again before the browser delivers the first close event (a fast Escape,
    // then Enter on the same button): that late event belongs to the first opening and must leave
    // the second one's action in place and its focus inside the dialog.
    await product(page).getByRole('button', { name: 'Update now' }).click();
    await dialog.waitFor();
    await page.evaluate(`(() => {
      document.getElementById('confirm').close();
      document.querySelector('[data-product="robot-ai"] [data-event="UPDATE_NOW"]').click();
    })()`);
    await dialog.waitFor();
    await expect.poll(() => page.evaluate('document.activeElement.textContent')).toBe('Keep as is');
    await dialog.getByRole('button', { name: 'Update now' }).click();
    await waitForState(page, 'Waiting until the robot is ready');
    // The state comes from the stream first; the reasons come with the status read that follows it.
    await product(page).locator('.precheck', { hasText: 'Next try at' }).waitFor();
    expect(await product(page).locator('.precheck li').allTextContents()).toEqual(['BATTERY_LOW battery at 12%, needs 30%']);
    // The retry instant comes from the daemon's clock: move it there and let the daemon see it.
    const retryAt = h.daemon.status().products[0]?.deadlines.preCheckRetryAt as number;
    h.clock.advance(retryAt - h.clock.now());
    h.daemon.onTimer();

    await waitForState(page, 'Backing up');
    await expect.poll(() => product(page).locator('.precheck').count()).toBe(0);
    const runId = h.daemon.status().products[0]?.runId as string;
    h.daemon.bus.publish('progress', { product: 'robot-ai', runId, step: 'backup', bytes: 2048, total: 4096, rateBps: 1024, etaMs: 2000 });
    const bar = product(page).getByRole('progressbar');
    await bar.waitFor();
    expect(await bar.getAttribute('value')).toBe('2048');
    const activeText = () => product(page).locator('.step-active label').textContent();
    expect(await activeText()).toBe('Backup: 2.0 KiB of 4.0 KiB (50%), 1.0 KiB/s, about 2 s left');

    // The download: the backup's bar is gone, the backup is one "done" line, one bar for the download.
    await waitForState(page, 'Downloading and unpacking');
    await expect.poll(() => bar.count()).toBe(0);
    const MiB = 1024 * 1024;
    h.daemon.bus.publish('progress', { product: 'robot-ai', runId, step: 'download', bytes: 1.5 * MiB, total: 4 * MiB, rateBps: 512 * 1024, etaMs: 5000 });
    await product(page).locator('.step-active[data-step="download"]').waitFor();
    expect(await activeText()).toBe('Download: 1.5 MiB of 4.0 MiB (37%), 512.0 KiB/s, about 5 s left');
    expect(await product(page).locator('.step-done').allTextContents()).toEqual(['✓ Backup done (4.0 KiB)']);
    expect(await bar.count()).toBe(1);
    await shoot(page, 'downloading');
    h.daemon.bus.publish('progress', { product: 'robot-ai', runId, step: 'extract', bytes: 0, total: 6 * MiB, rateBps: null, etaMs: null, message: 'unpacking 12 entries' });
    await product(page).locator('.step-active[data-step="extract"]').waitFor();
    expect(await activeText()).toBe('Extraction: unpacking 12 entries (6.0 MiB)');
    expect(await bar.count()).toBe(1);

    // Probation: the finished extraction's bar does not linger; the rounds come with their checks.
    await waitForState(page, 'Checking the new version');
    await expect.poll(() => bar.count()).toBe(0);
    expect(await product(page).locator('.step-done').allTextContents()).toEqual(['✓ Backup done (4.0 KiB)', '✓ Download done (4.0 MiB)', '✓ Extraction done (6.0 MiB)']);
    h.daemon.bus.publish('progress', {
      product: 'robot-ai', runId, step: 'probation', bytes: 20_000, total: 60_000, rateBps: null, etaMs: 40_000,
      message: 'round 2 of 7: 1 of 2 checks passed (release-marker); failing: http://127.0.0.1:8080/health',
      probation: { round: 2, rounds: 7, checks: [{ name: 'release-marker', ok: true }, { name: 'http://127.0.0.1:8080/health', ok: false }] },
    });
    await product(page).locator('.step-active[data-step="probation"]').waitFor();
    expect(await activeText()).toBe('Probation: round 2 of 7: 1 of 2 checks passed (release-marker); failing: http://127.0.0.1:8080/health — 20 s of 60 s, about 40 s left');
    expect(await product(page).getByRole('list', { name: 'Health checks' }).getByRole('listitem').allTextContents()).toEqual(['✓ passed: release-marker', '✗ failing: http://127.0.0.1:8080/health']);
    expect(await bar.getAttribute('value')).toBe('20000');
    await shoot(page, 'validating');

    await waitFor(() => h.daemon.status().products[0]?.lastOutcome === 'committed', 'the run to commit');
    await waitForState(page, 'Idle');
    await product(page).locator('tr', { hasText: 'none → 2.0.0' }).filter({ hasText: 'committed' }).waitFor();
    await expect.poll(() => product(page).locator('dl.facts').first().locator('dd').nth(1).textContent()).toBe('2.0.0');
    await expect.poll(() => product(page).getByRole('progressbar').count()).toBe(0);
    await page.locator('#log-lines li').first().waitFor();
    // The search covers the history too.
    await search.fill('committed');
    await expect.poll(() => product(page).locator('table.history tbody tr:not([hidden])').allTextContents()).toEqual([expect.stringContaining('none → 2.0.0')]);
    expect(await product(page).locator('table.releases tbody tr:not([hidden])').count()).toBe(0);
    await search.fill('');
    await expect.poll(() => product(page).locator('table.releases tbody tr:not([hidden])').count()).toBe(1);

    const token = await page.evaluate(storedToken);
    expect(token).toBe(CONTROL_TOKEN);
    expect(urls.filter((u) => u.includes(CONTROL_TOKEN))).toEqual([]);
    // No CSP violation, script error or failed request on the way.
    expect(problems).toEqual([]);

    await page.close();
  });

  it('renders release notes from Markdown and strips what could act (script, handlers, javascript: links, images, styles)', async () => {
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${h.url}/ui/`);
    const markdown = '## Fixes\\n\\n- **faster** planning\\n- [docs](https://example.com/x)\\n\\n<script>window.__x = 1</script><img src="x" onerror="window.__x = 2"><a href="javascript:window.__x=4">js</a><p style="color:red" onclick="window.__x=3">p</p>';
    const html = await page.evaluate(`import('./details.js').then((m) => { const d = document.createElement('div'); d.append(m.renderMarkdown('${markdown}')); document.body.append(d); return d.innerHTML; })`);
    expect(html).toContain('<h2>Fixes</h2>');
    expect(html).toContain('<strong>faster</strong>');
    expect(html).toContain('<a href="https://example.com/x" rel="noreferrer noopener">docs</a>');
    expect(html).not.toMatch(/script|<img|onerror|onclick|javascript:|style=/);
    expect(await page.evaluate('window.__x')).toBeUndefined();
    expect(problems).toEqual([]);
    await page.close();
  });

  it('filters the log by level, product and text through the API, colours the levels, and applies the filters to live lines', async () => {
    const log = h.logging.logger;
    log.error('viewer: the arm controller did not answer', { product: 'robot-ai' });
    log.warn('viewer: clock drift of 2 s');
    log.info('viewer: planning cycle finished', { product: 'robot-ai' });
    log.debug('viewer: debug detail', { product: 'robot-ai' });
    const page = await signIn(READ_TOKEN);
    const lines = page.locator('#log-lines li');
    await lines.filter({ hasText: 'viewer: planning cycle finished' }).waitFor();
    expect(await lines.filter({ hasText: 'viewer: debug detail' }).count()).toBe(0);
    const texts = () => lines.allTextContents();

    await page.getByLabel('Text').fill('viewer:');
    await expect.poll(async () => (await texts()).length).toBe(3);
    expect((await texts()).map((t) => t.replace(/^\d\d:\d\d:\d\d /, ''))).toEqual([
      'ERROR [robot-ai] viewer: the arm controller did not answer',
      'WARN viewer: clock drift of 2 s',
      'INFO [robot-ai] viewer: planning cycle finished',
    ]);
    // Each level its own colour.
    const colour = (level: string) => page.evaluate(`getComputedStyle(document.querySelector('#log-lines li[data-level="${level}"]')).color`);
    const colours = new Set([await colour('error'), await colour('warn'), await colour('info')]);
    expect(colours.size).toBe(3);

    await page.getByLabel('Level').selectOption('debug');
    await lines.filter({ hasText: 'viewer: debug detail' }).waitFor();
    await page.getByLabel('Product').selectOption('-');
    await expect.poll(texts).toEqual([expect.stringContaining('WARN viewer: clock drift of 2 s')]);
    await page.getByLabel('Product').selectOption('robot-ai');
    await page.getByLabel('Level').selectOption('error');
    await expect.poll(texts).toEqual([expect.stringContaining('ERROR [robot-ai] viewer: the arm controller did not answer')]);
    expect(await page.locator('#log-count').textContent()).toBe('1 line matching the filters (the newest 200 are kept)');

    // Live lines pass through the same filters.
    log.info('viewer: another cycle', { product: 'robot-ai' });
    log.error('viewer: the arm controller is back', { product: 'robot-ai' });
    await lines.filter({ hasText: 'viewer: the arm controller is back' }).waitFor();
    expect(await lines.filter({ hasText: 'viewer: another cycle' }).count()).toBe(0);
    await page.close();
  });

  it('shows a read-only token the state but no control buttons, keeps the token across a reload and forgets it on sign-out', async () => {
    const page = await signIn(READ_TOKEN);
    await waitForState(page, 'Idle');
    await page.getByText('This token can read only').waitFor();
    await expect.poll(() => product(page).getByRole('button').count()).toBe(0);

    // The token lasts for the tab: a reload does not ask again; signing out forgets it.
    await page.reload();
    await waitForState(page, 'Idle');
    expect(await page.getByLabel('API token').isVisible()).toBe(false);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate(storedToken)).toBeNull();
    expect(await page.getByRole('region', { name: 'robot-ai' }).count()).toBe(0);
    await page.close();
  });

  it('shows a wrong token\'s 401 as a readable error and asks again', async () => {
    const page = await signIn('wrong-token-0123456789');
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: 'API_UNAUTHORIZED (HTTP 401)' }).waitFor();
    expect(await alert.textContent()).toBe('API_UNAUTHORIZED (HTTP 401): the bearer token is not valid');
    await page.getByLabel('API token').waitFor();
    expect(await page.evaluate(storedToken)).toBeNull();
    await page.close();
  });

  it('shows a 409 when a choice arrives after the product moved on, then offers what is allowed now', async () => {
    await h.daemon.dispatch({ product: 'robot-ai', type: 'CHECK_NOW', source: 'test' });
    await waitFor(() => productState() === 'awaitingChoice', 'awaitingChoice');
    const page = await signIn(CONTROL_TOKEN);
    const updateNow = product(page).getByRole('button', { name: 'Update now' });
    await updateNow.waitFor();
    // The choice is held on its way to otad until the product has moved on: it arrives late.
    let release: () => void = () => {};
    const held = new Promise<void>((r) => (release = r));
    await page.route('**/api/v1/events', async (route) => {
      await held;
      await route.continue();
    });
    await updateNow.click();
    await page.getByRole('dialog').getByRole('button', { name: 'Update now' }).click();
    await h.daemon.dispatch({ product: 'robot-ai', type: 'CANCEL', source: 'test' });
    await waitFor(() => productState() === 'idle', 'idle');
    release();
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: 'API_EVENT_NOT_ALLOWED (HTTP 409)' }).waitFor();
    expect(await alert.textContent()).toMatch(/UPDATE_NOW is not allowed while robot-ai is in state idle; allowed now: .*CHECK_NOW/);
    await waitForState(page, 'Idle');
    await product(page).getByRole('button', { name: 'Check now' }).waitFor();
    await expect.poll(() => product(page).getByRole('button', { name: 'Update now' }).count()).toBe(0);
    await page.close();
  });
});

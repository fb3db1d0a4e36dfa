/**
 * The dashboard against a real otad process (the test wiring with fake steps and the real
 * interfaces) on a fixed loopback port, so that the daemon can be stopped and started again under
 * the open page: the page must say it is disconnected, disable every action, then reconnect by
 * itself, resume the stream and show the state the new daemon has, without a reload.
 *
 * Set OTA_E2E_SCREENSHOT_DIR=/tmp/x to keep screenshots (1280 px and 400 px wide).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import YAML from 'yaml';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, writeTokensFile } from '../integration/api/harness.js';
import { makeSandbox, spawnOtad, type OtadProcess, type Sandbox } from '../support/otad-process.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`dashboard restart tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const shots = process.env.OTA_E2E_SCREENSHOT_DIR;

/** A port nothing listens on now: the daemon is started on it twice. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let sandbox: Sandbox;
let otad: OtadProcess | null = null;
let url: string;

function start(fake: Record<string, unknown>): OtadProcess {
  return spawnOtad(sandbox, { fake, env: { OTA_TEST_INTERFACES: '1' } });
}

async function startAndWait(fake: Record<string, unknown>): Promise<OtadProcess> {
  const p = start(fake);
  await p.ready(60_000);
  await until('otad to answer', async () => (await fetch(`${url}/api/v1/health`)).ok);
  return p;
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function api(method: 'GET' | 'POST', path: string, body?: unknown): Promise<any> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { Authorization: `Bearer ${CONTROL_TOKEN}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return res.json();
}
const state = async (): Promise<string> => (await api('GET', '/api/v1/status')).products[0].state;

beforeAll(async () => {
  const port = await freePort();
  sandbox = makeSandbox({}, 'otad-dashboard-live-');
  const tokensFile = writeTokensFile(sandbox.dir);
  const config = YAML.parse(readFileSync(sandbox.configPath, 'utf8')) as Record<string, any>;
  config.api = { enabled: true, host: '127.0.0.1', port, tokensFile, controlRateLimit: { window: '1m', max: 1000 } };
  config.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
  // Two products: the page opens on the overview. robot-ai takes its type's definition (health
  // checks, preserved paths) without its systemd services: these fake steps restart nothing.
  config.products = [
    // robot-ai may be switched to beta or to a USB stick; maps has choices too, but its policy forbids switching.
    {
      name: 'robot-ai',
      type: 'robot-ai',
      installPath: join(sandbox.installRoot, 'robot-ai'),
      services: [],
      channels: ['beta'],
      repositories: [{ name: 'usb', kind: 'local', path: '/media/usb/ota' }],
    },
    { name: 'maps', installPath: join(sandbox.installRoot, 'maps'), preservedPaths: ['local'], channels: ['beta'], allowSourceSwitch: false },
  ];
  writeFileSync(sandbox.configPath, YAML.stringify(config));
  mkdirSync(join(sandbox.installRoot, 'robot-ai'), { recursive: true });
  mkdirSync(join(sandbox.installRoot, 'maps'), { recursive: true });
  url = `http://127.0.0.1:${port}`;
  otad = await startAndWait({ offerVersion: '2.0.0' });
}, 120_000);
afterAll(async () => {
  await otad?.kill('SIGTERM');
  if (sandbox) rmSync(sandbox.dir, { recursive: true, force: true });
});

describe.skipIf(!haveChromium)('dashboard across an otad restart', () => {
  let context: BrowserContext;
  beforeAll(async () => {
    if (shots) mkdirSync(shots, { recursive: true });
    context = await chromium.launchPersistentContext('', {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1000 },
    });
    context.setDefaultTimeout(20_000);
  });
  afterAll(async () => context?.close());

  const product = (page: Page): Locator => page.getByRole('region', { name: 'robot-ai' });
  const connState = (page: Page): Locator => page.locator('#connection .conn-state');

  it('shows disconnected with every action disabled while otad is down, then reconnects by itself and shows the new daemon\'s state without a reload', async () => {
    const problems: string[] = [];
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${url}/ui/`);
    await page.getByLabel('API token').fill(CONTROL_TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    await connState(page).filter({ hasText: /^Connected$/ }).waitFor();
    await expect.poll(() => page.locator('#connection .conn-detail').textContent()).toMatch(/since \d\d:\d\d:\d\d · last event \d\d:\d\d:\d\d/);
    const check = product(page).getByRole('button', { name: 'Check now' });
    await check.waitFor();
    expect(await check.isEnabled()).toBe(true);
    // Something to tell the page apart from a reload: the window keeps a marker a reload would lose.
    await page.evaluate('window.__sameDocument = true');

    // otad stops: it closes every connection ('io server disconnect'), which Socket.IO alone never retries.
    await otad?.kill('SIGTERM');
    otad = null;
    await connState(page).filter({ hasText: /^(Disconnected|Reconnecting…)$/ }).waitFor();
    await expect.poll(() => check.isDisabled()).toBe(true);
    await page.getByRole('status').filter({ hasText: 'Connection to otad lost' }).waitFor();
    await connState(page).filter({ hasText: /^Disconnected$/ }).waitFor();
    expect(await page.locator('#connection').getAttribute('data-conn')).toBe('disconnected');
    expect(await page.locator('#connection .conn-detail').textContent()).toMatch(/^since \d\d:\d\d:\d\d · /);
    if (shots) {
      await page.screenshot({ path: join(shots, 'disconnected.png') });
      await page.setViewportSize({ width: 400, height: 1000 });
      await page.screenshot({ path: join(shots, 'disconnected-400px.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 1000 });
    }

    // The next otad, on the same database and port, is asked to check: it offers 2.0.0.
    otad = await startAndWait({ offerVersion: '2.0.0' });
    await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    await until('the offer', async () => (await state()) === 'awaitingChoice');

    await connState(page).filter({ hasText: /^Connected$/ }).waitFor({ timeout: 30_000 });
    await product(page).locator('.state', { hasText: /^Update available: waiting for a choice$/ }).waitFor();
    const updateNow = product(page).getByRole('button', { name: 'Update now' });
    await updateNow.waitFor();
    expect(await updateNow.isEnabled()).toBe(true);
    expect(await page.evaluate('window.__sameDocument')).toBe(true);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('opens on the overview of both products, switches to a product\'s page by keyboard, and shows the product type with its definition in a tooltip', async () => {
    const page = await context.newPage();
    await page.goto(`${url}/ui/`);
    await page.getByLabel('API token').fill(CONTROL_TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();
    const views = page.getByRole('navigation', { name: 'Views' });
    await views.getByRole('link', { name: 'Overview' }).waitFor();
    expect(await views.getByRole('link').allTextContents()).toEqual(['Overview', 'robot-ai', 'maps']);
    expect(await views.getByRole('link', { name: 'Overview' }).getAttribute('aria-current')).toBe('page');
    // The overview: both products, compact (no history), each with a link to its page.
    await product(page).waitFor();
    await page.getByRole('region', { name: 'maps' }).waitFor();
    expect(await page.locator('table.history').count()).toBe(0);

    // The type and, on keyboard focus, the definition.
    const indicator = product(page).locator('.type-indicator');
    expect(await indicator.textContent()).toBe('Type: robot-ai');
    const tip = product(page).getByRole('tooltip');
    expect(await tip.isVisible()).toBe(false);
    await indicator.focus();
    await expect.poll(() => tip.isVisible()).toBe(true);
    const tipText = (await tip.locator('dt, dd').allTextContents()).join('|');
    expect(tipText).toContain(`Install path|${join(sandbox.installRoot, 'robot-ai')}`);
    expect(tipText).toContain('Services|none');
    expect(tipText).toContain('Health checks|unit: robot-ai-core.service, http: http://127.0.0.1:8000/health answers 200');
    expect(tipText).toContain('Preserved paths|config, data');
    expect(await indicator.getAttribute('aria-describedby')).toBe(await tip.getAttribute('id'));
    // Escape closes it (WCAG 1.4.13); it comes back once focus has left and returned.
    await page.keyboard.press('Escape');
    await expect.poll(() => tip.isVisible()).toBe(false);
    expect(await page.evaluate("document.activeElement?.classList.contains('type-indicator')")).toBe(true);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Shift+Tab');
    expect(await page.evaluate("document.activeElement?.classList.contains('type-indicator')")).toBe(true);
    await expect.poll(() => tip.isVisible()).toBe(true);
    // The same on hover: Escape hides it while the pointer stays, moving away and back shows it again.
    await page.evaluate('document.activeElement?.blur()');
    await page.mouse.move(5, 995);
    await expect.poll(() => tip.isVisible()).toBe(false);
    await indicator.hover();
    await expect.poll(() => tip.isVisible()).toBe(true);
    await page.keyboard.press('Escape');
    await expect.poll(() => tip.isVisible()).toBe(false);
    await page.mouse.move(5, 995);
    await indicator.hover();
    await expect.poll(() => tip.isVisible()).toBe(true);
    await page.mouse.move(5, 995);
    expect(await page.getByRole('region', { name: 'maps' }).locator('.type-indicator').textContent()).toBe('Type: not set');
    // Channel and repository: robot-ai offers both selects; maps's policy forbids switching, and the page says so.
    const aiChoice = product(page).getByRole('group', { name: 'Channel and repository' });
    expect(await aiChoice.getByLabel('Channel', { exact: true }).locator('option').allTextContents()).toEqual(['stable (default)', 'beta']);
    const repoOptions = await aiChoice.getByLabel('Repository', { exact: true }).locator('option').allTextContents();
    expect(repoOptions).toHaveLength(2);
    expect(repoOptions[0]).toMatch(/^default — http:\/\/\S+$/);
    expect(repoOptions[1]).toBe('usb — /media/usb/ota');
    // Each repository as otad reaches it: nothing listens at the server URL, the USB stick is not there.
    const reachList = product(page).getByRole('list', { name: 'Connection of each repository of robot-ai' });
    await expect.poll(() => reachList.locator('li').allTextContents()).toEqual([
      expect.stringMatching(/^default \(in use\): unreachable: the repository did not answer: ECONNREFUSED$/),
      'usb: unreachable: no metadata/timestamp.json in /media/usb/ota (ENOENT)',
    ]);
    // robot-ai waits for a choice on 2.0.0 (the first test): a switch must wait until it is idle.
    await aiChoice.getByLabel('Repository', { exact: true }).selectOption('usb');
    expect(await aiChoice.getByRole('button', { name: 'Switch' }).isDisabled()).toBe(true);
    expect(await aiChoice.textContent()).toContain('Switching waits until the product is idle');
    await aiChoice.getByLabel('Repository', { exact: true }).selectOption('default');
    const mapsChoice = page.getByRole('region', { name: 'maps' }).getByRole('group', { name: 'Channel and repository' });
    expect(await mapsChoice.getByLabel('Channel', { exact: true }).isDisabled()).toBe(true);
    expect(await mapsChoice.getByRole('button', { name: 'Switch' }).count()).toBe(0);
    expect(await mapsChoice.textContent()).toContain('Switching is forbidden by configuration (allowSourceSwitch: false).');
    if (shots) {
      await page.screenshot({ path: join(shots, 'overview.png') });
      await page.setViewportSize({ width: 400, height: 1000 });
      await page.screenshot({ path: join(shots, 'overview-400px.png'), fullPage: true });
      await page.setViewportSize({ width: 1280, height: 1000 });
    }

    // Keyboard: to the maps link, Enter: only maps, with its history and details.
    await views.getByRole('link', { name: 'maps' }).focus();
    await page.keyboard.press('Enter');
    await page.locator('table.history').waitFor();
    expect(await page.getByRole('region', { name: 'robot-ai' }).count()).toBe(0);
    expect(await views.getByRole('link', { name: 'maps' }).getAttribute('aria-current')).toBe('page');
    expect(new URL(page.url()).hash).toBe('#product/maps');
    await page.goBack();
    await product(page).waitFor();
    expect(await page.locator('table.history').count()).toBe(0);

    // The dark theme follows the system's preference; at 400 px nothing scrolls sideways.
    const background = () => page.evaluate('getComputedStyle(document.documentElement).backgroundColor');
    const light = await background();
    await page.emulateMedia({ colorScheme: 'dark' });
    await expect.poll(background).not.toBe(light);
    expect(await page.evaluate("getComputedStyle(document.querySelector('.product')).color")).toBe('rgb(230, 233, 236)');
    await page.setViewportSize({ width: 400, height: 1000 });
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(400);
    if (shots) await page.screenshot({ path: join(shots, 'overview-dark-400px.png'), fullPage: true });
    await page.close();
  });
});

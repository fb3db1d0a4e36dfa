/**
 * The publisher studio's tools in Debian's Chromium against real ota-servers on 127.0.0.1: the
 * template editor (validate with errors, save a version, see the diff, meet TEMPLATE_CHANGED when
 * someone else saved), a resumable upload whose connection a loopback proxy breaks once mid-way
 * (the page resumes from the server's offset), the repository connection test with each role's
 * expiry and a warning, dependencies on siblings with semver errors next to the field and in the
 * manifest preview, and a keyboard-only pass through the main form.
 * Set OTA_E2E_SCREENSHOT_DIR=/some/folder to keep screenshots at 1280 px and 400 px.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPublisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../src/server/app.js';
import { randomish, writeTarGz } from '../support/tar-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`studio tools browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SHOTS = process.env.OTA_E2E_SCREENSHOT_DIR;
const TOKEN = 'studio-tools-token-0123456789';
const DAY = 86_400_000;

let dir: string;
const servers: OtaServer[] = [];
let url: string;
let proxy: net.Server;
/** Set by a test: the proxy breaks the next connection carrying a PUT piece after this many bytes. */
let breakPutAfter: number | null = null;
let broken = 0;

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
  }
}

/** A second repository (staging) whose targets expire in 10 days: under the 14-day warning. */
async function stagingRepo(): Promise<{ url: string; root: string }> {
  const repoDir = path.join(dir, 'staging', 'repo');
  const publisher = createPublisher({ repoDir, keysDir: path.join(dir, 'staging', 'keys'), clock: systemClock });
  await publisher.init({ expiryMs: { targets: 10 * DAY } });
  const src = path.join(dir, 'staging-src');
  await writeTree(src, { VERSION: '1.0.0\n' });
  await publisher.add({ product: 'robot-ai', version: '1.0.0', sourceDir: src });
  await publisher.publish();
  const s = createServer({ repoDir, keysDir: path.join(dir, 'staging', 'keys'), clock: systemClock, logger: silentLogger, database: path.join(dir, 'staging', 'fleet.db'), timestampRefresh: false, prune: false, rolloutTick: false });
  servers.push(s);
  return { url: `${(await s.start(0, '127.0.0.1')).url}/metadata/`, root: path.join(repoDir, 'metadata', '1.root.json') };
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'otad-studio-tools-'));
  const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
  await publisher.init();
  for (const [product, version] of [['robot-ai', '1.2.0'], ['robot-ai-sibling', '2.1.0']] as const) {
    const src = path.join(dir, `${product}-${version}`);
    await writeTree(src, { VERSION: `${version}\n`, 'bin/run': '#!/bin/sh\n' });
    await publisher.add({ product, version, sourceDir: src, check: { versionFile: 'VERSION' } });
  }
  await publisher.publish();
  const types = path.join(dir, 'types');
  await fs.mkdir(types);
  for (const f of ['robot-ai.yaml', 'robot-ai-sibling.yaml']) await fs.copyFile(path.join('config', 'product-types', f), path.join(types, f));
  await writeTree(path.join(dir, 'sources', 'robot-ai', '1.3.0'), { VERSION: '1.3.0\n', 'bin/run': '#!/bin/sh\nexec planner\n' });
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  const staging = await stagingRepo();
  const server = createServer({
    repoDir: path.join(dir, 'repo'),
    keysDir: path.join(dir, 'keys'),
    clock: systemClock,
    logger: silentLogger,
    tokenFile: path.join(dir, 'token'),
    database: path.join(dir, 'fleet.db'),
    sourceRoots: [{ name: 'builds', dir: path.join(dir, 'sources') }],
    productTypesDir: types,
    studioRepositories: [
      { name: 'staging', url: staging.url, trustedRoot: staging.root },
      { name: 'test', url: 'http://127.0.0.1:9/metadata/', trustedRoot: staging.root },
    ],
    timestampRefresh: false,
    prune: false,
    rolloutTick: false,
  });
  servers.push(server);
  const direct = await server.start(0, '127.0.0.1');
  // The page talks to ota-server through this loopback proxy, which can break a connection once.
  proxy = net.createServer((client) => {
    const upstream = net.connect(direct.port, '127.0.0.1');
    let carriesPut = false;
    let forwarded = 0;
    client.on('data', (chunk) => {
      if (!carriesPut && chunk.includes('PUT /api/v1/studio/uploads/')) carriesPut = true;
      if (carriesPut && breakPutAfter !== null) {
        forwarded += chunk.length;
        if (forwarded > breakPutAfter) {
          breakPutAfter = null;
          broken += 1;
          client.destroy();
          upstream.destroy();
          return;
        }
      }
      upstream.write(chunk);
    });
    // Every answer says `Connection: close`, so the browser opens a fresh connection for each
    // request. On a reused keep-alive connection Chromium re-sends a request whose connection was
    // reset, by itself, and the page would never see the break this test is about. (ota-server
    // writes its header block in one chunk.)
    upstream.on('data', (chunk: Buffer) => {
      const at = chunk.indexOf('\r\nConnection: keep-alive\r\n');
      client.write(at >= 0 && at < chunk.indexOf('\r\n\r\n') ? Buffer.concat([chunk.subarray(0, at), Buffer.from('\r\nConnection: close\r\n'), chunk.subarray(at + '\r\nConnection: keep-alive\r\n'.length)]) : chunk);
    });
    upstream.on('end', () => client.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => proxy?.close(r));
  for (const s of servers) await s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveChromium)('publisher studio tools in headless Chromium', () => {
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
      viewport: { width: 1280, height: 1000 },
    });
    context.setDefaultTimeout(20_000);
    page = await context.newPage();
    page.on('console', (m) => {
      // The browser logs each refused request (the 409 and 422 answers are provoked on purpose) and the broken connection.
      if (m.type() === 'error' && !/status of (409|422|401)|ERR_CONNECTION|ERR_EMPTY_RESPONSE|net::/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(`${url}/studio/`);
    await page.getByLabel('Upload token').fill(TOKEN);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: '1 · Package' }).waitFor();
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  /** The panel at 1280 and 400 px in the light and the dark theme (prefers-color-scheme). */
  async function shoot(name: string, selector: string): Promise<void> {
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const width of [1280, 400]) {
        await page.setViewportSize({ width, height: 1000 });
        const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
        expect(overflow, `${name} ${scheme} ${width}`).toBeLessThanOrEqual(0);
        if (SHOTS) {
          mkdirSync(SHOTS, { recursive: true });
          await page.locator(selector).screenshot({ path: path.join(SHOTS, `studio-${name}-${scheme === 'light' ? '' : 'dark-'}${width}.png`) });
        }
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 1000 });
  }

  it('edits a template: schema errors with their line, a saved version with its diff, and a clear TEMPLATE_CHANGED', async () => {
    await page.getByLabel('Template', { exact: true }).selectOption('robot-ai');
    const editor = page.locator('#tpl-text');
    await page.getByLabel(/robot-ai\.yaml, editing on version 1/).waitFor();
    await editor.waitFor();
    const original = await editor.inputValue();
    await editor.fill(original.replace('channel: stable', 'channel: Not A Channel'));
    await page.getByRole('button', { name: 'Validate and show differences' }).click();
    const errors = page.locator('#tpl-problems');
    await errors.waitFor();
    expect(await errors.textContent()).toMatch(/line 3, channel/);
    expect(await editor.getAttribute('aria-invalid')).toBe('true');

    await editor.fill(original.replace('keep: 2', 'keep: 3'));
    await page.getByRole('button', { name: 'Save as version 2' }).click();
    await page.locator('#tpl-message').filter({ hasText: 'Saved as version 2' }).waitFor();
    expect(await page.locator('#tpl-diff .diff-add').allTextContents()).toEqual(['+   keep: 3\n']);
    expect(await page.locator('#tpl-diff .diff-remove').allTextContents()).toEqual(['-   keep: 2\n']);
    expect(await fs.readFile(path.join(dir, 'types', '.history', 'robot-ai', 'v2.yaml'), 'utf8')).toContain('keep: 3');
    await shoot('template-editor', '#templates');

    // Someone else saves version 3 meanwhile (the API, as another publisher's page would).
    const theirs = original.replace('keep: 2', 'keep: 4');
    const other = await fetch(`${url}/api/v1/studio/templates/robot-ai`, { method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ text: theirs, baseVersion: 2 }) });
    expect(other.status).toBe(200);
    const mine = original.replace('keep: 2', 'keep: 5');
    await editor.fill(mine);
    await page.getByRole('button', { name: 'Save as version 3' }).click();
    const conflict = page.locator('#tpl-conflict');
    await conflict.waitFor();
    expect(await conflict.textContent()).toContain('Someone else saved robot-ai meanwhile (now version 3)');
    expect(await conflict.textContent()).toContain('TEMPLATE_CHANGED');
    expect(await page.getByLabel(/robot-ai\.yaml/).inputValue()).toBe(mine);
    // While the conflict stands, no save that would overwrite their change is offered: the choices
    // are to load theirs, or to see the differences and only then save mine as the next version.
    expect(await page.locator('#tpl-save').count()).toBe(0);
    expect(await page.getByRole('button', { name: /^Save/ }).count()).toBe(0);
    await page.getByRole('button', { name: 'Load their version 3 (discard mine)' }).waitFor();
    await shoot('template-conflict', '#templates');
    await page.getByRole('button', { name: 'See the differences from version 3' }).click();
    await page.locator('#tpl-conflict-diff .diff-add').filter({ hasText: 'keep: 5' }).waitFor();
    expect(await page.locator('#tpl-conflict-diff .diff-remove').allTextContents()).toEqual(['-   keep: 4\n']);
    // Changing the text again hides the save until the differences of the new text are seen.
    await editor.fill(original.replace('keep: 2', 'keep: 6'));
    expect(await page.locator('#tpl-save-mine').count()).toBe(0);
    await page.getByRole('button', { name: 'See the differences from version 3' }).click();
    await page.locator('#tpl-conflict-diff .diff-add').filter({ hasText: 'keep: 6' }).waitFor();
    await shoot('template-conflict-diff', '#templates');
    await page.getByRole('button', { name: 'Save mine as version 4, replacing their changes shown above' }).click();
    await page.locator('#tpl-message').filter({ hasText: 'Saved as version 4' }).waitFor();
    expect(await page.locator('#tpl-conflict').count()).toBe(0);
    expect(await fs.readFile(path.join(dir, 'types', 'robot-ai.yaml'), 'utf8')).toContain('keep: 6');
    expect(await fs.readFile(path.join(dir, 'types', '.history', 'robot-ai', 'v3.yaml'), 'utf8')).toContain('keep: 4');

    // Another conflict, resolved by taking theirs: the editor then holds their text, version 5.
    const fifth = original.replace('keep: 2', 'keep: 7');
    expect((await fetch(`${url}/api/v1/studio/templates/robot-ai`, { method: 'PUT', headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' }, body: JSON.stringify({ text: fifth, baseVersion: 4 }) })).status).toBe(200);
    await editor.fill(original.replace('keep: 2', 'keep: 8'));
    await page.getByRole('button', { name: 'Save as version 5' }).click();
    await page.locator('#tpl-conflict').waitFor();
    await page.getByRole('button', { name: 'Load their version 5 (discard mine)' }).click();
    await page.getByLabel(/robot-ai\.yaml, editing on version 5/).waitFor();
    await expect.poll(() => editor.inputValue()).toBe(fifth);
    expect(await page.locator('#tpl-conflict').count()).toBe(0);
    await page.getByRole('button', { name: 'Save as version 6' }).waitFor();
  });

  it('uploads with progress and resumes from the server offset after the connection breaks mid-way', async () => {
    const big = await writeTarGz(path.join(dir, 'robot-ai-1.3.0.tar.gz'), [
      { name: 'VERSION', content: '1.3.0\n' },
      { name: 'bin/run', content: '#!/bin/sh\n', mode: 0o755 },
      { name: 'data/model.bin', content: randomish(3 * 1024 * 1024) },
    ]);
    const size = (await fs.stat(big)).size;
    breakPutAfter = 600_000; // inside the first 1 MiB piece (each request has a connection of its own)
    await page.getByLabel('Or upload a package (.tar.gz or .tar.zst) from this computer').setInputFiles(big);
    await page.getByRole('button', { name: 'Upload and scan' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor({ timeout: 60_000 });
    expect(broken).toBe(1);
    const status = await page.locator('#upload-status').textContent();
    expect(status).toContain(`Uploaded 3.0 MiB of robot-ai-1.3.0.tar.gz`);
    expect(status).toMatch(/resumed [1-9]×/);
    expect(await page.locator('#upload-note').textContent()).toMatch(/resumed from byte [\d,]+ \(what the server has\)/);
    expect(await page.locator('progress').getAttribute('value')).toBe(String(size));
    await shoot('upload', '#upload-progress');
  }, 180_000);

  it('shows the server refusing a piece in words with its code (token refused)', async () => {
    // The upload goes out with another token (as after the server's token was changed): ota-server answers 401.
    const wrong = async (route: import('playwright-core').Route) => route.continue({ headers: { ...route.request().headers(), authorization: 'Bearer another-token-0123456789abcdef' } });
    await page.route('**/api/v1/studio/uploads', wrong);
    const small = await writeTarGz(path.join(dir, 'small.tar.gz'), [{ name: 'VERSION', content: '1.3.0\n' }]);
    await page.getByLabel('Or upload a package (.tar.gz or .tar.zst) from this computer').setInputFiles(small);
    await page.getByRole('button', { name: 'Upload and scan' }).click();
    const refused = page.locator('#upload-error');
    await refused.waitFor();
    expect(await refused.textContent()).toContain('The server refused the upload token');
    await page.unroute('**/api/v1/studio/uploads', wrong);
  });

  it('tests a repository connection: every role with its expiry, a warning for targets, and an unreachable one in words', async () => {
    await page.getByLabel('Repository', { exact: true }).selectOption('staging');
    await page.getByRole('button', { name: 'Test connection' }).click();
    const result = page.locator('#repo-result');
    await result.waitFor();
    const rows = await result.locator('tbody tr td:first-child').allTextContents();
    expect(rows).toEqual(['root', 'timestamp', 'snapshot', 'targets']);
    expect(await result.locator('tr[data-warning="yes"] td:first-child').allTextContents()).toEqual(['targets']);
    expect(await result.getByRole('alert').textContent()).toMatch(/targets expires in (9|10) days/);
    await shoot('repositories', '#repositories');
    await page.getByLabel('Repository', { exact: true }).selectOption('test');
    await page.getByRole('button', { name: 'Test connection' }).click();
    await page.locator('#repo-result').filter({ hasText: 'test: not reachable' }).waitFor();
  });

  it('declares sibling dependencies: a bad range is marked at its field, a good one appears in the manifest', async () => {
    await page.getByRole('button', { name: 'robot-ai/' }).click();
    await page.getByRole('button', { name: '1.3.0/' }).click();
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.3.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor();
    await page.getByLabel('Product type').selectOption('robot-ai');
    await page.getByLabel('Version', { exact: true }).fill('1.3.0');
    await page.getByRole('button', { name: 'Add a dependency' }).click();
    await page.getByLabel('Sibling product 1').fill('robot-ai-sibling');
    await page.getByLabel('Version range 1').fill('^2.x.banana');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    const range = page.getByLabel('Version range 1');
    await expect.poll(() => range.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#dep-0-error').textContent()).toContain('expected a semver range');
    await shoot('dependencies', 'fieldset.deps');
    await range.fill('^2.1.0');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await page.locator('#review-deps').waitFor();
    expect(await page.locator('#review-deps').textContent()).toContain('robot-ai-sibling ^2.1.0');
    expect(await page.locator('pre.manifest').textContent()).toContain('"robot-ai-sibling": "^2.1.0"');
  });

  it('is operable by keyboard alone: Tab reaches the form controls in order with a visible focus, Enter and Space act', async () => {
    await page.getByLabel('Product type').focus();
    const order: string[] = [];
    for (let i = 0; i < 12; i += 1) {
      const id = await page.evaluate('document.activeElement?.id || document.activeElement?.textContent?.trim().slice(0, 30)');
      order.push(String(id));
      const outline = await page.evaluate('getComputedStyle(document.activeElement).outlineStyle');
      expect(outline, `focus visible on ${id}`).not.toBe('none');
      await page.keyboard.press('Tab');
    }
    const at = (id: string) => order.indexOf(id);
    for (const id of ['f-type', 'f-product', 'f-channel', 'f-version']) expect(at(id), `${id} in ${order.join(' ')}`).toBeGreaterThanOrEqual(0);
    expect(at('f-type')).toBeLessThan(at('f-product'));
    expect(at('f-product')).toBeLessThan(at('f-channel'));
    expect(at('f-channel')).toBeLessThan(at('f-version'));
    // Space on "Add a dependency" adds a row; Enter in a field submits the form (the check runs).
    await page.locator('#add-dep').focus();
    await page.keyboard.press('Space');
    await page.getByLabel('Sibling product 2').waitFor();
    // The new row sits before the button: Shift+Tab walks back through Remove, range, product.
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Shift+Tab');
    expect(await page.evaluate('document.activeElement?.id')).toBe('dep-1-range');
    await page.keyboard.type('nonsense range');
    await page.keyboard.press('Shift+Tab');
    expect(await page.evaluate('document.activeElement?.id')).toBe('dep-1-product');
    await page.keyboard.type('robot-ai-sibling');
    await page.keyboard.press('Enter');
    await page.locator('#dep-1-error').waitFor();
    expect(problems).toEqual([]);
  });
});

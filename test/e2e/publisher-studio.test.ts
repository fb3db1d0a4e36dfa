/**
 * The publisher studio (/studio/) driven in Debian's Chromium against a real ota-server on
 * 127.0.0.1 port 0: sign in with the upload token, see the robot's package scan refuse a hostile
 * folder, fix the folder, build the package, fill the release from a product type, meet the
 * version errors next to the field, write notes with a live sanitised preview, review the exact
 * checksums, publish, and then the robot's TUF client over HTTP finds the release with those bytes.
 * Set OTA_E2E_SCREENSHOT_DIR=/some/folder to keep screenshots at 1280 px and 400 px, light and dark.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPublisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../src/server/app.js';
import { FLEET_PAGE_CSP } from '../../src/server/ui/router.js';
import { createFetchDownloader, createFetchMetadataFetcher } from '../../src/trust/fetch-ports.js';
import { createTufRepository } from '../../src/trust/tuf-repository.js';
import { writeTarGz } from '../support/tar-fixtures.js';
import { RecordingAudit } from '../support/tuf-repo.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`publisher studio browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SHOTS = process.env.OTA_E2E_SCREENSHOT_DIR;
const TOKEN = 'studio-page-token-0123456789';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let dir: string;
let server: OtaServer;
let url: string;
const audit = new RecordingAudit();
const sources = () => path.join(dir, 'sources');

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
  }
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'otad-studio-page-'));
  const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
  await publisher.init();
  const old = path.join(dir, 'old');
  await writeTree(old, { VERSION: '1.2.0\n', 'bin/robot-ai': '#!/bin/sh\n' });
  await publisher.add({ product: 'robot-ai', version: '1.2.0', sourceDir: old, check: { versionFile: 'VERSION' } });
  await publisher.publish();
  // The studio's server holds only robot-ai's delegated key and the online keys: root and the
  // top-level targets key stay with the offline publisher (docs/trust-model.md).
  const studioKeys = path.join(dir, 'studio-keys');
  await fs.mkdir(studioKeys, { mode: 0o700 });
  for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(dir, 'keys', role), path.join(studioKeys, role), { recursive: true });
  await publisher.delegate({ product: 'robot-ai', keyOut: studioKeys });
  // The build folder of 1.3.0 carries a link to the server's /etc/shadow: the scan must refuse it.
  const build = path.join(sources(), 'robot-ai', '1.3.0');
  await writeTree(build, { VERSION: '1.3.0\n', 'bin/robot-ai': '#!/bin/sh\nexec planner\n', 'lib/planner.py': 'print("plan")\n'.repeat(40), 'config/robot.yaml': 'speed: 1\n' });
  await fs.symlink('/etc/shadow', path.join(build, 'lib', 'secrets'));
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  server = createServer({
    repoDir: path.join(dir, 'repo'),
    keysDir: path.join(dir, 'studio-keys'),
    clock: systemClock,
    logger: silentLogger,
    audit,
    tokenFile: path.join(dir, 'token'),
    database: path.join(dir, 'fleet.db'),
    sourceRoots: [{ name: 'builds', dir: sources() }],
    timestampRefresh: false,
    prune: false,
    rolloutTick: false,
  });
  url = (await server.start(0, '127.0.0.1')).url;
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('publisher studio files over HTTP', () => {
  it('redirects / and /studio to /studio/ and serves the page and the shared stylesheet without a token under the strict policy', async () => {
    for (const from of ['/', '/studio']) {
      const res = await fetch(`${url}${from}`, { redirect: 'manual' });
      expect(res.headers.get('location')).toBe('/studio/');
    }
    const page = await fetch(`${url}/studio/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toBe(FLEET_PAGE_CSP);
    expect((await page.text()).match(/<script(?![^>]*\bsrc=)[^>]*>/g)).toBeNull();
    const css = await fetch(`${url}/shared/base.css`);
    expect(css.status).toBe(200);
    expect(await css.text()).toContain('prefers-color-scheme: dark');
    for (const file of ['marked.esm.js', 'purify.es.mjs', 'preact.mjs', 'htm.mjs']) expect((await fetch(`${url}/studio/vendor/${file}`)).status, file).toBe(200);
  });
});

describe.skipIf(!haveChromium)('publisher studio in headless Chromium', () => {
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
    context.setDefaultTimeout(15_000);
    page = await context.newPage();
    page.on('console', (m) => {
      // The browser logs each refused request; the test provokes a 401 on purpose. It also logs the
      // page's policy refusing the hostile notes' onerror handler once, when the sanitiser parses
      // them (the handler never runs: window.hacked stays undefined, and the preview has no img).
      if (m.type() === 'error' && !/status of 401/.test(m.text()) && !/^Executing inline event handler violates/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  async function shoot(name: string): Promise<void> {
    for (const scheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const width of [1280, 400]) {
        await page.setViewportSize({ width, height: 1000 });
        await page.evaluate('document.activeElement?.blur()');
        // At any width the page itself never scrolls sideways.
        const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
        expect(overflow, `${name} ${scheme} ${width}`).toBeLessThanOrEqual(0);
        if (SHOTS) {
          mkdirSync(SHOTS, { recursive: true });
          await page.screenshot({ path: path.join(SHOTS, `studio-${name}-${scheme}-${width}.png`), fullPage: true });
        }
      }
    }
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 1280, height: 1000 });
  }

  it('refuses a wrong token with a clear message, then signs in with the upload token', async () => {
    await page.goto(`${url}/`);
    expect(page.url()).toBe(`${url}/studio/`);
    await page.getByLabel('Upload token').fill('not-the-token-0123456789');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'The server refused this token' }).waitFor();
    expect(await page.evaluate("sessionStorage.getItem('ota-server.token')")).toBeNull();
    await shoot('sign-in');
    await page.getByLabel('Upload token').fill(TOKEN);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: '1 · Package' }).waitFor();
    expect(page.url()).not.toContain(TOKEN);
  });

  it('refuses an uploaded archive whose entry climbs out of the tree, naming the entry', async () => {
    const hostile = await writeTarGz(path.join(dir, 'hostile.tar.gz'), [{ name: 'VERSION', content: '1.3.0\n' }, { name: '../../etc/cron.d/x', content: '* * * * * root sh\n' }]);
    await page.getByLabel('Or upload a package (.tar.gz or .tar.zst) from this computer').setInputFiles(hostile);
    await page.getByRole('button', { name: 'Upload and scan' }).click();
    const refused = page.getByRole('alert').filter({ hasText: 'Package scan refused this package' });
    await refused.waitFor();
    expect(await refused.textContent()).toContain('PACKAGE_UNSAFE_PATH');
    expect(await refused.textContent()).toContain('../../etc/cron.d/x');
  });

  it('shows the robot scan refusing the folder with the offending entry marked, then builds it once the folder is fixed', async () => {
    await page.getByRole('button', { name: 'robot-ai/' }).click();
    await page.getByRole('button', { name: '1.3.0/' }).click();
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.3.0' }).click();
    const refused = page.getByRole('alert').filter({ hasText: 'Package scan refused this folder' });
    await refused.waitFor();
    expect(await refused.textContent()).toContain('PACKAGE_UNSAFE_LINK');
    await expect.poll(() => page.locator('.tree-list li[data-bad="yes"]').textContent()).toContain('secrets');
    expect(await page.getByRole('heading', { name: '2 · Release' }).locator('..').textContent()).toContain('Build a package that passes the scan first');
    await shoot('scan-refused');

    // The publisher removes the link on the build machine and builds again.
    await fs.rm(path.join(sources(), 'robot-ai', '1.3.0', 'lib', 'secrets'));
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.3.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor();
    expect(await page.locator('.tree-list').textContent()).toContain('planner.py');
  });

  it('fills the release from the product type and puts each error next to its field', async () => {
    await page.getByLabel('Product type').selectOption('robot-ai');
    const template = page.locator('.template');
    expect(await template.textContent()).toContain('robot-ai-core.service');
    expect(await template.textContent()).toContain('http://127.0.0.1:8000/health');
    expect(await page.getByLabel('Product', { exact: true }).inputValue()).toBe('robot-ai');
    expect(await page.getByLabel('Free disk space (bytes)').inputValue()).toMatch(/^\d+$/);
    await page.getByRole('group', { name: 'Proposed versions' }).getByText('Latest on stable').waitFor();

    await page.getByLabel('Version', { exact: true }).fill('1.3');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    const version = page.getByLabel('Version', { exact: true });
    await expect.poll(() => version.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#f-version-error').textContent()).toContain('expected a semantic version');
    // The error is what a screen reader announces with the field.
    expect(await version.getAttribute('aria-describedby')).toContain('f-version-error');

    await version.fill('1.4.0');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await expect.poll(() => page.locator('#f-version-error').textContent()).toContain('says 1.3.0');

    await page.getByRole('button', { name: '1.2.1 (patch)' }).waitFor();
    await page.getByRole('button', { name: '1.3.0 (minor)' }).click();
    expect(await version.inputValue()).toBe('1.3.0');
    await page.getByLabel('Release notes (Markdown)').fill('# Planner 1.3\n\n- **faster** paths\n\n<img src=x onerror="window.hacked=1"><script>window.hacked=2</script>');
    const preview = page.locator('.preview');
    await preview.locator('h1', { hasText: 'Planner 1.3' }).waitFor();
    expect(await preview.locator('strong').textContent()).toBe('faster');
    expect(await preview.locator('script').count()).toBe(0);
    expect(await preview.locator('img').count()).toBe(0);
    expect(await page.evaluate('window.hacked')).toBeUndefined();
    await page.getByLabel('Rollout percentage (optional, 0–100)').fill('150');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await expect.poll(() => page.locator('#f-rolloutPercent-error').textContent()).toContain('100');
    await shoot('release-errors');
    await page.getByLabel('Rollout percentage (optional, 0–100)').fill('');
  });

  it('shows the exact checksums, publishes them, and the robot finds the release with those bytes', async () => {
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    const table = page.locator('table.checksums');
    await table.waitFor();
    const shown = await table.locator('tbody tr').evaluateAll((rows) =>
      rows.map((r) => ({ name: r.querySelector('[data-label="Target"] code')!.textContent!, what: r.querySelector('[data-label="Target"] .muted')!.textContent!, sha256: r.querySelector('[data-label="SHA-256"]')!.textContent!, size: r.querySelector('[data-label="Size"]')!.textContent! })),
    );
    // The package, the manifest, and what publishing makes from the package: its tree index (and
    // a delta from 1.2.0 where one passes the size gate; this tiny release's does not, and a note says so).
    expect(shown.slice(0, 3).map((s) => s.name)).toEqual(['robot-ai/robot-ai-1.3.0.tar.gz', 'robot-ai/robot-ai-1.3.0.manifest.json', 'robot-ai/robot-ai-1.3.0.index.json']);
    expect(shown[2]!.what).toMatch(/^tree index \(\d+ entries\)$/);
    expect(await page.locator('p', { hasText: 'become targets of the repository' }).textContent()).toContain(`These ${shown.length} files`);
    expect(await page.locator('.warn-note').first().textContent()).toContain('config/');
    expect(await page.locator('.warn-note').nth(1).textContent()).toMatch(/^No delta from 1\.2\.0: at [\d,]+ bytes it is not smaller than [\d,]+ bytes \(the size gate\), so robots on 1\.2\.0 download the full package\.$/);
    const roles = await page.locator('table.roles tbody tr').evaluateAll((rows) =>
      rows.map((r) => `${r.querySelector('[data-label="Role"]')!.textContent} | ${r.querySelector('[data-label="Signs"]')!.textContent} | ${r.querySelector('[data-label="On this server"]')!.textContent}`),
    );
    expect(roles).toEqual([
      'targets | the delegations (not changed by this release) | offline',
      'snapshot | the new product-robot-ai version | key held',
      'timestamp | the new snapshot | key held',
      'root | the keys of every role (not changed by a release) | offline',
      'product-robot-ai | the files above, as targets under robot-ai/* (delegated by the targets role) | key held',
    ]);
    await shoot('review');

    await page.getByRole('button', { name: 'Sign and publish robot-ai 1.3.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Published robot-ai 1.3.0' }).waitFor();
    await shoot('published');
    expect(audit.events.some((e) => e.kind === 'studio-publish' && e.product === 'robot-ai')).toBe(true);

    const robot = createTufRepository({
      metadataDir: path.join(dir, 'robot', 'metadata'),
      metadataBaseUrl: `${url}/metadata`,
      trustedRootPath: path.join(dir, 'repo', 'metadata', '1.root.json'),
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock: systemClock,
      logger: silentLogger,
    });
    const latest = (await robot.latestRelease('robot-ai'))!;
    expect(latest.manifest.version).toBe('1.3.0');
    expect(latest.manifest.notes).toContain('# Planner 1.3');
    expect(latest.manifest.package.sha256).toBe(shown[0]!.sha256);
    expect(latest.manifestTarget.sha256).toBe(shown[1]!.sha256);
    expect(latest.manifest.index?.sha256).toBe(shown[2]!.sha256);
    expect((latest.manifest.deltas ?? []).map((d) => d.sha256)).toEqual(shown.slice(3).map((s) => s.sha256));
    const dest = path.join(dir, 'robot', 'pkg.tar.gz');
    await robot.downloadTarget({ name: latest.manifest.package.target, length: latest.manifest.package.length, sha256: latest.manifest.package.sha256 }, dest);
    expect(sha256(await fs.readFile(dest))).toBe(shown[0]!.sha256);
    expect(problems).toEqual([]);
  });

  it('packs a folder with the compression chosen; a product whose ota-repo.json setting says otherwise is refused at the check, with the fix named', async () => {
    await writeTree(path.join(sources(), 'robot-ai', '1.4.0'), { VERSION: '1.4.0\n', 'bin/robot-ai': '#!/bin/sh\nexec planner\n', 'lib/planner.py': 'print("plan 1.4")\n'.repeat(40) });
    await fs.writeFile(path.join(dir, 'repo', 'ota-repo.json'), JSON.stringify({ products: { 'robot-ai': { compression: 'gzip' } } }));
    await page.getByRole('navigation', { name: 'Folder' }).getByRole('button', { name: 'robot-ai' }).click();
    await page.getByRole('button', { name: '1.4.0/' }).click();
    const choice = page.getByLabel('Compression of the packages the studio packs (folders on the server or uploaded)');
    expect(await choice.inputValue(), 'the repository sets no default: gzip').toBe('gzip');
    expect(await page.locator('#compression-hint').textContent()).toContain("sets none, so gzip");
    await choice.selectOption('zstd');
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.4.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor();
    expect(await page.getByText('Package (.tar.zst)').count()).toBe(1);
    await page.getByLabel('Version', { exact: true }).fill('1.4.0');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    const refused = page.locator('#f-compression-error');
    await refused.waitFor();
    expect(await refused.textContent()).toBe('Package compression: the repository packs robot-ai with gzip (ota-repo.json products.robot-ai.compression); this package was packed with zstd: choose gzip in step 1 and build the package again');
    expect(await page.locator('table.checksums').count()).toBe(0);
    await shoot('compression-refused');

    await choice.selectOption('gzip');
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.4.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor();
    expect(await page.getByText('Package (.tar.gz)').count()).toBe(1);
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await page.locator('table.checksums').waitFor();
    expect(await page.locator('table.checksums tbody tr').first().locator('[data-label="Target"] code').textContent()).toBe('robot-ai/robot-ai-1.4.0.tar.gz');
    expect(problems).toEqual([]);
  });
});

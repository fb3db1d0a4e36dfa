/**
 * The publisher studio's "Publish to" choice in Debian's Chromium against a real ota-server on
 * 127.0.0.1: the server has its own repository (test) and may write to a second one (staging), for
 * which it holds robot-ai's delegation key; a third (production) is only tested. The publisher
 * picks staging, the review's versions and "Who signs" are staging's, and publishing writes into
 * staging alone.
 * Set OTA_E2E_SCREENSHOT_DIR=/some/folder to keep screenshots at 1280 px and 400 px, light and dark.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPublisher, type Publisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../src/server/app.js';
import { RecordingAudit } from '../support/tuf-repo.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`studio publish-to browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SHOTS = process.env.OTA_E2E_SCREENSHOT_DIR;
const TOKEN = 'studio-publish-to-token-0123456789';

let dir: string;
let server: OtaServer;
let url: string;
let staging: Publisher;
const audit = new RecordingAudit();

async function writeTree(root: string, files: Record<string, string>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
  }
}

/** The repository's signed files (metadata and targets; the studio's drafts folder aside). */
async function listing(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const sub of ['metadata', 'targets']) out.push(...((await fs.readdir(path.join(root, sub), { recursive: true })) as string[]).map((f) => `${sub}/${f}`));
  return out.sort();
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'otad-studio-publish-to-'));
  const own = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
  await own.init();
  await writeTree(path.join(dir, 'old'), { VERSION: '1.2.0\n' });
  await own.add({ product: 'robot-ai', version: '1.2.0', sourceDir: path.join(dir, 'old'), check: { versionFile: 'VERSION' } });
  await own.publish();
  staging = createPublisher({ repoDir: path.join(dir, 'staging'), keysDir: path.join(dir, 'staging-offline'), clock: systemClock });
  await staging.init();
  const stagingKeys = path.join(dir, 'staging-keys');
  await fs.mkdir(stagingKeys, { mode: 0o700 });
  for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(dir, 'staging-offline', role), path.join(stagingKeys, role), { recursive: true });
  await staging.delegate({ product: 'robot-ai', keyOut: stagingKeys });
  await writeTree(path.join(dir, 'sources', 'robot-ai', '1.0.0'), { VERSION: '1.0.0\n', 'bin/robot-ai': '#!/bin/sh\nexec planner\n' });
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  server = createServer({
    repoDir: path.join(dir, 'repo'),
    keysDir: path.join(dir, 'keys'),
    clock: systemClock,
    logger: silentLogger,
    audit,
    tokenFile: path.join(dir, 'token'),
    database: path.join(dir, 'fleet.db'),
    sourceRoots: [{ name: 'builds', dir: path.join(dir, 'sources') }],
    studioRepositories: [
      { name: 'test', url: 'http://127.0.0.1:9/metadata/', trustedRoot: path.join(dir, 'repo', 'metadata', '1.root.json'), local: true },
      { name: 'staging', url: 'https://staging.example/metadata/', trustedRoot: path.join(dir, 'staging', 'metadata', '1.root.json'), path: path.join(dir, 'staging'), keys: stagingKeys },
      { name: 'production', url: 'https://ota.example/metadata/', trustedRoot: path.join(dir, 'staging', 'metadata', '1.root.json') },
    ],
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

describe.skipIf(!haveChromium)('publisher studio: publish to another configured repository', () => {
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
      if (m.type() === 'error') problems.push(m.text());
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

  it('picks staging: its versions and keys in the review, the release signed into staging and nowhere else', async () => {
    const ownBefore = await listing(path.join(dir, 'repo'));
    await page.goto(`${url}/studio/`);
    await page.getByLabel('Upload token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: '1 · Package' }).waitFor();
    await page.getByRole('button', { name: 'robot-ai/' }).click();
    await page.getByRole('button', { name: '1.0.0/' }).click();
    await page.getByRole('button', { name: 'Build package from builds/robot-ai/1.0.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor();
    await page.getByLabel('Product type').selectOption('robot-ai');

    const publishTo = page.getByLabel('Publish to');
    // This server's repository and the writable staging; production is tested only, so not offered.
    expect(await publishTo.locator('option').allTextContents()).toEqual(['test (this server)', 'staging · https://staging.example/metadata/']);
    // On this server's repository 1.0.0 is below the latest, 1.2.0.
    const proposals = page.getByRole('group', { name: 'Proposed versions' });
    await proposals.getByText('1.2.0').waitFor();
    await publishTo.selectOption('staging');
    // Staging has no robot-ai yet: the proposals are staging's.
    await page.getByText('No release of robot-ai on channel stable in staging yet.').waitFor();
    expect(await proposals.count()).toBe(0);
    await page.getByLabel('Version', { exact: true }).fill('1.0.0');
    await shoot('publish-to');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await page.locator('table.checksums').waitFor();
    const roles = await page.locator('table.roles tbody tr').evaluateAll((rows) =>
      rows.map((r) => `${r.querySelector('[data-label="Role"]')!.textContent} | ${r.querySelector('[data-label="On this server"]')!.textContent}`),
    );
    expect(roles).toContain('product-robot-ai | key held');
    expect(roles).toContain('targets | offline');

    await page.getByRole('button', { name: 'Sign and publish robot-ai 1.0.0' }).click();
    const done = page.getByRole('status').filter({ hasText: 'Published robot-ai 1.0.0' });
    await done.waitFor();
    expect(await done.textContent()).toContain('Published robot-ai 1.0.0 to staging on channel stable, signed by product-robot-ai');
    await shoot('published-staging');
    expect((await staging.listTargets()).map((t) => t.name).sort()).toEqual(['robot-ai/robot-ai-1.0.0.index.json', 'robot-ai/robot-ai-1.0.0.manifest.json', 'robot-ai/robot-ai-1.0.0.tar.gz']);
    expect(await listing(path.join(dir, 'repo'))).toEqual(ownBefore);
    expect(audit.events.find((e) => e.kind === 'studio-publish')?.details).toMatchObject({ repository: 'staging', role: 'product-robot-ai' });
    expect(problems).toEqual([]);
  }, 120_000);
});

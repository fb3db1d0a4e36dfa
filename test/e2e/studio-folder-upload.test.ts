/**
 * The publisher studio building releases from a folder on the publisher's own computer, in Debian's
 * Chromium against real ota-servers on 127.0.0.1: the folder is chosen with the page's folder picker
 * (webkitdirectory), uploaded file by file, given modes by the server's stated rule, packed and
 * scanned like a folder on the server, then published, and the robot's TUF client downloads a
 * package with exactly those files and modes. Then the errors the page must put next to what they
 * concern: a version published by someone else after the review (VERSION_TAKEN, at the publish
 * button and the version field, nothing stored), and, on a server whose repository folder is a
 * small tmpfs (needs root to mount it), a full disk for a folder and for a package upload
 * (DISK_FULL, nothing half-written left).
 * Set OTA_E2E_SCREENSHOT_DIR=/some/folder to keep screenshots at 1280 px and 400 px, light and dark.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { scanPackage } from '../../src/package/scan.js';
import { createPublisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../src/server/app.js';
import { createFetchDownloader, createFetchMetadataFetcher } from '../../src/trust/fetch-ports.js';
import { createTufRepository } from '../../src/trust/tuf-repository.js';
import { randomish, writeTarGz } from '../support/tar-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`studio folder-upload browser tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const SHOTS = process.env.OTA_E2E_SCREENSHOT_DIR;
const TOKEN = 'studio-folder-token-0123456789';

let dir: string;
const servers: OtaServer[] = [];
let url: string;
let fullUrl = '';
let fullRepo = '';
let mounted = false;

async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text, { mode: 0o600 });
  }
}

/** Every file under a folder, relative, sorted (what "nothing half-written" is checked against). */
async function filesUnder(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(path.join(d, e.name), rel);
      else out.push(rel);
    }
  };
  await walk(root, '');
  return out.sort();
}

function serverFor(repoDir: string, keysDir: string): OtaServer {
  const s = createServer({
    repoDir,
    keysDir,
    clock: systemClock,
    logger: silentLogger,
    tokenFile: path.join(dir, 'token'),
    database: path.join(dir, `${path.basename(repoDir)}-fleet.db`),
    timestampRefresh: false,
    prune: false,
    rolloutTick: false,
  });
  servers.push(s);
  return s;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'otad-studio-folder-'));
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
  await publisher.init();
  await writeTree(path.join(dir, 'old'), { VERSION: '1.2.0\n', 'bin/robot-ai': '#!/bin/sh\n' });
  await publisher.add({ product: 'robot-ai', version: '1.2.0', sourceDir: path.join(dir, 'old'), check: { versionFile: 'VERSION' } });
  await publisher.publish();
  // No source roots: this server builds only from what the browser uploads.
  url = (await serverFor(path.join(dir, 'repo'), path.join(dir, 'keys')).start(0, '127.0.0.1')).url;

  // The publisher's own computer: the release folder, written with modes the browser never sends.
  await writeTree(path.join(dir, 'laptop', 'robot-ai-1.3.0'), {
    VERSION: '1.3.0\n',
    'bin/robot-ai': '#!/bin/sh\nexec planner\n',
    'lib/planner.py': 'print("plan")\n'.repeat(40),
    'lib/tools/calibrate.sh': '#!/bin/sh\necho calibrate\n',
    'config/robot.yaml': 'speed: 1\n',
  });
  await writeTree(path.join(dir, 'laptop', 'robot-ai-1.4.0'), { VERSION: '1.4.0\n', 'bin/robot-ai': '#!/bin/sh\nexec planner --fast\n' });

  // A second server whose whole repository folder is a 1 MiB tmpfs: the full disk.
  fullRepo = path.join(dir, 'full-repo');
  await fs.mkdir(fullRepo);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', fullRepo], { stdio: 'pipe' });
    mounted = true;
  } catch (error) {
    console.warn(`studio full-disk browser test skipped: mounting the 1 MiB tmpfs that plays the full disk failed (${(error as Error).message.split('\n')[0]}); it needs root`);
  }
  if (mounted) {
    const small = createPublisher({ repoDir: fullRepo, keysDir: path.join(dir, 'full-keys'), clock: systemClock });
    await small.init();
    fullUrl = (await serverFor(fullRepo, path.join(dir, 'full-keys')).start(0, '127.0.0.1')).url;
  }
});
afterAll(async () => {
  for (const s of servers) await s.close();
  if (mounted) execFileSync('umount', [fullRepo]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!haveChromium)('publisher studio folder uploads in headless Chromium', () => {
  let context: BrowserContext;
  let profile: string;
  let page: Page;
  const problems: string[] = [];

  async function signIn(p: Page, base: string): Promise<void> {
    await p.goto(`${base}/studio/`);
    await p.getByLabel('Upload token').fill(TOKEN);
    await p.keyboard.press('Enter');
    await p.getByRole('heading', { name: '1 · Package' }).waitFor();
  }

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
      // The browser logs each refused request; the 409 and 507 answers are provoked on purpose.
      if (m.type() === 'error' && !/status of (409|507)/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    await signIn(page, url);
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  async function shoot(p: Page, name: string, selector: string): Promise<void> {
    for (const scheme of ['light', 'dark'] as const) {
      await p.emulateMedia({ colorScheme: scheme });
      for (const width of [1280, 400]) {
        await p.setViewportSize({ width, height: 1000 });
        const overflow = await p.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth');
        expect(overflow, `${name} ${scheme} ${width}`).toBeLessThanOrEqual(0);
        if (SHOTS) {
          mkdirSync(SHOTS, { recursive: true });
          await p.locator(selector).screenshot({ path: path.join(SHOTS, `studio-${name}-${scheme === 'light' ? '' : 'dark-'}${width}.png`) });
        }
      }
    }
    await p.emulateMedia({ colorScheme: 'light' });
    await p.setViewportSize({ width: 1280, height: 1000 });
  }

  it('builds a release from a folder chosen in the browser, with the modes the server states, and the robot gets exactly that package', async () => {
    expect(await page.locator('#folder-hint').textContent()).toContain('Browsers do not send file modes');
    await page.getByLabel('Or upload a folder from this computer').setInputFiles(path.join(dir, 'laptop', 'robot-ai-1.3.0'));
    await page.locator('#folder-chosen').filter({ hasText: 'robot-ai-1.3.0/: 5 files' }).waitFor();
    await page.getByRole('button', { name: 'Upload folder and scan' }).click();
    const passed = page.getByRole('status').filter({ hasText: 'Package scan passed' });
    await passed.waitFor({ timeout: 60_000 });
    expect(await passed.textContent()).toContain('the uploaded folder robot-ai-1.3.0/');
    expect(await page.locator('#folder-status').textContent()).toMatch(/^Uploaded 5 files \([\d.]+ (B|KiB)\) of robot-ai-1\.3\.0\/$/);
    // The verdict says which modes the server chose, and the tree shows them as packed.
    const modes = await page.locator('#modes-note').textContent();
    expect(modes).toContain('the browser does not send file modes');
    expect(await page.locator('#modes-note code').allTextContents()).toEqual(['bin/robot-ai', 'lib/tools/calibrate.sh']);
    const rows = await page.locator('.tree-list li').evaluateAll((lis) => lis.map((li) => `${li.querySelector('.tree-name')!.textContent} ${li.querySelector('.tree-meta')!.textContent}`));
    expect(rows).toContain(`robot-ai ${'#!/bin/sh\nexec planner\n'.length} B · 0755`);
    expect(rows).toContain(`calibrate.sh ${'#!/bin/sh\necho calibrate\n'.length} B · 0755`);
    expect(rows).toContain('planner.py 560 B · 0644');
    expect(rows).toContain('robot.yaml 9 B · 0644');
    expect(rows).toContain('bin/ directory · 0755');
    // The build folder is gone once the package is built.
    expect(await filesUnder(path.join(dir, 'repo', '.studio-folders'))).toEqual([]);
    await shoot(page, 'folder-upload', 'section[aria-labelledby="step-source"]');

    await page.getByLabel('Product type').selectOption('robot-ai');
    await page.getByLabel('Version', { exact: true }).fill('1.3.0');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await page.locator('table.checksums').waitFor();
    const packageSha = (await page.locator('table.checksums tbody tr').first().locator('[data-label="SHA-256"]').textContent())!;
    await page.getByRole('button', { name: 'Sign and publish robot-ai 1.3.0' }).click();
    await page.getByRole('status').filter({ hasText: 'Published robot-ai 1.3.0' }).waitFor();

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
    expect(latest.manifest.package.sha256).toBe(packageSha);
    const dest = path.join(dir, 'robot', 'pkg.tar.gz');
    await robot.downloadTarget({ name: latest.manifest.package.target, length: latest.manifest.package.length, sha256: latest.manifest.package.sha256 }, dest);
    const scan = await scanPackage(dest);
    const modeOf = Object.fromEntries(scan.files.map((f) => [f.path, (f.mode & 0o7777).toString(8)]));
    expect(modeOf).toMatchObject({ VERSION: '644', 'bin/robot-ai': '755', 'lib/planner.py': '644', 'lib/tools/calibrate.sh': '755', 'config/robot.yaml': '644' });
    expect(problems).toEqual([]);
  }, 120_000);

  it('answers a single file dropped on the folder zone by asking for a folder', async () => {
    // A page cannot make a dropped folder (the test drops a file); a real folder drop is walked
    // with the File and Directory Entries API.
    const dt = await page.evaluateHandle("(() => { const d = new DataTransfer(); d.items.add(new File(['1.3.0\\n'], 'VERSION')); return d; })()");
    await page.locator('#folder-upload').dispatchEvent('dragenter', { dataTransfer: dt });
    expect(await page.locator('#folder-upload').getAttribute('data-drag')).toBe('yes');
    await page.locator('#folder-upload').dispatchEvent('drop', { dataTransfer: dt });
    await page.locator('#folder-error').filter({ hasText: 'Drop a folder here' }).waitFor();
    expect(await page.locator('#folder-upload').getAttribute('data-drag')).toBeNull();
  });

  it('says next to the publish button and the version field that the version was taken meanwhile, and stores nothing', async () => {
    await page.getByLabel('Or upload a folder from this computer').setInputFiles(path.join(dir, 'laptop', 'robot-ai-1.4.0'));
    await page.getByRole('button', { name: 'Upload folder and scan' }).click();
    await page.getByRole('status').filter({ hasText: 'Package scan passed' }).waitFor({ timeout: 60_000 });
    await page.getByLabel('Version', { exact: true }).fill('1.4.0');
    await page.getByRole('button', { name: 'Check and show what will be signed' }).click();
    await page.getByRole('button', { name: 'Sign and publish robot-ai 1.4.0' }).waitFor();

    // Another publisher publishes 1.4.0 meanwhile, through the same API from another page.
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const other = await writeTarGz(path.join(dir, 'other-1.4.0.tar.gz'), [{ name: 'VERSION', content: '1.4.0\n' }, { name: 'bin/robot-ai', content: '#!/bin/sh\nexec other\n', mode: 0o755 }]);
    const draft = await (await fetch(`${url}/api/v1/studio/drafts/archive?name=other.tar.gz`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/gzip' }, body: await fs.readFile(other) })).json() as { id: string };
    const review = await (await fetch(`${url}/api/v1/studio/drafts/${draft.id}/review`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '1.4.0' }) })).json() as { packageTarget: { sha256: string }; manifestTarget: { sha256: string } };
    const published = await fetch(`${url}/api/v1/studio/drafts/${draft.id}/publish`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ packageSha256: review.packageTarget.sha256, manifestSha256: review.manifestTarget.sha256 }) });
    expect(published.status).toBe(201);
    const before = await filesUnder(path.join(dir, 'repo'));

    await page.getByRole('button', { name: 'Sign and publish robot-ai 1.4.0' }).click();
    const refused = page.locator('#publish-error');
    await refused.waitFor();
    expect(await refused.textContent()).toContain('VERSION_TAKEN');
    expect(await refused.textContent()).toContain('robot-ai 1.4.0 is already published');
    // Right under the button it concerns, which cannot be pressed again for this version.
    expect(await page.locator('#publish').getAttribute('aria-describedby')).toBe('publish-error');
    expect(await page.locator('#publish').isDisabled()).toBe(true);
    const version = page.getByLabel('Version', { exact: true });
    expect(await version.getAttribute('aria-invalid')).toBe('true');
    expect(await page.locator('#f-version-error').textContent()).toContain('1.4.0 is already published');
    // The proposals now start after the version the other publisher took.
    await page.getByRole('button', { name: '1.4.1 (patch)' }).waitFor();
    // Nothing of the refused release was stored in the repository (its draft stays, to publish as another version).
    expect(await filesUnder(path.join(dir, 'repo'))).toEqual(before);
    await shoot(page, 'version-taken', 'section[aria-labelledby="step-review"]');
    expect(problems).toEqual([]);
  }, 120_000);

  it('shows a full disk in words next to the folder and the package upload, leaving nothing half-written', async (ctx) => {
    if (!mounted) {
      ctx.skip();
      return;
    }
    const full = await context.newPage();
    full.on('pageerror', (e) => problems.push(e.message));
    await signIn(full, fullUrl);
    const leftovers = async () => [...(await filesUnder(path.join(fullRepo, '.studio-folders'))), ...(await filesUnder(path.join(fullRepo, '.studio-uploads'))), ...(await filesUnder(path.join(fullRepo, '.studio-drafts')))];

    // 1. A folder larger than the free space is refused before any of it is sent.
    await writeTree(path.join(dir, 'laptop', 'big'), { VERSION: '2.0.0\n', 'data/model.bin': randomish(700 * 1024) });
    await full.getByLabel('Or upload a folder from this computer').setInputFiles(path.join(dir, 'laptop', 'big'));
    await full.getByRole('button', { name: 'Upload folder and scan' }).click();
    const folderError = full.locator('#folder-error');
    await folderError.waitFor();
    expect(await folderError.textContent()).toMatch(/^The server's disk is full: the server has [\d.]+ MiB free in its repository folder, and the folder big needs [\d.]+ MiB .* \(DISK_FULL\)$/);
    expect(await leftovers()).toEqual([]);
    await shoot(full, 'disk-full-folder', '#folder-upload');

    // 2. The disk fills up while the files arrive (something else on the server takes the space
    //    right after the upload was accepted): the upload ends with DISK_FULL and what arrived is removed.
    await writeTree(path.join(dir, 'laptop', 'medium'), { VERSION: '2.0.0\n', 'data/a.bin': randomish(150 * 1024, 2), 'data/b.bin': randomish(150 * 1024, 3) });
    const filler = path.join(fullRepo, 'filler');
    await full.route('**/api/v1/studio/folder-uploads', async (route) => {
      const response = await route.fetch();
      const free = (await fs.statfs(fullRepo)).bavail * (await fs.statfs(fullRepo)).bsize;
      await fs.writeFile(filler, Buffer.alloc(Math.max(0, free - 64 * 1024)));
      await route.fulfill({ response });
    });
    await full.getByLabel('Or upload a folder from this computer').setInputFiles(path.join(dir, 'laptop', 'medium'));
    await full.getByRole('button', { name: 'Upload folder and scan' }).click();
    await folderError.filter({ hasText: 'filled up while receiving' }).waitFor();
    expect(await folderError.textContent()).toContain('nothing of it was kept');
    expect(await folderError.textContent()).toContain('(DISK_FULL)');
    await full.unroute('**/api/v1/studio/folder-uploads');
    expect(await leftovers()).toEqual([]);

    // 3. A package upload larger than the free space is refused before its first byte.
    const pkg = await writeTarGz(path.join(dir, 'laptop', 'big.tar.gz'), [{ name: 'VERSION', content: '2.0.0\n' }, { name: 'data/model.bin', content: randomish(400 * 1024, 4) }]);
    await full.getByLabel('Or upload a package (.tar.gz or .tar.zst) from this computer').setInputFiles(pkg);
    await full.getByRole('button', { name: 'Upload and scan' }).click();
    const uploadError = full.locator('#upload-error');
    await uploadError.waitFor();
    expect(await uploadError.textContent()).toMatch(/^The server's disk is full: the server has [\d.]+ MiB free in its repository folder, and big\.tar\.gz needs 0\.4 MiB/);
    expect(await leftovers()).toEqual([]);
    await shoot(full, 'disk-full-upload', '#upload-progress');

    // 4. The disk fills up while the package's pieces arrive: DISK_FULL, and the page cancels the
    //    upload so its bytes do not stay on the server.
    await fs.rm(filler);
    await full.route('**/api/v1/studio/uploads', async (route) => {
      const response = await route.fetch();
      const st = await fs.statfs(fullRepo);
      await fs.writeFile(filler, Buffer.alloc(Math.max(0, st.bavail * st.bsize - 64 * 1024)));
      await route.fulfill({ response });
    });
    await full.getByRole('button', { name: 'Upload and scan' }).click();
    await uploadError.filter({ hasText: 'is full after' }).waitFor();
    expect(await uploadError.textContent()).toMatch(/^The server's disk is full: the server's repository folder is full after [\d,]+ of \d+ bytes of big\.tar\.gz: .* \(DISK_FULL\) The page then cancelled the upload on the server, so none of its bytes stay there/);
    await full.unroute('**/api/v1/studio/uploads');
    expect(await leftovers()).toEqual([]);
    await fs.rm(filler);
    await full.close();
    expect(problems).toEqual([]);
  }, 120_000);
});

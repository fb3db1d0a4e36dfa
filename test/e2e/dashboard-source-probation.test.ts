/**
 * The dashboard against the whole chain with real steps: `ota-repo` publishes 1.1.0 on the stable
 * channel and 2.0.0 on beta, a spawned `ota-server` serves them, a real `otad` updates robot-ai
 * (installed as a plain 1.0.0 folder). In Debian's Chromium the operator
 *
 *   1. sees the channel and repository robot-ai follows and the configured choices; a check on
 *      stable offers 1.1.0, and while that offer waits the switch is refused (by the page and by
 *      the API: SOURCE_SWITCH_BUSY);
 *   2. cancels, switches to beta through the page (audited, kept in the store), and the next check
 *      offers 2.0.0, the beta release;
 *   3. installs it through the Update now dialog by keyboard (Tab stays inside the dialog, Escape
 *      closes it and gives the focus back to its button);
 *   4. watches the real probation: "round n of m" advancing, with a health check that fails its
 *      first two rounds ("✗ failing") and then passes ("✓ passed"), until 2.0.0 is committed.
 *
 * Set OTA_E2E_SCREENSHOT_DIR=/tmp/x to keep screenshots (1280 px and 400 px wide).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliCommand, CONTROL_TOKEN, otaRepo, startFleet, type Fleet } from '../support/fleet-e2e.js';
import { REPO_ROOT } from '../support/otad-process.js';
import { writeTarGz } from '../support/tar-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`dashboard source and probation test skipped: ${CHROMIUM} is missing (apt-get install -y chromium)`);
const shots = process.env.OTA_E2E_SCREENSHOT_DIR;

// Probation: 8 s window, a round every second (9 rounds); a check fails three rounds in a row to roll back.
const WINDOW = '8s';
const ROUNDS = 9;
const WARM_UP = 'command:bin/warm-up';
const BINARY = 'command:test -x bin/robot-ai';

let fleet: Fleet;

async function otactl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...cliCommand('otactl'), '--config', fleet.sandbox.configPath, ...args], { cwd: REPO_ROOT, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}
let context: BrowserContext;

async function releaseFile(version: string): Promise<string> {
  return writeTarGz(join(fleet.dir, `robot-ai-${version}.tar.gz`), [
    { name: 'VERSION', content: `${version}\n` },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/robot-ai', content: `#!/bin/sh\necho ${version}\n`, mode: 0o755 },
    // A service that needs two rounds to warm up: the health check fails twice, then passes.
    {
      name: 'bin/warm-up',
      content: '#!/bin/sh\nn=$(cat .warm-up-rounds 2>/dev/null || echo 0)\necho $((n + 1)) > .warm-up-rounds\n[ "$n" -ge 2 ] || { echo "still warming up"; exit 1; }\n',
      mode: 0o755,
    },
  ]);
}

async function publish(version: string, channel: string): Promise<void> {
  const r = await otaRepo(['--repo', fleet.repoDir, '--keys', fleet.keysDir, 'add', '--product', 'robot-ai', '--version', version, '--channel', channel, '--notes', `robot-ai ${version} on ${channel}`, '--package', await releaseFile(version), '--publish']);
  if (r.code !== 0) throw new Error(`ota-repo add ${version} failed: ${r.stderr}`);
}

beforeAll(async () => {
  if (!haveChromium) return;
  fleet = await startFleet({
    product: {
      channels: ['beta'],
      healthChecks: [
        { kind: 'command', command: ['test', '-x', 'bin/robot-ai'] },
        { kind: 'command', command: ['bin/warm-up'] },
      ],
      probation: { window: WINDOW, interval: '1s', failureThreshold: 3 },
    },
    config: { api: { controlRateLimit: { window: '1m', max: 1000 } } },
  });
  await publish('1.1.0', 'stable');
  await publish('2.0.0', 'beta');
  if (shots) mkdirSync(shots, { recursive: true });
  context = await chromium.launchPersistentContext('', {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1000 },
  });
  context.setDefaultTimeout(30_000);
}, 240_000);
afterAll(async () => {
  await context?.close();
  await fleet?.close();
});

const product = (page: Page): Locator => page.getByRole('region', { name: 'robot-ai' });
const state = (page: Page): Locator => product(page).locator('.state');

async function shoot(page: Page, name: string, height = 1000): Promise<void> {
  if (!shots) return;
  await page.screenshot({ path: join(shots, `${name}.png`) });
  await page.setViewportSize({ width: 400, height });
  await page.screenshot({ path: join(shots, `${name}-400px.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 1000 });
}

describe.skipIf(!haveChromium)('the dashboard: channel selection and a real probation', () => {
  it('switches robot-ai to the beta channel through the page, installs the beta release, and shows each probation round with the checks that passed', async () => {
    const problems: string[] = [];
    const page = await context.newPage();
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    await page.goto(`${fleet.apiUrl}/ui/`);
    await page.getByLabel('API token').fill(CONTROL_TOKEN);
    await page.getByRole('button', { name: 'Connect' }).click();

    // 1. The source as configured, with its choices; a check on stable offers 1.1.0.
    const choice = product(page).getByRole('group', { name: 'Channel and repository' });
    const channel = choice.getByLabel('Channel', { exact: true });
    await channel.waitFor();
    expect(await channel.locator('option').allTextContents()).toEqual(['stable (default)', 'beta']);
    expect(await channel.inputValue()).toBe('stable');
    expect(await choice.getByLabel('Repository', { exact: true }).count()).toBe(0);
    const switchButton = choice.getByRole('button', { name: 'Switch' });
    expect(await switchButton.isDisabled()).toBe(true);
    const serverFacts = async () => (await product(page).locator('.server dl dt, .server dl dd').allTextContents()).join('|');
    await expect.poll(serverFacts).toContain('Channel|stable (as configured)');
    await shoot(page, 'source-choice', 1800);

    await product(page).getByRole('button', { name: 'Check now' }).click();
    await state(page).filter({ hasText: /^Update available: waiting for a choice$/ }).waitFor();
    // The state shows at once from the stream; the offer comes with the reread that follows.
    await expect.poll(() => product(page).locator('dl.facts').first().textContent()).toContain('Offered version1.1.0');
    // While the offer waits, the page does not let the operator switch, and the API would refuse it.
    await channel.selectOption('beta');
    expect(await switchButton.isDisabled()).toBe(true);
    expect(await choice.textContent()).toContain('Switching waits until the product is idle: a run keeps the source it started with.');
    const busy = await fleet.api('PUT', '/api/v1/products/robot-ai/source', { channel: 'beta' });
    expect([busy.status, busy.body.error.code]).toEqual([409, 'SOURCE_SWITCH_BUSY']);
    await product(page).getByRole('button', { name: 'Cancel' }).click();
    await state(page).filter({ hasText: /^Idle$/ }).waitFor();

    // 2. The choice made before is still in the select; Switch sends it.
    expect(await channel.inputValue()).toBe('beta');
    await expect.poll(() => switchButton.isEnabled()).toBe(true);
    await switchButton.click();
    // The page's own answer, or the stream's notice of the same switch, whichever came last.
    await page.getByRole('status').filter({ hasText: /^robot-ai: (follows channel beta of repository default from the next check on|its channel or repository was switched)$/ }).waitFor();
    await expect.poll(serverFacts).toMatch(/Channel\|beta \(chosen \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by robot-ai-app\)/);
    expect(await channel.inputValue()).toBe('beta');
    expect(await switchButton.isDisabled()).toBe(true);
    expect(fleet.audit()).toContain('robot-ai switched from rest (robot-ai-app) to channel beta of repository default (was channel stable of repository default); the next check uses it');
    const source = (await fleet.api('GET', '/api/v1/products/robot-ai/source')).body;
    expect(source).toMatchObject({ channel: 'beta', selected: { actor: 'robot-ai-app', via: 'rest' } });
    await shoot(page, 'source-switched', 1800);
    // otactl reads the same choice, and is refused a channel that is not configured.
    const cli = await otactl('source');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^robot-ai: channel beta of repository default \(http:\/\/127\.0\.0\.1:\d+\), chosen \S+ by robot-ai-app\n {2}channels: {5}stable, beta\n/);
    const refused = await otactl('source', '--channel', 'nightly');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('SOURCE_UNKNOWN');

    await product(page).getByRole('button', { name: 'Check now' }).click();
    await state(page).filter({ hasText: /^Update available: waiting for a choice$/ }).waitFor();
    // The state shows at once from the stream; the offer comes with the reread that follows.
    await expect.poll(() => product(page).locator('dl.facts').first().textContent()).toContain('Offered version2.0.0');

    // 3. The Update now dialog, keyboard only: Tab cycles inside it, Escape closes it, the focus comes back.
    const updateNow = product(page).getByRole('button', { name: 'Update now' });
    await updateNow.focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog', { name: 'Update now: robot-ai 2.0.0?' });
    await dialog.waitFor();
    const focusedText = () => page.evaluate("document.activeElement?.textContent ?? ''");
    expect(await focusedText()).toBe('Keep as is');
    await page.keyboard.press('Tab');
    expect(await focusedText()).toBe('Update now');
    await page.keyboard.press('Tab');
    expect(await focusedText()).toBe('Keep as is');
    await page.keyboard.press('Shift+Tab');
    expect(await focusedText()).toBe('Update now');
    await page.keyboard.press('Escape');
    await expect.poll(() => dialog.count()).toBe(0);
    await expect.poll(() => page.evaluate("document.activeElement?.dataset.event ?? ''")).toBe('UPDATE_NOW');
    await page.keyboard.press('Enter');
    await dialog.waitFor();
    // Confirm only once the dialog can confirm: its OK button is disabled while the page is offline.
    await expect.poll(focusedText).toBe('Keep as is');
    await expect.poll(() => dialog.getByRole('button', { name: 'Update now' }).isEnabled()).toBe(true);
    await page.keyboard.press('Tab');
    expect(await focusedText()).toBe('Update now');
    await page.keyboard.press('Enter');
    await expect.poll(() => dialog.count()).toBe(0);

    // 4. The probation, round by round, as the page shows it.
    const label = product(page).locator('li.step-active[data-step="probation"] label');
    const checks = product(page).locator('li.step-active[data-step="probation"] ul.checks li');
    const seen = new Map<number, string[]>();
    let shotTaken = false;
    const deadline = Date.now() + 120_000;
    for (;;) {
      const text = await label.textContent({ timeout: 200 }).catch(() => null);
      if (text !== null) {
        const m = /^Probation: round (\d+) of (\d+): /.exec(text);
        expect(m, text).not.toBeNull();
        expect(Number(m?.[2])).toBe(ROUNDS);
        const round = Number(m?.[1]);
        const items = await checks.allTextContents().catch(() => []);
        if (items.length > 0 && !seen.has(round)) seen.set(round, items);
        // The picture of a round with a check still failing.
        if (!shotTaken && items.some((i) => i.startsWith('✗ failing'))) {
          shotTaken = true;
          if (shots) await page.screenshot({ path: join(shots, 'probation.png') });
          if (shots) {
            await page.setViewportSize({ width: 400, height: 1000 });
            await page.screenshot({ path: join(shots, 'probation-400px.png'), fullPage: true });
            await page.setViewportSize({ width: 1280, height: 1000 });
          }
        }
      }
      if ((await fleet.status()).state === 'idle') break;
      if (Date.now() > deadline) throw new Error(`the probation did not end; seen ${JSON.stringify([...seen])}; status ${JSON.stringify(await fleet.status())}; page says ${JSON.stringify(await page.getByRole('status').allTextContents())}; otad log:\n${fleet.log().split('\n').slice(-40).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const rounds = [...seen.keys()].sort((a, b) => a - b);
    expect(rounds.length, JSON.stringify([...seen])).toBeGreaterThanOrEqual(3);
    // The warm-up check fails its first two rounds, then passes; the binary check passes every round.
    const early = seen.get(1) ?? seen.get(2);
    if (early) expect(early).toEqual(expect.arrayContaining([`✓ passed: ${BINARY}`, `✗ failing: ${WARM_UP}`]));
    const late = seen.get(rounds.at(-1) as number) as string[];
    expect(rounds.at(-1)).toBeGreaterThanOrEqual(3);
    expect(late).toEqual(expect.arrayContaining([`✓ passed: ${BINARY}`, `✓ passed: ${WARM_UP}`]));
    expect(rounds.some((r) => r <= 2 && seen.get(r)?.includes(`✗ failing: ${WARM_UP}`))).toBe(true);

    const s = await fleet.status();
    expect(s).toMatchObject({ state: 'idle', installedVersion: '2.0.0', lastOutcome: 'committed' });
    await product(page).locator('dl.facts').first().locator('dd').nth(1).filter({ hasText: /^2\.0\.0$/ }).waitFor();
    // Nothing of the probation lingers once the run is done.
    expect(await product(page).locator('li.step-active').count()).toBe(0);
    expect(problems).toEqual([]);
    await page.close();
  }, 240_000);
});

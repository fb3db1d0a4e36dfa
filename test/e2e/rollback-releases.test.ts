/**
 * "Rollback that means what it says", end to end as an operator meets it: `ota-repo` publishes,
 * a spawned `ota-server` serves, a real `otad` (real steps) updates robot-ai, installed first as a
 * plain 1.0.0 folder. The operator uses REST (fetch), the built `otactl` as a child process,
 * D-Bus on a private dbus-daemon, and the dashboard in Debian's Chromium.
 *
 *   1. nothing to go back to: refused with ROLLBACK_NOTHING_TO_UNDO everywhere, nothing recorded;
 *   2. a manual rollback of a healthy committed 1.1.0 goes back to 1.0.0 and leaves 1.1.0 unmarked
 *      (it is offered and installed again);
 *   3. `otactl rollback --mark-bad` marks it bad, by the operator; no check offers it; D-Bus
 *      GetReleases shows why; D-Bus UnmarkBad clears it (audited) and it is offered again;
 *   4. a release that fails validation is rolled back and marked bad automatically, with the reason;
 *   5. the dashboard offers "Roll back to 1.0.0" only while there is something to go back to.
 *
 * Set OTA_E2E_SCREENSHOT_DIR=/tmp/x to keep screenshots of the dashboard.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { chromium, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, READ_TOKEN, startFleet, type Fleet } from '../support/fleet-e2e.js';
import { REPO_ROOT } from '../support/otad-process.js';
import { writeTarGz, type FixtureEntry } from '../support/tar-fixtures.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from '../integration/api/private-bus.js';

const run = promisify(execFile);
const OTACTL = join(REPO_ROOT, 'dist/src/cli/otactl.js');
const CHROMIUM = '/usr/bin/chromium';
const NAME = 'io.otad.Daemon1';
const haveAll = existsSync(OTACTL) && hasDbusDaemon && hasTool('busctl') && existsSync(CHROMIUM);
if (!haveAll) console.warn(`rollback end-to-end skipped: needs ${OTACTL} (npm run build), /usr/bin/dbus-daemon, busctl and ${CHROMIUM}`);

let dir: string;
let bus: PrivateBus;
let fleet: Fleet;
let peer: dbus.MessageBus;
let iface: dbus.ClientInterface;

beforeAll(async () => {
  if (!haveAll) return;
  dir = mkdtempSync(join(tmpdir(), 'otad-rollback-e2e-'));
  bus = await startPrivateBus(dir);
  fleet = await startFleet({
    // Health commands run in the live release: one that ships a BROKEN file fails validation.
    product: { healthChecks: [{ kind: 'command', command: ['sh', '-c', 'test ! -e BROKEN'] }] },
    config: { dbus: { enabled: true, bus: bus.address, name: NAME }, api: { controlRateLimit: { window: '1m', max: 1000 } } },
  });
  peer = dbus.sessionBus({ busAddress: bus.address });
  // otad writes api.json once REST listens; the D-Bus service is started right after it.
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      iface = (await peer.getProxyObject(NAME, '/io/otad/Daemon1')).getInterface(NAME);
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}, 180_000);
afterAll(async () => {
  peer?.disconnect();
  await fleet?.close();
  await bus?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function otactl(...args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [OTACTL, '--config', fleet.sandbox.configPath, ...args], { cwd: REPO_ROOT, timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function releaseFile(version: string, extra: FixtureEntry[] = []): Promise<string> {
  const file = join(fleet.dir, `robot-ai-${version}.tar.gz`);
  return writeTarGz(file, [
    { name: 'VERSION', content: `${version}\n` },
    { name: 'bin/', type: 'directory' },
    { name: 'bin/robot-ai', content: `#!/bin/sh\necho ${version}\n`, mode: 0o755 },
    ...extra,
  ]);
}

const releases = async () => (await fleet.api('GET', '/api/v1/products/robot-ai/releases', undefined, READ_TOKEN)).body;
const entry = async (version: string) => ((await releases()).releases as Array<{ version: string }>).find((r) => r.version === version) as any;
const fullStatus = async () => (await fleet.api('GET', '/api/v1/status', undefined, READ_TOKEN)).body.products[0];
const runs = async () => (await fleet.api('GET', '/api/v1/history?limit=50', undefined, READ_TOKEN)).body.runs as Array<{ runId: string; kind: string; outcome: string | null; toVersion: string | null }>;

/** Until the status says so (the daemon reads where a rollback would go right after each state change). */
async function statusUntil(what: string, probe: (s: any) => boolean): Promise<any> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const s = await fullStatus();
    if (probe(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function rolledBackTo(version: string, runsBefore: number): Promise<void> {
  await statusUntil(`the rollback to ${version}`, (s) => s.state === 'idle' && s.lastOutcome === 'rolled-back' && s.installedVersion === version);
  expect((await runs()).length).toBe(runsBefore + 1);
}

async function dbusError(call: Promise<unknown>): Promise<string> {
  const error = await call.then(
    () => null,
    (e: unknown) => e as { type?: string; name?: string },
  );
  expect(error).not.toBeNull();
  return String(error?.type ?? error?.name);
}

describe.skipIf(!haveAll)('rollback and bad releases through REST, otactl, D-Bus and the dashboard', () => {
  it('refuses a rollback with nothing to go back to on every interface, and changes and records nothing', async () => {
    const tree = fleet.installedTree();
    const s = await fullStatus();
    expect(s).toMatchObject({ state: 'idle', installedVersion: '1.0.0', rollbackTarget: null });
    expect(s.allowedEvents).not.toContain('ROLLBACK');

    const rest = await fleet.api('POST', '/api/v1/events', { product: 'robot-ai', type: 'ROLLBACK' });
    expect(rest.status).toBe(409);
    expect(rest.body.error.code).toBe('ROLLBACK_NOTHING_TO_UNDO');
    expect(rest.body.error.message).toContain('nothing to roll back to for robot-ai');

    const cli = await otactl('rollback');
    expect(cli.code).toBe(3);
    expect(cli.stderr).toContain('ROLLBACK_NOTHING_TO_UNDO');

    // Rollback keeps its signature; RollbackWith, GetReleases and UnmarkBad are added beside it.
    const { stdout: introspected } = await run('busctl', [`--address=${bus.address}`, 'introspect', NAME, '/io/otad/Daemon1', NAME]);
    for (const [member, sig, out] of [['Rollback', 's', 's'], ['RollbackWith', 'sbs', 's'], ['GetReleases', 's', 's'], ['UnmarkBad', 'ss', 's']]) {
      expect(introspected).toMatch(new RegExp(`^\\.${member} +method +${sig} +${out} `, 'm'));
    }
    expect(await dbusError(iface.Rollback!(''))).toBe(`${NAME}.Error.ROLLBACK_NOTHING_TO_UNDO`);
    expect(await dbusError(iface.RollbackWith!('', true, 'test'))).toBe(`${NAME}.Error.ROLLBACK_NOTHING_TO_UNDO`);

    // Nothing moved: no run, the plain 1.0.0 folder untouched, still "installed 1.0.0", never "none".
    expect(await runs()).toEqual([]);
    expect(fleet.installedTree()).toEqual(tree);
    expect(await fullStatus()).toMatchObject({ state: 'idle', installedVersion: '1.0.0' });
    const listed = await otactl('releases');
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain('robot-ai: installed 1.0.0   rollback: nothing to go back to');
    expect(listed.stdout).toMatch(/^ {2}1\.0\.0 +installed$/m);
    // The refusals are in the audit log.
    expect(fleet.audit()).toContain('ROLLBACK_NOTHING_TO_UNDO');
  });

  it('rolls a healthy committed release back to 1.0.0 without marking it bad: a later check offers it and it installs again', async () => {
    await fleet.publish('1.1.0', await releaseFile('1.1.0'));
    expect((await fleet.checkAndUpdate('1.1.0')).run.outcome).toBe('committed');
    const s = await statusUntil('a rollback target', (x) => x.rollbackTarget !== null);
    expect(s.rollbackTarget).toEqual({ version: '1.0.0', method: 'previous-release', leaves: '1.1.0' });
    expect(s.allowedEvents).toContain('ROLLBACK');
    expect((await otactl('status')).stdout).toContain('rollback goes to 1.0.0 (otactl rollback)');

    const listed = await otactl('releases');
    expect(listed.stdout).toContain('robot-ai: installed 1.1.0   rollback goes to 1.0.0');
    expect(listed.stdout).toMatch(/^ {2}1\.1\.0 +installed, on disk, found /m);
    expect(listed.stdout).toMatch(/^ {2}1\.0\.0 +previous, on disk, backup$/m);

    const before = (await runs()).length;
    const cli = await otactl('rollback', '-r', 'operator wants the old planner');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('robot-ai: rolling back to 1.0.0; now rollback');
    expect(cli.stdout).toContain('1.1.0 is not marked bad: a later check may offer it again (use --mark-bad to keep it away)');
    await rolledBackTo('1.0.0', before);
    expect(readFileSync(join(fleet.installPath, 'VERSION'), 'utf8')).toBe('1.0.0\n');
    expect((await entry('1.1.0')).bad).toBeNull();

    // Back on the adopted 1.0.0 there is nothing further back: ROLLBACK is no longer offered.
    await statusUntil('no rollback target', (x) => x.rollbackTarget === null && !x.allowedEvents.includes('ROLLBACK'));
    expect((await fleet.api('POST', '/api/v1/events', { product: 'robot-ai', type: 'ROLLBACK' })).body.error.code).toBe('ROLLBACK_NOTHING_TO_UNDO');

    // Not silently bad forever: the next check offers 1.1.0 and it installs.
    expect((await fleet.checkAndUpdate('1.1.0')).run.outcome).toBe('committed');
  });

  it('marks the release bad only with --mark-bad, names the operator, keeps it from checks, and D-Bus UnmarkBad undoes it (audited)', async () => {
    await statusUntil('a rollback target', (x) => x.rollbackTarget?.version === '1.0.0');
    const before = (await runs()).length;
    const cli = await otactl('rollback', '--mark-bad', '-r', 'arm drifts on 1.1.0');
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('1.1.0 is marked bad and will not be offered again (undo: otactl releases unmark 1.1.0)');
    await rolledBackTo('1.0.0', before);

    const bad = (await entry('1.1.0')).bad;
    expect(bad).toMatchObject({ by: 'operator', actor: 'robot-ai-app', reason: 'marked bad by an operator on rollback: arm drifts on 1.1.0' });
    expect(typeof bad.at).toBe('number');
    expect(typeof bad.runId).toBe('string');
    const listed = await otactl('releases');
    expect(listed.stdout).toMatch(/^ +BAD since \S+ by operator robot-ai-app \(run \S+\): marked bad by an operator on rollback: arm drifts on 1\.1\.0$/m);
    // D-Bus tells the same story as REST.
    expect(JSON.parse((await iface.GetReleases!('robot-ai')) as string)).toEqual(await releases());

    // No check offers it now.
    await fleet.api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    await statusUntil('the check to end', (x) => x.state === 'idle' && x.lastOutcome === 'up-to-date');

    const cleared = JSON.parse((await iface.UnmarkBad!('robot-ai', '1.1.0')) as string);
    expect(cleared).toMatchObject({ product: 'robot-ai', version: '1.1.0', cleared: { by: 'operator', actor: 'robot-ai-app' } });
    expect((await entry('1.1.0')).bad).toBeNull();
    expect(await dbusError(iface.UnmarkBad!('robot-ai', '1.1.0'))).toBe(`${NAME}.Error.API_NOT_FOUND`);
    expect(fleet.audit()).toContain('bad mark of robot-ai 1.1.0 cleared from dbus (dbus): it may be offered again (it was marked operator by robot-ai-app');

    // Offered, and installed, again.
    expect((await fleet.checkAndUpdate('1.1.0')).run.outcome).toBe('committed');
  });

  it('rolls back a release that fails validation and marks it bad automatically, with the failure as the reason', async () => {
    await fleet.publish('1.2.0', await releaseFile('1.2.0', [{ name: 'BROKEN', content: 'this release fails its health check\n' }]));
    const { run: result } = await fleet.checkAndUpdate('1.2.0');
    expect(result.outcome).toBe('rolled-back');
    await statusUntil('1.1.0 back', (x) => x.installedVersion === '1.1.0' && x.rollbackTarget?.version === '1.0.0');
    const bad = (await entry('1.2.0')).bad;
    expect(bad).toMatchObject({ by: 'automatic', actor: 'otad' });
    expect(bad.reason).toMatch(/^rolled back automatically: validation failed: HEALTH_CHECK_FAILED: /);
    const unmark = await otactl('releases', 'unmark', '1.0.0');
    expect(unmark.code).toBe(2);
    expect(unmark.stderr).toContain('API_NOT_FOUND');
  });

  describe('the dashboard', () => {
    let context: BrowserContext;
    let profile: string;
    const shots = process.env.OTA_E2E_SCREENSHOT_DIR;

    beforeAll(async () => {
      if (shots) mkdirSync(shots, { recursive: true });
      profile = mkdtempSync(join(tmpdir(), 'otad-chromium-'));
      context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1280, height: 1400 },
      });
      context.setDefaultTimeout(20_000);
    });
    afterAll(async () => {
      await context?.close();
      if (profile) rmSync(profile, { recursive: true, force: true });
    });

    const product = (page: Page): Locator => page.getByRole('region', { name: 'robot-ai' });

    it('offers "Roll back to 1.0.0" (and the same with marking 1.1.0 bad), shows why 1.2.0 is bad, and hides rollback once there is nothing to go back to', async () => {
      const problems: string[] = [];
      const page = await context.newPage();
      page.on('pageerror', (e) => problems.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(m.text());
      });
      await page.goto(`${fleet.apiUrl}/ui/`);
      await page.getByLabel('API token').fill(CONTROL_TOKEN);
      await page.getByRole('button', { name: 'Connect' }).click();

      await product(page).getByRole('button', { name: 'Roll back to 1.0.0', exact: true }).waitFor();
      await product(page).getByRole('button', { name: 'Roll back to 1.0.0 and mark 1.1.0 bad' }).waitFor();
      const row = product(page).locator('tr[data-release="1.2.0"]');
      await row.waitFor();
      expect(await row.textContent()).toMatch(/Marked bad .* automatically by otad: rolled back automatically: validation failed: HEALTH_CHECK_FAILED/);
      await row.getByRole('button', { name: 'Unmark 1.2.0' }).waitFor();
      expect(await product(page).locator('tr[data-release="1.1.0"] td').first().textContent()).toBe('installed, on disk, backup');
      expect(await product(page).locator('tr[data-release="1.0.0"] td').first().textContent()).toBe('rollback target, on disk, backup');
      if (shots) await page.screenshot({ path: join(shots, 'rollback-offered.png'), fullPage: true });

      // The update server as otad measures it: reachable with a latency, the metadata's expiry, the last successful check.
      const server = product(page).locator('.server');
      const serverFacts = async () => (await server.locator('dt, dd').allTextContents()).join('|');
      await expect.poll(serverFacts).toMatch(/Connection\|reachable, \d+ ms \(HTTP 200\)/);
      const repo = ((await fleet.api('GET', '/api/v1/repositories', undefined, READ_TOKEN)).body.repositories as any[])[0];
      expect(await serverFacts()).toContain(`Repository|TUF ${repo.location}|Channel|stable`);
      expect(await serverFacts()).toMatch(/Metadata expires\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\|Last successful check\|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/);
      // The signatures section lists the roles otad holds and their key ids.
      const signatures = product(page).locator('details[data-section="signatures"]');
      await signatures.locator('summary').click();
      expect(await signatures.locator('tbody th').allTextContents()).toEqual(expect.arrayContaining(['root', 'timestamp', 'snapshot', 'targets']));

      // At 400 px the buttons still show, and the keyboard works them.
      await page.setViewportSize({ width: 400, height: 1600 });
      const rollBack = product(page).getByRole('button', { name: 'Roll back to 1.0.0', exact: true });
      expect(await rollBack.isVisible()).toBe(true);
      if (shots) await page.screenshot({ path: join(shots, 'rollback-offered-400px.png'), fullPage: true });
      const before = (await runs()).length;
      // The variant that marks 1.1.0 bad says so in its dialog; keeping things as they are sends nothing.
      await product(page).getByRole('button', { name: 'Roll back to 1.0.0 and mark 1.1.0 bad' }).click();
      const markDialog = page.getByRole('dialog', { name: 'Roll back to 1.0.0 and mark 1.1.0 bad?' });
      expect(await markDialog.locator('dd').last().textContent()).toBe('1.1.0 is marked bad and will not be offered again');
      await markDialog.getByRole('button', { name: 'Keep as is' }).click();
      await expect.poll(() => markDialog.count()).toBe(0);
      expect((await runs()).length).toBe(before);

      await rollBack.focus();
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog', { name: 'Roll back to 1.0.0?' });
      await dialog.waitFor();
      const facts = (await dialog.locator('dt, dd').allTextContents()).join('|');
      expect(facts).toContain('From|1.1.0|To|1.0.0|How|switch back to the release kept on disk|Services that stop and restart|none configured');
      expect(facts).toContain('Afterwards|1.1.0 is not marked bad: a later check may offer it again');
      if (shots) await page.screenshot({ path: join(shots, 'rollback-dialog-400px.png') });
      // Keyboard only: from "Keep as is" (focused first) to the confirm button.
      await page.keyboard.press('Tab');
      await page.keyboard.press('Enter');
      await rolledBackTo('1.0.0', before);
      await product(page).locator('dl.facts').first().locator('dd').nth(1).filter({ hasText: /^1\.0\.0$/ }).waitFor();
      // Nothing further back: no rollback button of any kind.
      await expect.poll(() => product(page).getByRole('button', { name: /Roll back/ }).count(), { timeout: 20_000 }).toBe(0);
      expect(await product(page).getByRole('button', { name: 'Check now' }).count()).toBe(1);
      expect((await entry('1.1.0')).bad).toBeNull();
      // Rolled back, with nothing further back: at 400 px (as the operator used it) and at 1280 px.
      if (shots) {
        await page.screenshot({ path: join(shots, 'rolled-back-400px.png'), fullPage: true });
        await page.setViewportSize({ width: 1280, height: 1000 });
        await page.screenshot({ path: join(shots, 'rolled-back.png') });
      }
      expect(problems).toEqual([]);
      await page.close();
    });
  });
});

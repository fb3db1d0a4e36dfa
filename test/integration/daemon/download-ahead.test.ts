/**
 * Download ahead of the install slot on the REAL otad (real steps, real interfaces) against a real
 * ota-server on loopback behind a counting proxy (createCrashWorld). The robot's choice is
 * SCHEDULE_3AM with `schedule.downloadAhead: immediately`: otad downloads, verifies and stages the
 * release while it waits, and the install slot is reached on demand (otad-at-slot.ts moves the
 * clock to the slot and fires the deadlines, as the in-process scheduling tests do). Covered:
 *  - the slot uses the staged tree after verifying it again: no package is downloaded in the slot,
 *    the history's window says "staged ahead";
 *  - a newer release supersedes the staged one: discarded (and said), the newer one staged instead;
 *  - a staged file corrupted before the slot: found by the re-verification, discarded (and said),
 *    downloaded again in the slot, and the installed tree is the signed one;
 *  - SIGKILL while staging ahead, then restart: the half tree is removed, never used; SIGKILL once
 *    staged, then restart: the staged tree is verified again and used.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { stagingRootFor } from '../../../src/release/layout.js';
import { AHEAD_RECORD_NAME } from '../../../src/steps/stage-ahead.js';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { REPO_ROOT, readSaved, waitUntil } from '../../support/otad-process.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

type Ahead = { policy: string; state: string; version: string | null; reason: string | null; lastDiscard: { version: string; reason: string } | null };
type ProductStatus = { product: string; state: string; lastOutcome: string | null; installedVersion: string | null; downloadAhead?: Ahead };
type Run = { runId: string; outcome: string | null; toVersion: string | null; window: { fromScheduled: boolean; ms: number | null; stagingMs: number; stagedAhead: boolean } | null };

/** A loopback proxy in front of the ota-server that remembers every path asked for. */
async function countingProxy(target: string): Promise<{ url: string; paths: string[]; close(): Promise<void> }> {
  const upstream = new URL(target);
  const paths: string[] = [];
  const server: Server = createServer((req, res) => {
    paths.push(req.url ?? '');
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    paths,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => {});
});

interface Setup {
  world: CrashWorld;
  proxy: Awaited<ReturnType<typeof countingProxy>>;
  stagingRoot: string;
  start(): Promise<RunningDaemon>;
}

async function setup(opts: { seed: number; bigFileBytes: number; policy?: string }): Promise<Setup> {
  expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
  const world = await createCrashWorld({ seed: opts.seed, bigFileBytes: opts.bigFileBytes, brokenEvery: 1000 });
  closers.push(() => world.close(process.env.OTA_TEST_KEEP === '1'));
  const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as { server: { url: string }; products: Array<Record<string, unknown> & { schedule: Record<string, unknown> }> };
  const proxy = await countingProxy(doc.server.url);
  closers.push(() => proxy.close());
  doc.server.url = proxy.url;
  const product = doc.products[0]!;
  // The robot's app chooses nothing: the default, SCHEDULE_3AM, applies when the test says so.
  product.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
  // The slot is two hours away (local time): only otad-at-slot's SIGUSR2 brings it.
  const slot = new Date(Date.now() + 2 * 3600_000);
  product.schedule = {
    ...product.schedule,
    installAt: `${String(slot.getHours()).padStart(2, '0')}:${String(slot.getMinutes()).padStart(2, '0')}`,
    downloadAhead: opts.policy ?? 'immediately',
  };
  writeFileSync(world.sandbox.configPath, YAML.stringify(doc));
  return { world, proxy, stagingRoot: stagingRootFor({ name: PRODUCT, installPath: world.installPath }), start: () => world.startOtad('at-slot') };
}

const status = async (d: RunningDaemon): Promise<ProductStatus> => (await d.api.request<{ products: ProductStatus[] }>('GET', '/api/v1/status')).products.find((p) => p.product === PRODUCT)!;
const dispatch = (d: RunningDaemon, type: string) => d.api.request<{ runId: string | null; state: string }>('POST', '/api/v1/events', { product: PRODUCT, type });
const history = async (d: RunningDaemon): Promise<Run[]> => (await d.api.request<{ runs: Run[] }>('GET', `/api/v1/history?product=${PRODUCT}`)).runs;

async function waitAhead(d: RunningDaemon, pred: (a: Ahead) => boolean, what: string): Promise<Ahead> {
  return until(async () => {
    const a = (await status(d)).downloadAhead;
    return a && pred(a) ? a : null;
  }, what);
}

/** waitUntil with an async probe. */
async function until<T>(probe: () => Promise<T | null | false | undefined>, what: string, timeoutMs = 120_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function offerAndSchedule(d: RunningDaemon): Promise<void> {
  await dispatch(d, 'CHECK_NOW');
  await until(async () => (await status(d)).state === 'awaitingChoice', 'the offer');
  await dispatch(d, 'SCHEDULE_3AM');
  await until(async () => (await status(d)).state === 'scheduled', 'scheduled');
}

const packagesAsked = (paths: string[]) => paths.filter((p) => p.includes('/targets/') && p.endsWith('.tar.gz'));

async function reachSlotAndCommit(s: Setup, d: RunningDaemon, version: string): Promise<Run> {
  d.proc.child.kill('SIGUSR2');
  await until(async () => {
    const p = await status(d);
    return p.state === 'idle' && p.lastOutcome === 'committed' && p.installedVersion === version;
  }, `the install of ${version} in the slot to commit`, 180_000);
  const run = (await history(d)).find((r) => r.toVersion === version && r.outcome === 'committed')!;
  expect(run.window).toMatchObject({ fromScheduled: true });
  const view = await s.world.inspectInstall();
  expect(view.matches.map((r) => r.version), view.diff.join('\n')).toEqual([version]);
  return run;
}

const log = (s: Setup) => readFileSync(s.world.sandbox.logPath, 'utf8');

describe.skipIf(process.env.OTA_SKIP_CRASH === '1')('download ahead of the install slot (real otad, real server)', () => {
  it('stages during the day, verifies again in the slot and only switches there: nothing downloaded in the slot', async () => {
    const s = await setup({ seed: 7101, bigFileBytes: 1024 * 1024 });
    const release = await s.world.publishNext();
    const d = await s.start();
    await offerAndSchedule(d);
    const staged = await waitAhead(d, (a) => a.state === 'staged', 'the release staged ahead');
    expect(staged).toMatchObject({ policy: 'immediately', version: release.version });
    expect(existsSync(join(s.stagingRoot, AHEAD_RECORD_NAME))).toBe(true);
    expect(packagesAsked(s.proxy.paths).length).toBe(1);
    // Still scheduled: nothing of the install changed.
    expect((await status(d)).state).toBe('scheduled');
    expect((await s.world.inspectInstall()).matches.map((r) => r.version)).toEqual(['1.0.0']);

    const before = s.proxy.paths.length;
    const run1 = await reachSlotAndCommit(s, d, release.version);
    expect(packagesAsked(s.proxy.paths.slice(before))).toEqual([]);
    expect(run1.window).toMatchObject({ stagedAhead: true });
    expect(log(s)).toContain(`using release ${release.version} staged ahead (verified again against the signed tree index just now): nothing to download`);
    expect(existsSync(join(s.stagingRoot, AHEAD_RECORD_NAME))).toBe(false);
    // otactl history prints the window the history recorded.
    const printed = await exec(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), '--url', d.url, '--token-file', join(s.world.root, 'etc/tokens.yaml'), 'history', '-p', PRODUCT]);
    const line = printed.stdout.split('\n').find((l) => l.startsWith(run1.runId))!;
    expect(line).toContain(`window ${(run1.window!.ms! / 1000).toFixed(1)} s (staging ${(run1.window!.stagingMs / 1000).toFixed(1)} s, staged ahead, in the install slot)`);
  }, 300_000);

  it('discards a staged release that a newer one supersedes, says so, and stages the newer one', async () => {
    const s = await setup({ seed: 7102, bigFileBytes: 512 * 1024 });
    const first = await s.world.publishNext();
    const d = await s.start();
    await offerAndSchedule(d);
    await waitAhead(d, (a) => a.state === 'staged' && a.version === first.version, `${first.version} staged ahead`);
    const newer = await s.world.publishNext();
    // The robot's app calls the scheduled install off and checks again: the newer release is on offer.
    await dispatch(d, 'CANCEL');
    await dispatch(d, 'CHECK_NOW');
    const discarded = await waitAhead(d, (a) => a.lastDiscard !== null, 'the staged release discarded');
    expect(discarded.lastDiscard).toMatchObject({ version: first.version, reason: `superseded by ${newer.version}` });
    expect(log(s)).toContain(`staged-ahead release ${first.version} discarded: superseded by ${newer.version}`);
    const shown = await exec(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), '--url', d.url, '--token-file', join(s.world.root, 'etc/tokens.yaml'), 'status']);
    expect(shown.stdout).toMatch(new RegExp(`staged-ahead ${first.version.replace(/\./g, '\\.')} discarded \\S+: superseded by ${newer.version.replace(/\./g, '\\.')}`));
    await until(async () => (await status(d)).state === 'awaitingChoice', 'the newer offer');
    await dispatch(d, 'SCHEDULE_3AM');
    await waitAhead(d, (a) => a.state === 'staged' && a.version === newer.version, `${newer.version} staged ahead`);
    // Only the newer tree is left in the staging place.
    const record = JSON.parse(readFileSync(join(s.stagingRoot, AHEAD_RECORD_NAME), 'utf8')) as { version: string; runId: string };
    expect(record.version).toBe(newer.version);
    expect(readdirSync(s.stagingRoot).sort()).toEqual([AHEAD_RECORD_NAME, record.runId].sort());
    const run = await reachSlotAndCommit(s, d, newer.version);
    expect(run.window?.stagedAhead).toBe(true);
  }, 300_000);

  it('finds a staged file corrupted before the slot, discards the tree (and says so) and downloads the release again', async () => {
    const s = await setup({ seed: 7103, bigFileBytes: 512 * 1024 });
    const release = await s.world.publishNext();
    const d = await s.start();
    await offerAndSchedule(d);
    await waitAhead(d, (a) => a.state === 'staged', 'the release staged ahead');
    const record = JSON.parse(readFileSync(join(s.stagingRoot, AHEAD_RECORD_NAME), 'utf8')) as { releaseDir: string; packagePath: string };
    // One byte of the model changes on disk while otad waits for the slot, and one of the download
    // kept in the cache too (a bad sector, say): both are checked against their signed hashes.
    const flip = (file: string, at: number) => {
      const fd = openSync(file, 'r+');
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      writeSync(fd, Buffer.from([b[0]! ^ 0xff]), 0, 1, at);
      closeSync(fd);
    };
    flip(join(record.releaseDir, 'models/planner.bin'), 1000);
    flip(record.packagePath, 4000);
    const before = s.proxy.paths.length;
    const run = await reachSlotAndCommit(s, d, release.version);
    expect(run.window?.stagedAhead).toBe(false);
    // The slot downloaded the package again: the cached copy no longer matched its signed hash.
    expect(packagesAsked(s.proxy.paths.slice(before)).length).toBe(1);
    expect(log(s)).toContain('cached package does not match its signed target; downloading again');
    expect(log(s)).toMatch(new RegExp(`staged-ahead release ${release.version.replace(/\./g, '\\.')} discarded: it failed verification before the switch \\(RELEASE_TREE_MISMATCH`));
    expect((await status(d)).downloadAhead?.lastDiscard).toMatchObject({ version: release.version });
  }, 300_000);

  it('with downloadAhead: unmetered waits while the link is not known to be unmetered, and the slot downloads as usual', async () => {
    const s = await setup({ seed: 7105, bigFileBytes: 256 * 1024, policy: 'unmetered' });
    const release = await s.world.publishNext();
    const d = await s.start();
    await offerAndSchedule(d);
    const waiting = await waitAhead(d, (a) => a.state === 'waiting', 'download ahead to wait');
    expect(waiting).toMatchObject({ policy: 'unmetered', version: release.version });
    expect(waiting.reason).toContain('not known to be unmetered');
    expect(packagesAsked(s.proxy.paths)).toEqual([]);
    expect(existsSync(join(s.stagingRoot, AHEAD_RECORD_NAME))).toBe(false);
    const run = await reachSlotAndCommit(s, d, release.version);
    expect(run.window?.stagedAhead).toBe(false);
    expect(packagesAsked(s.proxy.paths).length).toBe(1);
  }, 300_000);

  it('never uses a tree half staged when otad was SIGKILLed, and reuses a complete one after verifying it again', async () => {
    // A large model: staging takes long enough to be killed in the middle.
    const s = await setup({ seed: 7104, bigFileBytes: 48 * 1024 * 1024 });
    const release = await s.world.publishNext();
    let d = await s.start();
    await offerAndSchedule(d);
    // Killed while the tree is being written (the staging folder exists, the record does not yet).
    await waitUntil(
      () => existsSync(s.stagingRoot) && readdirSync(s.stagingRoot).some((n) => n !== AHEAD_RECORD_NAME) && !existsSync(join(s.stagingRoot, AHEAD_RECORD_NAME)),
      { timeoutMs: 120_000, intervalMs: 2, what: 'staging ahead to be under way' },
    );
    expect((await d.proc.kill('SIGKILL')).signal).toBe('SIGKILL');
    expect(existsSync(join(s.stagingRoot, AHEAD_RECORD_NAME))).toBe(false);
    expect(readSaved(s.world.sandbox.dbPath)?.state).toBe('scheduled');

    d = await s.start();
    await waitAhead(d, (a) => a.state === 'staged', 'staged ahead again after the restart');
    expect(log(s)).toContain('removing a staging tree no staged-ahead record names');
    const record = JSON.parse(readFileSync(join(s.stagingRoot, AHEAD_RECORD_NAME), 'utf8')) as { runId: string };
    expect(readdirSync(s.stagingRoot).sort()).toEqual([AHEAD_RECORD_NAME, record.runId].sort());

    // Killed once staged: the restart verifies the tree again and keeps it for the slot.
    await d.proc.kill('SIGKILL');
    d = await s.start();
    await until(async () => log(s).includes(`staged-ahead release ${release.version} verified again after otad started: kept for the install slot`), 'the verification after the restart');
    await waitAhead(d, (a) => a.state === 'staged', 'staged after the second restart');
    const before = s.proxy.paths.length;
    const run = await reachSlotAndCommit(s, d, release.version);
    expect(run.window?.stagedAhead).toBe(true);
    expect(packagesAsked(s.proxy.paths.slice(before))).toEqual([]);
  }, 400_000);
});

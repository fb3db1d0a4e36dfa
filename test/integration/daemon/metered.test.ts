/**
 * Metered links on the REAL otad (dist/src/cli/otad.js, real steps, REST and D-Bus) against a real
 * ota-server on loopback (createCrashWorld). NetworkManager cannot run here: a stand-in serves its
 * `Metered` property (org.freedesktop.NetworkManager, /org/freedesktop/NetworkManager, type u) on a
 * private dbus-daemon, and otad's own D-Bus service is on the same bus. Covered:
 *  - the offer shows what it downloads (the full package, then a delta) before the choice, on REST
 *    status, `otactl status` and D-Bus Product1.OfferedDownloadBytes;
 *  - `network.metered: wait` on a metered link: the pre-check waits with METERED_WAIT (REST,
 *    otactl, D-Bus PreCheckReasons), nothing is downloaded; Metered turning NO (PropertiesChanged)
 *    lets the run go on and commit;
 *  - `network.metered: download` with a monthly budget: a download that fits is made on the
 *    metered link and its bytes are counted in the state database; the next one that does not fit
 *    waits with METERED_BUDGET_EXHAUSTED, and goes on once the link is not metered, which does not
 *    count;
 *  - download ahead's `unmetered` policy waits while NetworkManager reports the link metered (and
 *    says so in status) and stages the release once it reports NO.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { localMonth, meteredBytesKey } from '../../../src/net/metered.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { NM_METERED_NO, NM_METERED_YES, startNetworkManagerStandIn, type NetworkManagerStandIn } from '../../support/network-manager-standin.js';
import { REPO_ROOT, query } from '../../support/otad-process.js';
import { hasDbusDaemon, startPrivateBus, type PrivateBus } from '../api/private-bus.js';

const exec = promisify(execFile);
const OTAD_NAME = 'io.otad.Daemon1';
const PRODUCT_PATH = '/io/otad/Product/robot_2dai';

type Reason = { code: string; message: string };
type Offer = { version: string; downloadBytes?: number; package: { length: number }; delta?: { fromVersion: string; target: { length: number } } };
type Status = { product: string; state: string; runId: string | null; lastOutcome: string | null; offer: Offer | null; preCheckReasons: Reason[] };

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
});

interface World {
  world: CrashWorld;
  bus: PrivateBus;
  nm: NetworkManagerStandIn;
  /** Targets as signed (name → length). */
  targetLength(name: string): Promise<number>;
  /** `more`: further keys of the product, replacing the crash world's. */
  configure(network: Record<string, unknown>, more?: Record<string, unknown>): void;
}

async function setup(seed: number, modelChangesEvery: number, metered: number): Promise<World> {
  expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
  const world = await createCrashWorld({ seed, modelChangesEvery, brokenEvery: 1000, bigFileBytes: 256 * 1024 });
  closers.push(() => world.close(process.env.OTA_TEST_KEEP === '1'));
  const busDir = mkdtempSync(join(tmpdir(), 'otad-metered-bus-'));
  const bus = await startPrivateBus(busDir);
  closers.push(() => rmSync(busDir, { recursive: true, force: true }));
  closers.push(() => bus.stop());
  const nm = await startNetworkManagerStandIn(bus.address, metered);
  closers.push(() => nm.close());
  const publisher = createPublisher({ repoDir: join(world.root, 'server/repo'), keysDir: join(world.root, 'server/keys'), clock: systemClock });
  return {
    world,
    bus,
    nm,
    async targetLength(name) {
      const t = (await publisher.listTargets()).find((x) => x.name === name);
      if (t === undefined) throw new Error(`no target ${name} in the repository`);
      return t.length;
    },
    configure(network, more = {}) {
      const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as Record<string, unknown> & { products: Array<Record<string, unknown>> };
      doc.networkManager = { bus: bus.address };
      doc.dbus = { enabled: true, bus: bus.address, name: OTAD_NAME };
      const product = doc.products[0]!;
      // The robot's app answers by hand here: the offer stays up until the test chooses.
      product.decision = { defaultChoice: 'UPDATE_NOW', choiceTimeout: '1h' };
      product.network = network;
      Object.assign(product, more);
      writeFileSync(world.sandbox.configPath, YAML.stringify(doc));
    },
  };
}

const status = async (d: RunningDaemon): Promise<Status> => (await d.api.request<{ products: Status[] }>('GET', '/api/v1/status')).products.find((p) => p.product === PRODUCT)!;
const dispatch = (d: RunningDaemon, type: string) => d.api.request<{ runId: string | null; state: string }>('POST', '/api/v1/events', { product: PRODUCT, type });

async function until<T>(probe: () => Promise<T | null | false | undefined>, what: string, log: () => string, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n--- otad log tail ---\n${log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function otactlStatus(w: World, d: RunningDaemon): Promise<string> {
  const { stdout } = await exec(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), '--url', d.url, '--token-file', join(w.world.root, 'etc/tokens.yaml'), 'status'], { timeout: 60_000 });
  return stdout;
}

async function productProps(w: World): Promise<{ get(name: string): Promise<unknown>; close(): void }> {
  const peer = dbus.sessionBus({ busAddress: w.bus.address });
  const obj = await peer.getProxyObject(OTAD_NAME, PRODUCT_PATH);
  const props = obj.getInterface('org.freedesktop.DBus.Properties');
  return {
    get: async (name) => ((await props.Get!('io.otad.Product1', name)) as dbus.Variant).value,
    close: () => peer.disconnect(),
  };
}

async function offered(w: World, d: RunningDaemon): Promise<Status> {
  await dispatch(d, 'CHECK_NOW');
  return until(async () => {
    const s = await status(d);
    return s.state === 'awaitingChoice' && s.offer !== null ? s : null;
  }, 'the offer', () => w.world.logTail());
}

async function committed(w: World, d: RunningDaemon, runId: string): Promise<void> {
  const s = await until(async () => {
    const x = await status(d);
    return x.state === 'idle' && x.runId === runId && x.lastOutcome !== null ? x : null;
  }, `run ${runId} to settle`, () => w.world.logTail());
  expect(s.lastOutcome, w.world.logTail()).toBe('committed');
}

const stagedIn = (w: World, runId: string): boolean =>
  readFileSync(w.world.sandbox.logPath, 'utf8')
    .split('\n')
    .some((l) => l.includes(`"runId":"${runId}"`) && l.includes('"release staged"'));

describe.skipIf(!hasDbusDaemon)('metered links (NetworkManager Metered on a private bus)', () => {
  it('shows the download size before the choice everywhere; network.metered: wait holds the run with METERED_WAIT until Metered turns NO', async () => {
    const w = await setup(7301, 1000, NM_METERED_YES);
    w.configure({ metered: 'wait' });
    const d = await w.world.startOtad();
    closers.push(() => d.proc.kill('SIGTERM'));
    const props = await productProps(w);
    closers.push(() => props.close());

    // 1.0.0 is a plain folder nobody published: the first offer is the full package.
    const r1 = await w.world.publishNext();
    const full = await w.targetLength(`${PRODUCT}/${PRODUCT}-${r1.version}.tar.gz`);
    const first = await offered(w, d);
    expect(first.offer).toMatchObject({ version: r1.version, downloadBytes: full });
    expect(first.offer?.delta).toBeUndefined();
    expect(await props.get('OfferedDownloadBytes')).toBe(BigInt(full));
    expect(await otactlStatus(w, d)).toMatch(new RegExp(`offered ${r1.version.replace(/\./g, '\\.')} \\(download [0-9.]+ (KiB|MiB), full package\\)`));

    // The link is metered and the policy is wait: the pre-check does not pass, nothing is downloaded.
    const { runId } = await dispatch(d, 'UPDATE_NOW');
    const waiting = await until(async () => {
      const s = await status(d);
      return s.state === 'preCheckWaiting' && s.preCheckReasons.length > 0 ? s : null;
    }, 'the pre-check to wait', () => w.world.logTail());
    expect(waiting.preCheckReasons.map((r) => r.code)).toEqual(['METERED_WAIT']);
    expect(waiting.preCheckReasons[0]!.message).toContain('NetworkManager Metered=yes');
    expect(((await props.get('PreCheckReasons')) as Array<[string, string]>).map(([code]) => code)).toEqual(['METERED_WAIT']);
    expect(await otactlStatus(w, d)).toContain('waiting: METERED_WAIT: the link is metered (NetworkManager Metered=yes)');
    expect(stagedIn(w, runId!)).toBe(false);

    // The robot moves to an unmetered link: PropertiesChanged reaches otad, the next pre-check passes.
    w.nm.set(NM_METERED_NO);
    await committed(w, d, runId!);
    expect(stagedIn(w, runId!)).toBe(true);
    expect(readFileSync(w.world.sandbox.logPath, 'utf8')).toContain('NetworkManager reports the link as Metered=no');
    expect(await props.get('PreCheckReasons')).toEqual([]);

    // Same model in the next release: a delta from the installed version, and the offer says so.
    const r2 = await w.world.publishNext();
    const delta = await w.targetLength(`${PRODUCT}/${PRODUCT}-${r1.version}-to-${r2.version}.delta.tar.gz`);
    const pkg2 = await w.targetLength(`${PRODUCT}/${PRODUCT}-${r2.version}.tar.gz`);
    expect(delta).toBeLessThan(pkg2);
    const second = await offered(w, d);
    expect(second.offer).toMatchObject({ version: r2.version, downloadBytes: delta, delta: { fromVersion: r1.version }, package: { length: pkg2 } });
    expect(await props.get('OfferedDownloadBytes')).toBe(BigInt(delta));
    expect(await otactlStatus(w, d)).toMatch(new RegExp(`offered ${r2.version.replace(/\./g, '\\.')} \\(download [0-9.]+ (B|KiB|MiB), delta from ${r1.version.replace(/\./g, '\\.')}\\)`));
    const next = await dispatch(d, 'UPDATE_NOW');
    await committed(w, d, next.runId!);
  }, 300_000);

  it('network.metered: download counts the bytes of a metered link against the monthly budget, and waits with METERED_BUDGET_EXHAUSTED when the next download does not fit', async () => {
    // Every release has a new model: each download is about the size of a package.
    const w = await setup(7302, 1, NM_METERED_YES);
    const r1 = await w.world.publishNext();
    const full1 = await w.targetLength(`${PRODUCT}/${PRODUCT}-${r1.version}.tar.gz`);
    const budget = Math.floor(full1 * 1.5);
    w.configure({ metered: 'download', meteredBudget: budget });
    const d = await w.world.startOtad();
    closers.push(() => d.proc.kill('SIGTERM'));
    const props = await productProps(w);
    closers.push(() => props.close());
    const used = (): number => {
      const rows = query<{ value: string }>(w.world.sandbox.dbPath, 'SELECT value FROM kv WHERE key = ?', meteredBytesKey(PRODUCT, localMonth(Date.now())));
      return rows.length === 0 ? 0 : Number(rows[0]!.value);
    };

    // It fits: downloaded on the metered link, and every byte of it counted.
    await offered(w, d);
    const { runId } = await dispatch(d, 'UPDATE_NOW');
    await committed(w, d, runId!);
    const afterFirst = used();
    expect(afterFirst).toBeGreaterThanOrEqual(full1);
    expect(afterFirst).toBeLessThanOrEqual(budget);

    // The next one does not fit in what is left.
    const r2 = await w.world.publishNext();
    const second = await offered(w, d);
    const need = second.offer!.downloadBytes!;
    expect(need).toBeGreaterThan(budget - afterFirst);
    const next = await dispatch(d, 'UPDATE_NOW');
    const waiting = await until(async () => {
      const s = await status(d);
      return s.state === 'preCheckWaiting' && s.preCheckReasons.length > 0 ? s : null;
    }, 'the pre-check to wait', () => w.world.logTail());
    expect(waiting.preCheckReasons.map((r) => r.code)).toEqual(['METERED_BUDGET_EXHAUSTED']);
    // The check's metadata came over the metered link too: counted as well.
    const usedNow = used();
    expect(usedNow).toBeGreaterThan(afterFirst);
    const message = waiting.preCheckReasons[0]!.message;
    expect(message).toContain(`(${usedNow} bytes) of ${PRODUCT}'s`);
    expect(message).toContain(`(${budget} bytes) budget for ${localMonth(Date.now())}`);
    expect(message).toContain(`(${budget - usedNow} bytes) left`);
    expect(message).toContain(`(${need} bytes,`);
    expect(((await props.get('PreCheckReasons')) as Array<[string, string]>).map(([code]) => code)).toEqual(['METERED_BUDGET_EXHAUSTED']);
    expect(stagedIn(w, next.runId!)).toBe(false);

    // Off the metered link it goes on; those bytes are not the metered budget's.
    w.nm.set(NM_METERED_NO);
    await committed(w, d, next.runId!);
    expect(used()).toBe(usedNow);
    expect((await w.world.inspectInstall()).matches.map((m) => m.version)).toEqual([r2.version]);
  }, 300_000);

  it('download ahead with unmetered waits while NetworkManager reports the link metered and stages the release once it reports NO', async () => {
    const w = await setup(7303, 1000, NM_METERED_YES);
    const slot = new Date(Date.now() + 2 * 3600_000);
    const doc = YAML.parse(readFileSync(w.world.sandbox.configPath, 'utf8')) as { products: Array<{ schedule: Record<string, unknown> }> };
    w.configure(
      { metered: 'allow' },
      {
        decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
        // The slot is two hours away: only download ahead moves bytes during the test.
        schedule: { ...doc.products[0]!.schedule, installAt: `${String(slot.getHours()).padStart(2, '0')}:${String(slot.getMinutes()).padStart(2, '0')}`, downloadAhead: 'unmetered', downloadAheadRetry: '1s' },
      },
    );
    const d = await w.world.startOtad();
    closers.push(() => d.proc.kill('SIGTERM'));
    type Ahead = { policy: string; state: string; version: string | null; reason: string | null };
    const ahead = async (): Promise<Ahead | undefined> => (await d.api.request<{ products: Array<Status & { downloadAhead?: Ahead }> }>('GET', '/api/v1/status')).products.find((p) => p.product === PRODUCT)!.downloadAhead;

    const r1 = await w.world.publishNext();
    await offered(w, d);
    await dispatch(d, 'SCHEDULE_3AM');
    const waiting = await until(async () => {
      const a = await ahead();
      return a?.state === 'waiting' ? a : null;
    }, 'download ahead to wait', () => w.world.logTail());
    expect(waiting).toMatchObject({ policy: 'unmetered', version: r1.version });
    expect(waiting.reason).toBe('the link is metered (NetworkManager reports Metered=yes): waiting for an unmetered one');

    w.nm.set(NM_METERED_NO);
    const staged = await until(async () => {
      const a = await ahead();
      return a?.state === 'staged' ? a : null;
    }, 'download ahead to stage the release', () => w.world.logTail());
    expect(staged).toMatchObject({ version: r1.version, reason: null });
    expect((await status(d)).state).toBe('scheduled');
  }, 300_000);
});

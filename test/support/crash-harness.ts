/**
 * The world of the crash-consistency test (test/integration/crash, docs/crash-testing.md): a signed
 * repository and ota-server in the test process, the demo robot-ai installed at 1.0.0 as a plain
 * folder with its service running, and a configuration for the REAL otad (dist/src/cli/otad.js,
 * real steps, REST on loopback) that updates on its own (UPDATE_NOW by default after a short
 * choice timeout) with a short probation window.
 *
 * Everything the test compares is kept here: the hash of every release tree it published, the
 * install path as it is on disk, and the apply journal, so a kill can be classified by what the
 * disk says (before or after the switch) rather than by what the test hoped.
 */
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import YAML from 'yaml';
import { ApiClient } from '../../src/api/client.js';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { writeSampleRelease } from '../../src/demo/sample-app.js';
import { hashTree } from '../../src/package/create.js';
import { detectProduct, readMarker, RELEASE_MARKER } from '../../src/products/registry.js';
import { createPublisher } from '../../src/repo/repository.js';
import { createServer as createOtaServer } from '../../src/server/app.js';
import { createProcessServiceManager } from '../../src/services/process-manager.js';
import type { ServiceManager } from '../../src/services/service-manager.js';
import { REPO_ROOT, spawnOtad, type OtadProcess, type Sandbox } from './otad-process.js';
import { createRng } from '../../src/core/rng.js';

export const PRODUCT = 'robot-ai';
export const BUILT_OTAD = join(REPO_ROOT, 'dist/src/cli/otad.js');
/** The control token of the crash world's otad (REST and the Socket.IO stream). */
export const TOKEN = 'crash-test-control-token-0123456789abcdef';

/** The seedable PRNG the kill schedule is drawn from (the same seed, the same schedule). */
export { createRng };

export interface KnownRelease {
  version: string;
  broken: boolean;
  /** hashTree of the release as published (otad's release marker is not part of it). */
  tree: Record<string, string>;
}

export interface InstallView {
  /** What the install path is: a plain folder (before adoption), a release link, or anything else. */
  kind: 'plain' | 'link' | 'missing' | 'other';
  /** The directory the install path resolves to. */
  dir: string | null;
  /** Every known release whose tree equals the one on disk (a complete install matches exactly one). */
  matches: KnownRelease[];
  /** The version detection reads (release marker, else VERSION), as otad would. */
  detected: string | null;
  /** The release marker's version, when otad wrote one. */
  marker: string | null;
  /** Files that differ from the closest known release (for the failure message of a partial tree). */
  diff: string[];
}

export interface JournalView {
  from: string | null;
  to: string;
  phase: string;
  runId: string;
}

export interface RunningDaemon {
  proc: OtadProcess;
  api: ApiClient;
  url: string;
}

export interface CrashWorldOptions {
  seed: number;
  /** Size of the one large file in every release (default 2 MiB). */
  bigFileBytes?: number;
  /** Every n-th published release fails its health check (default 5). */
  brokenEvery?: number;
  /**
   * The large file (the model) changes with every n-th release (default 1: every release). With 2,
   * releases come in pairs that share the model, so ota-repo publishes small deltas between them
   * and otad stages those runs from a delta.
   */
  modelChangesEvery?: number;
  /**
   * Publish through the product's delegated targets role (ota-repo delegate), from a keys folder
   * holding only that role's key and the snapshot and timestamp keys, as the publisher studio does.
   */
  delegated?: boolean;
  /** How ota-repo compresses each release's package and its deltas (default: ota-repo's default, gzip). */
  compression?: 'gzip' | 'zstd';
  /**
   * The product's probation (default window 1s, interval 200ms, 3 failures in a row): a test that
   * only needs a good release committed gives the restarted service longer to listen on a loaded machine.
   */
  probation?: { window: string; interval: string; failureThreshold: number };
  /**
   * Serve the repository folder to otad with this static server instead of the world's ota-server
   * (e.g. nginx, test/support/nginx.ts); stopped by close().
   */
  serve?: (repoDir: string) => Promise<{ url: string; stop(): Promise<void> }>;
  /**
   * Called with the state folder once it exists and before anything is written into it (a test
   * mounts a small filesystem there). Whatever it mounts must be unmounted after close(true).
   */
  prepareStateDir?: (dir: string) => void;
}

export interface CrashWorld {
  readonly root: string;
  /** The repository folder served to otad (by ota-server, or by `serve`), and that server's base URL. */
  readonly repoDir: string;
  readonly serverUrl: string;
  /** The root.json otad trusts. */
  readonly trustedRoot: string;
  /** With `delegated`: the keys folder holding the delegated, snapshot and timestamp keys. */
  readonly studioKeysDir: string | null;
  readonly sandbox: Sandbox;
  readonly installPath: string;
  readonly appPort: number;
  readonly releases: ReadonlyMap<string, KnownRelease>;
  /**
   * Publish the next release (1.1.0, 1.2.0, …); every `brokenEvery`-th one is broken.
   * `preApplyHook` is the text of an executable `.ota/hooks/pre-apply` shipped in the release.
   */
  publishNext(options?: { preApplyHook?: string }): Promise<KnownRelease>;
  /**
   * Write the next release's tree under `<root>/build/<version>` without publishing it (someone
   * else publishes it, e.g. the publisher studio); it is known to inspectInstall like the others.
   */
  buildNext(): Promise<{ dir: string; release: KnownRelease }>;
  inspectInstall(): Promise<InstallView>;
  /** The version the install link points at (its release directory name), or null. */
  liveVersion(): string | null;
  readJournal(): JournalView | null;
  /** `at-slot`: the real otad whose clock SIGUSR2 moves to the install slot (otad-at-slot.ts). */
  startOtad(entry?: 'built' | 'at-slot'): Promise<RunningDaemon>;
  appHealth(): Promise<{ ok: boolean; version: string } | null>;
  /** The last lines of otad's log, for failure messages. */
  logTail(lines?: number): string;
  close(keep?: boolean): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolvePort(port));
    });
  });
}

/** Deterministic incompressible-looking bytes: download, backup and extraction take a moment. */
function bigFile(seed: number, bytes: number): Buffer {
  const rng = createRng(seed);
  const words = new Uint32Array(Math.ceil(bytes / 4));
  for (let i = 0; i < words.length; i++) words[i] = Math.floor(rng() * 4294967296);
  return Buffer.from(words.buffer, 0, bytes);
}

function versionSeed(seed: number, version: string): number {
  let h = seed >>> 0;
  for (const c of version) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h;
}

function withoutMarker(tree: Record<string, string>): Record<string, string> {
  const { [RELEASE_MARKER]: _marker, ...rest } = tree;
  return rest;
}

function treeDiff(a: Record<string, string>, b: Record<string, string>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (a[k] !== b[k]) out.push(`${k}: ${a[k] === undefined ? 'missing' : 'differs'}${b[k] === undefined ? ' (not in the release)' : ''}`);
  }
  return out.sort();
}

function sameTree(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => a[k] === b[k]);
}

export async function createCrashWorld(options: CrashWorldOptions): Promise<CrashWorld> {
  const bigBytes = options.bigFileBytes ?? 2 * 1024 * 1024;
  const brokenEvery = options.brokenEvery ?? 5;
  const root = mkdtempSync(join(tmpdir(), 'otad-crash-'));
  const paths = {
    repo: join(root, 'server/repo'),
    keys: join(root, 'server/keys'),
    build: join(root, 'build'),
    etc: join(root, 'etc'),
    state: join(root, 'state'),
    opt: join(root, 'opt'),
  };
  for (const p of Object.values(paths)) mkdirSync(p, { recursive: true });
  options.prepareStateDir?.(paths.state);
  const installPath = join(paths.opt, PRODUCT);
  const appPort = await freePort();
  const unitCommand = [process.execPath, join(installPath, 'bin/robot-ai.mjs')];
  // The same pid-file folder otad's process service manager uses: stopping it at the end stops
  // whatever service instance otad left running.
  const units: ServiceManager = createProcessServiceManager({
    units: [{ name: PRODUCT, command: unitCommand }],
    stateDir: join(paths.state, 'services', PRODUCT),
    logger: silentLogger,
  });
  const releases = new Map<string, KnownRelease>();
  let published = 0;

  const modelEvery = options.modelChangesEvery ?? 1;
  const writeRelease = async (dir: string, version: string, broken: boolean, preApplyHook?: string, modelKey: string = version): Promise<KnownRelease> => {
    writeSampleRelease(dir, { version, notes: `robot-ai ${version}${broken ? ' (broken on purpose)' : ''}`, broken }, appPort);
    if (preApplyHook !== undefined) writeFileSync(join(dir, '.ota/hooks/pre-apply'), preApplyHook, { mode: 0o755 });
    mkdirSync(join(dir, 'models'), { recursive: true });
    writeFileSync(join(dir, 'models/planner.bin'), bigFile(versionSeed(options.seed, modelKey), bigBytes));
    writeFileSync(join(dir, 'models/README'), `planner weights for ${version}\n`);
    const release: KnownRelease = { version, broken, tree: withoutMarker(await hashTree(dir)) };
    releases.set(version, release);
    return release;
  };

  const publisher = createPublisher({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock });
  const { rootFile } = await publisher.init();
  let releasePublisher = publisher;
  let publishRole: string | undefined;
  const studioKeys = options.delegated === true ? join(root, 'server/studio-keys') : null;
  if (studioKeys !== null) {
    mkdirSync(studioKeys, { recursive: true, mode: 0o700 });
    for (const role of ['snapshot', 'timestamp']) cpSync(join(paths.keys, role), join(studioKeys, role), { recursive: true });
    publishRole = (await publisher.delegate({ product: PRODUCT, keyOut: studioKeys })).role;
    releasePublisher = createPublisher({ repoDir: paths.repo, keysDir: studioKeys, clock: systemClock });
  }
  const ota = createOtaServer({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock, logger: silentLogger, timestampRefresh: false });
  const started = await ota.start(0, '127.0.0.1');
  const staticServer = options.serve !== undefined ? await options.serve(paths.repo) : null;
  const url = staticServer?.url ?? started.url;

  await writeRelease(installPath, '1.0.0', false);
  await units.start(PRODUCT);

  cpSync(rootFile, join(paths.etc, 'root.json'));
  const tokensFile = join(paths.etc, 'tokens.yaml');
  writeFileSync(tokensFile, YAML.stringify({ tokens: [{ name: 'crash-test', token: TOKEN, scope: 'control' }] }), { mode: 0o600 });
  // The daily check is put half a day away so it never starts a run of its own during the test.
  const away = new Date(Date.now() + 12 * 3600_000);
  const checkAt = `${String(away.getHours()).padStart(2, '0')}:${String(away.getMinutes()).padStart(2, '0')}`;
  const configPath = join(paths.etc, 'config.yaml');
  writeFileSync(
    configPath,
    YAML.stringify({
      environment: 'test',
      server: { url, connectTimeout: '5s', retries: 2 },
      paths: { stateDir: paths.state, trustedRoot: join(paths.etc, 'root.json'), inhibitFile: join(root, 'run/inhibit') },
      logging: { level: 'info' },
      api: { host: '127.0.0.1', port: 0, tokensFile },
      // Random kills must never trip the crash-loop guard: a kill is not a crash loop here.
      recovery: { maxRestoresPerState: 100_000 },
      products: [
        {
          name: PRODUCT,
          installPath,
          services: [],
          processUnits: [{ name: PRODUCT, command: unitCommand }],
          healthChecks: [{ kind: 'http', url: `http://127.0.0.1:${appPort}/health`, timeout: '1s' }],
          // Threshold 10 (2 s of failing rounds): right after a (re)start the service may not be
          // listening yet, and on a loaded machine a Node service takes well over 600 ms to start;
          // a check failing at the end of the window is probed on until it passes or reaches the
          // threshold, so a broken release is still rolled back.
          probation: options.probation ?? { window: '1s', interval: '200ms', failureThreshold: 10 },
          preservedPaths: ['config'],
          precheck: { minBatteryPercent: 0, retryInterval: '300ms' },
          decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '300ms' },
          schedule: { checkAt, window: '0s' },
          backup: { level: 1 },
        },
      ],
    }),
  );
  const sandbox: Sandbox = {
    dir: root,
    stateDir: paths.state,
    configPath,
    dbPath: join(paths.state, 'otad.db'),
    logPath: join(root, 'otad.log'),
    installRoot: paths.opt,
  };
  const procs: OtadProcess[] = [];

  const world: CrashWorld = {
    root,
    repoDir: paths.repo,
    serverUrl: url,
    trustedRoot: join(paths.etc, 'root.json'),
    studioKeysDir: studioKeys,
    sandbox,
    installPath,
    appPort,
    releases,
    async publishNext(opts = {}) {
      published += 1;
      const version = `1.${published}.0`;
      const broken = published % brokenEvery === 0;
      const dir = join(paths.build, version);
      const release = await writeRelease(dir, version, broken, opts.preApplyHook, modelEvery === 1 ? version : `model-${Math.floor(published / modelEvery)}`);
      await releasePublisher.add({ product: PRODUCT, version, sourceDir: dir, notes: `robot-ai ${version}`, ...(options.compression !== undefined ? { compression: options.compression } : {}) });
      await releasePublisher.publish(publishRole !== undefined ? { role: publishRole } : {});
      rmSync(dir, { recursive: true, force: true });
      return release;
    },
    async buildNext() {
      published += 1;
      const version = `1.${published}.0`;
      const dir = join(paths.build, version);
      const release = await writeRelease(dir, version, published % brokenEvery === 0, undefined, modelEvery === 1 ? version : `model-${Math.floor(published / modelEvery)}`);
      return { dir, release };
    },
    async inspectInstall() {
      let st;
      try {
        st = lstatSync(installPath);
      } catch {
        return { kind: 'missing', dir: null, matches: [], detected: null, marker: null, diff: [] };
      }
      const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'plain' : 'other';
      if (kind === 'other') return { kind, dir: null, matches: [], detected: null, marker: null, diff: [] };
      const dir = realpathSync(installPath);
      const tree = withoutMarker(await hashTree(dir));
      const matches = [...releases.values()].filter((r) => sameTree(r.tree, tree));
      const detected = (await detectProduct({ name: PRODUCT, installPath, versionFile: 'VERSION' })).version;
      const marker = (await readMarker(dir))?.version ?? null;
      let diff: string[] = [];
      if (matches.length !== 1) {
        const guess = releases.get(marker ?? detected ?? '') ?? [...releases.values()][0];
        diff = guess ? treeDiff(tree, guess.tree) : [];
      }
      return { kind, dir, matches, detected, marker, diff };
    },
    liveVersion() {
      try {
        return resolve(dirname(installPath), readlinkSync(installPath)).split('/').pop() ?? null;
      } catch {
        return null;
      }
    },
    readJournal() {
      const file = join(paths.state, 'journal', `${PRODUCT}.apply-journal.json`);
      if (!existsSync(file)) return null;
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as JournalView;
      } catch {
        return null;
      }
    },
    async startOtad(entry = 'built') {
      const proc = spawnOtad(sandbox, { entry });
      procs.push(proc);
      await proc.ready(60_000);
      // The address file of a killed process stays behind; use only the one this process wrote.
      const address = JSON.parse(readFileSync(join(paths.state, 'api.json'), 'utf8')) as { url: string; pid: number };
      if (address.pid !== proc.child.pid) throw new Error(`api.json belongs to pid ${address.pid}, not to the otad just started (pid ${proc.child.pid})`);
      const apiUrl = address.url;
      return { proc, api: new ApiClient(apiUrl, TOKEN), url: apiUrl };
    },
    async appHealth() {
      try {
        const res = await fetch(`http://127.0.0.1:${appPort}/health`, { signal: AbortSignal.timeout(1000) });
        return (await res.json()) as { ok: boolean; version: string };
      } catch {
        return null;
      }
    },
    logTail(lines = 40) {
      if (!existsSync(sandbox.logPath)) return '(no log)';
      return readFileSync(sandbox.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    },
    async close(keep = false) {
      for (const p of procs) if (p.alive()) await p.kill('SIGKILL');
      await units.stop(PRODUCT).catch(() => {});
      await ota.close().catch(() => {});
      await staticServer?.stop().catch(() => {});
      if (!keep) rmSync(root, { recursive: true, force: true });
    },
  };
  return world;
}

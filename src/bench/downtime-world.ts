/**
 * The demo product (src/demo/sample-app.ts) under a real otad process (the built `otad` CLI), fed
 * by an embedded ota-server on loopback with a SQLite fleet store: the setting the downtime
 * benchmark measures and the downtime end-to-end test drives. Releases are published with the
 * ota-repo library, updates are asked for over otad's REST API as the robot's app would.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { ApiClient } from '../api/client.js';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import type { DaemonStatus, ProductStatus } from '../daemon/control.js';
import { writeSampleRelease } from '../demo/sample-app.js';
import { createPublisher, type Publisher } from '../repo/repository.js';
import { createServer as createOtaServer, type OtaServer } from '../server/app.js';
import { createProcessServiceManager } from '../services/process-manager.js';
import type { Downtime } from '../store/downtime.js';

/** The repository root (this file is dist/src/bench/ or src/bench/). */
export const REPO_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

export const PRODUCT = 'robot-ai';
export const OPERATOR_TOKEN = 'downtime-operator-token-0123456789';
export const CONTROL_TOKEN = 'downtime-control-token-0123456789abcdef';

export interface WorldOptions {
  /** The product's probation: the window, and the probe interval (the product's and the configuration's share of the downtime). */
  probation?: { window: string; interval: string; failureThreshold: number };
  /** Fleet check-ins (to the embedded server): on by default. */
  checkins?: boolean;
  /** otad's D-Bus service on this bus (a private dbus-daemon's address). */
  dbus?: { bus: string; name: string };
}

export interface RunView {
  runId: string;
  kind: string;
  fromVersion: string | null;
  toVersion: string | null;
  outcome: string | null;
  downtime: Downtime | null;
}

export interface DowntimeWorld {
  root: string;
  configPath: string;
  stateDir: string;
  appPort: number;
  serverUrl: string;
  /** otad's REST API, with a control token. */
  app: ApiClient;
  apiUrl: string;
  units: ReturnType<typeof createProcessServiceManager>;
  /** The product's process unit command, as otad runs it. */
  unitCommand: string[];
  publish(version: string, opts?: { broken?: boolean }): Promise<void>;
  status(): Promise<ProductStatus>;
  /** CHECK_NOW, UPDATE_NOW on the offer, then until idle with an outcome; returns that status. */
  update(expectVersion: string): Promise<ProductStatus>;
  history(): Promise<{ runs: RunView[]; downtime: { count: number; lastMs: number | null; medianMs: number | null; maxMs: number | null } }>;
  /** The ota-server's operator API. */
  operator<T>(route: string): Promise<T>;
  /** What the product answers on /health (null while it is not listening). */
  health(): Promise<{ ok: boolean; version: string } | null>;
  otadLog(): string;
  /** SIGTERM to otad and wait for it to exit; the product's process keeps running (it is detached). */
  stopOtad(): Promise<void>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createNetServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => ok(port));
    });
  });
}

export async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 120_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function startDowntimeWorld(options: WorldOptions = {}): Promise<DowntimeWorld> {
  const otadEntry = join(REPO_ROOT, 'dist/src/cli/otad.js');
  if (!existsSync(otadEntry)) throw new Error(`${otadEntry} is missing: run npm run build first`);
  const root = mkdtempSync(join(tmpdir(), 'otad-downtime-'));
  const paths = { repo: join(root, 'server/repo'), keys: join(root, 'server/keys'), build: join(root, 'build'), etc: join(root, 'etc/ota'), state: join(root, 'var/lib/ota'), opt: join(root, 'opt') };
  for (const p of Object.values(paths)) mkdirSync(p, { recursive: true });
  const appPort = await freePort();
  const unitCommand = [process.execPath, join(paths.opt, 'robot-ai/bin/robot-ai.mjs')];
  const units = createProcessServiceManager({ units: [{ name: PRODUCT, command: unitCommand }], stateDir: join(paths.state, 'services', PRODUCT), logger: silentLogger });
  let server: OtaServer | null = null;
  let otad: ChildProcess | null = null;
  let log = '';
  const stopOtad = async (): Promise<void> => {
    if (otad !== null && otad.exitCode === null && otad.signalCode === null) {
      const exited = new Promise((r) => otad!.once('exit', r));
      otad.kill('SIGTERM');
      await exited;
    }
  };
  const close = async (): Promise<void> => {
    await stopOtad();
    await units.stop(PRODUCT).catch(() => {});
    await server?.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  };
  try {
    const publisher: Publisher = createPublisher({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock });
    const { rootFile } = await publisher.init();
    writeFileSync(join(root, 'server/token'), `${OPERATOR_TOKEN}\n`);
    server = createOtaServer({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock, logger: silentLogger, timestampRefresh: false, tokenFile: join(root, 'server/token'), database: join(root, 'server/fleet.db'), prune: false, rolloutTick: false });
    const { url } = await server.start(0, '127.0.0.1');

    writeSampleRelease(join(paths.opt, PRODUCT), { version: '1.0.0', notes: 'first release' }, appPort);
    cpSync(rootFile, join(paths.etc, 'root.json'));
    writeFileSync(join(paths.etc, 'tokens.yaml'), YAML.stringify({ tokens: [{ name: 'robot-ai-app', token: CONTROL_TOKEN, scope: 'control' }] }), { mode: 0o600 });
    const configPath = join(paths.etc, 'config.yaml');
    writeFileSync(
      configPath,
      YAML.stringify({
        environment: 'test',
        server: { url, connectTimeout: '5s' },
        paths: { stateDir: paths.state, trustedRoot: join(paths.etc, 'root.json'), inhibitFile: join(root, 'run/ota/inhibit') },
        logging: { level: 'info', file: join(root, 'otad.log'), stdout: false },
        api: { host: '127.0.0.1', port: 0, tokensFile: join(paths.etc, 'tokens.yaml') },
        decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
        fleet: { checkins: options.checkins ?? true, tags: { site: 'bench' } },
        ...(options.dbus ? { dbus: { enabled: true, bus: options.dbus.bus, name: options.dbus.name } } : {}),
        products: [
          {
            name: PRODUCT,
            type: 'robot-ai',
            installPath: join(paths.opt, PRODUCT),
            services: [],
            processUnits: [{ name: PRODUCT, command: unitCommand }],
            healthChecks: [{ kind: 'http', url: `http://127.0.0.1:${appPort}/health`, timeout: '2s' }],
            probation: options.probation ?? { window: '2s', interval: '100ms', failureThreshold: 2 },
            preservedPaths: ['config'],
            precheck: { minBatteryPercent: 0, retryInterval: '5s' },
          },
        ],
      }),
    );

    const child = spawn(process.execPath, [otadEntry, '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, OTA_CONFIG: configPath } });
    otad = child;
    child.stdout?.on('data', (c: Buffer) => (log += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
    const apiFile = join(paths.state, 'api.json');
    await waitFor('otad to write api.json', async () => existsSync(apiFile) || child.exitCode !== null, 60_000);
    if (child.exitCode !== null) throw new Error(`otad exited early (${child.exitCode}):\n${log}`);
    const apiUrl = (JSON.parse(readFileSync(apiFile, 'utf8')) as { url: string }).url;
    const app = new ApiClient(apiUrl, CONTROL_TOKEN);
    const health = async (): Promise<{ ok: boolean; version: string } | null> => {
      try {
        const res = await fetch(`http://127.0.0.1:${appPort}/health`, { signal: AbortSignal.timeout(2000) });
        return (await res.json()) as { ok: boolean; version: string };
      } catch {
        return null;
      }
    };
    // otad starts the product's process unit when it starts.
    await waitFor('robot-ai 1.0.0 to answer', health, 60_000);
    const status = async (): Promise<ProductStatus> => (await app.request<DaemonStatus>('GET', '/api/v1/status')).products[0]!;
    await waitFor('otad to be idle', async () => (await status()).state === 'idle', 60_000);

    return {
      root,
      configPath,
      stateDir: paths.state,
      appPort,
      serverUrl: url,
      app,
      apiUrl,
      units,
      unitCommand,
      async publish(version, opts = {}) {
        const dir = join(paths.build, version);
        writeSampleRelease(dir, { version, notes: `robot-ai ${version}`, ...(opts.broken ? { broken: true } : {}) }, appPort);
        await publisher.add({ product: PRODUCT, version, sourceDir: dir, notes: `robot-ai ${version}` });
        await publisher.publish();
      },
      status,
      async update(expectVersion) {
        const before = (await status()).runId;
        await app.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
        const offered = await waitFor(`the offer of ${expectVersion}`, async () => {
          const s = await status();
          return s.state === 'awaitingChoice' ? s : null;
        });
        if (offered.offeredVersion !== expectVersion) throw new Error(`otad offered ${offered.offeredVersion}, not ${expectVersion}`);
        await app.request('POST', '/api/v1/events', { product: PRODUCT, type: 'UPDATE_NOW' });
        return waitFor('the run to end', async () => {
          const s = await status();
          return s.state === 'idle' && s.runId !== before && s.lastOutcome !== null ? s : null;
        });
      },
      history: () => app.request('GET', `/api/v1/history?product=${PRODUCT}`),
      async operator<T>(route: string) {
        const res = await fetch(`${url}${route}`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
        if (!res.ok) throw new Error(`${route}: ${res.status} ${await res.text()}`);
        return (await res.json()) as T;
      },
      health,
      otadLog: () => log + (existsSync(join(root, 'otad.log')) ? readFileSync(join(root, 'otad.log'), 'utf8') : ''),
      stopOtad,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

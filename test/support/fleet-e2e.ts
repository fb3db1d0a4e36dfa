/**
 * The whole chain as an operator runs it, for attack tests: `ota-repo init` and `ota-repo add …
 * --publish` (spawned CLI), a spawned `ota-server` serving the repository on loopback, and a real
 * `otad` (real steps) on a robot sandbox with robot-ai 1.0.0 installed as a plain folder. Events go
 * in over REST exactly as robot-ai would send them (CHECK_NOW, then UPDATE_NOW).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, lstatSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { createPublisher } from '../../src/repo/repository.js';
import { REPO_ROOT, spawnOtad, waitUntil, type OtadProcess, type Sandbox } from './otad-process.js';

const run = promisify(execFile);
export const CONTROL_TOKEN = 'fleet-e2e-control-0123456789abcdef';
export const READ_TOKEN = 'fleet-e2e-read-0123456789abcdef';

/** A built CLI when `npm run build` ran (fast), else the TypeScript source through tsx. */
export function cliCommand(name: 'ota-repo' | 'ota-server' | 'otactl' | 'otad'): string[] {
  const built = join(REPO_ROOT, 'dist/src/cli', `${name}.js`);
  return existsSync(built) ? [built] : ['--import', 'tsx', join(REPO_ROOT, 'src/cli', `${name}.ts`)];
}

export async function otaRepo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [...cliCommand('ota-repo'), ...args], { cwd: REPO_ROOT, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export interface SpawnedServer {
  child: ChildProcess;
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** `ota-server --repo … --keys … --port 0`, waiting for its "listening on" line. */
export async function spawnOtaServer(args: string[]): Promise<SpawnedServer> {
  const child = spawn(process.execPath, [...cliCommand('ota-server'), '--port', '0', '--no-timestamp-refresh', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const url = await waitUntil(() => /ota-server listening on (\S+)/.exec(out)?.[1] ?? (child.exitCode !== null ? 'exited' : null), { timeoutMs: 30_000, what: 'ota-server to listen' });
  if (url === 'exited') throw new Error(`ota-server exited:\n${out}`);
  return {
    child,
    url,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

export interface ProductStatus {
  state: string;
  installedVersion: string | null;
  offeredVersion?: string | null;
  lastOutcome?: string | null;
  error?: { code: string; message: string } | null;
}

export interface Fleet {
  dir: string;
  repoDir: string;
  keysDir: string;
  server: SpawnedServer;
  sandbox: Sandbox;
  otad: OtadProcess;
  apiUrl: string;
  installPath: string;
  auditFile: string;
  /** `ota-repo add --product robot-ai --version V --package F --publish`. */
  publish(version: string, packageFile: string): Promise<void>;
  /**
   * A hostile package: `ota-repo add … --publish` must refuse it before signing (its stderr is
   * returned), and then it is signed anyway with the same publisher library minus the CLI's check,
   * as an attacker holding a targets key (or a publisher's machine that skipped the check) would.
   */
  publishHostile(version: string, packageFile: string): Promise<{ cliCode: number; cliStderr: string }>;
  api(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, token?: string): Promise<{ status: number; body: any }>;
  status(): Promise<ProductStatus>;
  /** Waits until no run is in flight (idle or awaiting a choice) and returns the status. */
  settled(): Promise<ProductStatus>;
  /** CHECK_NOW, wait for the offer of `version`, UPDATE_NOW, wait for the run to end. */
  checkAndUpdate(version: string): Promise<{ status: ProductStatus; run: { outcome: string; error: { code: string; message: string; retryable?: boolean } | null } }>;
  /** SHA-256 of every file, link target of every symlink, under the live install. */
  installedTree(): Record<string, string>;
  /** Everything otad keeps of a run's package besides the live releases: staging trees and cached downloads. */
  leftovers(): string[];
  log(): string;
  audit(): string;
  close(): Promise<void>;
}

export async function startFleet(opts: { product?: Record<string, unknown>; config?: Record<string, unknown> } = {}): Promise<Fleet> {
  const dir = mkdtempSync(join(tmpdir(), 'otad-fleet-'));
  const repoDir = join(dir, 'server/repo');
  const keysDir = join(dir, 'server/keys');
  const init = await otaRepo(['--repo', repoDir, '--keys', keysDir, 'init']);
  if (init.code !== 0) throw new Error(`ota-repo init failed: ${init.stderr}`);
  const server = await spawnOtaServer(['--repo', repoDir, '--keys', keysDir]);

  const stateDir = join(dir, 'robot/var/lib/ota');
  const etc = join(dir, 'robot/etc/ota');
  const installPath = join(dir, 'robot/opt/robot-ai');
  mkdirSync(etc, { recursive: true });
  mkdirSync(join(installPath, 'bin'), { recursive: true });
  writeFileSync(join(installPath, 'VERSION'), '1.0.0\n');
  writeFileSync(join(installPath, 'bin/robot-ai'), '#!/bin/sh\necho 1.0.0\n', { mode: 0o755 });
  writeFileSync(join(etc, 'root.json'), readFileSync(join(repoDir, 'metadata/1.root.json')));
  const tokensFile = join(etc, 'tokens.yaml');
  writeFileSync(
    tokensFile,
    YAML.stringify({ tokens: [{ name: 'robot-ai-app', token: CONTROL_TOKEN, scope: 'control' }, { name: 'dashboard', token: READ_TOKEN, scope: 'read' }] }),
    { mode: 0o600 },
  );
  const auditFile = join(dir, 'robot/var/log/ota/audit.log');
  const logFile = join(dir, 'robot/var/log/ota/otad.log');
  const configPath = join(etc, 'config.yaml');
  const config = {
    environment: 'test',
    server: { url: server.url, connectTimeout: '5s', retries: 0, checkIn: false },
    paths: { stateDir, trustedRoot: join(etc, 'root.json'), inhibitFile: join(dir, 'robot/run/ota/inhibit') },
    logging: { level: 'info', file: logFile, auditFile },
    api: { host: '127.0.0.1', port: 0, tokensFile, ...(opts.config?.api as Record<string, unknown> | undefined) },
    decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
    products: [
      {
        name: 'robot-ai',
        installPath,
        services: [],
        healthChecks: [],
        probation: { window: '0s', interval: '100ms', failureThreshold: 1 },
        precheck: { minBatteryPercent: 0, retryInterval: '5s' },
        ...opts.product,
      },
    ],
    ...Object.fromEntries(Object.entries(opts.config ?? {}).filter(([k]) => k !== 'api')),
  };
  writeFileSync(configPath, YAML.stringify(config));
  const sandbox: Sandbox = { dir, stateDir, configPath, dbPath: join(stateDir, 'otad.db'), logPath: join(dir, 'otad.stdout.log'), installRoot: join(dir, 'robot/opt') };
  const otad = spawnOtad(sandbox, { entry: existsSync(join(REPO_ROOT, 'dist/src/cli/otad.js')) ? 'built' : 'source' });
  const apiFile = join(stateDir, 'api.json');
  await waitUntil(() => existsSync(apiFile) || !otad.alive(), { timeoutMs: 60_000, what: 'otad to write api.json' });
  if (!otad.alive()) throw new Error(`otad exited early:\n${readFileSync(sandbox.logPath, 'utf8')}`);
  const apiUrl = (JSON.parse(readFileSync(apiFile, 'utf8')) as { url: string }).url;

  async function api(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, token = CONTROL_TOKEN): Promise<{ status: number; body: any }> {
    const res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? null : JSON.parse(text) };
  }
  async function status(): Promise<ProductStatus> {
    return (await api('GET', '/api/v1/status', undefined, READ_TOKEN)).body.products[0] as ProductStatus;
  }
  async function until<T>(what: string, probe: () => Promise<T | null>, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== null) return v;
      if (!otad.alive()) throw new Error(`otad died while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; status ${JSON.stringify(await status())}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  const walk = (root: string, rel = '', out: Record<string, string> = {}): Record<string, string> => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const abs = join(root, childRel);
      const st = lstatSync(abs);
      if (st.isSymbolicLink()) out[childRel] = `link:${readlinkSync(abs)}`;
      else if (st.isDirectory()) walk(root, childRel, out);
      else out[childRel] = createHash('sha256').update(readFileSync(abs)).digest('hex');
    }
    return out;
  };

  return {
    dir,
    repoDir,
    keysDir,
    server,
    sandbox,
    otad,
    apiUrl,
    installPath,
    auditFile,
    async publish(version, packageFile) {
      const r = await otaRepo(['--repo', repoDir, '--keys', keysDir, 'add', '--product', 'robot-ai', '--version', version, '--package', packageFile, '--publish']);
      if (r.code !== 0) throw new Error(`ota-repo add ${version} failed: ${r.stderr}`);
    },
    async publishHostile(version, packageFile) {
      const r = await otaRepo(['--repo', repoDir, '--keys', keysDir, 'add', '--product', 'robot-ai', '--version', version, '--package', packageFile, '--publish']);
      const publisher = createPublisher({ repoDir, keysDir, clock: systemClock, logger: silentLogger });
      await publisher.add({ product: 'robot-ai', version, packageFile, notes: `hostile ${version}` });
      await publisher.publish();
      return { cliCode: r.code, cliStderr: r.stderr };
    },
    api,
    status,
    settled: () => until('the run to settle', async () => {
      const s = await status();
      return s.state === 'idle' || s.state === 'awaitingChoice' ? s : null;
    }),
    async checkAndUpdate(version) {
      const before = ((await api('GET', '/api/v1/history?limit=1', undefined, READ_TOKEN)).body.runs as Array<{ runId: string }>)[0]?.runId ?? null;
      const check = await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
      if (check.status !== 202) throw new Error(`CHECK_NOW answered ${check.status}: ${JSON.stringify(check.body)}`);
      await until(`the offer of ${version}`, async () => {
        const s = await status();
        if (s.state === 'awaitingChoice' && s.offeredVersion === version) return s;
        if (s.state === 'idle' && s.lastOutcome !== undefined && s.lastOutcome !== null && s.lastOutcome !== 'committed' && s.lastOutcome !== 'failed' && s.lastOutcome !== 'rolled-back') return null;
        return null;
      });
      const update = await api('POST', '/api/v1/events', { product: 'robot-ai', type: 'UPDATE_NOW' });
      if (update.status !== 202) throw new Error(`UPDATE_NOW answered ${update.status}: ${JSON.stringify(update.body)}`);
      const runId = update.body.runId as string | undefined;
      const finished = await until('the run to end', async () => {
        const runs = (await api('GET', '/api/v1/history?limit=3', undefined, READ_TOKEN)).body.runs as Array<{ runId: string; kind: string; outcome: string | null; toVersion: string | null; error: { code: string; message: string; retryable?: boolean } | null }>;
        const r = runs.find((x) => (runId !== undefined ? x.runId === runId : x.runId !== before && x.kind === 'update'));
        return r !== undefined && r.outcome !== null && (await status()).state === 'idle' ? r : null;
      });
      return { status: await status(), run: { outcome: finished.outcome as string, error: finished.error } };
    },
    installedTree: () => walk(installPath),
    leftovers() {
      const found: string[] = [];
      const stagingRoot = join(dir, 'robot/opt/.otad/robot-ai/staging/robot-ai');
      for (const d of [stagingRoot, join(stateDir, 'cache', 'robot-ai', 'packages')]) {
        if (!existsSync(d)) continue;
        for (const name of readdirSync(d)) found.push(join(d, name));
      }
      return found;
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '') + (existsSync(sandbox.logPath) ? readFileSync(sandbox.logPath, 'utf8') : ''),
    audit: () => (existsSync(auditFile) ? readFileSync(auditFile, 'utf8') : ''),
    async close() {
      await otad.kill('SIGTERM');
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Bytes of a file, or null when it does not exist. */
export function sizeOf(file: string): number | null {
  return existsSync(file) ? statSync(file).size : null;
}

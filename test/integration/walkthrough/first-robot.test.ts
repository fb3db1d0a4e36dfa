/**
 * docs/first-robot.md, followed literally as a new user would, without the root-only steps: each
 * command below is a line of that page (asserted first, so the page and this test cannot drift),
 * run through /bin/sh with the page's absolute paths moved under a temp folder (/srv, /etc/ota,
 * /opt, /var, /run) and the server's port replaced by a free one. The CLIs are the built ones
 * (dist/src/cli/*.js) behind small wrappers on the PATH, as an installed otad would be.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { writeSampleRelease } from '../../../src/demo/sample-app.js';
import { createProcessServiceManager } from '../../../src/services/process-manager.js';
import { freePort } from '../steps/execution-world.js';
import { REPO_ROOT, waitUntil } from '../../support/otad-process.js';

const execFileP = promisify(execFile);
const DOC = join(REPO_ROOT, 'docs/first-robot.md');

/** The page's commands, in the order the page gives them. */
const CMD = {
  init: 'ota-repo --repo /srv/ota/repo --keys /srv/ota/keys init',
  add: 'ota-repo --repo /srv/ota/repo --keys /srv/ota/keys add --product robot-ai --version 1.1.0 --source ./robot-ai-1.1.0 --notes "Smoother path planning" --publish',
  verify: 'ota-repo --repo /srv/ota/repo verify',
  refresh: 'ota-repo --repo /srv/ota/repo --keys /srv/ota/keys refresh-timestamp --if-expiring-within 12h',
  server: 'ota-server --repo /srv/ota/repo --keys /srv/ota/keys --host 0.0.0.0 --port 8080',
  installCurrent: 'cp -a ./robot-ai-1.0.0 /opt/robot-ai',
  root: 'install -D -m 0644 /srv/ota/repo/metadata/1.root.json /etc/ota/root.json',
  tokens: String.raw`(umask 077 && printf 'tokens:\n  - name: robot-ai-app\n    token: %s\n    scope: control\n' "$(openssl rand -hex 32)" > /etc/ota/tokens.yaml)`,
  config: 'install -m 0644 /usr/lib/otad/config/config.no-systemd.example.yaml /etc/ota/config.yaml',
  checkConfig: 'otad --check-config',
  start: 'otad --config /etc/ota/config.yaml',
  status: 'otactl status',
  check: 'otactl check',
  watchOffer: 'otactl watch --until awaitingChoice --timeout 5m',
  updateNow: 'otactl update-now',
  watchIdle: 'otactl watch --until idle --timeout 30m',
  history: 'otactl history',
  rollback: 'otactl rollback --reason "first rollback drill"',
} as const;

/** Every line of the page's ```sh blocks, without a trailing `# comment`. */
function docCommands(): string[] {
  const lines: string[] = [];
  let inSh = false;
  for (const line of readFileSync(DOC, 'utf8').split('\n')) {
    if (/^```/.test(line)) {
      inSh = !inSh && line.trim() === '```sh';
      continue;
    }
    if (inSh) lines.push(line.replace(/\s+#\s.*$/, '').trim());
  }
  return lines.filter((l) => l !== '');
}

interface World {
  /** The temp folder that stands for `/` of both machines. */
  root: string;
  home: string;
  bin: string;
  serverPort: number;
  appPort: number;
  env: NodeJS.ProcessEnv;
  stateDir: string;
}

let w: World;
const longRunning: ChildProcess[] = [];

/** The page's absolute paths, under the temp root; the server's port, a free one. */
function translate(text: string): string {
  return text
    .replaceAll('/usr/lib/otad', REPO_ROOT)
    .replace(/(?<![\w.-])\/(srv|etc\/ota|opt|var|run)(?=\/|\b)/g, (m) => `${w.root}${m}`)
    .replace(/\b8080\b/g, String(w.serverPort));
}

async function sh(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileP('/bin/sh', ['-c', translate(command)], { cwd: w.home, env: w.env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A command that keeps running (a server, otad, a watch): `exec` so the pid is the program's own. */
function shLong(command: string): { child: ChildProcess; output(): string; exited: Promise<number | null> } {
  const child = spawn('/bin/sh', ['-c', `exec ${translate(command)}`], { cwd: w.home, env: w.env, stdio: ['ignore', 'pipe', 'pipe'] });
  longRunning.push(child);
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function ok(command: string): Promise<string> {
  const r = await sh(command);
  expect(r.code, `${command}\n${r.stdout}${r.stderr}`).toBe(0);
  return r.stdout + r.stderr;
}

/** What the product's own service answers on /version (null while it is not listening). */
async function appVersion(): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${w.appPort}/version`);
    return res.ok ? (await res.text()).trim() : null;
  } catch {
    return null;
  }
}

async function appAnswers(version: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await appVersion()) !== version) {
    if (Date.now() > deadline) throw new Error(`the service did not answer ${version} (last: ${String(await appVersion())})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `action`, then `otactl watch --until …`, which exits 0 once the product is in that state. */
async function thenWatch(action: string, watch: string): Promise<void> {
  await ok(action);
  await ok(watch);
}

beforeAll(async () => {
  expect(existsSync(join(REPO_ROOT, 'dist/src/cli/otad.js')), 'run npm run build first').toBe(true);
  const root = mkdtempSync(join(tmpdir(), 'otad-first-robot-'));
  // What both hosts already have: the top-level folders, a home folder, the CLIs on the PATH.
  for (const d of ['srv', 'etc', 'opt', 'var/lib', 'var/log', 'run', 'home/operator', 'bin']) mkdirSync(join(root, d), { recursive: true });
  const bin = join(root, 'bin');
  for (const name of ['otad', 'otactl', 'ota-repo', 'ota-server']) {
    writeFileSync(join(bin, name), `#!/bin/sh\nexec "${process.execPath}" "${join(REPO_ROOT, 'dist/src/cli', `${name}.js`)}" "$@"\n`);
    chmodSync(join(bin, name), 0o755);
  }
  w = {
    root,
    home: join(root, 'home/operator'),
    bin,
    serverPort: await freePort(),
    appPort: await freePort(),
    // OTA_CONFIG stands for the default /etc/ota/config.yaml, which otad and otactl read.
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, OTA_CONFIG: join(root, 'etc/ota/config.yaml') },
    stateDir: join(root, 'var/lib/ota'),
  };
  // The product as its build produces it: the release the robot runs today, and the next one.
  for (const version of ['1.0.0', '1.1.0']) {
    const dir = join(w.home, `robot-ai-${version}`);
    writeSampleRelease(dir, { version, notes: `robot-ai ${version}` }, w.appPort);
    writeFileSync(join(dir, 'bin/robot-ai'), `#!/bin/sh\nexec "${process.execPath}" "$(dirname "$0")/robot-ai.mjs" "$@"\n`, { mode: 0o755 });
  }
});

afterAll(async () => {
  for (const child of longRunning) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  }
  if (w === undefined) return;
  // The product's process outlives otad (it is detached): stop it through the same pid files.
  await createProcessServiceManager({ units: [{ name: 'robot-ai', command: [] }], stateDir: join(w.stateDir, 'services/robot-ai'), logger: silentLogger })
    .stop('robot-ai')
    .catch(() => {});
  rmSync(w.root, { recursive: true, force: true });
});

describe('docs/first-robot.md, followed literally', () => {
  it('lists every command this walkthrough runs', () => {
    const inDoc = docCommands();
    for (const command of Object.values(CMD)) expect(inDoc, `docs/first-robot.md lacks: ${command}`).toContain(command);
  });

  it('takes a robot from nothing to an update and a rollback, with its process started by otad', { timeout: 240_000 }, async () => {
    // 1. Keys and repository.
    const init = await ok(CMD.init);
    expect(init).toContain(join(w.root, 'srv/ota/repo/metadata/1.root.json'));
    await ok(CMD.add);
    await ok(CMD.verify);
    expect(await ok(CMD.refresh)).toMatch(/^timestamp \d+ still valid until .*: not re-signed/);

    // 2. The server.
    const server = shLong(CMD.server);
    await waitUntil(() => /ota-server listening on/.test(server.output()) || server.child.exitCode !== null, { timeoutMs: 30_000, what: 'ota-server to listen' });
    expect(server.child.exitCode, server.output()).toBeNull();

    // 3. The robot runs 1.0.0 today, as a plain folder; it gets the trusted root.
    await ok(CMD.installCurrent);
    await ok(CMD.root);
    expect(readFileSync(join(w.root, 'etc/ota/root.json'), 'utf8')).toBe(readFileSync(join(w.root, 'srv/ota/repo/metadata/1.root.json'), 'utf8'));

    // 4. The tokens file.
    await ok(CMD.tokens);
    const tokensFile = join(w.root, 'etc/ota/tokens.yaml');
    expect(statSync(tokensFile).mode & 0o777).toBe(0o600);
    const tokens = YAML.parse(readFileSync(tokensFile, 'utf8')) as { tokens: Array<{ name: string; token: string; scope: string }> };
    expect(tokens.tokens[0]).toMatchObject({ name: 'robot-ai-app', scope: 'control' });
    expect(tokens.tokens[0]!.token).toMatch(/^[0-9a-f]{64}$/);

    // 5. The configuration: the example copied, then edited as the page says (server, ports).
    await ok(CMD.config);
    const configPath = join(w.root, 'etc/ota/config.yaml');
    const edited = deepTranslate(YAML.parse(readFileSync(configPath, 'utf8'))) as Record<string, any>;
    edited.server.url = `http://127.0.0.1:${w.serverPort}`;
    // A free port each: other tests may hold 7780 and 8000 on this machine (otactl reads api.json).
    edited.api.port = 0;
    const product = edited.products[0];
    product.healthChecks[0].url = `http://127.0.0.1:${w.appPort}/health`;
    // Probation shortened so the test does not wait a minute; nothing else changes.
    product.probation.window = '2s';
    product.probation.interval = '500ms';
    writeFileSync(configPath, YAML.stringify(edited));

    // 6. The check.
    const checked = await sh(CMD.checkConfig);
    expect(checked.code, checked.stdout + checked.stderr).toBe(0);
    expect(checked.stdout).toContain(`configuration ${configPath} is valid: 1 product(s)`);

    // 7. Start otad in a shell. Its process unit runs at once, from the installed 1.0.0, before any update.
    const otad = shLong(CMD.start);
    await waitUntil(() => otad.output().includes('"otad ready"') || otad.child.exitCode !== null, { timeoutMs: 60_000, what: 'otad to be ready' });
    expect(otad.child.exitCode, otad.output()).toBeNull();
    await appAnswers('1.0.0');
    expect(otad.output()).toContain('"process units started at otad start"');
    expect(lstatSync(join(w.root, 'opt/robot-ai')).isDirectory()).toBe(true);
    const before = await ok(CMD.status);
    expect(before).toMatch(/robot-ai: idle {2}installed 1\.0\.0/);

    // 8. The first update.
    await thenWatch(CMD.check, CMD.watchOffer);
    expect(await ok(CMD.status)).toMatch(/robot-ai: awaitingChoice {2}installed 1\.0\.0 {2}offered 1\.1\.0/);
    await thenWatch(CMD.updateNow, CMD.watchIdle);
    expect(await ok(CMD.status)).toMatch(/robot-ai: idle {2}installed 1\.1\.0 {2}last run committed/);
    expect(lstatSync(join(w.root, 'opt/robot-ai')).isSymbolicLink()).toBe(true);
    await appAnswers('1.1.0');
    expect(await ok(CMD.history)).toMatch(/robot-ai {2}update .* 1\.0\.0 → 1\.1\.0 {2}committed/);

    // 9. The first rollback.
    await thenWatch(CMD.rollback, CMD.watchIdle);
    expect(await ok(CMD.status)).toMatch(/robot-ai: idle {2}installed 1\.0\.0/);
    await appAnswers('1.0.0');
    expect(otad.child.exitCode, otad.output()).toBeNull();
  });
});

/** Every string of the example configuration with the page's paths moved under the temp root. */
function deepTranslate(value: unknown): unknown {
  if (typeof value === 'string') return translate(value);
  if (Array.isArray(value)) return value.map(deepTranslate);
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepTranslate(v)]));
  return value;
}

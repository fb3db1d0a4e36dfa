/**
 * `otad --check-config` as an operator runs it: the built otad as a child process, against real
 * files, a real trusted root made by the publisher, real sockets. A clean verdict must mean otad
 * really starts with that file; a bad file must list every problem with its code, not the first.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG_PATH } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import { formatReport, preflight } from '../../../src/daemon/preflight.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { REPO_ROOT, spawnOtad, type OtadProcess, type Sandbox } from '../../support/otad-process.js';

const OTAD = join(REPO_ROOT, 'dist/src/cli/otad.js');
/** The systemctl stand-in (test/fixtures/bin/systemctl): a real executable that keeps unit state in files. */
const STUB_BIN = join(REPO_ROOT, 'test/fixtures/bin');
const isRoot = process.getuid?.() === 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function checkConfig(configPath: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OTAD, '--check-config', '--config', configPath], { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `error CODE: …` lines of a report, in order. */
const codes = (text: string, kind: 'error' | 'warning') =>
  text
    .split('\n')
    .filter((l) => l.startsWith(`${kind} `))
    .map((l) => l.slice(kind.length + 1, l.indexOf(':')));

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => resolve(server));
  });
}

async function freePort(): Promise<number> {
  const s = await listen(0);
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface World {
  dir: string;
  stateDir: string;
  rootFile: string;
  tokensFile: string;
  logFile: string;
  port: number;
  /** Writes the config file; returns its path. */
  write(config: Record<string, unknown>): string;
  base(): Record<string, unknown>;
  sandbox(configPath: string): Sandbox;
}

async function world(): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'otad-check-config-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  // A real TUF root, signed by the publisher, installed where paths.trustedRoot points.
  const publisher = createPublisher({ repoDir: join(dir, 'repo'), keysDir: join(dir, 'keys'), clock: new ManualClock(Date.now()) });
  await publisher.init();
  mkdirSync(join(dir, 'etc'));
  const rootFile = join(dir, 'etc', 'root.json');
  copyFileSync(join(dir, 'repo', 'metadata', '1.root.json'), rootFile);
  const tokensFile = join(dir, 'etc', 'tokens.yaml');
  writeFileSync(tokensFile, YAML.stringify({ tokens: [{ name: 'robot-ai-app', token: 'check-config-token-0123456789abcdef', scope: 'control' }] }), { mode: 0o600 });
  chmodSync(tokensFile, 0o600);
  const port = await freePort();
  const stateDir = join(dir, 'state');
  const logFile = join(dir, 'log', 'otad.log');
  const w: World = {
    dir,
    stateDir,
    rootFile,
    tokensFile,
    logFile,
    port,
    base: () => ({
      environment: 'test',
      // Port 9 (discard) on loopback refuses at once: no check reaches a real server.
      server: { url: 'http://127.0.0.1:9/', checkIn: false },
      paths: { stateDir, trustedRoot: rootFile, inhibitFile: join(dir, 'inhibit') },
      logging: { level: 'info', file: logFile },
      api: { host: '127.0.0.1', port, tokensFile },
      products: [
        {
          name: 'robot-ai',
          installPath: join(dir, 'opt', 'robot-ai'),
          processUnits: [{ name: 'robot-ai', command: [process.execPath, '-e', 'setInterval(() => {}, 1000)'] }],
        },
      ],
    }),
    write(config) {
      const file = join(dir, `config-${Math.random().toString(36).slice(2, 8)}.yaml`);
      writeFileSync(file, YAML.stringify(config));
      return file;
    },
    sandbox: (configPath) => ({ dir, stateDir, configPath, dbPath: join(stateDir, 'otad.db'), logPath: join(dir, 'stdout.log'), installRoot: join(dir, 'opt') }),
  };
  return w;
}

async function started(sandbox: Sandbox): Promise<OtadProcess> {
  const proc = spawnOtad(sandbox, { entry: 'built' });
  cleanups.push(async () => {
    await proc.kill('SIGKILL');
  });
  await proc.ready();
  return proc;
}

const mode = (file: string) => statSync(file).mode & 0o777;

describe('otad --check-config', () => {
  it('passes a good configuration, and otad then really starts with it, creating its files with tight modes', async () => {
    const w = await world();
    const configPath = w.write(w.base());

    const check = await checkConfig(configPath);
    expect(check.stderr).toBe('');
    expect(check.stdout).toBe(`configuration ${configPath} is valid: 1 product(s), 0 warning(s)\n`);
    expect(check.code).toBe(0);

    const proc = await started(w.sandbox(configPath));
    expect(mode(w.stateDir)).toBe(0o700);
    expect(mode(join(w.stateDir, 'otad.db'))).toBe(0o600);
    // SQLite creates its journal files with the database's mode.
    expect(mode(join(w.stateDir, 'otad.db-wal'))).toBe(0o600);
    expect(mode(join(w.stateDir, 'otad.db-shm'))).toBe(0o600);
    expect(mode(w.logFile)).toBe(0o640);
    const api = JSON.parse(readFileSync(join(w.stateDir, 'api.json'), 'utf8')) as { port: number };
    expect(api.port).toBe(w.port);

    // With otad running, a second one would not start: the check says so, and why.
    const again = await checkConfig(configPath);
    expect(again.code).toBe(2);
    expect(codes(again.stderr, 'error')).toEqual(['ALREADY_RUNNING', 'PORT_IN_USE']);

    const { code } = await proc.kill('SIGTERM');
    expect(code).toBe(0);
  });

  it('lists every problem of a configuration with several at once, each with its code, and exits non-zero', async () => {
    const w = await world();
    const notAFolder = join(w.dir, 'not-a-folder');
    writeFileSync(notAFolder, 'a file where a folder should be\n');
    chmodSync(w.tokensFile, 0o644);
    const busy = await listen(w.port);
    cleanups.push(() => new Promise<void>((r) => busy.close(() => r())));
    // Existing files more open than otad makes them: warnings, not errors.
    mkdirSync(w.stateDir, { mode: 0o755 });
    chmodSync(w.stateDir, 0o755);
    mkdirSync(join(w.dir, 'log'));
    writeFileSync(w.logFile, '', { mode: 0o644 });
    chmodSync(w.logFile, 0o644);
    const base = w.base();
    const configPath = w.write({
      ...base,
      paths: { ...(base.paths as object), trustedRoot: join(w.dir, 'etc', 'no-root.json') },
      server: { ...(base.server as object), caFile: join(w.dir, 'etc', 'no-ca.pem') },
      products: [
        { name: 'robot-ai', installPath: join(notAFolder, 'robot-ai') },
        { name: 'nav', installPath: join(w.dir, 'opt', 'nav'), processUnits: [{ name: 'nav', command: ['/nonexistent/otad-test/nav'] }] },
        // No systemd here: unresolvable for want of systemctl; with systemd: LoadState=not-found.
        { name: 'arm', installPath: join(w.dir, 'opt', 'arm'), services: ['otad-test-no-such-unit.service'] },
      ],
    });

    const check = await checkConfig(configPath);
    expect(check.code).toBe(2);
    const out = check.stderr;
    expect(codes(out, 'error')).toEqual([
      'TOKENS_FILE_INSECURE',
      'PORT_IN_USE',
      'TRUST_ROOT_MISSING',
      'CONFIG_INVALID',
      'PATH_NOT_CREATABLE',
      'PATH_NOT_CREATABLE',
      'PATH_NOT_CREATABLE',
      'SERVICE_UNRESOLVABLE',
      'SERVICE_UNRESOLVABLE',
    ]);
    expect(out).toContain(`error TOKENS_FILE_INSECURE: API tokens file ${w.tokensFile} has mode 0644`);
    expect(out).toContain(`error PORT_IN_USE: api.port ${w.port} on 127.0.0.1 is already in use`);
    expect(out).toContain(`error TRUST_ROOT_MISSING: golden trusted root ${join(w.dir, 'etc', 'no-root.json')} does not exist`);
    expect(out).not.toContain('TRUST_ROOT_CORRUPT');
    expect(out).toContain(`error CONFIG_INVALID: cannot read the CA file ${join(w.dir, 'etc', 'no-ca.pem')}`);
    expect(out).toContain(`error PATH_NOT_CREATABLE: the folder of products[0].installPath (robot-ai): ${notAFolder} is not a folder`);
    expect(out).toContain(`the staging folder of robot-ai: ${join(notAFolder, '.otad', 'robot-ai', 'staging', 'robot-ai')} cannot be created: ${notAFolder} is not a folder`);
    expect(out).toContain('error SERVICE_UNRESOLVABLE: product nav: process unit nav runs /nonexistent/otad-test/nav, which is not an executable file');
    expect(out).toMatch(/error SERVICE_UNRESOLVABLE: product arm: .*otad-test-no-such-unit\.service/);
    expect(codes(out, 'warning')).toEqual(['FILE_MODE_LOOSE', 'FILE_MODE_LOOSE']);
    expect(out).toContain(`warning FILE_MODE_LOOSE: state folder ${w.stateDir} has mode 0755, more open than the 0700 otad creates it with`);
    expect(out).toContain(`warning FILE_MODE_LOOSE: log file ${w.logFile} has mode 0644`);
    expect(out).toContain('9 error(s), 2 warning(s)');
  });

  it.skipIf(isRoot)('reports an install path whose parent exists but is not writable by the user otad runs as', async () => {
    const w = await world();
    const locked = join(w.dir, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o555);
    cleanups.push(() => chmodSync(locked, 0o755));
    const configPath = w.write({ ...w.base(), products: [{ name: 'robot-ai', installPath: join(locked, 'robot-ai') }] });
    const check = await checkConfig(configPath);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain(`error PATH_NOT_CREATABLE: the folder of products[0].installPath (robot-ai): ${locked} is not writable by this user`);
  });

  it('asks systemd for each service: a unit systemd knows passes, a misspelled one is SERVICE_UNRESOLVABLE with its LoadState', async () => {
    const w = await world();
    const stub = join(w.dir, 'systemd');
    mkdirSync(join(stub, 'units'), { recursive: true });
    writeFileSync(join(stub, 'units', 'robot-ai.service'), 'inactive\n');
    writeFileSync(join(stub, 'units', 'robot-ai-gpu.service'), 'active\n');
    const env = { PATH: `${STUB_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`, SYSTEMCTL_STUB_DIR: stub };
    const base = w.base();
    const product = { name: 'robot-ai', installPath: join(w.dir, 'opt', 'robot-ai') };

    const good = await checkConfig(w.write({ ...base, products: [{ ...product, services: ['robot-ai.service', 'robot-ai-gpu.service'] }] }), env);
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);

    const bad = await checkConfig(w.write({ ...base, products: [{ ...product, services: ['robot-ai.service', 'robot-ai-gpu.servic'] }] }), env);
    expect(bad.code).toBe(2);
    expect(codes(bad.stderr, 'error')).toEqual(['SERVICE_UNRESOLVABLE']);
    expect(bad.stderr).toContain('error SERVICE_UNRESOLVABLE: product robot-ai: systemd unit robot-ai-gpu.servic is not loadable (LoadState=not-found)');
    const calls = readFileSync(join(stub, 'calls.log'), 'utf8');
    expect(calls).toContain('show -p LoadState --value robot-ai-gpu.servic');
    // Only asked, never told: no unit was started, stopped or restarted.
    expect(calls).not.toMatch(/^(start|stop|restart) /m);
  });

  it('lists every unknown key of the file with its path and the closest known key', async () => {
    const w = await world();
    const base = w.base();
    const product = (base.products as Array<Record<string, unknown>>)[0] as Record<string, unknown>;
    const configPath = w.write({ ...base, loging: { level: 'debug' }, products: [{ ...product, healthCheks: [{ kind: 'unit', unit: 'robot-ai.service' }] }] });
    const check = await checkConfig(configPath);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain('error CONFIG_UNKNOWN_KEY: loging: unknown key "loging"; did you mean logging?');
    expect(check.stderr).toContain('error CONFIG_UNKNOWN_KEY: products[0].healthCheks: unknown key "healthCheks"; did you mean healthChecks?');
    expect(codes(check.stderr, 'error')).toEqual(['CONFIG_UNKNOWN_KEY', 'CONFIG_UNKNOWN_KEY']);
  });
});

/** otad itself on a file it must refuse: its exit code and stderr (killed, and reported, if it starts instead). */
function otadRefuses(configPath: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [OTAD, '--config', configPath], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('otad --check-config and otad agree on base URLs and repositories', () => {
  it('names every base URL that is not an http(s) URL, and a local repository without a path; otad refuses the same file with exit 78', async () => {
    const w = await world();
    const base = w.base();
    const product = (base.products as Array<Record<string, unknown>>)[0] as Record<string, unknown>;
    const configPath = w.write({
      ...base,
      server: { ...(base.server as object), targetBaseUrl: 'ftp://cdn.example.com/targets/' },
      environments: { test: { serverUrl: 'http://127.0.0.1:9/' }, lab: { serverUrl: 'lab server' } },
      products: [
        {
          ...product,
          repository: { url: 'https://ota.example.com/?token=x', mirrorUrl: 'github.com/acme/robot-ai/releases/download/ota' },
          repositories: [{ name: 'usb', kind: 'local' }],
        },
      ],
    });
    const check = await checkConfig(configPath);
    expect(check.code).toBe(2);
    const out = check.stderr;
    expect(out).toContain('error CONFIG_INVALID: environments.lab.serverUrl = "lab server": not a URL; expected e.g. https://ota.example.com/\n');
    expect(out).toContain('error CONFIG_INVALID: server.targetBaseUrl = "ftp://cdn.example.com/targets/": expected an http: or https: URL such as https://cdn.example.com/targets/, got ftp:\n');
    expect(out).toContain('error CONFIG_INVALID: products[0].repository.url = "https://ota.example.com/?token=x": a base URL takes no query or fragment; otad appends file names to it\n');
    expect(out).toContain('error CONFIG_INVALID: products[0].repository.mirrorUrl = "github.com/acme/robot-ai/releases/download/ota": not a URL; expected e.g. https://github.com/acme/robot-ai/releases/download/ota/\n');
    expect(codes(out, 'error')).toEqual(['CONFIG_INVALID', 'CONFIG_INVALID', 'CONFIG_INVALID', 'CONFIG_INVALID']);

    const refused = await otadRefuses(configPath);
    expect(refused.code).toBe(78);
    expect(refused.stderr).toContain('products[0].repository.mirrorUrl = "github.com/acme/robot-ai/releases/download/ota": not a URL');

    // With the URLs fixed, the local repository without a path is what both refuse.
    const fixed = w.write({ ...base, products: [{ ...product, repositories: [{ name: 'usb', kind: 'local' }] }] });
    const again = await checkConfig(fixed);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('error CONFIG_INVALID: invalid configuration: product robot-ai has repository usb of kind "local" but no path; expected the folder that holds metadata/ and targets/');
    const refusedAgain = await otadRefuses(fixed);
    expect(refusedAgain.code).toBe(78);
    expect(refusedAgain.stderr).toContain('repository usb of kind "local" but no path');
  });

  it('warns REPOSITORY_FOLDER_MISSING for a local repository whose folder is not there now, and otad starts', async () => {
    const w = await world();
    const base = w.base();
    const product = (base.products as Array<Record<string, unknown>>)[0] as Record<string, unknown>;
    const stick = join(w.dir, 'media', 'usb', 'ota');
    const configPath = w.write({ ...base, products: [{ ...product, repositories: [{ name: 'usb', kind: 'local', path: stick }] }] });
    const check = await checkConfig(configPath);
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`warning REPOSITORY_FOLDER_MISSING: product robot-ai: repository usb is the local folder ${stick}, which has no metadata/ folder now; checks from it fail until it does`);
    expect(check.stdout).toContain('is valid: 1 product(s), 1 warning(s)');
    const proc = await started(w.sandbox(configPath));
    expect((await proc.kill('SIGTERM')).code).toBe(0);
  });
});

describe('otad --check-config without a configuration file', () => {
  // The clean-system version, with its whole output pinned: test/integration/package/deb-install.test.ts.
  it.skipIf(existsSync(DEFAULT_CONFIG_PATH))('checks the defaults and warns CONFIG_NOT_FOUND: the unit would not start otad yet', async () => {
    const env = { ...process.env };
    delete env.OTA_CONFIG;
    const report = await preflight({ env });
    expect(report.source).toBeNull();
    expect(report.warnings[0]).toEqual({ code: 'CONFIG_NOT_FOUND', message: expect.stringContaining('otad.service does not start until that file exists'), subject: DEFAULT_CONFIG_PATH });
    expect(formatReport(report)).toMatch(/^warning CONFIG_NOT_FOUND: no configuration file \/etc\/ota\/config\.yaml: checked the defaults, which manage no products;/m);
  });
});

describe('otad started without its trusted root', () => {
  it('starts, and logs TRUST_ROOT_MISSING (not corrupt) at once', async () => {
    const w = await world();
    rmSync(w.rootFile);
    const configPath = w.write(w.base());
    const sandbox = w.sandbox(configPath);
    const proc = await started(sandbox);
    const log = readFileSync(sandbox.logPath, 'utf8');
    expect(log).toContain('"code":"TRUST_ROOT_MISSING"');
    expect(log).not.toContain('TRUST_ROOT_CORRUPT');
    expect((await proc.kill('SIGTERM')).code).toBe(0);
  });
});

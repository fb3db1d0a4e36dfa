/**
 * The amd64 .deb installed with apt into a fresh Debian 12 (bookworm) root made by
 * `debootstrap --variant=minbase`, in a chroot with /proc, /dev and /sys bound in (and unmounted
 * in a finally). A policy-rc.d that exits 101 keeps anything from starting. Commands in the chroot
 * run with a clean environment, as a root shell of that system would. Checks the installed
 * commands, the completion files, the group, the tokens file (0600, kept across a reinstall),
 * the exact findings of `otad --check-config` on a fresh install, a full update cycle with the
 * installed programs (below), and that remove keeps /var/lib/ota while purge removes it.
 *
 * The update cycle: ota-repo and ota-server from this checkout on the host publish a small real
 * product (the demo's HTTP service, src/demo/sample-app.ts, run by the package's bundled node)
 * and serve it on loopback, which the chroot shares. In the chroot, configured as
 * docs/install-ubuntu.md says (the no-systemd example, since systemd is not PID 1 here, so otad
 * runs the product as a process unit), the installed otad updates it from 1.0.0 to 1.1.0 and
 * commits, and the installed otactl says so.
 *
 * The debootstrap root is cached as a tarball under .cache/debootstrap/, keyed by suite, variant
 * and mirror. Uses dist-deb/ (`npm run package:deb`; .ci/run builds it before the suite). Skips,
 * saying why, when not root, without debootstrap, without the package, or without the mirror;
 * in CI (CI=true) each of those fails instead (test/support/package-gate.ts).
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
import { missingPrerequisite } from '../../support/package-gate.js';

function aptMirror(): string {
  const files = ['/etc/apt/sources.list', ...(existsSync('/etc/apt/sources.list.d') ? readdirSync('/etc/apt/sources.list.d').map((f) => join('/etc/apt/sources.list.d', f)) : [])];
  for (const f of files) {
    if (!existsSync(f) || !statSync(f).isFile()) continue;
    const text = readFileSync(f, 'utf8');
    const deb822 = text.match(/^URIs:\s*(\S+\/debian)\/?\s*$/m);
    if (deb822) return deb822[1]!;
    const line = text.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian)\/?\s+\S+/m);
    if (line) return line[1]!;
  }
  return 'http://deb.debian.org/debian';
}

const MIRROR = aptMirror();
const debDir = join(REPO_ROOT, 'dist-deb');
const deb = existsSync(debDir) ? readdirSync(debDir).find((f) => /^otad_.*_amd64\.deb$/.test(f)) : undefined;
const version = deb?.match(/^otad_(.*)_amd64\.deb$/)?.[1];
const mirrorReachable = (): boolean => spawnSync('curl', ['-fsS', '-o', '/dev/null', '--max-time', '20', `${MIRROR}/dists/bookworm/Release`]).status === 0;
const skip = process.getuid?.() !== 0
  ? 'not root (debootstrap, chroot and mount need root)'
  : spawnSync('sh', ['-c', 'command -v debootstrap']).status !== 0
    ? 'debootstrap is missing (apt-get install debootstrap)'
    : deb === undefined
      ? 'no dist-deb/otad_*_amd64.deb: run npm run package:deb first'
      : !mirrorReachable()
        ? `the mirror ${MIRROR} is unreachable`
        : null;
missingPrerequisite('deb install check', skip);

const sh = (cmd: string, args: string[], timeout = 600_000) => spawnSync(cmd, args, { encoding: 'utf8', timeout });
const execFileP = promisify(execFile);
/** What a root shell of the installed system has: nothing of this machine's environment. */
const CLEAN_ENV = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'LANG=C.UTF-8'];
/** The codes of `otad --check-config`'s error lines, in order. */
const errorCodes = (out: string): string[] => [...out.matchAll(/^error ([A-Z_]+):/gm)].map((m) => m[1]!);

describe.skipIf(skip !== null)('the amd64 package installed with apt in a Debian 12 chroot', () => {
  const work = mkdtempSync(join(tmpdir(), 'otad-deb-install-'));
  const root = join(work, 'root');
  const mounted: string[] = [];
  const inRoot = (script: string, timeout?: number) => sh('chroot', [root, '/usr/bin/env', '-i', ...CLEAN_ENV, '/bin/sh', '-c', script], timeout);
  /** inRoot without blocking this process (otad's output keeps flowing in meanwhile). */
  const inRootAsync = async (script: string, timeout = 120_000): Promise<{ status: number; out: string }> => {
    try {
      const r = await execFileP('chroot', [root, '/usr/bin/env', '-i', ...CLEAN_ENV, '/bin/sh', '-c', script], { encoding: 'utf8', timeout });
      return { status: 0, out: r.stdout + r.stderr };
    } catch (error) {
      const e = error as { code?: number; stdout?: string; stderr?: string };
      return { status: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };

  beforeAll(() => {
    const key = createHash('sha256').update(`bookworm minbase ${MIRROR}`).digest('hex').slice(0, 16);
    const cacheDir = join(REPO_ROOT, '.cache/debootstrap');
    const tarball = join(cacheDir, `bookworm-minbase-${key}.tar`);
    mkdirSync(root, { recursive: true });
    if (!existsSync(tarball)) {
      const fresh = join(work, 'fresh');
      const d = sh('debootstrap', ['--variant=minbase', 'bookworm', fresh, MIRROR], 1_500_000);
      if (d.status !== 0) throw new Error(`debootstrap failed: ${d.stdout.slice(-2000)}${d.stderr.slice(-2000)}`);
      mkdirSync(cacheDir, { recursive: true });
      const t = sh('tar', ['-C', fresh, '-cf', `${tarball}.part`, '.']);
      if (t.status !== 0) throw new Error(`tar: ${t.stderr}`);
      sh('mv', [`${tarball}.part`, tarball]);
      rmSync(fresh, { recursive: true, force: true });
    }
    const x = sh('tar', ['-C', root, '-xf', tarball]);
    if (x.status !== 0) throw new Error(`tar -x: ${x.stderr}`);
    for (const m of ['proc', 'dev', 'sys']) {
      const target = join(root, m);
      const b = m === 'proc' ? sh('mount', ['-t', 'proc', 'proc', target]) : sh('mount', ['--rbind', `/${m}`, target]);
      if (b.status !== 0) throw new Error(`mount ${m}: ${b.stderr}`);
      mounted.push(target);
      if (m !== 'proc') sh('mount', ['--make-rslave', target]);
    }
    writeFileSync(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    copyFileSync('/etc/resolv.conf', join(root, 'etc/resolv.conf'));
    copyFileSync(join(debDir, deb!), join(root, 'tmp', deb!));
  }, 1_800_000);

  afterAll(() => {
    try {
      for (const target of mounted.reverse()) {
        if (sh('umount', ['-R', target]).status !== 0) sh('umount', ['-R', '-l', target]);
      }
    } finally {
      const still = readFileSync('/proc/mounts', 'utf8').includes(root);
      if (!still) rmSync(work, { recursive: true, force: true });
      else console.warn(`deb install check: mounts under ${root} remain; not removing it`);
    }
  });

  const install = () => inRoot(`cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./${deb}`);

  it('apt-get installs it with its dependencies', () => {
    const r = install();
    expect(r.status, r.stdout.slice(-3000) + r.stderr.slice(-3000)).toBe(0);
  }, 900_000);

  it('otad --version prints the package version; otactl --help exits 0', () => {
    const v = inRoot('otad --version');
    expect(v.status, v.stderr).toBe(0);
    expect(v.stdout).toContain(version!.replace(/-\d+$/, ''));
    const h = inRoot('otactl --help');
    expect(h.status, h.stderr).toBe(0);
  });

  it('otad --check-config on a fresh install: exactly the findings this host has, with no config and with each shipped example', () => {
    // No /etc/ota/config.yaml yet: the defaults (no products) would start otad, but not the unit.
    const none = inRoot('otad --check-config');
    expect(none.status, none.stdout + none.stderr).toBe(0);
    expect(none.stdout).toBe(
      'warning CONFIG_NOT_FOUND: no configuration file /etc/ota/config.yaml: checked the defaults, which manage no products; otad.service does not start until that file exists\n' +
        'configuration (defaults) is valid: 0 product(s), 1 warning(s)\n',
    );
    // The systemd example: no trusted root yet, and systemctl does not work without systemd as PID 1.
    const full = inRoot('otad --check-config --config /usr/share/doc/otad/examples/config.example.yaml');
    expect(full.status, full.stdout + full.stderr).toBe(2);
    expect(errorCodes(full.stderr), full.stderr).toEqual(['TRUST_ROOT_MISSING', 'SERVICE_UNRESOLVABLE', 'SERVICE_UNRESOLVABLE', 'SERVICE_UNRESOLVABLE', 'SERVICE_UNRESOLVABLE']);
    expect(full.stderr).toContain('golden trusted root /etc/ota/root.json does not exist');
    expect(full.stderr).toContain('systemctl does not work on this host');
    expect(full.stderr).not.toMatch(/^warning /m);
    // The no-systemd example: no trusted root, and its product is not installed yet.
    const bare = inRoot('otad --check-config --config /usr/share/doc/otad/examples/config.no-systemd.example.yaml');
    expect(bare.status, bare.stdout + bare.stderr).toBe(2);
    expect(errorCodes(bare.stderr), bare.stderr).toEqual(['TRUST_ROOT_MISSING', 'SERVICE_UNRESOLVABLE']);
    expect(bare.stderr).toContain('process unit robot-ai runs /opt/robot-ai/bin/robot-ai, which is not an executable file');
    expect(bare.stderr).toMatch(/: otad would not start or not work: 2 error\(s\), 0 warning\(s\)\n$/);
  });

  it('ships bash completion for otad, otactl and ota-repo', () => {
    for (const cli of ['otad', 'otactl', 'ota-repo']) {
      const file = join(root, 'usr/share/bash-completion/completions', cli);
      expect(readFileSync(file, 'utf8')).toContain(`complete -F _${cli.replace('-', '_')} ${cli}`);
    }
    // The installed file, sourced by bash, completes ota-repo's commands.
    const r = inRoot("bash -c '. /usr/share/bash-completion/completions/ota-repo; COMP_WORDS=(ota-repo ver); COMP_CWORD=1; _ota_repo; echo \"${COMPREPLY[*]}\"'");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('verify');
  });

  it('the group ota exists and /etc/ota/tokens.yaml is 0600', () => {
    expect(inRoot('getent group ota').status).toBe(0);
    expect(statSync(join(root, 'etc/ota/tokens.yaml')).mode & 0o777).toBe(0o600);
  });

  it('updates a product from 1.0.0 to 1.1.0 with the installed otad, configured as docs/install-ubuntu.md says', async () => {
    const host = mkdtempSync(join(tmpdir(), 'otad-deb-cycle-'));
    const node = (cli: string, args: string[]) => execFileP(process.execPath, [join(REPO_ROOT, 'dist/src/cli', `${cli}.js`), ...args], { encoding: 'utf8', timeout: 120_000 });
    const appPort = await freePort();
    const serverPort = await freePort();
    const apiPort = await freePort();
    let server: ChildProcess | undefined;
    let otad: ChildProcess | undefined;
    let otadOut = '';
    try {
      // The product as its build makes it; the robot's runtime for it is the package's node.
      for (const v of ['1.0.0', '1.1.0']) {
        const dir = join(host, `robot-ai-${v}`);
        writeSampleRelease(dir, { version: v, notes: `robot-ai ${v}` }, appPort);
        writeFileSync(join(dir, 'bin/robot-ai'), '#!/bin/sh\nexec /usr/lib/otad/node/bin/node "$(dirname "$0")/robot-ai.mjs" "$@"\n', { mode: 0o755 });
      }
      // The publisher's side, on the host: a repository with 1.1.0, served on loopback.
      const repo = join(host, 'repo');
      const keys = join(host, 'keys');
      await node('ota-repo', ['--repo', repo, '--keys', keys, 'init']);
      await node('ota-repo', ['--repo', repo, '--keys', keys, 'add', '--product', 'robot-ai', '--version', '1.1.0', '--source', join(host, 'robot-ai-1.1.0'), '--publish']);
      server = spawn(process.execPath, [join(REPO_ROOT, 'dist/src/cli/ota-server.js'), '--repo', repo, '--keys', keys, '--host', '127.0.0.1', '--port', String(serverPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let serverOut = '';
      server.stdout!.on('data', (c: Buffer) => (serverOut += c.toString()));
      server.stderr!.on('data', (c: Buffer) => (serverOut += c.toString()));
      await waitUntil(() => serverOut.includes('ota-server listening on') || server!.exitCode !== null, { timeoutMs: 60_000, what: 'ota-server to listen' });
      expect(server.exitCode, serverOut).toBeNull();

      // The robot, inside the chroot: 1.0.0 installed as a plain folder, then the guide's steps.
      expect(sh('cp', ['-a', join(host, 'robot-ai-1.0.0'), join(root, 'opt/robot-ai')]).status).toBe(0);
      copyFileSync(join(repo, 'metadata/1.root.json'), join(root, 'tmp/root.json'));
      const steps = inRoot('install -m 0644 /usr/share/doc/otad/examples/config.no-systemd.example.yaml /etc/ota/config.yaml && install -m 0644 /tmp/root.json /etc/ota/root.json');
      expect(steps.status, steps.stderr).toBe(0);
      // sudoedit /etc/ota/config.yaml: the server, and loopback ports free on this machine
      // (the chroot shares its network); probation shortened so the test does not wait a minute.
      const configFile = join(root, 'etc/ota/config.yaml');
      const config = YAML.parse(readFileSync(configFile, 'utf8')) as Record<string, any>;
      config.server.url = `http://127.0.0.1:${serverPort}`;
      config.api.port = apiPort;
      config.products[0].healthChecks[0].url = `http://127.0.0.1:${appPort}/health`;
      config.products[0].probation = { window: '2s', interval: '500ms', failureThreshold: 3 };
      writeFileSync(configFile, YAML.stringify(config));
      const checked = inRoot('otad --check-config');
      expect(checked.status, checked.stdout + checked.stderr).toBe(0);
      expect(checked.stdout).toBe('configuration /etc/ota/config.yaml is valid: 1 product(s), 0 warning(s)\n');

      // otad from the package, in the foreground (no systemd here); the package's tokens file.
      otad = spawn('chroot', [root, '/usr/bin/env', '-i', ...CLEAN_ENV, 'otad'], { stdio: ['ignore', 'pipe', 'pipe'] });
      otad.stdout!.on('data', (c: Buffer) => (otadOut += c.toString()));
      otad.stderr!.on('data', (c: Buffer) => (otadOut += c.toString()));
      await waitUntil(() => otadOut.includes('"otad ready"') || otad!.exitCode !== null, { timeoutMs: 120_000, what: 'otad to be ready' });
      expect(otad.exitCode, otadOut).toBeNull();
      const ctl = async (args: string, pattern?: RegExp): Promise<string> => {
        const r = await inRootAsync(`otactl ${args}`, 180_000);
        expect(r.status, `otactl ${args}\n${r.out}\n--- otad:\n${otadOut.slice(-3000)}`).toBe(0);
        if (pattern) expect(r.out).toMatch(pattern);
        return r.out;
      };
      await ctl('status', /robot-ai: idle {2}installed 1\.0\.0/);
      await ctl('check');
      await ctl('watch --until awaitingChoice --timeout 2m');
      await ctl('status', /robot-ai: awaitingChoice {2}installed 1\.0\.0 {2}offered 1\.1\.0/);
      await ctl('update-now');
      await ctl('watch --until idle --timeout 3m');
      await ctl('status', /robot-ai: idle {2}installed 1\.1\.0 {2}last run committed/);
      await ctl('history', /robot-ai {2}update .* 1\.0\.0 → 1\.1\.0 {2}committed/);
      // The product itself: the new release answers, run by the package's node from /opt/robot-ai.
      const version = await (await fetch(`http://127.0.0.1:${appPort}/version`)).text();
      expect(version.trim()).toBe('1.1.0');
      // /opt/robot-ai is now the link to the new release (absolute, so read inside the chroot).
      const linked = inRoot('readlink /opt/robot-ai && cat /opt/robot-ai/VERSION');
      expect(linked.status, linked.stderr).toBe(0);
      expect(linked.stdout).toMatch(/^\/opt\/.+\n1\.1\.0\n$/);
    } finally {
      for (const child of [otad, server]) {
        if (child !== undefined && child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          await new Promise((r) => child.once('exit', r));
        }
      }
      // The product's process outlives otad (it is detached): stopped through otad's pid files.
      await createProcessServiceManager({ units: [{ name: 'robot-ai', command: [] }], stateDir: join(root, 'var/lib/ota/services/robot-ai'), logger: silentLogger })
        .stop('robot-ai')
        .catch(() => {});
      rmSync(host, { recursive: true, force: true });
    }
  }, 600_000);

  it('a reinstall keeps the same tokens', () => {
    const before = readFileSync(join(root, 'etc/ota/tokens.yaml'), 'utf8');
    const r = inRoot(`cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall ./${deb}`);
    expect(r.status, r.stdout.slice(-2000) + r.stderr.slice(-2000)).toBe(0);
    expect(readFileSync(join(root, 'etc/ota/tokens.yaml'), 'utf8')).toBe(before);
  }, 600_000);

  it('apt-get remove keeps /var/lib/ota; purge removes it', () => {
    const r = inRoot('DEBIAN_FRONTEND=noninteractive apt-get remove -y -q otad');
    expect(r.status, r.stdout.slice(-2000) + r.stderr.slice(-2000)).toBe(0);
    expect(existsSync(join(root, 'var/lib/ota'))).toBe(true);
    expect(inRoot('command -v otad').status).not.toBe(0);
    const p = inRoot('DEBIAN_FRONTEND=noninteractive apt-get purge -y -q otad');
    expect(p.status, p.stdout.slice(-2000) + p.stderr.slice(-2000)).toBe(0);
    expect(existsSync(join(root, 'var/lib/ota'))).toBe(false);
    expect(existsSync(join(root, 'etc/ota/tokens.yaml'))).toBe(false);
  }, 600_000);
});

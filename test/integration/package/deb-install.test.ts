/**
 * The amd64 .deb installed with apt into a fresh Debian 12 (bookworm) root made by
 * `debootstrap --variant=minbase`, in a chroot with /proc, /dev and /sys bound in (and unmounted
 * in a finally). A policy-rc.d that exits 101 keeps anything from starting. Checks the installed
 * commands, the group, the tokens file (0600, kept across a reinstall), and that remove keeps
 * /var/lib/ota while purge removes it. The debootstrap root is cached as a tarball under
 * .cache/debootstrap/, keyed by suite, variant and mirror. Uses dist-deb/ (`npm run package:deb`);
 * skips, saying why, when not root, without debootstrap, without the package, or without the mirror.
 * Not covered here: an update cycle inside the chroot.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';

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
if (skip !== null) console.warn(`deb install check skipped: ${skip}`);

const sh = (cmd: string, args: string[], timeout = 600_000) => spawnSync(cmd, args, { encoding: 'utf8', timeout });

describe.skipIf(skip !== null)('the amd64 package installed with apt in a Debian 12 chroot', () => {
  const work = mkdtempSync(join(tmpdir(), 'otad-deb-install-'));
  const root = join(work, 'root');
  const mounted: string[] = [];
  const inRoot = (script: string) => sh('chroot', [root, '/bin/sh', '-c', script]);

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

  it('otad --check-config on the shipped example reports what this bare host lacks', () => {
    const c = inRoot('otad --check-config --config /usr/share/doc/otad/examples/config.example.yaml');
    const out = c.stdout + c.stderr;
    expect([0, 2], out).toContain(c.status);
    if (c.status === 2) expect(out).toMatch(/root\.json|trusted root|ROOT/i);
  });

  it('the group ota exists and /etc/ota/tokens.yaml is 0600', () => {
    expect(inRoot('getent group ota').status).toBe(0);
    expect(statSync(join(root, 'etc/ota/tokens.yaml')).mode & 0o777).toBe(0o600);
  });

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

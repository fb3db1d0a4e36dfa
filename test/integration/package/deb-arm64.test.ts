/**
 * The arm64 .deb, run on this (amd64) machine under qemu-user: qemu-aarch64-static started
 * directly with `-L /` on Debian's multiarch arm64 libraries (libc6:arm64 libstdc++6:arm64
 * libsystemd0:arm64, which .ci/run installs), no binfmt needed. Its bundled node starts, opens
 * better-sqlite3 (cross-compiled by scripts/package-deb.sh) with a real query, and otactl status
 * against nothing running gives its "unreachable" exit code 5. Uses the package in dist-deb/
 * (`npm run package:deb` builds it; .ci/run does before the suite); skips, saying why, where the
 * package or qemu is missing, except in CI (CI=true), where that fails (test/support/package-gate.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';
import { missingPrerequisite } from '../../support/package-gate.js';

const QEMU = '/usr/bin/qemu-aarch64-static';
const deb = existsSync(join(REPO_ROOT, 'dist-deb')) ? readdirSync(join(REPO_ROOT, 'dist-deb')).find((f) => /^otad_.*_arm64\.deb$/.test(f)) : undefined;
const skip = !existsSync(QEMU)
  ? `${QEMU} is missing (apt-get install qemu-user-static)`
  : !existsSync('/lib/ld-linux-aarch64.so.1')
    ? 'no arm64 libc for qemu -L / (dpkg --add-architecture arm64; apt-get install libc6:arm64 libstdc++6:arm64)'
    : deb === undefined
      ? 'no dist-deb/otad_*_arm64.deb: run npm run package:deb'
      : null;
missingPrerequisite('arm64 package check', skip);

// qemu-user runs each node start at a fraction of native speed: generous timeouts for a loaded machine.
describe.skipIf(skip !== null)('the arm64 package under qemu-aarch64-static', () => {
  const root = mkdtempSync(join(tmpdir(), 'otad-arm64-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const lib = join(root, 'usr/lib/otad');
  const run = (args: string[]) => spawnSync(QEMU, ['-L', '/', join(lib, 'node/bin/node'), ...args], { encoding: 'utf8', timeout: 300_000, env: { PATH: '/usr/bin:/bin', HOME: root } });

  it('unpacks, and its native modules are aarch64 ELF files', () => {
    expect(spawnSync('dpkg-deb', ['-x', join(REPO_ROOT, 'dist-deb', deb!), root]).status).toBe(0);
    for (const so of ['better-sqlite3/build/Release/better_sqlite3.node', 'node/bin/node']) {
      const path = so.startsWith('node/') ? join(lib, so) : join(lib, 'node_modules', so);
      expect(spawnSync('readelf', ['-h', path], { encoding: 'utf8' }).stdout).toMatch(/Machine:\s+AArch64/);
    }
  }, 600_000);

  it('its node starts and better-sqlite3 answers a query', () => {
    expect(run(['--version']).stdout.trim()).toMatch(/^v24\./);
    const script = `const D = require(${JSON.stringify(join(lib, 'node_modules/better-sqlite3'))}); const d = new D(':memory:'); d.exec('create table t (x)'); d.prepare('insert into t values (?)').run(42); console.log(JSON.stringify(d.prepare('select x, sqlite_version() v from t').get()))`;
    const r = run(['-e', script]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ x: 42 });
  }, 600_000);

  it('otactl status against nothing running exits 5 (unreachable)', () => {
    const r = run([join(lib, 'dist/src/cli/otactl.js'), '--url', 'http://127.0.0.1:1', '--config', join(lib, 'config/config.no-systemd.example.yaml'), 'status']);
    expect(r.status, r.stdout + r.stderr).toBe(5);
    expect(r.stderr).toContain('UNREACHABLE');
  }, 600_000);

  it('otad --version and --check-config run (the check reports the missing trusted root of a bare host)', () => {
    const v = run([join(lib, 'dist/src/cli/otad.js'), '--version']);
    expect(v.status, v.stderr).toBe(0);
    const c = run([join(lib, 'dist/src/cli/otad.js'), '--check-config', '--config', join(lib, 'config/config.no-systemd.example.yaml')]);
    // 0 or 2: the check ran to its report (exit 2 lists what this host lacks, e.g. /etc/ota/root.json).
    expect([0, 2], c.stdout + c.stderr).toContain(c.status);
    expect(c.stdout + c.stderr).toMatch(/configuration .* (is valid|error)|[A-Z_]{4,}/);
  }, 600_000);
});

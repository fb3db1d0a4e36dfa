import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';

const which = (cmd: string) => ['/usr/bin', '/bin', '/usr/sbin', '/sbin'].map((d) => join(d, cmd)).find((p) => existsSync(p));

describe('deployment files', () => {
  const analyze = which('systemd-analyze');
  it.skipIf(!analyze)('the systemd unit passes systemd-analyze verify without a warning', () => {
    // The unit runs the runtime the .deb bundles (/usr/lib/otad/node/bin/node). On a host without
    // the package, verify would only say that this program is missing: check a copy whose program
    // is this Node instead, one path changed and said so. The installed unit and its program are
    // checked by test/integration/package/deb-install.test.ts.
    let unitPath = join(REPO_ROOT, 'deploy/systemd/otad.service');
    const unit = readFileSync(unitPath, 'utf8');
    const program = /^ExecStart=(\S+)/m.exec(unit)![1]!;
    let tmp: string | null = null;
    if (!existsSync(program)) {
      console.log(`systemd-analyze verify: ${program} is not installed here; verifying the unit with ExecStart's program replaced by ${process.execPath}`);
      tmp = mkdtempSync(join(tmpdir(), 'otad-unit-'));
      unitPath = join(tmp, 'otad.service');
      writeFileSync(unitPath, unit.replace(`ExecStart=${program} `, `ExecStart=${process.execPath} `));
    }
    const r = spawnSync(analyze!, ['verify', unitPath], { encoding: 'utf8' });
    if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
    expect(r.status).toBe(0);
    // Warnings exit 0 too: read stderr for anything about our unit.
    expect(r.stderr.split('\n').filter((l) => l.includes('otad.service'))).toEqual([]);
  });

  it.skipIf(!analyze)('the unit is hardened to an exposure of 3.5 or lower (systemd-analyze security --offline=yes)', () => {
    const r = spawnSync(analyze!, ['security', '--offline=yes', '--no-pager', join(REPO_ROOT, 'deploy/systemd/otad.service')], { encoding: 'utf8' });
    const m = /Overall exposure level for otad\.service: (\d+\.\d+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).not.toBeNull();
    const score = Number(m![1]);
    console.log(`systemd-analyze security --offline=yes: otad.service exposure ${score}`);
    expect(score).toBeLessThanOrEqual(3.5);
  });

  it('runs as Type=notify with a watchdog, and a configuration error (exit 78) is not restarted', () => {
    const unit = readFileSync(join(REPO_ROOT, 'deploy/systemd/otad.service'), 'utf8');
    expect(unit).toMatch(/^Type=notify$/m);
    expect(unit).toMatch(/^WatchdogSec=\d+/m);
    expect(unit).toMatch(/^RestartPreventExitStatus=78$/m);
    for (const d of ['StateDirectory', 'CacheDirectory', 'LogsDirectory', 'RuntimeDirectory', 'ConfigurationDirectory']) expect(unit).toMatch(new RegExp(`^${d}=ota$`, 'm'));
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit).toMatch(/^ReadWritePaths=\/opt$/m);
  });

  const logrotate = which('logrotate');
  it.skipIf(!logrotate)('the logrotate file parses (logrotate -d)', () => {
    const r = spawnSync(logrotate!, ['-d', join(REPO_ROOT, 'deploy/logrotate/otad')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/error/i);
  });

  it.skipIf(!logrotate)('rotating real log files keeps the live files and their rotated copies at 0640', () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-logrotate-'));
    try {
      const conf = join(dir, 'otad.conf');
      writeFileSync(conf, readFileSync(join(REPO_ROOT, 'deploy/logrotate/otad'), 'utf8').replaceAll('/var/log/ota/', `${dir}/`), { mode: 0o644 });
      for (const name of ['otad.log', 'audit.log']) {
        writeFileSync(join(dir, name), `{"message":"a line of ${name}"}\n`, { mode: 0o640 });
        chmodSync(join(dir, name), 0o640);
      }
      const r = spawnSync(logrotate!, ['-f', '-s', join(dir, 'state'), conf], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      for (const name of ['otad.log', 'audit.log']) {
        expect(statSync(join(dir, name)).size, `${name} truncated in place`).toBe(0);
        expect(statSync(join(dir, name)).mode & 0o777).toBe(0o640);
        expect(readFileSync(join(dir, `${name}.1`), 'utf8')).toContain(`a line of ${name}`);
        expect(statSync(join(dir, `${name}.1`)).mode & 0o777, `${name}.1`).toBe(0o640);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ships a unit that reloads with SIGHUP and gives apply time to finish on stop', () => {
    const unit = readFileSync(join(REPO_ROOT, 'deploy/systemd/otad.service'), 'utf8');
    expect(unit).toContain('ExecReload=/bin/kill -HUP $MAINPID');
    expect(unit).toMatch(/TimeoutStopSec=\d+/);
  });
});

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../support/otad-process.js';

const which = (cmd: string) => ['/usr/bin', '/bin', '/usr/sbin', '/sbin'].map((d) => join(d, cmd)).find((p) => existsSync(p));

describe('deployment files', () => {
  const analyze = which('systemd-analyze');
  it.skipIf(!analyze)('the systemd unit passes systemd-analyze verify without a warning', () => {
    const r = spawnSync(analyze!, ['verify', join(REPO_ROOT, 'deploy/systemd/otad.service')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    // Warnings exit 0 too: read stderr for anything about our unit.
    expect(r.stderr.split('\n').filter((l) => l.includes('otad.service'))).toEqual([]);
  });

  const logrotate = which('logrotate');
  it.skipIf(!logrotate)('the logrotate file parses (logrotate -d)', () => {
    const r = spawnSync(logrotate!, ['-d', join(REPO_ROOT, 'deploy/logrotate/otad')], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).not.toMatch(/error/i);
  });

  it('ships a unit that reloads with SIGHUP and gives apply time to finish on stop', () => {
    const unit = readFileSync(join(REPO_ROOT, 'deploy/systemd/otad.service'), 'utf8');
    expect(unit).toContain('ExecReload=/bin/kill -HUP $MAINPID');
    expect(unit).toMatch(/TimeoutStopSec=\d+/);
  });
});

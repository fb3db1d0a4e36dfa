/**
 * Private state by default (threats: local disclosure). otad run outside systemd with the usual
 * umask 022 does a full update cycle (download, backup, stage, switch, probation, commit) from a
 * spawned ota-server; afterwards every folder it created under its state folder is 0700 and every
 * file 0600, its log and audit files 0640 — the database and its WAL, api.json, trusted metadata,
 * journals, the release cache, process-unit logs and the backups, which hold preserved config.
 * A state folder that already existed with 0755 is tightened at start, and the start log says so.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFleet, type Fleet } from '../../support/fleet-e2e.js';
import { writeTarGz } from '../../support/tar-fixtures.js';

let fleet: Fleet;
beforeAll(async () => {
  fleet = await startFleet();
}, 120_000);
afterAll(async () => fleet?.close());

function walk(dir: string): Array<{ path: string; mode: number; dir: boolean }> {
  const out: Array<{ path: string; mode: number; dir: boolean }> = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isSymbolicLink()) continue;
    out.push({ path: p, mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) out.push(...walk(p));
  }
  return out;
}

describe('otad state on disk after a full update cycle, under umask 022', () => {
  it('is 0700 for every folder and 0600 for every file otad wrote', async () => {
    const file = await writeTarGz(join(fleet.dir, 'robot-ai-1.1.0.tar.gz'), [
      { name: 'VERSION', content: '1.1.0\n' },
      { name: 'bin/', type: 'directory' },
    ]);
    await fleet.publish('1.1.0', file);
    const { run } = await fleet.checkAndUpdate('1.1.0');
    expect(run.outcome).toBe('committed');

    const entries = walk(fleet.sandbox.stateDir);
    // The cycle really wrote what this test is about.
    for (const part of ['otad.db', 'api.json', 'device-id', 'tuf/robot-ai/timestamp.json', 'cache/robot-ai/latest-release.json', 'backups/']) {
      expect(entries.some((e) => e.path.includes(part)), part).toBe(true);
    }
    const loose = entries.filter((e) => (e.dir ? e.mode !== 0o700 : (e.mode & 0o077) !== 0 && !e.path.endsWith('.log')));
    expect(loose.map((e) => `${e.mode.toString(8)} ${e.path.slice(fleet.sandbox.stateDir.length + 1)}`)).toEqual([]);
    const logs = entries.filter((e) => !e.dir && e.path.endsWith('.log'));
    for (const l of logs) expect(l.mode & 0o037, l.path).toBe(0);
    expect((lstatSync(fleet.sandbox.stateDir).mode & 0o777).toString(8)).toBe('700');
  }, 120_000);

  it('tightens a state folder someone created 0755 before otad started, and says so', async () => {
    const { spawnOtad, makeSandbox } = await import('../../support/otad-process.js');
    const sandbox = makeSandbox();
    mkdirSync(sandbox.stateDir, { recursive: true });
    chmodSync(sandbox.stateDir, 0o755);
    const otad = spawnOtad(sandbox);
    try {
      await otad.ready();
      expect((lstatSync(sandbox.stateDir).mode & 0o777).toString(8)).toBe('700');
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(sandbox.logPath, 'utf8')).toContain(`tightened ${sandbox.stateDir} from mode 755 to 700`);
    } finally {
      await otad.kill('SIGTERM');
    }
  }, 60_000);
});

/**
 * `ota-server rollouts create|list|halt|resume` straight on the fleet database, and a running
 * ota-server (spawned from dist: `npm run build` first) that obeys them at once and enforces
 * `--site-budget`, on SQLite and a real PostgreSQL.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { BACKENDS, freshDatabase, newDeviceKey, stopSharedPostgres } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';
import { askLease, checkin } from '../../support/signed-requests.js';

notePostgresSkip();
afterAll(stopSharedPostgres);

const CLI = path.resolve('dist/src/cli/ota-server.js');
const run = promisify(execFile);

async function otaServer(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe.each(BACKENDS)('ota-server rollouts command on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  const children: ChildProcess[] = [];

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-rollouts-cli-'));
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    database = await freshDatabase(backend, dir);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) {
      c.kill('SIGTERM');
      await new Promise((r) => (c.exitCode !== null ? r(null) : c.once('exit', r)));
    }
    if (!skip) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('creates, lists, halts and resumes a rollout that a running server obeys at once; --site-budget lab=1 admits one lab robot', async () => {
    const robots = ['lab-1', 'lab-2'].map((id) => ({ id, key: newDeviceKey() }));
    writeFileSync(path.join(dir, 'devices.txt'), robots.map((r) => `${r.id} ${r.key.publicKey} site=lab`).join('\n'));
    const child = spawn(
      process.execPath,
      [CLI, '--repo', path.join(dir, 'repo'), '--keys', path.join(dir, 'keys'), '--port', '0', '--database', database, '--no-timestamp-refresh', '--preauthorize', path.join(dir, 'devices.txt'), '--site-budget', '3', '--site-budget', 'lab=1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      const poll = setInterval(() => {
        const m = /ota-server listening on (\S+)/.exec(out);
        if (m && out.includes('update leases:')) {
          clearInterval(poll);
          resolve(m[1]!);
        }
      }, 20);
      child.once('exit', (code) => reject(new Error(`ota-server exited ${code}: ${out}`)));
    });
    expect(out).toContain('update leases: at most 3 robot(s) updating per site (lab: 1); robots without a site tag have no budget');
    for (const r of robots) expect((await checkin(url, r, Date.now(), {})).status).toBe(200);

    const created = await otaServer(['rollouts', 'create', '--database', database, '--product', 'robot-ai', '--version', '2.0.0', '--batches', 'site=lab;*', '--soak', '1h', '--failure-threshold', '10%', '--json']);
    expect(created.code).toBe(0);
    const id = (JSON.parse(created.stdout) as { id: string }).id;
    const again = await otaServer(['rollouts', 'create', '--database', database, '--product', 'robot-ai', '--version', '2.0.0', '--batches', '*']);
    expect(again).toMatchObject({ code: 1, stderr: expect.stringContaining('ROLLOUT_CONFLICT') });
    const listed = await otaServer(['rollouts', 'list', '--database', database]);
    expect(listed.stdout).toContain(`${id}  robot-ai 2.0.0  active`);
    expect(listed.stdout).toContain('batch 1 [site=lab] open: 2 robots, 0 committed, 0 running, 0 rolled back, 0 failed, 2 not started');

    expect((await askLease(url, robots[0]!, '2.0.0', Date.now())).status).toBe(200);
    expect((await askLease(url, robots[1]!, '2.0.0', Date.now())).body.error.code).toBe('SITE_BUDGET_FULL');

    expect((await otaServer(['rollouts', 'halt', id, '--database', database, '--reason', 'field reports'])).stdout).toContain('halted (by operator: field reports)');
    expect((await checkin(url, robots[1]!, Date.now(), {})).body.rollouts).toEqual([{ product: 'robot-ai', version: '2.0.0', state: 'halted', reason: 'field reports' }]);
    expect((await askLease(url, robots[1]!, '2.0.0', Date.now())).body.error.code).toBe('ROLLOUT_HALTED');
    expect((await otaServer(['rollouts', 'resume', id, '--database', database])).stdout).toContain(`resumed ${id}  robot-ai 2.0.0  active`);
    expect((await checkin(url, robots[1]!, Date.now(), {})).body.rollouts).toEqual([]);
    expect((await otaServer(['rollouts', 'resume', id, '--database', database])).stderr).toContain('not halted');
  }, 120_000);
});

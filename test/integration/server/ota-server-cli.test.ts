/**
 * The ota-server command (spawned from dist: `npm run build` first), on SQLite and a real
 * PostgreSQL: --preauthorize, `devices list|accept|reject` straight on the database while the server
 * runs, the note about an old devices.json, and a replay sent to a second server process.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { BACKENDS, freshDatabase, newDeviceKey, postCheckin, report, stopSharedPostgres } from '../../support/fleet-db.js';
import { notePostgresSkip } from '../../support/postgres.js';

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

describe.each(BACKENDS)('ota-server command on $backend', ({ backend, skip }) => {
  let dir: string;
  let database: string;
  const children: ChildProcess[] = [];

  async function serve(extra: string[] = []): Promise<{ url: string; output: () => string }> {
    const child = spawn(process.execPath, [CLI, '--repo', path.join(dir, 'repo'), '--keys', path.join(dir, 'keys'), '--port', '0', '--database', database, '--no-timestamp-refresh', ...extra], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const url = await new Promise<string>((resolve, reject) => {
      const poll = setInterval(() => {
        const m = /ota-server listening on (\S+)/.exec(out);
        if (m) {
          clearInterval(poll);
          resolve(m[1]!);
        }
      }, 20);
      child.once('exit', (code) => {
        clearInterval(poll);
        reject(new Error(`ota-server exited ${code}: ${out}`));
      });
    });
    return { url, output: () => out };
  }

  beforeEach(async () => {
    if (skip) return;
    dir = mkdtempSync(path.join(tmpdir(), 'otad-server-cli-'));
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    database = await freshDatabase(backend, dir);
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    }
    if (!skip) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(skip)('a preauthorized robot is accepted at once; devices list, accept and reject work on the database while it serves', async () => {
    const known = newDeviceKey();
    const stranger = newDeviceKey();
    writeFileSync(path.join(dir, 'robots.txt'), `# robots shipped to warehouse 3\nrobot-1 ${known.publicKey} site=warehouse-3 arm=ur5\n\n`);
    writeFileSync(path.join(dir, 'repo', 'devices.json'), '[]\n');
    const server = await serve(['--preauthorize', path.join(dir, 'robots.txt')]);
    expect(server.output()).toContain('preauthorized 1 device(s)');
    expect(server.output()).toContain('devices.json: it holds unsigned check-ins from before device keys');
    expect((await postCheckin({ url: server.url, key: known, body: report('robot-1'), now: Date.now() })).body).toMatchObject({ status: 'accepted' });
    expect((await postCheckin({ url: server.url, key: stranger, body: report('robot-2'), now: Date.now() })).status).toBe(202);

    const listed = await otaServer(['devices', 'list', '--database', database]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/robot-1\s+accepted\s+[0-9a-f]{16}\s+warehouse-3/);
    expect(listed.stdout).toMatch(/robot-2\s+pending/);
    const pending = JSON.parse((await otaServer(['devices', 'list', '--database', database, '--status', 'pending', '--json'])).stdout);
    expect(pending).toMatchObject({ total: 1, devices: [{ id: 'robot-2' }] });

    expect(await otaServer(['devices', 'accept', 'robot-2', '--database', database])).toMatchObject({ code: 0, stdout: expect.stringContaining('device robot-2 accepted') });
    expect((await postCheckin({ url: server.url, key: stranger, body: report('robot-2'), now: Date.now() })).status).toBe(200);
    await otaServer(['devices', 'reject', 'robot-1', '--database', database]);
    expect((await postCheckin({ url: server.url, key: known, body: report('robot-1'), now: Date.now() })).body.error.code).toBe('DEVICE_REJECTED');
    const missing = await otaServer(['devices', 'accept', 'robot-9', '--database', database]);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('no device robot-9') });
  });

  it.skipIf(skip)('refuses a malformed preauthorize file with its line number and does not start', async () => {
    writeFileSync(path.join(dir, 'robots.txt'), 'robot-1 not-a-key\n');
    const result = await otaServer(['--repo', path.join(dir, 'repo'), '--keys', path.join(dir, 'keys'), '--database', database, '--preauthorize', path.join(dir, 'robots.txt')]);
    expect(result).toMatchObject({ code: 1, stderr: expect.stringContaining('robots.txt line 1: the public key must be base64') });
  });

  it.skipIf(skip || backend !== 'postgres')('a check-in replayed to a second server process on the same PostgreSQL is refused', async () => {
    const a = await serve();
    const b = await serve();
    const key = newDeviceKey();
    const nonce = 'cd'.repeat(16);
    const now = Date.now();
    expect((await postCheckin({ url: a.url, key, body: report('robot-1'), now, nonce })).status).toBe(202);
    expect((await postCheckin({ url: b.url, key, body: report('robot-1'), now, nonce })).body.error.code).toBe('DEVICE_REPLAY');
  });
});

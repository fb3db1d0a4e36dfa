/**
 * otactl behaving like a system tool: exit codes a script can rely on (and that --help lists),
 * `watch` that shows where things stand before it waits, the README's command line working as
 * written, inhibit holders named as holders, log lines naming their product, and a cancelled
 * offer no longer shown as offered. The built otactl against a real otad process (fake steps).
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, waitFor } from '../api/harness.js';
import { startRealOtad, type RealOtad } from '../api/real-otad.js';
import { REPO_ROOT } from '../../support/otad-process.js';
import { OTACTL, spawnOtactl, type OtactlResult } from './otactl-process.js';

let d: RealOtad;
const env = () => ({ OTA_CONFIG: d.sandbox.configPath, OTA_TOKEN_FILE: d.tokensFile });
const otactl = (args: string[]) => spawnOtactl(args, env()).done;

interface StatusJson {
  products: Array<{ product: string; state: string; offeredVersion: string | null; offer: unknown; releaseNotes: string | null }>;
}
async function eventually(probe: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const statusJson = async (): Promise<StatusJson> => JSON.parse((await otactl(['--json', 'status'])).stdout) as StatusJson;

beforeAll(async () => {
  d = await startRealOtad({ fake: { offerVersion: '2.0.0', delayMs: { check: 300, backup: 200, stage: 200 } } });
});
afterAll(async () => d?.stop());

describe('otactl as a system tool, against a running otad', () => {
  it('lists its exit codes in --help', async () => {
    const r = await otactl(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Exit codes:');
    for (const line of ['0  done', '2  usage or configuration error', '3  not allowed in the current state', '4  authentication or permission refused', '5  the daemon is not reachable', '6  watch --timeout passed']) {
      expect(r.stdout).toContain(line);
    }
  });

  it('explains that inhibit hold takes the name of the holder, not a product, in its help and its answer', async () => {
    const help = await otactl(['inhibit', 'hold', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/holder\s+who holds the inhibit/);
    expect(help.stdout).toContain('not a product');
    const hold = await otactl(['inhibit', 'hold', 'robot-ai.mission', '-r', 'on a delivery', '-d', '30m']);
    expect(hold.code).toBe(0);
    expect(hold.stdout).toMatch(/^inhibit held by robot-ai\.mission until \S+: no update of any product starts before then; release it with `otactl inhibit release robot-ai\.mission`$/m);
    expect((await otactl(['status'])).stdout).toMatch(/^inhibit: held by robot-ai\.mission until \S+: on a delivery$/m);
    const release = await otactl(['inhibit', 'release', 'robot-ai.mission']);
    expect(release.stdout).toContain('inhibit held by robot-ai.mission released');
  });

  it('status loads only what it needs: no Socket.IO client, progress bars, SQLite, configuration schema, machine or YAML parser', async () => {
    const record = join(d.sandbox.dir, 'imports.txt');
    const loaded = async (args: string[], extra: Record<string, string> = {}) => {
      writeFileSync(record, '');
      const r = await new Promise<number | null>((res) => {
        const child = spawn(process.execPath, ['--import', join(REPO_ROOT, 'test/support/record-imports.mjs'), OTACTL, ...args], { env: { ...process.env, ...env(), ...extra, OTA_TEST_IMPORTS_FILE: record }, stdio: 'ignore' });
        child.on('close', res);
      });
      return { code: r, urls: readFileSync(record, 'utf8').split('\n').filter(Boolean) };
    };
    const HEAVY = /node_modules\/(socket\.io-client|cli-progress|better-sqlite3|zod|xstate|winston)\/|dist\/src\/config\/schema\.js|dist\/machines\/update-machine\.js|dist\/src\/daemon\/daemon\.js/;
    const status = await loaded(['status']);
    expect(status.code).toBe(0);
    expect(status.urls).toContainEqual(expect.stringMatching(/dist\/src\/cli\/otactl\/status\.js$/));
    expect(status.urls.filter((u) => HEAVY.test(u))).toEqual([]);
    // Nor Node's bundled undici (fetch's HTTP stack): on Node 24 importing node:http as an ES
    // module reads its lazy WebSocket getters, which load it (src/api/client.ts requires it instead).
    expect(status.urls).toContain('internal:internal/errors');
    expect(status.urls.filter((u) => u.startsWith('internal:internal/deps/undici'))).toEqual([]);
    // The YAML package is loaded with require() only when a file falls outside the subset
    // src/config/yaml-lite.ts reads; NODE_DEBUG=module shows CommonJS loads, which the ESM hook does not.
    const cjs = await new Promise<string>((res) => {
      const child = spawn(process.execPath, [OTACTL, 'status'], { env: { ...process.env, ...env(), NODE_DEBUG: 'module' }, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      child.on('close', () => res(err));
    });
    expect(cjs).toContain('MODULE');
    expect(cjs).not.toMatch(/node_modules\/yaml\//);
    // The recording sees such imports where a command does make them.
    const watch = await loaded(['watch', '--until', 'idle']);
    expect(watch.code).toBe(0);
    expect(watch.urls).toContainEqual(expect.stringMatching(/node_modules\/socket\.io-client\//));
    const offline = await loaded(['--url', 'http://127.0.0.1:9', 'status']);
    expect(offline.code).toBe(5);
    expect(offline.urls).toContainEqual(expect.stringMatching(/node_modules\/better-sqlite3\//));
  });

  it('watch prints the current state first, and with --until exits 0 at once when a product is already in that state', async () => {
    const r = await otactl(['watch', '--until', 'idle', '--timeout', '30s']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toMatch(/^\S+ robot-ai: idle {2}installed /);
  });

  it('watch refuses a state the machine does not have, naming the states it has', async () => {
    const r = await otactl(['watch', '--until', 'installed']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('"installed" is not a state of the update machine');
    expect(r.stderr).toContain('idle, checking, awaitingChoice, confirming, scheduled, preCheck, preCheckWaiting, backup, staging, apply, validate, commit, rollback, failed');
    expect(r.stdout).toBe('');
  });

  it('watch --timeout gives up with exit 6 and says which state did not come', async () => {
    const r = await otactl(['watch', '--until', 'commit', '--timeout', '1s']);
    expect(r.code).toBe(6);
    expect(r.stdout).toMatch(/robot-ai: idle/);
    expect(r.stderr).toContain('otactl: WATCH_TIMEOUT: no product reached "commit" within 1s');
  });

  it('runs the README line `otactl check && otactl watch --until idle` exactly as written', async () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const line = readme.split('\n').find((l) => l.startsWith('otactl check && otactl watch'));
    expect(line).toBeDefined();
    const command = (line as string).replace(/\s+#.*$/, '');
    expect(command).toBe('otactl check && otactl watch --until idle');
    // `otactl` on the PATH, as the package installs it.
    const bin = join(d.sandbox.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'otactl'), `#!/bin/sh\nexec "${process.execPath}" "${OTACTL}" "$@"\n`);
    chmodSync(join(bin, 'otactl'), 0o755);
    const child = spawn('/bin/sh', ['-c', command], { env: { ...process.env, ...env(), PATH: `${bin}:${process.env.PATH ?? ''}` }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const done = new Promise<OtactlResult>((res) => child.on('close', (code) => res({ code, stdout, stderr })));

    // The check offers 2.0.0 and waits for a choice: the watch shows it, then follows the run.
    await waitFor(() => /robot-ai: (checking|awaitingChoice) {2}installed/.test(stdout), 'the current state from watch', 20_000);
    await waitFor(() => stdout.includes('awaitingChoice'), 'the offer', 20_000);
    expect((await otactl(['update-now'])).code).toBe(0);
    const r = await done;
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^robot-ai: CHECK_NOW accepted; now checking \(run \S+\)$/);
    expect(lines[1]).toMatch(/^\S+ robot-ai: (checking|awaitingChoice) {2}installed /);
    expect(lines.at(-1)).toMatch(/robot-ai: commit → idle/);
    expect(r.stderr).toContain('watching otad at');
  });

  it('names the product of each log line, and says when a line is about the daemon as a whole', async () => {
    const r = await otactl(['logs', '--limit', '40']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(line).toMatch(/^\S+ (error|warn |info |debug) (robot-ai|\(daemon\)): \S/);
    expect(lines).toContainEqual(expect.stringMatching(/ info {2}robot-ai: commit → idle: /));
    expect(lines).toContainEqual(expect.stringMatching(/ info {2}\(daemon\): otad ready$/));
  });

  it('after cancel, status shows no offer: not through otactl, not through REST, not in the saved state', async () => {
    expect((await otactl(['check'])).code).toBe(0);
    await eventually(async () => (await statusJson()).products[0]?.state === 'awaitingChoice', 'the offer');
    expect((await statusJson()).products[0]?.offeredVersion).toBe('2.0.0');
    expect((await otactl(['cancel'])).code).toBe(0);

    const text = await otactl(['status']);
    expect(text.stdout).toMatch(/^robot-ai: idle {2}installed \S+ {2}last run cancelled$/m);
    expect(text.stdout).not.toContain('offered');
    expect(text.stdout).not.toContain('notes:');
    const res = await fetch(`${d.url}/api/v1/status`, { headers: { Authorization: `Bearer ${CONTROL_TOKEN}` } });
    const rest = (await res.json()) as StatusJson;
    expect(rest.products[0]).toMatchObject({ state: 'idle', offeredVersion: null, offer: null, releaseNotes: null });
    const history = await otactl(['history', '--limit', '1']);
    expect(history.stdout).toMatch(/→ 2\.0\.0 {2}cancelled/);
    // The state the daemon saved says the same, as otactl shows it when it cannot ask the daemon.
    const saved = await otactl(['--url', 'http://127.0.0.1:9', 'status']);
    expect(saved.code).toBe(5);
    expect(saved.stdout).toMatch(/^robot-ai: idle {2}installed \S+ {2}last run cancelled {2}\(saved /m);
  });
});

describe('otactl status when otad is not running', () => {
  it('prints the saved state on stdout, says on stderr that otad is not reachable, and exits 5, also with --json', async () => {
    const dead = await startRealOtad({ fake: {} });
    const e = { OTA_CONFIG: dead.sandbox.configPath, OTA_TOKEN_FILE: dead.tokensFile };
    try {
      await eventually(async () => (await spawnOtactl(['status'], e).done).code === 0, 'the daemon to answer');
      await dead.proc.kill('SIGTERM');
      const r = await spawnOtactl(['status'], e).done;
      expect(r.code).toBe(5);
      expect(r.stderr).toMatch(/otactl: UNREACHABLE: otad is not reachable at \S+ \(ECONNREFUSED\)/);
      expect(r.stderr).toContain('otad is not running or not reachable; below is the state it last saved in');
      expect(r.stdout).toMatch(/^robot-ai: idle {2}installed - {2}\(saved \S+\)$/m);
      const j = await spawnOtactl(['--json', 'status'], e).done;
      expect(j.code).toBe(5);
      expect(JSON.parse(j.stdout)).toMatchObject({ source: 'database', daemonReachable: false, products: [{ product: 'robot-ai', state: 'idle' }] });
    } finally {
      await dead.stop();
    }
  });
});

/**
 * `otactl inhibit hold` as a holder process: the built otactl, spawned against a real otad process
 * with its D-Bus service on a private dbus-daemon. Over D-Bus it keeps its inhibitor fd (busctl
 * lists it), and a SIGKILL releases it at once; over REST it renews a short lease by heartbeat,
 * and once SIGKILLed the lease runs out at the expiry its last heartbeat set (within the TTL of
 * the kill). SIGTERM and --for release it and exit 0.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, bearer, waitFor } from '../api/harness.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from '../api/private-bus.js';
import { startRealOtad, type RealOtad } from '../api/real-otad.js';
import { FD_PASSING } from '../../../src/api/dbus.js';
import { REPO_ROOT } from '../../support/otad-process.js';
import { OTACTL } from './otactl-process.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';

interface Held {
  holder: string;
  kind: 'fd' | 'lease';
  expiresAt: number | null;
}

describe.skipIf(!hasDbusDaemon || !FD_PASSING)('otactl inhibit hold keeps its inhibit for as long as it runs', () => {
  let dir: string;
  let bus: PrivateBus;
  let d: RealOtad;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-hold-'));
    bus = await startPrivateBus(dir);
    d = await startRealOtad({ fake: { offerVersion: '2.0.0' }, extra: { dbus: { enabled: true, bus: bus.address, name: NAME } } });
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    await d?.stop();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const inhibits = async (): Promise<Held[]> => {
    const r = await fetch(`${d.url}/api/v1/status`, { headers: bearer(CONTROL_TOKEN) });
    return ((await r.json()) as { inhibits: Held[] }).inhibits;
  };
  const eventually = async (probe: () => Promise<boolean>, what: string) => {
    const deadline = Date.now() + 20_000;
    while (!(await probe())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };
  const hold = (args: string[]) => {
    const child = spawn(process.execPath, [OTACTL, '--config', d.sandbox.configPath, 'inhibit', 'hold', ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, OTA_TOKEN_FILE: d.tokensFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
    return { child, exited, out: () => out, err: () => err };
  };

  it('over D-Bus: holds the fd while it runs (busctl lists the inhibitor); SIGKILL releases it at once', async () => {
    const p = hold(['robot-ai.mission', '-r', 'delivering to ward 3']);
    await waitFor(() => p.out().includes('inhibit held by') || p.child.exitCode !== null, 'otactl to hold', 30_000);
    expect(p.out()).toContain('inhibit held by robot-ai.mission over D-Bus while this command runs');
    expect(await inhibits()).toEqual([expect.objectContaining({ holder: 'robot-ai.mission', kind: 'fd', expiresAt: null })]);
    if (hasTool('busctl')) {
      const listed = await run('busctl', [`--address=${bus.address}`, 'call', NAME, '/io/otad/Daemon1', 'io.otad.Manager1', 'ListInhibitors']);
      expect(listed.stdout).toMatch(/^a\(ssstt\) 1 "robot-ai\.mission" "delivering to ward 3" "block" \d+ 0$/m);
    }
    p.child.kill('SIGKILL');
    expect((await p.exited).signal).toBe('SIGKILL');
    await eventually(async () => (await inhibits()).length === 0, 'the fd inhibitor to be released after SIGKILL');
  });

  it('over REST: renews its lease by heartbeat; once SIGKILLed, the lease ends at the expiry its last heartbeat set', async () => {
    const p = hold(['mission-planner', '-r', 'mission 42', '--via', 'rest', '--ttl', '3s']);
    await waitFor(() => p.out().includes('inhibit held by') || p.child.exitCode !== null, 'otactl to hold', 30_000);
    expect(p.out()).toContain('inhibit held by mission-planner as a lease of 3s renewed while this command runs');
    const first = (await inhibits())[0]!;
    expect(first).toMatchObject({ holder: 'mission-planner', kind: 'lease' });
    // Past the first lease's expiry it is still held: renewed by heartbeat.
    await eventually(async () => Date.now() > first.expiresAt! + 500, 'the first lease to have run out');
    const renewed = (await inhibits())[0]!;
    expect(renewed.holder).toBe('mission-planner');
    expect(renewed.expiresAt!).toBeGreaterThan(first.expiresAt!);

    const last = (await inhibits())[0]!.expiresAt!;
    const killedAt = Date.now();
    p.child.kill('SIGKILL');
    await p.exited;
    await eventually(async () => (await inhibits()).length === 0, 'the lease to run out after SIGKILL');
    const goneSeen = Date.now();
    // Nothing renews it after the kill: it ended at the expiry of a heartbeat sent before the kill, at most one TTL after it.
    const audit = await fetch(`${d.url}/api/v1/audit?limit=50`, { headers: bearer(CONTROL_TOKEN) }).then((r) => r.json() as Promise<unknown>);
    expect(JSON.stringify(audit)).not.toContain('inhibit released by mission-planner');
    expect(last).toBeLessThanOrEqual(killedAt + 3000);
    console.log(`REST lease of a SIGKILLed otactl (TTL 3s): gone ${goneSeen - killedAt} ms after the kill`);
  });

  it('SIGTERM and --for release the inhibit and exit 0', async () => {
    const p = hold(['ops@site', '-r', 'inspection']);
    await waitFor(() => p.out().includes('inhibit held by') || p.child.exitCode !== null, 'otactl to hold', 30_000);
    p.child.kill('SIGTERM');
    expect(await p.exited).toEqual({ code: 0, signal: null });
    expect(p.out()).toContain('inhibit held by ops@site released (stopped by SIGTERM)');
    await eventually(async () => (await inhibits()).length === 0, 'the inhibitor to be released after SIGTERM');

    const q = hold(['ops@site', '-r', 'inspection', '--via', 'rest', '--for', '2s']);
    await waitFor(() => q.out().includes('inhibit held by') || q.child.exitCode !== null, 'otactl to hold', 30_000);
    expect((await inhibits()).map((i) => i.holder)).toEqual(['ops@site']);
    expect(await q.exited).toEqual({ code: 0, signal: null });
    expect(q.out()).toContain('released (--for 2s passed)');
    expect(await inhibits()).toEqual([]);
  });

  it('refuses --for together with --duration (exit 2)', async () => {
    const p = hold(['x', '-r', 'y', '--for', '1m', '-d', '1m']);
    expect((await p.exited).code).toBe(2);
    expect(p.err()).toContain('give one of them');
  });
});

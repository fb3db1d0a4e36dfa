/**
 * otad under a service manager's notify socket: the built `otad` entry point, spawned with
 * NOTIFY_SOCKET naming an abstract AF_UNIX datagram socket that a python3 receiver binds, and
 * WATCHDOG_USEC set. What it says, and in which order, is read from the receiver.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { REPO_ROOT, spawnOtad, waitUntil } from '../../support/otad-process.js';
import { makeApiSandbox } from '../api/real-otad.js';

const python = spawnSync('python3', ['--version']).status === 0;
const built = existsSync(join(REPO_ROOT, 'dist/src/cli/otad.js'));

interface Received { message: string; apiJson: boolean }

function startReceiver(name: string, apiJson: string): { child: ChildProcess; received: Received[]; bound: Promise<void> } {
  const child = spawn('python3', [join(REPO_ROOT, 'test/fixtures/sd-notify/receiver.py'), name, apiJson], { stdio: ['ignore', 'pipe', 'inherit'] });
  const received: Received[] = [];
  const bound = new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`receiver exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = JSON.parse(line) as Partial<Received> & { bound?: boolean };
      if (m.bound) resolve();
      else received.push(m as Received);
    });
  });
  return { child, received, bound };
}

const kind = (m: string) => (m.startsWith('WATCHDOG=1') ? 'WATCHDOG' : m.split('\n')[0]!);

describe('otad and the sd_notify protocol', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => cleanup.splice(0).forEach((f) => f()));

  it.skipIf(!python || !built)('says READY=1 after the API listens, pings the watchdog, brackets a reload with RELOADING=1/READY=1 and says STOPPING=1 on SIGTERM', async () => {
    const sandbox = makeApiSandbox({ server: { url: 'http://127.0.0.1:9/', retries: 0, connectTimeout: '1s' } });
    cleanup.push(() => rmSync(sandbox.dir, { recursive: true, force: true }));
    const socketName = `@otad-test-notify-${process.pid}-${Date.now()}`;
    const receiver = startReceiver(socketName, join(sandbox.stateDir, 'api.json'));
    cleanup.push(() => receiver.child.kill('SIGKILL'));
    await receiver.bound;

    const proc = spawnOtad(sandbox, { entry: 'built', env: { NOTIFY_SOCKET: socketName, WATCHDOG_USEC: '400000' } });
    cleanup.push(() => void proc.kill());
    const has = (pred: (m: string) => boolean, from = 0) => receiver.received.slice(from).some((r) => pred(r.message));

    await waitUntil(() => has((m) => m.startsWith('READY=1')) || !proc.alive(), { what: 'READY=1', timeoutMs: 60_000 });
    const ready = receiver.received.find((r) => r.message.startsWith('READY=1'))!;
    expect(ready.apiJson, 'api.json was written before READY=1').toBe(true);
    expect(ready.message).toBe('READY=1\nSTATUS=robot-ai: idle');

    // WATCHDOG_USEC=400000: pings at half of it, from the main loop.
    await waitUntil(() => receiver.received.filter((r) => r.message === 'WATCHDOG=1').length >= 3, { what: 'three WATCHDOG=1 pings' });

    // A reload: the file is changed in a way the daemon applies (the log level).
    writeFileSync(sandbox.configPath, YAML.stringify({ ...YAML.parse(await import('node:fs').then((fs) => fs.readFileSync(sandbox.configPath, 'utf8'))), logging: { level: 'debug' } }));
    const beforeHup = receiver.received.length;
    proc.child.kill('SIGHUP');
    await waitUntil(() => has((m) => m.startsWith('READY=1'), beforeHup), { what: 'READY=1 after the reload' });
    const reload = receiver.received.slice(beforeHup).filter((r) => kind(r.message) !== 'WATCHDOG');
    expect(reload[0]!.message).toMatch(/^RELOADING=1\nMONOTONIC_USEC=\d+$/);
    expect(reload[1]!.message).toBe('READY=1\nSTATUS=robot-ai: idle');

    const { code } = await proc.kill('SIGTERM');
    expect(code).toBe(0);
    const order = receiver.received.map((r) => kind(r.message)).filter((k) => k !== 'WATCHDOG');
    expect(order).toEqual(['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
  });

  it.skipIf(!built)('exits 78 (EX_CONFIG) on a broken configuration, which the unit does not restart', async () => {
    const sandbox = makeApiSandbox();
    cleanup.push(() => rmSync(sandbox.dir, { recursive: true, force: true }));
    writeFileSync(sandbox.configPath, 'paths: [this is not a mapping\n');
    const proc = spawnOtad(sandbox, { entry: 'built' });
    const { code } = await proc.exited;
    expect(code).toBe(78);
  });
});

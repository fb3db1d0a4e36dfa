/**
 * The daemon SIGKILLed at any instant while it starts a unit: the unit is never left running
 * untracked. The next manager adopts it (from the record the unit's own shell wrote) instead of
 * starting a second copy, and can stop it.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { createProcessServiceManager, STARTER_SCRIPT } from '../../../src/services/process-manager.js';
import { REPO_ROOT } from '../../support/otad-process.js';

const root = mkdtempSync(join(tmpdir(), 'otad-pm-kill-'));
const script = join(root, `svc-${process.pid}.mjs`);
writeFileSync(script, 'setInterval(() => {}, 1000);\n');
afterAll(() => {
  for (const pid of runningServices()) process.kill(pid, 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

function runningServices(): number[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-f', script], { encoding: 'utf8' }).trim();
  } catch {
    // pgrep exits 1 when nothing matches.
  }
  return out ? out.split('\n').map(Number).filter((p) => p !== process.pid) : [];
}

function pgrepOk(): boolean {
  try {
    execFileSync('pgrep', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('the process service manager killed while starting a unit', () => {
  it.skipIf(!pgrepOk())('never leaves a service it does not know about', async () => {
    for (let i = 0; i < 12; i++) {
      const stateDir = join(root, `state-${i}`);
      const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'test/fixtures/process-manager-child.ts'), stateDir, script], {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('go') && resolve()));
      await new Promise((r) => setTimeout(r, i * 3));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
      await new Promise((r) => setTimeout(r, 150));

      const manager = createProcessServiceManager({ units: [{ name: 'svc', command: [process.execPath, script] }], stateDir, logger: silentLogger });
      await manager.start('svc');
      const running = runningServices();
      expect(running, `kill after ${i * 3} ms: one copy of the service`).toHaveLength(1);
      expect(await manager.isActive('svc')).toBe(true);
      await manager.stop('svc');
      expect(runningServices()).toEqual([]);
    }
  }, 120_000);

  it.skipIf(!pgrepOk())('adopts a starting shell that has not written its record yet instead of starting a second copy', async () => {
    // The earlier daemon spawned the starting shell and died; the shell has not yet written its
    // record. To hold it there deterministically, its temporary record file is a FIFO: the
    // shell's `printf > "$0.tmp"` blocks on opening it until a reader comes.
    const stateDir = join(root, 'state-starter');
    mkdirSync(stateDir, { recursive: true });
    const record = join(stateDir, 'svc.pid.starting');
    execFileSync('mkfifo', [`${record}.tmp`]);
    const starter = spawn('/bin/sh', ['-c', STARTER_SCRIPT, record, process.execPath, script], { detached: true, stdio: 'ignore' });
    starter.unref();
    await new Promise<void>((resolve) => starter.once('spawn', () => resolve()));
    const cmdline = () => readFileSync(`/proc/${starter.pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    expect(cmdline()[0], 'the starting shell, not yet the service').toBe('/bin/sh');

    const manager = createProcessServiceManager({ units: [{ name: 'svc', command: [process.execPath, script] }], stateDir, logger: silentLogger });
    await manager.start('svc');
    expect(await manager.isActive('svc')).toBe(true);
    // Let the held shell go on: it writes its record and becomes the service (same pid).
    // (read to the end: a reader that closed first would kill the shell's printf with SIGPIPE)
    expect(readFileSync(`${record}.tmp`, 'utf8').trim()).toBe(String(starter.pid));
    for (let i = 0; i < 200 && cmdline()[0] === '/bin/sh'; i++) await new Promise((r) => setTimeout(r, 25));
    expect(cmdline()).toEqual([process.execPath, script]);
    // The shell moved its record (here the FIFO) into place; a regular file in real life.
    rmSync(record, { force: true });
    expect(runningServices(), 'one copy of the service').toEqual([starter.pid]);
    await manager.stop('svc');
    expect(runningServices()).toEqual([]);
  }, 30_000);
});

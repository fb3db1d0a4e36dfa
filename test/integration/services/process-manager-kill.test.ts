/**
 * The daemon SIGKILLed at any instant while it starts a unit: the unit is never left running
 * untracked. The next manager adopts it (from the record the unit's own shell wrote) instead of
 * starting a second copy, and can stop it.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { createProcessServiceManager } from '../../../src/services/process-manager.js';
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
});

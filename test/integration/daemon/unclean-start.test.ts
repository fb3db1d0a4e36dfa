/**
 * "Unclean start" means what it says: the first start on an empty state folder is not unclean
 * (nothing ran before it), a start after SIGKILL is, and a start after a clean SIGTERM is not.
 */
import { readFileSync, rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { makeSandbox, spawnOtad, type Sandbox } from '../../support/otad-process.js';

let sandbox: Sandbox;
afterAll(() => rmSync(sandbox.dir, { recursive: true, force: true }));

function startingLine(pid: number): Record<string, unknown> {
  const line = readFileSync(sandbox.logPath, 'utf8')
    .split('\n')
    .find((l) => l.includes('"otad starting"') && l.includes(`"pid":${pid}`));
  if (!line) throw new Error(`no "otad starting" line for pid ${pid}`);
  return JSON.parse(line) as Record<string, unknown>;
}

describe('the unclean-start flag', () => {
  it('is false on the first start, true after SIGKILL, false after a clean stop', async () => {
    sandbox = makeSandbox();
    const first = spawnOtad(sandbox);
    await first.ready();
    expect(startingLine(first.child.pid!).uncleanStart).toBe(false);
    await first.kill('SIGKILL');

    const afterKill = spawnOtad(sandbox);
    await afterKill.ready();
    expect(startingLine(afterKill.child.pid!).uncleanStart).toBe(true);
    expect((await afterKill.kill('SIGTERM')).code).toBe(0);

    const afterStop = spawnOtad(sandbox);
    await afterStop.ready();
    expect(startingLine(afterStop.child.pid!).uncleanStart).toBe(false);
    await afterStop.kill('SIGTERM');
  }, 120_000);
});

import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/core/logger.js';
import { startAll, stopAll } from '../../../src/services/service-manager.js';
import { createSystemctlServiceManager } from '../../../src/services/systemctl.js';

const stubBin = fileURLToPath(new URL('../../fixtures/bin', import.meta.url));
let stubDir: string;

beforeEach(async () => {
  stubDir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-systemctl-'));
});
afterEach(async () => {
  await fs.rm(stubDir, { recursive: true, force: true });
});

/** The adapter finds `systemctl` on the PATH it is given: the stub comes first. */
function manager(extraEnv: Record<string, string> = {}, timeoutMs?: number) {
  return createSystemctlServiceManager({
    logger: silentLogger,
    env: { PATH: `${stubBin}:${process.env.PATH ?? ''}`, SYSTEMCTL_STUB_DIR: stubDir, ...extraEnv },
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
}

async function calls(): Promise<string[]> {
  return (await fs.readFile(path.join(stubDir, 'calls.log'), 'utf8')).trim().split('\n');
}

describe('systemctl service manager', () => {
  it('stops in reverse order and starts in order, one systemctl call per unit', async () => {
    const m = manager();
    const order = ['robot-ai-db.service', 'robot-ai.service', 'robot-ai-web.service'];
    await stopAll(m, order, silentLogger);
    await startAll(m, order, silentLogger);
    expect(await calls()).toEqual([
      'stop robot-ai-web.service',
      'stop robot-ai.service',
      'stop robot-ai-db.service',
      'start robot-ai-db.service',
      'start robot-ai.service',
      'start robot-ai-web.service',
    ]);
  });

  it('reads ActiveState, SubState and NRestarts through systemctl show', async () => {
    const m = manager();
    await m.start('robot-ai.service');
    await fs.writeFile(path.join(stubDir, 'restarts', 'robot-ai.service'), '2\n');
    expect(await m.status('robot-ai.service')).toEqual({ active: true, state: 'active/running', restarts: 2 });
    await m.stop('robot-ai.service');
    expect(await m.isActive('robot-ai.service')).toBe(false);
    expect((await calls()).at(-1)).toBe('show -p ActiveState,SubState,NRestarts robot-ai.service');
  });

  it('turns a failing start into SERVICE_FAILED naming the unit, and startAll stops there', async () => {
    const m = manager({ SYSTEMCTL_STUB_FAIL: 'start:robot-ai.service' });
    const error = await startAll(m, ['robot-ai-db.service', 'robot-ai.service', 'robot-ai-web.service'], silentLogger).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'SERVICE_FAILED',
      details: { unit: 'robot-ai.service', verb: 'start', started: ['robot-ai-db.service'], exitCode: 1 },
    });
    expect((error as Error).message).toContain('robot-ai.service');
    expect(await calls()).toEqual(['start robot-ai-db.service', 'start robot-ai.service']);
  });

  it('gives up on a systemctl call that hangs past its deadline with SERVICE_FAILED', async () => {
    const m = manager({ SYSTEMCTL_STUB_HANG: 'stop' }, 300);
    await expect(m.stop('robot-ai.service')).rejects.toMatchObject({ code: 'SERVICE_FAILED', details: { timedOut: true } });
  });

  it('reports a missing systemctl binary as SERVICE_FAILED', async () => {
    const m = createSystemctlServiceManager({ logger: silentLogger, systemctlPath: path.join(stubDir, 'no-systemctl') });
    await expect(m.start('robot-ai.service')).rejects.toMatchObject({ code: 'SERVICE_FAILED' });
  });

  it('refuses unit names that could be read as options, before running anything', async () => {
    const m = manager();
    await expect(m.stop('--all')).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(fs.access(path.join(stubDir, 'calls.log'))).rejects.toThrow();
  });
});

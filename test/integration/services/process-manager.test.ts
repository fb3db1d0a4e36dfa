import * as fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MemoryLogger, silentLogger } from '../../../src/core/logger.js';
import { createProcessServiceManager, type ProcessUnit } from '../../../src/services/process-manager.js';
import { isProcessAlive } from '../../../src/services/process-liveness.js';
import { startAll, stopAll, type ServiceManager } from '../../../src/services/service-manager.js';

let stateDir: string;
const managers: ServiceManager[] = [];
let units: ProcessUnit[];

beforeEach(async () => {
  stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-procs-'));
  units = [
    { name: 'robot-ai.service', command: ['sh', '-c', 'echo "up as $ROBOT_ROLE"; exec sleep 60'], env: { ROBOT_ROLE: 'brain' } },
    { name: 'robot-ai-web.service', command: ['sleep', '60'] },
    // Ignores SIGTERM: only SIGKILL ends it.
    { name: 'stubborn.service', command: ['sh', '-c', "trap '' TERM; echo ignoring TERM; while :; do sleep 0.1; done"] },
  ];
});

afterEach(async () => {
  const m = manager();
  for (const unit of units) await m.stop(unit.name, { timeoutMs: 100 }).catch(() => {});
  managers.length = 0;
  await fs.rm(stateDir, { recursive: true, force: true });
});

function manager(logger = silentLogger): ServiceManager {
  const m = createProcessServiceManager({ units, stateDir, logger, stopTimeoutMs: 2000 });
  managers.push(m);
  return m;
}

async function waitForLog(unit: string, text: string): Promise<string> {
  const file = path.join(stateDir, `${unit}.log`);
  for (let i = 0; i < 250; i++) {
    const log = await fs.readFile(file, 'utf8').catch(() => '');
    if (log.includes(text)) return log;
    await new Promise((r) => setTimeout(r, 20));
  }
  return fs.readFile(file, 'utf8');
}

async function pidOf(unit: string): Promise<number> {
  return (JSON.parse(await fs.readFile(path.join(stateDir, `${unit}.pid`), 'utf8')) as { pid: number }).pid;
}

describe('process service manager', () => {
  it('starts a unit as a detached process with its environment and reports it active', async () => {
    const m = manager();
    await m.start('robot-ai.service');
    expect(await m.isActive('robot-ai.service')).toBe(true);
    expect(await m.status('robot-ai.service')).toEqual({ active: true, state: 'active/running', restarts: null });
    expect(await waitForLog('robot-ai.service', 'up as brain')).toContain('up as brain');
  });

  it('starting a running unit keeps the same process', async () => {
    const m = manager();
    await m.start('robot-ai-web.service');
    const pid = await pidOf('robot-ai-web.service');
    await m.start('robot-ai-web.service');
    expect(await pidOf('robot-ai-web.service')).toBe(pid);
  });

  it('a new manager instance (a restarted daemon) finds, restarts and stops what an earlier one started', async () => {
    await manager().start('robot-ai.service');
    const firstPid = await pidOf('robot-ai.service');

    const after = manager();
    expect(await after.isActive('robot-ai.service')).toBe(true);
    await after.restart('robot-ai.service');
    const secondPid = await pidOf('robot-ai.service');
    expect(secondPid).not.toBe(firstPid);
    expect(isProcessAlive(firstPid)).toBe(false);

    await manager().stop('robot-ai.service');
    expect(isProcessAlive(secondPid)).toBe(false);
    expect(await manager().isActive('robot-ai.service')).toBe(false);
  });

  it('kills a unit that ignores SIGTERM once the stop timeout passes', async () => {
    const logger = new MemoryLogger();
    const m = createProcessServiceManager({ units, stateDir, logger, stopTimeoutMs: 200 });
    await m.start('stubborn.service');
    const pid = await pidOf('stubborn.service');
    await waitForLog('stubborn.service', 'ignoring TERM'); // the trap is in place
    await m.stop('stubborn.service');
    expect(isProcessAlive(pid)).toBe(false);
    expect(logger.lines.some((l) => l.message.includes('SIGKILL'))).toBe(true);
  });

  it('reports a unit whose process died without a stop as failed', async () => {
    const m = manager();
    await m.start('robot-ai-web.service');
    process.kill(await pidOf('robot-ai-web.service'), 'SIGKILL');
    for (let i = 0; i < 250 && (await m.isActive('robot-ai-web.service')); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await m.status('robot-ai-web.service')).toMatchObject({ active: false, state: 'failed' });
  });

  it('fails with SERVICE_FAILED for a command that cannot start or a unit it does not know', async () => {
    units.push({ name: 'missing.service', command: ['/nonexistent/robot-ai'] });
    const m = manager();
    await expect(m.start('missing.service')).rejects.toMatchObject({ code: 'SERVICE_FAILED' });
    await expect(m.start('unknown.service')).rejects.toMatchObject({ code: 'SERVICE_FAILED' });
  });

  it('startAll starts in order and stopAll stops in reverse order', async () => {
    const m = manager();
    const order = ['robot-ai.service', 'robot-ai-web.service'];
    expect(await startAll(m, order, silentLogger)).toEqual(order);
    expect(await m.isActive('robot-ai-web.service')).toBe(true);
    expect(await stopAll(m, order, silentLogger)).toEqual(['robot-ai-web.service', 'robot-ai.service']);
    expect(await m.isActive('robot-ai.service')).toBe(false);
  });
});

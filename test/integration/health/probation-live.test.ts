import * as fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { createProbes, type HealthCheck } from '../../../src/health/checks.js';
import { runProbation } from '../../../src/health/probation.js';
import { realSleep } from '../../../src/health/sleep.js';
import type { ServiceManager } from '../../../src/services/service-manager.js';

let server: http.Server;
let base: string;
let mode: 'ok' | 'error' | 'hang' = 'ok';
let hits = 0;
let releaseDir: string;

const services: ServiceManager = {
  stop: async () => {},
  start: async () => {},
  restart: async () => {},
  isActive: async () => true,
  status: async () => ({ active: true, state: 'active/running', restarts: 0 }),
};

beforeAll(async () => {
  server = http.createServer((req, res) => {
    hits += 1;
    if (mode === 'hang') return; // never answers
    res.statusCode = mode === 'ok' ? 200 : 503;
    res.end(mode === 'ok' ? '{"status":"ok"}' : 'starting');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  releaseDir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-health-'));
  await fs.writeFile(path.join(releaseDir, 'VERSION'), '2.0.0\n');
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await fs.rm(releaseDir, { recursive: true, force: true });
});

function probation(checks: HealthCheck[]) {
  return runProbation({
    checks: createProbes(checks, { services, releaseDir, expectedVersion: '2.0.0' }),
    windowMs: 300,
    intervalMs: 50,
    failureThreshold: 2,
    clock: systemClock,
    sleep: realSleep,
  });
}

describe('probation against real checks', () => {
  it('passes with a healthy loopback HTTP endpoint, a command, a version file and an active unit', async () => {
    mode = 'ok';
    hits = 0;
    const result = await probation([
      { kind: 'http', url: `${base}/health`, timeoutMs: 10_000 },
      { kind: 'command', command: ['sh', '-c', 'test -f VERSION'], timeoutMs: 10_000 },
      { kind: 'version', file: 'VERSION' },
      { kind: 'unit', unit: 'robot-ai.service' },
    ]);
    expect(result.passed).toBe(true);
    // How many rounds fit in the window depends on the machine's load: only their agreement is checked.
    expect(result.rounds).toBeGreaterThanOrEqual(1);
    expect(hits).toBe(result.rounds);
    expect(result.checks.map((c) => c.lastOk)).toEqual([true, true, true, true]);
  });

  it('fails with HEALTH_CHECK_FAILED when the endpoint keeps answering 503', async () => {
    mode = 'error';
    await expect(probation([{ kind: 'http', url: `${base}/health`, timeoutMs: 10_000 }])).rejects.toMatchObject({
      code: 'HEALTH_CHECK_FAILED',
      details: { check: `${base}/health`, lastMessage: `${base}/health answered 503, expected 2xx` },
    });
  });

  it('fails with HEALTH_CHECK_TIMEOUT when the endpoint accepts the connection but never answers', async () => {
    mode = 'hang';
    await expect(probation([{ kind: 'http', url: `${base}/health`, timeoutMs: 150 }])).rejects.toMatchObject({ code: 'HEALTH_CHECK_TIMEOUT' });
  });

  it('fails a version check when the release reports another version', async () => {
    await expect(probation([{ kind: 'version', command: ['echo', 'robot-ai 1.9.0'], expect: '2.0.0', timeoutMs: 10_000 }])).rejects.toMatchObject({
      code: 'HEALTH_CHECK_FAILED',
      details: { lastMessage: 'reports "robot-ai 1.9.0", expected 2.0.0' },
    });
  });

  it('fails a command check that hangs with HEALTH_CHECK_TIMEOUT', async () => {
    await expect(probation([{ kind: 'command', command: ['sleep', '30'], timeoutMs: 150 }])).rejects.toMatchObject({ code: 'HEALTH_CHECK_TIMEOUT' });
  });
});

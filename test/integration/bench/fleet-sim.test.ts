/**
 * `fleet-sim --quick` (spawned from dist: `npm run build` first) on SQLite and on a real PostgreSQL
 * with two servers: the output is complete and its counts add up (every robot checked in, nothing
 * refused or lost, the database holds the fleet). No timing is asserted: the figures are measurements.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { postgresUnavailable } from '../../support/postgres.js';

const SIM = path.resolve('dist/src/bench/fleet-sim.js');
const run = promisify(execFile);
const noPostgres = postgresUnavailable();
if (noPostgres !== null) console.warn(`fleet-sim on PostgreSQL skipped: ${noPostgres}`);

interface Figures {
  db: string;
  servers: number;
  robots: number;
  sent: number;
  accepted: number;
  refused: number;
  otherStatus: number;
  unreached: number;
  robotsCheckedIn: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  peakInFlight: number;
  peakFraction: number;
  simulatorLoopDelay: { p50Ms: number; p99Ms: number; maxMs: number };
  databaseBytes: number;
  databaseRows: { devices: number; checkins: number };
  clientWarnings: number;
  serverErrors: number;
  halt: { unavailable: string } | { haltedAt: number | null; firstBatch: number; injectedFailures: number; startsBeforeHalt: number; startsAfterHalt: number; startsOutsideFirstBatch: number; sent: number; accepted: number };
}

async function sim(args: string[]): Promise<{ stdout: string; figures: Figures[] }> {
  const { stdout } = await run(process.execPath, [SIM, '--quick', '--robots', '60', '--json', ...args], {
    timeout: 240_000,
    maxBuffer: 1 << 22,
  });
  const line = stdout.split('\n').find((l) => l.startsWith('FLEET-SIM-JSON '));
  expect(line, stdout).toBeDefined();
  return { stdout, figures: JSON.parse(line!.slice('FLEET-SIM-JSON '.length)) as Figures[] };
}

function expectSane(f: Figures, stdout: string): void {
  expect(f.robots).toBe(60);
  // Every robot checked in, and every check-in sent was answered 200.
  expect(f.robotsCheckedIn, stdout).toBe(60);
  expect(f.sent).toBeGreaterThanOrEqual(60);
  expect(f.accepted + f.refused + f.otherStatus + f.unreached).toBe(f.sent);
  expect({ refused: f.refused, otherStatus: f.otherStatus, unreached: f.unreached, clientWarnings: f.clientWarnings, serverErrors: f.serverErrors }).toEqual({ refused: 0, otherStatus: 0, unreached: 0, clientWarnings: 0, serverErrors: 0 });
  expect(f.perSecond).toBeGreaterThan(0);
  expect(f.p50Ms).toBeGreaterThan(0);
  expect(f.p50Ms).toBeLessThanOrEqual(f.p99Ms);
  expect(f.p99Ms).toBeLessThanOrEqual(f.maxMs);
  expect(f.peakInFlight).toBeGreaterThanOrEqual(1);
  expect(f.peakFraction).toBeCloseTo(f.peakInFlight / 60, 10);
  expect(f.simulatorLoopDelay.p50Ms).toBeGreaterThanOrEqual(0);
  expect(f.simulatorLoopDelay.p50Ms).toBeLessThanOrEqual(f.simulatorLoopDelay.p99Ms);
  expect(f.simulatorLoopDelay.p99Ms).toBeLessThanOrEqual(f.simulatorLoopDelay.maxMs);
  expect(f.databaseRows.devices).toBe(60);
  expect(f.databaseRows.checkins).toBeGreaterThanOrEqual(60);
  expect(f.databaseBytes).toBeGreaterThan(0);
  for (const label of ['check-ins per second', 'latency p50 / p99 / max', 'peak concurrent check-ins', "simulator's loop delay", 'database size', 'load average']) expect(stdout).toContain(label);
  if ('unavailable' in f.halt) {
    expect(f.halt.unavailable).toBe('needs rollouts on the server');
    expect(stdout).toContain('halt latency: needs rollouts on the server');
  } else {
    // The injected failures halted the rollout; every install started is counted once.
    expect(f.halt.haltedAt, stdout).not.toBeNull();
    expect(f.halt.injectedFailures).toBeGreaterThanOrEqual(1);
    expect(f.halt.injectedFailures).toBeLessThanOrEqual(f.halt.firstBatch);
    expect(f.halt.startsBeforeHalt + f.halt.startsAfterHalt).toBeLessThanOrEqual(60);
    expect(f.halt.accepted).toBe(f.halt.sent);
    expect(stdout).toMatch(/halt latency +the last install started/);
    expect(stdout).toMatch(/outside the halted batch +\d+ robots started the release/);
  }
}

describe('npm run fleet-sim', () => {
  it('--quick on SQLite: every robot checks in, the counts add up, every figure is printed', async () => {
    const { stdout, figures } = await sim(['--db', 'sqlite']);
    expect(figures.map((f) => [f.db, f.servers])).toEqual([['sqlite', 1]]);
    expectSane(figures[0]!, stdout);
    expect(stdout).toContain('goal: ≤ 1/20 (5 %)');
  }, 300_000);

  it.skipIf(noPostgres !== null)('--quick on PostgreSQL with two servers: the same, through both processes', async () => {
    const { stdout, figures } = await sim(['--db', 'postgres', '--servers', '2', ...(process.env.OTA_TEST_PG_URL ? ['--pg-url', process.env.OTA_TEST_PG_URL] : [])]);
    expect(figures.map((f) => [f.db, f.servers])).toEqual([['postgres', 2]]);
    expectSane(figures[0]!, stdout);
    expect(stdout).toMatch(/goal: p99 < 50 ms at 200\/s on PostgreSQL with 2 servers: (PASS|MISS)/);
  }, 300_000);

  it('refuses a run too short for every robot to check in', async () => {
    await expect(run(process.execPath, [SIM, '--window', '10s', '--duration', '5s'])).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining('shorter than one --window') });
  });
});

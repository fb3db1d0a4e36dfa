/**
 * The daemon in-process on a real SQLite file with fake steps: persistence of every transition,
 * the control surface, one update at a time across products, foreign snapshots, and the process's
 * signals (SIGHUP reload, SIGTERM clean stop) on a real otad.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { type StepProvider } from '../../../src/daemon/step-provider.js';
import { notConfiguredStepProvider } from '../../../src/steps/not-configured.js';
import { fakeStepProvider, type FakeStepsSpec } from '../../support/fake-steps.js';
import { assertNoGap, makeSandbox, query, readSaved, REPO_ROOT, spawnOtad, waitUntil, type OtadProcess, type Sandbox } from '../../support/otad-process.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'otad-daemon-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function daemonWith(spec: FakeStepsSpec, raw: Record<string, unknown> = {}, dir = tmp(), provider: StepProvider = fakeStepProvider(spec)) {
  const config = buildConfig({
    paths: { stateDir: join(dir, 'state') },
    decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
    products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') }],
    ...raw,
  });
  const logging = createLogging({ level: 'debug', stdout: false });
  const daemon = new Daemon({ config, logging, clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
  await daemon.start();
  cleanups.push(() => daemon.stop(0));
  return { daemon, dir, config, logging };
}

const stateOf = (d: Daemon, product = 'robot-ai') => d.status().products.find((p) => p.product === product)!;

describe('the daemon', () => {
  it('persists every transition of a run with its event, in order, with no gap', async () => {
    const { daemon } = await daemonWith({});
    const seen: string[] = [];
    daemon.bus.subscribe('transition', (t) => void seen.push(`${t.from}>${t.to}`));
    await daemon.dispatch({ product: 'robot-ai', type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => stateOf(daemon).state === 'awaitingChoice');
    expect(stateOf(daemon).allowedEvents.sort()).toEqual(['CANCEL', 'SCHEDULE_3AM', 'UPDATE_NOW']);
    expect(stateOf(daemon).notification).toMatchObject({ version: '2.0.0' });
    await daemon.dispatch({ product: 'robot-ai', type: 'UPDATE_NOW', source: 'rest', actor: 'robot-ai-app' });
    await waitUntil(() => stateOf(daemon).state === 'idle' && stateOf(daemon).lastOutcome === 'committed');
    const rows = daemon.transitions({ product: 'robot-ai', limit: 100 });
    assertNoGap(rows.map((r) => ({ seq: r.seq, from_state: r.from, to_state: r.to })));
    expect(rows.map((r) => r.to)).toEqual(['idle', 'checking', 'awaitingChoice', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']);
    expect(rows.every((r) => r.machineVersion === 1)).toBe(true);
    const run = daemon.history({ product: 'robot-ai' })[0]!;
    expect(run).toMatchObject({ kind: 'update', fromVersion: null, toVersion: '2.0.0', outcome: 'committed', state: 'idle' });
    expect(run.endedAt).not.toBeNull();
    expect(daemon.store.choices('robot-ai')[0]).toMatchObject({ choice: 'UPDATE_NOW', source: 'rest' });
    expect(daemon.audit().map((a) => a.kind)).toEqual(expect.arrayContaining(['api-control', 'install']));
    await waitUntil(() => seen.length >= 9);
    expect(seen.at(-1)).toBe('commit>idle');
  });

  it('refuses an event that is not one of its events, listing the two choices', async () => {
    const { daemon } = await daemonWith({});
    await expect(daemon.dispatch({ type: 'UPDATE_TONIGHT', source: 'rest' })).rejects.toMatchObject({
      code: 'API_INVALID_EVENT',
      message: expect.stringContaining('UPDATE_NOW and SCHEDULE_3AM'),
    });
  });

  it('refuses an event not allowed in the current state, naming the state and what is allowed', async () => {
    const { daemon } = await daemonWith({});
    await expect(daemon.dispatch({ type: 'UPDATE_NOW', source: 'dbus' })).rejects.toMatchObject({
      code: 'API_EVENT_NOT_ALLOWED',
      details: { state: 'idle', allowed: ['CHECK_NOW', 'ROLLBACK'] },
    });
  });

  it('schedules SCHEDULE_3AM at the next local install slot plus this device’s delay', async () => {
    const { daemon } = await daemonWith({}, { schedule: { installAt: '03:00', timeZone: 'Europe/Berlin', window: '30m' } });
    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => stateOf(daemon).state === 'awaitingChoice');
    await daemon.dispatch({ type: 'SCHEDULE_3AM', source: 'socket' });
    const at = stateOf(daemon).deadlines.scheduledAt!;
    expect(at).toBeGreaterThan(Date.now());
    const local = new Intl.DateTimeFormat('en-GB', { timeZone: 'Europe/Berlin', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(at);
    expect(local >= '03:00' && local < '03:30').toBe(true);
  });

  it('lets only one product touch the robot at a time', async () => {
    const dir = tmp();
    const { daemon } = await daemonWith(
      { delayMs: { backup: 400, stage: 400, apply: 400, validate: 400 } },
      {
        decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '1h' },
        products: [
          { name: 'robot-ai', installPath: join(dir, 'opt/robot-ai') },
          { name: 'robot-ai-telemetry', installPath: join(dir, 'opt/robot-ai-telemetry'), precheck: { retryInterval: '300ms' } },
        ],
      },
      dir,
    );
    const busy = new Set(['backup', 'staging', 'apply', 'validate', 'commit', 'rollback']);
    let overlap = false;
    daemon.bus.subscribe('transition', () => {
      const states = daemon.status().products.map((p) => p.state);
      if (states.filter((s) => busy.has(s)).length > 1) overlap = true;
    });
    for (const product of ['robot-ai', 'robot-ai-telemetry']) await daemon.dispatch({ product, type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => daemon.status().products.every((p) => p.state === 'awaitingChoice'));
    await daemon.dispatch({ product: 'robot-ai', type: 'UPDATE_NOW', source: 'cli' });
    await daemon.dispatch({ product: 'robot-ai-telemetry', type: 'UPDATE_NOW', source: 'cli' });
    await waitUntil(() => daemon.status().products.every((p) => p.state === 'idle' && p.lastOutcome === 'committed'), { timeoutMs: 30_000 });
    expect(overlap).toBe(false);
    const waited = daemon.transitions({ product: 'robot-ai-telemetry', limit: 100 }).some((t) => t.to === 'preCheckWaiting');
    expect(waited).toBe(true);
  });

  it('says so when no real steps are configured, instead of pretending to update', async () => {
    const { daemon, logging } = await daemonWith({}, {}, tmp(), notConfiguredStepProvider);
    expect(daemon.status().stepsConfigured).toBe(false);
    expect(logging.tail({ level: 'warn' }).some((l) => l.message.includes('no real update steps are configured'))).toBe(true);
    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => stateOf(daemon).lastOutcome === 'failed');
    expect(stateOf(daemon).error?.code).toBe('STEP_NOT_CONFIGURED');
  });

  it('exports a run with its events and snapshots', async () => {
    const { daemon } = await daemonWith({ offerVersion: null });
    const { runId } = await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => stateOf(daemon).lastOutcome === 'up-to-date');
    const exported = daemon.exportRun(runId!);
    expect(exported.format).toBe('otad-run/1');
    expect(exported.transitions.map((t) => t.to)).toEqual(['checking', 'idle']);
    expect(exported.transitions.every((t) => t.snapshot !== undefined)).toBe(true);
    expect((exported.initialSnapshot as { value: string }).value).toBe('idle');
    expect(() => daemon.exportRun('nope')).toThrow(expect.objectContaining({ code: 'API_NOT_FOUND' }));
  });

  it('never restores a snapshot written by another machine version, and never crashes on it', async () => {
    const dir = tmp();
    const first = await daemonWith({ delayMs: { validate: 60_000 } }, { decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '0' } }, dir);
    await first.daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => stateOf(first.daemon).state === 'validate');
    await first.daemon.stop(0);
    const db = new Database(join(dir, 'state/otad.db'));
    db.prepare('UPDATE snapshots SET machine_version = 99').run();
    db.close();
    const second = await daemonWith({}, {}, dir);
    await waitUntil(() => stateOf(second.daemon).state === 'idle');
    expect(stateOf(second.daemon)).toMatchObject({ lastOutcome: 'rolled-back', recovery: { action: 'rollback' } });
    const rows = second.daemon.transitions({ product: 'robot-ai', limit: 100 });
    assertNoGap(rows.map((r) => ({ seq: r.seq, from_state: r.from, to_state: r.to })));
    expect(rows.find((r) => r.eventType === 'otad.recovery')).toMatchObject({ from: 'validate', to: 'rollback' });
  });

  it('survives a snapshot that is not even JSON', async () => {
    const dir = tmp();
    const first = await daemonWith({}, {}, dir);
    await first.daemon.stop(0);
    const db = new Database(join(dir, 'state/otad.db'));
    db.prepare("UPDATE snapshots SET snapshot = '{not json', state = 'staging'").run();
    db.close();
    const second = await daemonWith({}, {}, dir);
    expect(stateOf(second.daemon)).toMatchObject({ state: 'idle', recovery: { action: 'abort' } });
  });
});

describe('the otad process', () => {
  let sandbox: Sandbox;
  let proc: OtadProcess | null = null;
  afterEach(async () => {
    await proc?.kill('SIGKILL');
    proc = null;
    rmSync(sandbox.dir, { recursive: true, force: true });
  });

  it('reloads its configuration on SIGHUP, reporting what changed or why a new file was refused', async () => {
    sandbox = makeSandbox();
    proc = spawnOtad(sandbox, { entry: 'source' });
    await proc.ready();
    const doc = YAML.parse(readFileSync(sandbox.configPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(sandbox.configPath, YAML.stringify({ ...doc, logging: { level: 'debug' }, decision: { choiceTimeout: '2h' } }));
    proc.child.kill('SIGHUP');
    await waitUntil(() => readFileSync(sandbox.logPath, 'utf8').includes('"message":"configuration reloaded"'), { what: 'reload' });
    const line = readFileSync(sandbox.logPath, 'utf8').split('\n').find((l) => l.includes('"message":"configuration reloaded"'))!;
    const report = JSON.parse(line) as { changed: string[]; applied: string[]; needsRestart: string[] };
    expect(report.changed).toEqual(expect.arrayContaining(['decision.choiceTimeout', 'logging.level', 'products.robot-ai.decision.choiceTimeout']));
    expect(report.applied).toEqual(report.changed);
    expect(report.needsRestart).toEqual([]);
    writeFileSync(sandbox.configPath, 'products: [ {name: robot-ai, installPath: relative/path} ]\n');
    proc.child.kill('SIGHUP');
    await waitUntil(() => readFileSync(sandbox.logPath, 'utf8').includes('configuration reload refused'), { what: 'refusal' });
    expect(readFileSync(sandbox.logPath, 'utf8')).toContain('expected an absolute path');
    expect(proc.alive()).toBe(true);
    const exit = await proc.kill('SIGTERM');
    expect(exit.code).toBe(0);
    expect(readFileSync(sandbox.logPath, 'utf8')).toContain('otad stopped cleanly');
  }, 60_000);

  it('refuses to start a second daemon on the same state folder', async () => {
    sandbox = makeSandbox();
    proc = spawnOtad(sandbox, { entry: 'source' });
    await proc.ready();
    const second = spawnOtad(sandbox, { entry: 'source' });
    const exit = await second.exited;
    expect(exit.code).toBe(1);
    expect(readFileSync(sandbox.logPath, 'utf8')).toContain('ALREADY_RUNNING');
  }, 60_000);

  it('shows the saved state through otactl status', async () => {
    sandbox = makeSandbox();
    proc = spawnOtad(sandbox, { entry: 'source' });
    await proc.ready();
    await waitUntil(() => readSaved(sandbox.dbPath)?.state === 'idle');
    // This daemon serves no API: otactl shows what it saved, and exits 5 because it cannot ask it.
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/otactl.ts'), '--config', sandbox.configPath, 'status', '--json'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    });
    expect(r.status).toBe(5);
    expect(r.stdout).toContain('"product": "robot-ai"');
    expect(r.stderr).toContain('not reachable');
    expect(query<{ n: number }>(sandbox.dbPath, 'SELECT COUNT(*) AS n FROM transitions')[0]!.n).toBeGreaterThan(0);
  }, 60_000);
});

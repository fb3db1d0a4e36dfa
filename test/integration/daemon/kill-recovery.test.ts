/**
 * A real otad process with slow fake steps, SIGKILLed in each state in turn (every state of the
 * machine, from idle to failed) and restarted on the
 * same database: the run continues or rolls back as the recovery table says, the transition log
 * has no gap, and the daemon never crashes on restore.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { assertNoGap, makeSandbox, query, readSaved, spawnOtad, waitUntil, type OtadProcess, type Sandbox } from '../../support/otad-process.js';
import type { Invocation } from '../../support/fake-steps.js';

const STEP_MS = 600;
const sandboxes: Sandbox[] = [];
const procs: OtadProcess[] = [];

afterEach(async () => {
  for (const p of procs.splice(0)) await p.kill('SIGKILL');
  for (const s of sandboxes.splice(0)) if (!process.env.OTA_TEST_KEEP) rmSync(s.dir, { recursive: true, force: true });
});

function sandbox(extra: Record<string, unknown> = {}): Sandbox {
  const s = makeSandbox({
    decision: { defaultChoice: 'UPDATE_NOW', choiceTimeout: '1s' },
    ...extra,
  });
  sandboxes.push(s);
  return s;
}

function start(s: Sandbox, fake: Record<string, unknown>, first = false): OtadProcess {
  const p = spawnOtad(s, { fake, env: first ? { OTA_TEST_CHECK_ON_START: '1' } : {} });
  procs.push(p);
  return p;
}

type Row = { seq: number; from_state: string; to_state: string; event_type: string; run_id: string | null };

function transitions(s: Sandbox): Row[] {
  return query<Row>(s.dbPath, 'SELECT seq, from_state, to_state, event_type, run_id FROM transitions WHERE product = ? ORDER BY seq', 'robot-ai');
}

function invocations(file: string): Invocation[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Invocation);
}

async function killIn(s: Sandbox, p: OtadProcess, state: string, extra: () => boolean = () => true): Promise<void> {
  await waitUntil(() => readSaved(s.dbPath)?.state === state && extra(), { what: `state ${state}`, timeoutMs: 60_000, intervalMs: 5 });
  expect(p.alive()).toBe(true);
  const exit = await p.kill('SIGKILL');
  expect(exit.signal).toBe('SIGKILL');
}

async function settle(s: Sandbox, state: string, outcome: string | null): Promise<void> {
  await waitUntil(
    () => {
      const saved = readSaved(s.dbPath);
      return saved?.state === state && (outcome === null || saved.context.lastOutcome === outcome);
    },
    { what: `settling in ${state} (${outcome})`, timeoutMs: 60_000 },
  );
}

describe('otad killed in each state', () => {
  it('continues a run killed in every state from checking to commit, and commits it', async () => {
    const s = sandbox();
    const logFile = join(s.dir, 'steps.jsonl');
    const marker = join(s.dir, 'switched');
    const fake = {
      delayMs: { check: STEP_MS, preCheck: STEP_MS, backup: STEP_MS, stage: STEP_MS, apply: 2 * STEP_MS, validate: STEP_MS, commit: STEP_MS },
      logFile,
      switchMarker: marker,
    };
    let p = start(s, fake, true);
    const exists = () => {
      try {
        readFileSync(marker);
        return true;
      } catch {
        return false;
      }
    };
    // Killed mid-step: once this process has saved the state and started the state's step (a
    // loaded machine can leave a gap between the two, and a kill in it would re-run nothing).
    const startedHere = (step: string, proc: OtadProcess) => () => existsSync(logFile) && invocations(logFile).some((i) => i.step === step && i.phase === 'start' && i.pid === proc.child.pid);
    for (const [state, step, extra] of [
      ['checking', 'check', undefined],
      ['awaitingChoice', null, undefined],
      ['preCheck', 'preCheck', undefined],
      ['backup', 'backup', undefined],
      ['staging', 'stage', undefined],
      ['apply', 'apply', exists],
      ['validate', 'validate', undefined],
      ['commit', 'commit', undefined],
    ] as const) {
      const here = step === null ? () => true : startedHere(step, p);
      await killIn(s, p, state, () => (extra === undefined || extra()) && here());
      p = start(s, fake);
    }
    await settle(s, 'idle', 'committed');
    // Idle is a state too: killed there, it stays there.
    await p.kill('SIGKILL');
    p = start(s, fake);
    await p.ready();
    expect(p.alive()).toBe(true);
    expect(readSaved(s.dbPath)?.state).toBe('idle');

    const rows = transitions(s);
    assertNoGap(rows);
    const runId = rows.find((r) => r.to_state === 'checking')!.run_id;
    expect(rows.every((r) => r.run_id === runId || r.from_state === '(none)')).toBe(true);
    expect(rows.map((r) => r.to_state)).toEqual(['idle', 'checking', 'awaitingChoice', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']);
    const run = query<{ outcome: string; to_version: string }>(s.dbPath, 'SELECT outcome, to_version FROM runs WHERE run_id = ?', runId)[0]!;
    expect(run).toEqual({ outcome: 'committed', to_version: '2.0.0' });

    // Every step finished for this run, none was skipped by a restore, and nothing rolled back.
    const all = invocations(logFile);
    const starts = all.filter((i) => i.phase === 'start');
    for (const step of ['check', 'preCheck', 'backup', 'stage', 'apply', 'validate', 'commit']) {
      expect(all.some((i) => i.step === step && i.phase === 'end'), `${step} finished`).toBe(true);
    }
    // The kills landed mid-step: most steps were started in more than one process.
    const rerun = ['check', 'preCheck', 'backup', 'stage', 'apply', 'validate', 'commit'].filter(
      (step) => new Set(starts.filter((i) => i.step === step).map((i) => i.pid)).size > 1,
    );
    expect(rerun.length).toBeGreaterThanOrEqual(4);
    expect(starts.some((i) => i.step === 'rollback')).toBe(false);
    await p.kill('SIGTERM');
  }, 240_000);

  it('rolls back a run killed in apply before the switch, and finishes a rollback killed midway', async () => {
    const s = sandbox();
    const logFile = join(s.dir, 'steps.jsonl');
    const marker = join(s.dir, 'switched');
    const fake = { delayMs: { apply: 4 * STEP_MS, rollback: 2 * STEP_MS }, logFile, switchMarker: marker };
    let p = start(s, fake, true);
    await killIn(s, p, 'apply', () => {
      try {
        readFileSync(marker);
        return false;
      } catch {
        return true;
      }
    });
    p = start(s, fake);
    await killIn(s, p, 'rollback');
    p = start(s, fake);
    await settle(s, 'idle', 'rolled-back');

    const rows = transitions(s);
    assertNoGap(rows);
    const recovery = rows.find((r) => r.event_type === 'otad.recovery');
    expect(recovery).toMatchObject({ from_state: 'apply', to_state: 'rollback' });
    expect(rows.at(-1)).toMatchObject({ from_state: 'rollback', to_state: 'idle' });
    const starts = invocations(logFile).filter((i) => i.phase === 'start');
    expect(starts.filter((i) => i.step === 'rollback').length).toBeGreaterThanOrEqual(1);
    expect(invocations(logFile).filter((i) => i.step === 'rollback' && i.phase === 'end').length).toBe(1);
    expect(starts.some((i) => i.step === 'validate')).toBe(false);
    const audit = query<{ message: string }>(s.dbPath, "SELECT message FROM audit WHERE kind = 'recovery'");
    expect(audit.some((a) => a.message.includes('rollback'))).toBe(true);
    await p.kill('SIGTERM');
  }, 180_000);

  it('ends a run that keeps crashing the daemon in the same state (crash-loop guard)', async () => {
    const s = sandbox({ recovery: { maxRestoresPerState: 3 } });
    const fake = { crashIn: 'backup' };
    let p = start(s, fake, true);
    for (let i = 0; i < 4; i++) {
      const exit = await p.exited;
      expect(exit.signal).toBe('SIGKILL');
      expect(readSaved(s.dbPath)?.state).toBe('backup');
      p = start(s, fake);
    }
    await settle(s, 'idle', 'aborted');
    expect(p.alive()).toBe(true);
    const saved = readSaved(s.dbPath)!;
    expect((saved.context.error as { code: string }).code).toBe('RECOVERY_CRASH_LOOP');
    const restores = query<{ count: number }>(s.dbPath, "SELECT count FROM restores WHERE state = 'backup'");
    expect(restores[0]!.count).toBe(4);
    assertNoGap(transitions(s));
    await p.kill('SIGTERM');
  }, 180_000);

  it('resumes a run killed while waiting: for a pre-check retry, and for the scheduled time', async () => {
    const s = sandbox({ products: [{ name: 'robot-ai', installPath: '/tmp/otad-no-such-install/robot-ai', precheck: { retryInterval: '1500ms' } }] });
    const fake = { preCheckFailures: 1 };
    let p = start(s, fake, true);
    await killIn(s, p, 'preCheckWaiting');
    p = start(s, {});
    await settle(s, 'idle', 'committed');
    assertNoGap(transitions(s));
    await p.kill('SIGTERM');

    const t = sandbox({ decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '200ms' } });
    p = start(t, {}, true);
    await waitUntil(() => readSaved(t.dbPath)?.state === 'scheduled', { what: 'scheduled' });
    const scheduledAt = readSaved(t.dbPath)!.context.scheduledAt as number;
    expect(scheduledAt).toBeGreaterThan(Date.now());
    await p.kill('SIGKILL');
    p = start(t, {});
    await p.ready();
    expect(p.alive()).toBe(true);
    expect(readSaved(t.dbPath)).toMatchObject({ state: 'scheduled', context: expect.objectContaining({ scheduledAt }) });
    const exit = await p.kill('SIGTERM');
    expect(exit.code).toBe(0);
  }, 180_000);

  it('keeps an UPDATE_NOW waiting for its confirmation across a kill, with the same deadline', async () => {
    const s = sandbox({ decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h', confirmTimeout: '1h' } });
    let p = spawnOtad(s, { fake: {}, env: { OTA_TEST_CHECK_ON_START: '1', OTA_TEST_UPDATE_NOW_ON_OFFER: '1' } });
    procs.push(p);
    await killIn(s, p, 'confirming');
    const deadline = readSaved(s.dbPath)!.context.confirmDeadline as number;
    p = start(s, {});
    await p.ready();
    expect(readSaved(s.dbPath)).toMatchObject({ state: 'confirming', context: expect.objectContaining({ confirmDeadline: deadline }) });
    assertNoGap(transitions(s));
    await p.kill('SIGTERM');
  }, 120_000);

  it('keeps a failed run failed across a kill, and the daemon keeps serving', async () => {
    const s = sandbox();
    const fake = { fail: { validate: 'HEALTH_CHECK_FAILED', rollback: 'ROLLBACK_FAILED' } };
    let p = start(s, fake, true);
    await settle(s, 'failed', null);
    await p.kill('SIGKILL');
    p = start(s, fake);
    await p.ready();
    expect(p.alive()).toBe(true);
    expect(readSaved(s.dbPath)?.state).toBe('failed');
    assertNoGap(transitions(s));
    await p.kill('SIGTERM');
  }, 120_000);
});

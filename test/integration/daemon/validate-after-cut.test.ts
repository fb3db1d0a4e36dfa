/**
 * A good release is not marked bad by the validation that follows an interruption. The demo
 * product under a real otad process (the built CLI), its releases published to an embedded
 * ota-server, each new release's service taking seconds to start answering /health (it sleeps
 * before it listens). otad and the service are SIGKILLed together, as a power cut kills them, in
 * validate or in apply after the services were started (journal `services-started`); otad is
 * started again on the same state. The restarted validation starts the services, gives them the
 * product's probation from then, and only then judges: the good release is committed, no release
 * is marked bad, and the transition into commit records that the validation restarted. A broken
 * release interrupted in validate is still rolled back and marked bad. No wall-clock figure is
 * asserted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PRODUCT, startDowntimeWorld, waitFor, type DowntimeWorld } from '../../../src/bench/downtime-world.js';
import type { RestartedValidation } from '../../../machines/types.js';

// The product's start-up allowance is its probation: 40 rounds 250 ms apart may fail before the
// release is judged; the new releases take 2.5 s to listen.
const PROBATION = { window: '3s', interval: '250ms', failureThreshold: 40 };
const START_DELAY_MS = 2500;
const TIMEOUT = 240_000;

let w: DowntimeWorld | null = null;
afterEach(async () => {
  await w?.close();
  w = null;
});

interface Transition {
  from: string;
  to: string;
  eventType: string;
  event: { output?: { result?: { restarted?: RestartedValidation } }; error?: { error?: { message?: string; details?: { restarted?: RestartedValidation } } } };
}

interface Releases {
  releases: Array<{ version: string; installed: boolean; bad: { reason: string } | null }>;
}

/** CHECK_NOW and UPDATE_NOW on the offer; returns the run id. */
async function startUpdate(world: DowntimeWorld, version: string): Promise<string> {
  await world.app.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
  const offered = await waitFor(`the offer of ${version}`, async () => {
    const s = await world.status();
    return s.state === 'awaitingChoice' ? s : null;
  });
  expect(offered.offeredVersion).toBe(version);
  await world.app.request('POST', '/api/v1/events', { product: PRODUCT, type: 'UPDATE_NOW' });
  return offered.runId as string;
}

/** After the restart: the run ends (idle with an outcome). */
async function runEnd(world: DowntimeWorld, runId: string) {
  return waitFor(
    'the interrupted run to end',
    async () => {
      const s = await world.status().catch(() => null);
      return s !== null && s.runId === runId && s.state === 'idle' && s.lastOutcome !== null ? s : null;
    },
    TIMEOUT,
  );
}

async function transitions(world: DowntimeWorld, runId: string): Promise<Transition[]> {
  return (await world.app.request<{ transitions: Transition[] }>('GET', `/api/v1/transitions?runId=${runId}&limit=1000`)).transitions;
}

async function releases(world: DowntimeWorld): Promise<Releases['releases']> {
  return (await world.app.request<Releases>('GET', `/api/v1/products/${PRODUCT}/releases`)).releases;
}

describe('the validation after an interruption', () => {
  it(
    'otad and the service SIGKILLed in validate: the restarted validation waits for the slow service and commits the good release',
    async () => {
      w = await startDowntimeWorld({ probation: PROBATION, checkins: false });
      await w.publish('1.1.0', { startDelayMs: START_DELAY_MS });
      const runId = await startUpdate(w, '1.1.0');
      await waitFor('validate', async () => (await w!.status()).state === 'validate', TIMEOUT, 20);
      await w.killOtadAndService();
      expect(await w.health()).toBeNull();

      await w.startOtad();
      const end = await runEnd(w, runId);
      expect(end).toMatchObject({ lastOutcome: 'committed', installedVersion: '1.1.0' });
      expect(await w.health()).toEqual({ ok: true, version: '1.1.0' });
      expect((await releases(w)).filter((r) => r.bad !== null)).toEqual([]);
      const run = (await w.history()).runs.find((r) => r.runId === runId);
      expect(run).toMatchObject({ outcome: 'committed', toVersion: '1.1.0' });

      const toCommit = (await transitions(w, runId)).find((t) => t.from === 'validate' && t.to === 'commit');
      const restarted = toCommit?.event.output?.result?.restarted;
      expect(restarted).toMatchObject({ interruptedIn: 'validate' });
      // The unit was up again before the probation started over: otad started it, at its own start or in the validation.
      expect([...restarted!.startedUnits, ...restarted!.runningUnits]).toEqual([PRODUCT]);
      expect(restarted!.probationFrom).toBeGreaterThanOrEqual(restarted!.restoredAt);
      expect(w.otadLog()).toContain('validate → commit: health checks passed (validation restarted after otad was interrupted in validate)');
      expect(w.otadLog()).toContain(`validation of ${PRODUCT} 1.1.0 restarted after otad was interrupted in validate`);
    },
    TIMEOUT,
  );

  it(
    'otad and the service SIGKILLed in apply after the services were started: apply finishes, the validation restarts and commits the good release',
    async () => {
      w = await startDowntimeWorld({ probation: PROBATION, checkins: false });
      // A slow post-apply hook holds apply at `services-started` long enough to cut there.
      await w.publish('1.1.0', { startDelayMs: START_DELAY_MS, postApplySleepS: 3 });
      const runId = await startUpdate(w, '1.1.0');
      const journal = join(w.stateDir, 'journal', `${PRODUCT}.apply-journal.json`);
      await waitFor(
        'apply at services-started',
        async () => (await w!.status()).state === 'apply' && existsSync(journal) && (JSON.parse(readFileSync(journal, 'utf8')) as { phase: string }).phase === 'services-started',
        TIMEOUT,
        20,
      );
      await w.killOtadAndService();

      await w.startOtad();
      const end = await runEnd(w, runId);
      expect(end).toMatchObject({ lastOutcome: 'committed', installedVersion: '1.1.0' });
      expect(await w.health()).toEqual({ ok: true, version: '1.1.0' });
      expect((await releases(w)).filter((r) => r.bad !== null)).toEqual([]);
      const toCommit = (await transitions(w, runId)).find((t) => t.from === 'validate' && t.to === 'commit');
      expect(toCommit?.event.output?.result?.restarted).toMatchObject({ interruptedIn: 'apply' });
      expect(w.otadLog()).toContain('validate → commit: health checks passed (validation restarted after otad was interrupted in apply)');
    },
    TIMEOUT,
  );

  it(
    'a broken release interrupted in validate is still rolled back and marked bad, and the failure says the validation had restarted',
    async () => {
      w = await startDowntimeWorld({ probation: PROBATION, checkins: false });
      await w.publish('1.1.0', { broken: true, startDelayMs: START_DELAY_MS });
      const runId = await startUpdate(w, '1.1.0');
      await waitFor('validate', async () => (await w!.status()).state === 'validate', TIMEOUT, 20);
      await w.killOtadAndService();

      await w.startOtad();
      const end = await runEnd(w, runId);
      expect(end).toMatchObject({ lastOutcome: 'rolled-back', installedVersion: '1.0.0' });
      expect(await w.health()).toEqual({ ok: true, version: '1.0.0' });
      const bad = (await releases(w)).find((r) => r.version === '1.1.0');
      expect(bad?.bad).not.toBeNull();

      const toRollback = (await transitions(w, runId)).find((t) => t.from === 'validate' && t.to === 'rollback');
      expect(toRollback?.event.error?.error?.message).toContain('validation restarted after otad was interrupted in validate');
      expect(toRollback?.event.error?.error?.details?.restarted).toMatchObject({ interruptedIn: 'validate' });
    },
    TIMEOUT,
  );
});

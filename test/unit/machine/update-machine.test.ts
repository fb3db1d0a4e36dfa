import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor } from 'xstate';
import { updateMachine } from '../../../machines/update-machine.js';
import { STEP_NAMES, type Announcement, type MachineInput, type MachinePolicy, type RollbackInput, type StepName, type UpdateEvent } from '../../../machines/types.js';
import { toErrorData } from '../../../src/core/errors.js';
import { createFakeSteps, type FakeStepsSpec } from '../../support/fake-steps.js';

const T0 = Date.UTC(2026, 10, 28, 12, 0, 0);
const HOUR = 3_600_000;

const basePolicy: MachinePolicy = { choiceTimeoutMs: 2 * HOUR, defaultChoice: 'SCHEDULE_3AM', confirmTimeoutMs: 0, preCheckRetryMs: 10 * 60_000 };

function start(spec: FakeStepsSpec = {}, policy: Partial<MachinePolicy> = {}, input: Partial<MachineInput> = {}) {
  const fake = createFakeSteps(spec);
  const clock = { now: T0 };
  const actors: Record<string, unknown> = {};
  for (const name of STEP_NAMES) {
    actors[name] = fromPromise(async ({ input: stepInput, signal }: { input: unknown; signal: AbortSignal }) => {
      try {
        const step = fake[name] as (i: unknown, s: AbortSignal) => Promise<unknown>;
        return { result: await step(stepInput, signal), at: clock.now };
      } catch (error) {
        throw { error: toErrorData(error), at: clock.now };
      }
    });
  }
  const actor = createActor(updateMachine.provide({ actors: actors as never }), {
    input: { product: 'robot-ai', policy: { ...basePolicy, ...policy }, installedVersion: '1.0.0', now: T0, ...input },
  });
  const states: string[] = [];
  const announced: Announcement[] = [];
  actor.on('*', (a) => void announced.push(a));
  actor.subscribe((s) => {
    const v = String(s.value);
    if (states[states.length - 1] !== v) states.push(v);
  });
  actor.start();
  const send = (e: Record<string, unknown> & { type: UpdateEvent['type'] }) => actor.send({ now: clock.now, source: 'test', ...e } as UpdateEvent);
  const settle = (state: string) => waitFor(actor, (s) => s.matches(state as never), { timeout: 2000 });
  const ran = (step: StepName) => fake.invocations.filter((i) => i.step === step && i.phase === 'start').length;
  return { actor, send, settle, states, clock, ran, fake, announced };
}

describe('the update machine', () => {
  it('starts idle with the installed version from its input', () => {
    const { actor } = start();
    expect(actor.getSnapshot().value).toBe('idle');
    expect(actor.getSnapshot().context.installedVersion).toBe('1.0.0');
  });

  it('walks the happy path from a check to a committed release', async () => {
    const h = start();
    h.send({ type: 'CHECK_NOW', runId: 'run-1' });
    await h.settle('awaitingChoice');
    expect(h.actor.getSnapshot().context.offer?.version).toBe('2.0.0');
    expect(h.actor.getSnapshot().context.choiceDeadline).toBe(T0 + 2 * HOUR);
    h.send({ type: 'UPDATE_NOW' });
    await h.settle('idle');
    const ctx = h.actor.getSnapshot().context;
    expect(h.states).toEqual(['idle', 'checking', 'awaitingChoice', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']);
    expect(ctx.lastOutcome).toBe('committed');
    expect(ctx.installedVersion).toBe('2.0.0');
    expect(ctx.choice).toEqual({ choice: 'UPDATE_NOW', source: 'test', at: T0 });
    expect(ctx.runId).toBe('run-1');
  });

  describe('what it announces', () => {
    it('announces the offer, the commit and the end of the run, once each', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'run-1' });
      await h.settle('awaitingChoice');
      expect(h.announced).toEqual([{ type: 'offer', runId: 'run-1', offer: h.actor.getSnapshot().context.offer }]);
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('idle');
      expect(h.announced.slice(1)).toEqual([
        { type: 'committed', runId: 'run-1', version: '2.0.0' },
        { type: 'runEnded', runId: 'run-1', version: '2.0.0', outcome: 'committed', error: null },
      ]);
    });

    it('announces the end of a run that found nothing, and of a cancelled one', async () => {
      const h = start({ offerVersion: null });
      h.send({ type: 'CHECK_NOW', runId: 'run-1' });
      await h.settle('idle');
      expect(h.announced).toEqual([{ type: 'runEnded', runId: 'run-1', version: '1.0.0', outcome: 'up-to-date', error: null }]);
      const c = start();
      c.send({ type: 'CHECK_NOW', runId: 'run-2' });
      await c.settle('awaitingChoice');
      c.send({ type: 'CANCEL' });
      expect(c.announced.map((a) => a.type)).toEqual(['offer', 'runEnded']);
      expect(c.announced[1]).toMatchObject({ outcome: 'cancelled' });
    });

    it('announces a failed rollback as failed and ended, and nothing more when it is acknowledged', async () => {
      const h = start({ fail: { validate: 'HEALTH_CHECK_FAILED', rollback: 'ROLLBACK_FAILED' } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('failed');
      expect(h.announced.map((a) => a.type)).toEqual(['offer', 'failed', 'runEnded']);
      expect(h.announced[1]).toMatchObject({ runId: 'r', error: { code: 'ROLLBACK_FAILED' } });
      h.send({ type: 'RESET' });
      expect(h.actor.getSnapshot().value).toBe('idle');
      expect(h.announced).toHaveLength(3);
    });
  });

  it('returns to idle as up to date when the check finds nothing', async () => {
    const h = start({ offerVersion: null });
    h.send({ type: 'CHECK_NOW', runId: 'run-1' });
    await h.settle('idle');
    expect(h.states).toEqual(['idle', 'checking', 'idle']);
    expect(h.actor.getSnapshot().context.lastOutcome).toBe('up-to-date');
    expect(h.actor.getSnapshot().context.lastCheckAt).toBe(T0);
  });

  describe('a failure in each step', () => {
    it('check: the run fails, the robot is untouched, the error is kept', async () => {
      const h = start({ fail: { check: 'NETWORK_OFFLINE' } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('failed');
      expect(h.actor.getSnapshot().context.error?.code).toBe('NETWORK_OFFLINE');
    });

    it('pre-check that does not pass: the run waits and re-checks at the stored instant', async () => {
      const h = start({ preCheckFailures: 1 });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('preCheckWaiting');
      const ctx = h.actor.getSnapshot().context;
      expect(ctx.preCheckReasons).toEqual([{ code: 'BATTERY_LOW', message: 'battery at 12%, needs 30%' }]);
      expect(ctx.preCheckRetryAt).toBe(T0 + 10 * 60_000);
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 60_000 });
      expect(h.actor.getSnapshot().value).toBe('preCheckWaiting');
      h.clock.now = T0 + 10 * 60_000;
      h.send({ type: 'TICK', nextSlotAt: 0 });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('committed');
      expect(h.ran('preCheck')).toBe(2);
    });

    it('pre-check that throws: treated as not passing, never as a failed run', async () => {
      const h = start({ fail: { preCheck: 'INTERNAL' } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('preCheckWaiting');
      expect(h.actor.getSnapshot().context.preCheckReasons[0]?.code).toBe('INTERNAL');
    });

    for (const [step, code] of [
      ['backup', 'DISK_FULL'],
      ['stage', 'TRUST_HASH_MISMATCH'],
    ] as const) {
      it(`${step}: the run fails before anything changed and returns to idle`, async () => {
        const h = start({ fail: { [step]: code } });
        h.send({ type: 'CHECK_NOW', runId: 'r' });
        await h.settle('awaitingChoice');
        h.send({ type: 'UPDATE_NOW' });
        await h.settle('idle');
        const ctx = h.actor.getSnapshot().context;
        expect(ctx.lastOutcome).toBe('failed');
        expect(ctx.error?.code).toBe(code);
        expect(ctx.installedVersion).toBe('1.0.0');
        expect(h.ran('apply')).toBe(0);
        expect(h.ran('rollback')).toBe(0);
      });
    }

    for (const [step, code] of [
      ['apply', 'HOOK_FAILED'],
      ['validate', 'HEALTH_CHECK_FAILED'],
    ] as const) {
      it(`${step}: the machine rolls back by itself`, async () => {
        const h = start({ fail: { [step]: code } });
        h.send({ type: 'CHECK_NOW', runId: 'r' });
        await h.settle('awaitingChoice');
        h.send({ type: 'UPDATE_NOW' });
        await h.settle('idle');
        const ctx = h.actor.getSnapshot().context;
        expect(h.states).toContain('rollback');
        expect(ctx.lastOutcome).toBe('rolled-back');
        expect(ctx.error?.code).toBe(code);
        expect(ctx.installedVersion).toBe('1.0.0');
        expect(ctx.rollbackReason).toBe(step === 'apply' ? 'apply failed' : 'validation failed');
      });
    }

    it('commit: the run stops in failed for a person to look at', async () => {
      const h = start({ fail: { commit: 'STORE_FAILED' } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('failed');
      expect(h.actor.getSnapshot().context.error?.code).toBe('STORE_FAILED');
    });

    it('rollback: the run stops in failed, and RESET acknowledges it', async () => {
      const h = start({ fail: { validate: 'HEALTH_CHECK_FAILED', rollback: 'ROLLBACK_FAILED' } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('failed');
      expect(h.actor.getSnapshot().context.error?.code).toBe('ROLLBACK_FAILED');
      expect(h.actor.getSnapshot().can({ type: 'CHECK_NOW', runId: 'x', now: T0, source: 'test' })).toBe(false);
      h.send({ type: 'RESET' });
      expect(h.actor.getSnapshot().value).toBe('idle');
      expect(h.actor.getSnapshot().context.error).toBeNull();
    });
  });

  describe('cancel', () => {
    for (const target of ['checking', 'awaitingChoice', 'scheduled', 'preCheck', 'preCheckWaiting', 'backup', 'staging'] as const) {
      it(`is accepted in ${target}, ends the run as cancelled without touching the robot and drops the offer`, async () => {
        const slow = { check: 0, preCheck: 0, backup: 0, stage: 0 } as Record<string, number>;
        if (target === 'checking') slow.check = 5000;
        if (target === 'preCheck') slow.preCheck = 5000;
        if (target === 'backup') slow.backup = 5000;
        if (target === 'staging') slow.stage = 5000;
        const h = start({ delayMs: slow, preCheckFailures: target === 'preCheckWaiting' ? 1 : 0 });
        h.send({ type: 'CHECK_NOW', runId: 'r' });
        if (target !== 'checking') {
          await h.settle('awaitingChoice');
          if (target === 'scheduled') h.send({ type: 'SCHEDULE_3AM', at: T0 + HOUR });
          else if (target !== 'awaitingChoice') h.send({ type: 'UPDATE_NOW' });
        }
        await h.settle(target);
        h.send({ type: 'CANCEL' });
        expect(h.actor.getSnapshot().value).toBe('idle');
        expect(h.actor.getSnapshot().context.lastOutcome).toBe('cancelled');
        expect(h.actor.getSnapshot().context.offer).toBeNull();
        expect(h.actor.getSnapshot().context.runId).toBe('r');
        expect(h.ran('apply')).toBe(0);
      });
    }

    for (const target of ['apply', 'validate', 'commit', 'rollback'] as const) {
      it(`is refused in ${target}: from apply on only a rollback undoes a run`, async () => {
        const h = start({ delayMs: { [target]: 5000 }, fail: target === 'rollback' ? { validate: 'HEALTH_CHECK_FAILED' } : {} });
        h.send({ type: 'CHECK_NOW', runId: 'r' });
        await h.settle('awaitingChoice');
        h.send({ type: 'UPDATE_NOW' });
        await h.settle(target);
        expect(h.actor.getSnapshot().can({ type: 'CANCEL', now: T0, source: 'test' })).toBe(false);
        h.actor.stop();
      });
    }
  });

  describe('manual rollback', () => {
    it('from idle starts a rollback run of its own', async () => {
      const h = start();
      h.send({ type: 'ROLLBACK', runId: 'rb-1', reason: 'operator asked' });
      await h.settle('idle');
      const ctx = h.actor.getSnapshot().context;
      expect(h.states).toEqual(['idle', 'rollback', 'idle']);
      expect(ctx.runKind).toBe('manual-rollback');
      expect(ctx.runId).toBe('rb-1');
      expect(ctx.lastOutcome).toBe('rolled-back');
      expect(ctx.rollbackReason).toBe('operator asked');
    });

    it('during probation rolls the new release back', async () => {
      const h = start({ delayMs: { validate: 5000 } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('validate');
      h.send({ type: 'ROLLBACK', runId: 'ignored' });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('rolled-back');
      expect(h.actor.getSnapshot().context.rollbackReason).toBe('manual rollback during probation');
    });
  });

  describe('what the rollback step is told about marking bad', () => {
    /** A machine whose rollback step records its input; the other steps are the fakes. */
    function recording(spec: FakeStepsSpec = {}) {
      const inputs: RollbackInput[] = [];
      const fake = createFakeSteps(spec);
      const actors: Record<string, unknown> = {};
      for (const name of STEP_NAMES) {
        actors[name] = fromPromise(async ({ input: stepInput, signal }: { input: unknown; signal: AbortSignal }) => {
          if (name === 'rollback') inputs.push(stepInput as RollbackInput);
          try {
            return { result: await (fake[name] as (i: unknown, s: AbortSignal) => Promise<unknown>)(stepInput, signal), at: T0 };
          } catch (error) {
            throw { error: toErrorData(error), at: T0 };
          }
        });
      }
      const actor = createActor(updateMachine.provide({ actors: actors as never }), { input: { product: 'robot-ai', policy: basePolicy, installedVersion: '1.0.0', now: T0 } });
      actor.start();
      const send = (e: Record<string, unknown> & { type: UpdateEvent['type'] }) => actor.send({ now: T0, source: 'test', ...e } as UpdateEvent);
      return { actor, send, inputs, settle: (state: string) => waitFor(actor, (x) => x.matches(state as never), { timeout: 2000 }) };
    }

    it('a manual rollback carries markBad and who asked only as the event says', async () => {
      const r = recording();
      r.send({ type: 'ROLLBACK', runId: 'rb-1', actor: 'alice' });
      await r.settle('idle');
      r.send({ type: 'ROLLBACK', runId: 'rb-2', markBad: true, actor: 'bob', reason: 'arm drifts' });
      await r.settle('idle');
      expect(r.inputs.map((i) => [i.cause, i.markBad, i.requestedBy, i.reason])).toEqual([
        ['manual', false, 'alice', 'manual rollback requested'],
        ['manual', true, 'bob', 'arm drifts'],
      ]);
    });

    it('an automatic rollback after a failed validation carries the failure for the bad mark', async () => {
      const r = recording({ fail: { validate: 'HEALTH_CHECK_FAILED' } });
      r.send({ type: 'CHECK_NOW', runId: 'run-1' });
      await r.settle('awaitingChoice');
      r.send({ type: 'UPDATE_NOW' });
      await r.settle('idle');
      expect(r.inputs).toHaveLength(1);
      expect(r.inputs[0]).toMatchObject({ cause: 'failure', reason: 'validation failed', markBad: false, requestedBy: null, failure: { code: 'HEALTH_CHECK_FAILED' } });
    });
  });

  describe('choices and deadlines', () => {
    it('refuses anything but the two choices while awaiting one', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      const snap = h.actor.getSnapshot();
      expect(snap.can({ type: 'UPDATE_NOW', now: T0, source: 'test' })).toBe(true);
      expect(snap.can({ type: 'SCHEDULE_3AM', at: T0, now: T0, source: 'test' })).toBe(true);
      expect(snap.can({ type: 'UPDATE_TOMORROW', now: T0, source: 'test' } as never)).toBe(false);
      expect(snap.can({ type: 'CONFIRM', now: T0, source: 'test' })).toBe(false);
    });

    it('SCHEDULE_3AM waits for the scheduled instant, then runs', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'SCHEDULE_3AM', at: T0 + 15 * HOUR });
      expect(h.actor.getSnapshot().value).toBe('scheduled');
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 14 * HOUR });
      expect(h.actor.getSnapshot().value).toBe('scheduled');
      h.send({ type: 'RESCHEDULE', at: T0 + 16 * HOUR });
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 15 * HOUR });
      expect(h.actor.getSnapshot().value).toBe('scheduled');
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 16 * HOUR });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('committed');
      expect(h.actor.getSnapshot().context.choice?.choice).toBe('SCHEDULE_3AM');
    });

    it('a timed-out choice applies the default SCHEDULE_3AM at the slot the timer gives', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'TICK', nextSlotAt: T0 + 15 * HOUR, now: T0 + 2 * HOUR - 1 });
      expect(h.actor.getSnapshot().value).toBe('awaitingChoice');
      h.send({ type: 'TICK', nextSlotAt: T0 + 15 * HOUR, now: T0 + 2 * HOUR });
      const ctx = h.actor.getSnapshot().context;
      expect(h.actor.getSnapshot().value).toBe('scheduled');
      expect(ctx.scheduledAt).toBe(T0 + 15 * HOUR);
      expect(ctx.choice).toEqual({ choice: 'SCHEDULE_3AM', source: 'timer', at: T0 + 2 * HOUR });
    });

    it('a timed-out choice applies the default UPDATE_NOW when so configured', async () => {
      const h = start({}, { defaultChoice: 'UPDATE_NOW' });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 3 * HOUR });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.choice?.source).toBe('timer');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('committed');
    });

    it('UPDATE_NOW with confirmation waits for CONFIRM, and lapses back to the choice', async () => {
      const h = start({}, { confirmTimeoutMs: 60_000 });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      expect(h.actor.getSnapshot().value).toBe('confirming');
      expect(h.actor.getSnapshot().context.confirmDeadline).toBe(T0 + 60_000);
      h.send({ type: 'TICK', nextSlotAt: 0, now: T0 + 60_000 });
      expect(h.actor.getSnapshot().value).toBe('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      h.send({ type: 'CONFIRM' });
      await h.settle('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('committed');
    });
  });

  describe('the deferral budget', () => {
    function offerWith(extra: Record<string, unknown>) {
      const h = start();
      const original = h.fake.check;
      h.fake.check = async (input, signal) => {
        const out = await original(input, signal);
        return out.available ? { ...out, offer: { ...out.offer, ...extra } } : out;
      };
      return h;
    }

    it('ends at the earlier of installBy and the maximum deferral from the offer', async () => {
      const h = offerWith({ maxDeferralMs: 3 * HOUR, installBy: T0 + 5 * HOUR });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      expect(h.actor.getSnapshot().context.deferralDeadline).toBe(T0 + 3 * HOUR);
    });

    it('once spent, schedules the install at the next slot whatever the default, and CANCEL is refused', async () => {
      const h = offerWith({ installBy: T0 + HOUR });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'TICK', nextSlotAt: T0 + 15 * HOUR, now: T0 + HOUR });
      const snap = h.actor.getSnapshot();
      expect(snap.value).toBe('scheduled');
      expect(snap.context).toMatchObject({ mandatory: true, scheduledAt: T0 + 15 * HOUR, choice: { choice: 'SCHEDULE_3AM', source: 'timer' } });
      expect(snap.can({ type: 'CANCEL', now: T0 + HOUR, source: 'test' })).toBe(false);
      expect(snap.can({ type: 'UPDATE_NOW', now: T0 + HOUR, source: 'test' })).toBe(true);
    });

    it('a release without a budget can be deferred and cancelled as usual', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      expect(h.actor.getSnapshot().context.deferralDeadline).toBeNull();
      h.send({ type: 'SCHEDULE_3AM', at: T0 + 15 * HOUR });
      expect(h.actor.getSnapshot().can({ type: 'CANCEL', now: T0, source: 'test' })).toBe(true);
    });
  });

  describe('persistence', () => {
    it('re-runs the in-flight step when restored from a persisted snapshot', async () => {
      const h = start({ delayMs: { backup: 5000 } });
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      h.send({ type: 'UPDATE_NOW' });
      await h.settle('backup');
      const persisted = JSON.parse(JSON.stringify(h.actor.getPersistedSnapshot())) as unknown;
      h.actor.stop();
      const fake = createFakeSteps({});
      const actors: Record<string, unknown> = {};
      for (const name of STEP_NAMES) {
        actors[name] = fromPromise(async ({ input, signal }: { input: unknown; signal: AbortSignal }) => ({
          result: await (fake[name] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal),
          at: T0,
        }));
      }
      const restored = createActor(updateMachine.provide({ actors: actors as never }), { snapshot: persisted as never, input: undefined as never });
      restored.start();
      await waitFor(restored, (s) => s.matches('idle'), { timeout: 2000 });
      expect(fake.invocations.filter((i) => i.phase === 'start').map((i) => i.step)).toEqual(['backup', 'stage', 'apply', 'validate', 'commit']);
      expect(restored.getSnapshot().context.lastOutcome).toBe('committed');
    });

    it('keeps a context that survives a JSON round trip unchanged', async () => {
      const h = start();
      h.send({ type: 'CHECK_NOW', runId: 'r' });
      await h.settle('awaitingChoice');
      const ctx = h.actor.getSnapshot().context;
      expect(JSON.parse(JSON.stringify(ctx))).toEqual(ctx);
    });
  });

  describe('recovery starts', () => {
    const recovery = (mode: 'rollback' | 'abort' | 'fail') => ({
      recovery: { mode, reason: 'test', cause: 'interrupted' as const, runId: 'r-old', offer: null, artifacts: {}, error: { code: 'RECOVERY_CRASH_LOOP', category: 'internal', retryable: false, message: 'test' } },
    });

    it('rollback mode goes straight to rollback and ends the old run', async () => {
      const h = start({}, {}, recovery('rollback'));
      await h.settle('idle');
      expect(h.states).toEqual(['rollback', 'idle']);
      expect(h.actor.getSnapshot().context.runId).toBe('r-old');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('rolled-back');
    });

    it('abort mode ends the run in idle without running a step', () => {
      const h = start({}, {}, recovery('abort'));
      expect(h.actor.getSnapshot().value).toBe('idle');
      expect(h.actor.getSnapshot().context.lastOutcome).toBe('aborted');
      expect(h.fake.invocations).toHaveLength(0);
    });

    it('fail mode waits in failed', () => {
      const h = start({}, {}, recovery('fail'));
      expect(h.actor.getSnapshot().value).toBe('failed');
      expect(h.actor.getSnapshot().context.pendingRecovery).toBeNull();
    });
  });
});

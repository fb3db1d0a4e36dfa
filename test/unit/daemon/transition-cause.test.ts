import { describe, expect, it } from 'vitest';
import { transitionCause } from '../../../src/daemon/transition-cause.js';

const ctx = (extra: Record<string, unknown> = {}) =>
  ({ offer: null, error: null, installedVersion: '1.0.0', preCheckReasons: [], lastOutcome: null, ...extra }) as Parameters<typeof transitionCause>[1];
const offer = { version: '1.1.0' };
const done = (state: string) => `xstate.done.actor.0.update.${state}`;
const failed = (state: string) => `xstate.error.actor.0.update.${state}`;

describe('transition causes', () => {
  it('names each step by what finishing it means', () => {
    expect(transitionCause({ from: 'checking', to: 'awaitingChoice', event: done('checking') }, ctx({ offer }))).toBe('check found 1.1.0');
    expect(transitionCause({ from: 'checking', to: 'idle', event: done('checking') }, ctx({ lastOutcome: 'up-to-date' }))).toBe('check found nothing newer than 1.0.0');
    expect(transitionCause({ from: 'preCheck', to: 'backup', event: done('preCheck') }, ctx({ offer }))).toBe('pre-checks passed');
    expect(transitionCause({ from: 'preCheck', to: 'preCheckWaiting', event: done('preCheck') }, ctx({ preCheckReasons: [{ code: 'BATTERY_LOW', message: '' }, { code: 'NOT_DOCKED', message: '' }] }))).toBe(
      'not safe to update yet (BATTERY_LOW, NOT_DOCKED)',
    );
    expect(transitionCause({ from: 'staging', to: 'apply', event: done('staging') }, ctx({ offer }))).toBe('1.1.0 downloaded, verified and staged');
    expect(transitionCause({ from: 'validate', to: 'commit', event: done('validate') }, ctx({ offer }))).toBe('health checks passed');
    const restarted = { interruptedIn: 'apply', restoredAt: 1, startedUnits: ['robot-ai'], runningUnits: [], probationFrom: 2 };
    expect(transitionCause({ from: 'validate', to: 'commit', event: done('validate') }, ctx({ offer, artifacts: { validation: { healthy: true, checks: [], restarted } } }))).toBe(
      'health checks passed (validation restarted after otad was interrupted in apply)',
    );
    expect(transitionCause({ from: 'commit', to: 'idle', event: done('commit') }, ctx({ installedVersion: '1.1.0' }))).toBe('1.1.0 committed');
    expect(transitionCause({ from: 'rollback', to: 'idle', event: done('rollback') }, ctx())).toBe('rolled back to 1.0.0');
  });

  it('names a failure by its step and error code', () => {
    const error = { code: 'HEALTH_CHECK_FAILED', message: 'http://127.0.0.1/health answered 500', category: 'health', retryable: false };
    expect(transitionCause({ from: 'validate', to: 'rollback', event: failed('validate') }, ctx({ error }))).toBe('health check failed (HEALTH_CHECK_FAILED: http://127.0.0.1/health answered 500)');
    expect(transitionCause({ from: 'staging', to: 'idle', event: failed('staging') }, ctx({ error: { ...error, code: 'TRUST_HASH_MISMATCH', message: 'x' } }))).toBe('download or staging failed (TRUST_HASH_MISMATCH: x)');
  });

  it('names events sent by people and apps, the scheduler, deadlines and recovery', () => {
    expect(transitionCause({ from: 'idle', to: 'checking', event: 'CHECK_NOW', source: 'rest' }, ctx())).toBe('check requested (CHECK_NOW) over rest');
    expect(transitionCause({ from: 'idle', to: 'checking', event: 'CHECK_NOW', source: 'schedule' }, ctx())).toBe('scheduled check');
    expect(transitionCause({ from: 'awaitingChoice', to: 'scheduled', event: 'SCHEDULE_3AM', source: 'dbus' }, ctx())).toBe('update at 3 AM chosen (SCHEDULE_3AM) over dbus');
    expect(transitionCause({ from: 'awaitingChoice', to: 'scheduled', event: 'TICK' }, ctx())).toBe('no choice in time: the default SCHEDULE_3AM applies');
    expect(transitionCause({ from: 'awaitingChoice', to: 'scheduled', event: 'TICK' }, { ...ctx(), mandatory: true })).toBe('deferral budget spent: install scheduled for the next maintenance slot');
    expect(transitionCause({ from: 'scheduled', to: 'preCheck', event: 'TICK' }, ctx())).toBe('scheduled time reached');
    expect(transitionCause({ from: 'apply', to: 'rollback', event: 'otad.recovery' }, ctx())).toBe('otad restarted mid-run and recovers (apply → rollback)');
  });

  it('never shows an XState internal name for any step', () => {
    for (const state of ['checking', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'rollback']) {
      for (const event of [done(state), failed(state)]) expect(transitionCause({ from: state, to: 'idle', event }, ctx())).not.toMatch(/xstate/);
    }
  });
});

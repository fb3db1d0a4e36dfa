import { describe, expect, it } from 'vitest';
import { STATE_NAMES } from '../../../machines/types.js';
import { decideStartAtDaemonStart } from '../../../src/daemon/process-units-at-start.js';
import { RECOVERY_TABLE } from '../../../src/daemon/recovery-policy.js';

describe('starting process units when otad starts', () => {
  it('starts them on a first start, with nothing saved', () => {
    expect(decideStartAtDaemonStart(null)).toMatchObject({ start: true });
  });

  it('starts them in idle and in every state before apply, where the installed release is live and untouched', () => {
    for (const state of ['idle', 'checking', 'awaitingChoice', 'confirming', 'scheduled', 'preCheck', 'preCheckWaiting', 'backup', 'staging']) {
      expect(decideStartAtDaemonStart(state), state).toMatchObject({ start: true });
    }
  });

  it('leaves them to the recovery of a run interrupted in apply, validate, commit or rollback', () => {
    for (const state of ['apply', 'validate', 'commit', 'rollback']) {
      const d = decideStartAtDaemonStart(state);
      expect(d.start, state).toBe(false);
      expect(d.reason).toContain(state === 'rollback' ? 'rollback' : state);
    }
  });

  it('does not start them in failed, where a person must look', () => {
    expect(decideStartAtDaemonStart('failed')).toEqual({ start: false, reason: expect.stringContaining('a person must look') });
  });

  it('does not start them from a saved state it does not know', () => {
    expect(decideStartAtDaemonStart('installing')).toEqual({ start: false, reason: 'saved state "installing" is unknown' });
  });

  it('never starts them in a state whose recovery may switch releases (rows agree with the recovery table)', () => {
    for (const state of STATE_NAMES) {
      const mayTouchServices = RECOVERY_TABLE[state].action === 'journal' || ['rollback', 'fail'].includes(RECOVERY_TABLE[state].onCrashLoop) || state === 'failed';
      expect(decideStartAtDaemonStart(state).start, state).toBe(!mayTouchServices);
    }
  });
});

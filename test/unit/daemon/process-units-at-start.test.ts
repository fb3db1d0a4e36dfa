import { describe, expect, it } from 'vitest';
import { STATE_NAMES } from '../../../machines/types.js';
import { decideStartAtDaemonStart } from '../../../src/daemon/process-units-at-start.js';

describe('starting process units when otad starts', () => {
  it('starts them on a first start, with nothing saved', () => {
    expect(decideStartAtDaemonStart(null)).toMatchObject({ start: true });
  });

  it('starts them in idle and in every state before apply, where the installed release is live and untouched', () => {
    for (const state of ['idle', 'checking', 'awaitingChoice', 'confirming', 'scheduled', 'preCheck', 'preCheckWaiting', 'backup', 'staging']) {
      expect(decideStartAtDaemonStart(state), state).toMatchObject({ start: true });
    }
  });

  it('starts them in apply, validate, commit, rollback and failed too: after a power cut nothing else does', () => {
    for (const state of ['apply', 'validate', 'commit', 'rollback', 'failed']) {
      const d = decideStartAtDaemonStart(state);
      expect(d.start, state).toBe(true);
      expect(d.reason).toContain(state === 'rollback' ? 'rollback' : state);
    }
  });

  it('starts them from a saved state it does not know (the installed release runs)', () => {
    expect(decideStartAtDaemonStart('installing')).toEqual({ start: true, reason: 'saved state "installing" is unknown; the installed release runs' });
  });

  it('starts them in every state of the machine', () => {
    for (const state of STATE_NAMES) expect(decideStartAtDaemonStart(state).start, state).toBe(true);
  });
});

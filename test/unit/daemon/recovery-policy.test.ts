import { describe, expect, it } from 'vitest';
import { STATE_NAMES } from '../../../machines/types.js';
import { RECOVERY_TABLE, decideRecovery, type RecoveryAction, type RecoveryFacts } from '../../../src/daemon/recovery-policy.js';

const facts = (state: string | null, over: Partial<RecoveryFacts> = {}): RecoveryFacts => ({
  state,
  compatible: true,
  restoreCount: 1,
  maxRestores: 3,
  journal: 'none',
  ...over,
});

/** One row per state: what a crash there leads to, and what a crash loop there leads to. */
const EXPECTED: Array<[state: string, after: RecoveryAction, crashLoop: RecoveryAction]> = [
  ['idle', 'resume', 'resume'],
  ['checking', 'rerun', 'abort'],
  ['awaitingChoice', 'resume', 'resume'],
  ['confirming', 'resume', 'resume'],
  ['scheduled', 'resume', 'resume'],
  ['preCheck', 'rerun', 'abort'],
  ['preCheckWaiting', 'resume', 'resume'],
  ['backup', 'rerun', 'abort'],
  ['staging', 'rerun', 'abort'],
  ['apply', 'rollback', 'rollback'], // journal says not switched
  ['validate', 'rerun', 'rollback'],
  ['commit', 'rerun', 'rollback'],
  ['rollback', 'rerun', 'fail'],
  ['failed', 'resume', 'resume'],
];

describe('the recovery policy', () => {
  it('has a row for every state of the machine, each with its reason', () => {
    expect(Object.keys(RECOVERY_TABLE).sort()).toEqual([...STATE_NAMES].sort());
    expect(EXPECTED.map(([s]) => s).sort()).toEqual([...STATE_NAMES].sort());
    for (const row of Object.values(RECOVERY_TABLE)) expect(row.why.length).toBeGreaterThan(10);
  });

  for (const [state, after, crashLoop] of EXPECTED) {
    it(`killed in ${state}: ${after}; killed there again and again: ${crashLoop}`, () => {
      expect(decideRecovery(facts(state, { journal: 'not-switched' })).action).toBe(after);
      expect(decideRecovery(facts(state, { restoreCount: 4, journal: 'not-switched' })).action).toBe(crashLoop);
    });
  }

  it('finishes an apply the journal shows switched, and lets validation decide', () => {
    expect(decideRecovery(facts('apply', { journal: 'switched' })).action).toBe('rerun');
  });

  it('rolls back an apply with no journal: the switch cannot have happened', () => {
    expect(decideRecovery(facts('apply', { journal: 'none' })).action).toBe('rollback');
  });

  it('starts fresh when nothing was saved', () => {
    expect(decideRecovery(facts(null)).action).toBe('fresh');
  });

  it('the crash-loop guard allows exactly maxRestores restores', () => {
    expect(decideRecovery(facts('backup', { restoreCount: 3 })).action).toBe('rerun');
    expect(decideRecovery(facts('backup', { restoreCount: 4 })).action).toBe('abort');
    expect(decideRecovery(facts('backup', { restoreCount: 4 })).reason).toMatch(/crash loop/);
  });

  describe('a snapshot from another machine version is never restored', () => {
    const cases: Array<[string, RecoveryAction]> = [
      ['idle', 'fresh'],
      ['checking', 'abort'],
      ['awaitingChoice', 'abort'],
      ['staging', 'abort'],
      ['apply', 'rollback'],
      ['validate', 'rollback'],
      ['commit', 'rollback'],
      ['rollback', 'rollback'],
      ['failed', 'fail'],
      ['someStateFromTheFuture', 'fail'],
    ];
    for (const [state, action] of cases) {
      it(`saved in ${state} → ${action}`, () => {
        expect(decideRecovery(facts(state, { compatible: false })).action).toBe(action);
      });
    }
  });
});

/** The rollout rules, row by row: batch membership, what a product state says, and the next step. */
import { describe, expect, it } from 'vitest';
import { batchOf, countBatches, gateFor, nextStep, outcomeOf, type Batch, type RolloutRecord } from '../../../src/server/rollouts/rollout-model.js';
import { inRollout } from '../../../src/schedule/spread.js';
import { parseSiteBudgets } from '../../../src/server/rollouts/site-budget.js';
import { parseBatchList } from '../../../src/server/rollouts/rollout-input.js';

const base = { version: null, state: 'idle', lastOutcome: null, runId: null, targetVersion: null, rolloutRunId: null };

describe('rollout rules', () => {
  it('a percentage batch holds exactly the robots the signed rollout at that percentage admits, minus earlier batches', () => {
    const batches = [
      { index: 1, selector: { percent: 10 } },
      { index: 2, selector: { percent: 40 } },
    ];
    for (let i = 0; i < 500; i++) {
      const id = `robot-${i}`;
      const k = batchOf(batches, id, {}, 'p', '2.0.0');
      expect(k === 1).toBe(inRollout(id, 'p', '2.0.0', 10));
      expect(k !== null).toBe(inRollout(id, 'p', '2.0.0', 40));
    }
  });

  it('tag batches take the first match; a robot matching none is in no batch and waits while the rollout is not done', () => {
    const batches: Array<Pick<Batch, 'index' | 'selector'>> = [
      { index: 1, selector: { tags: { site: 'lab' } } },
      { index: 2, selector: { tags: { site: 'dock', floor: '2' } } },
    ];
    expect(batchOf(batches, 'a', { site: 'lab', floor: '2' }, 'p', 'v')).toBe(1);
    expect(batchOf(batches, 'a', { site: 'dock', floor: '2' }, 'p', 'v')).toBe(2);
    expect(batchOf(batches, 'a', { site: 'dock' }, 'p', 'v')).toBeNull();
    const r = { state: 'active' as const, halt: null, product: 'p', version: 'v', batches: batches.map((b): Batch => ({ ...b, state: 'open', openedAt: 0 })) };
    expect(gateFor(r, 'a', { site: 'yard' })?.code).toBe('ROLLOUT_WAIT');
    expect(gateFor({ ...r, state: 'done' }, 'a', { site: 'yard' })).toBeNull();
  });

  it.each([
    ['runs the release', { version: '2.0.0' }, 'committed'],
    ['works on it between backup and commit', { targetVersion: '2.0.0', state: 'apply', runId: 'r' }, 'running'],
    ['only pre-checks it', { targetVersion: '2.0.0', state: 'preCheckWaiting', runId: 'r' }, 'notStarted'],
    ['stopped in the failed state', { targetVersion: '2.0.0', state: 'failed', runId: 'r' }, 'failed'],
    ['rolled back the run seen aiming at it', { lastOutcome: 'rolled-back', runId: 'r', rolloutRunId: 'r' }, 'rolledBack'],
    ['rolled back another run', { lastOutcome: 'rolled-back', runId: 'old', rolloutRunId: 'r' }, 'notStarted'],
    ['failed the run seen aiming at it', { lastOutcome: 'failed', runId: 'r', rolloutRunId: 'r' }, 'failed'],
    ['rolled back a run it reports aiming at it', { lastOutcome: 'rolled-back', runId: 'x', targetVersion: '2.0.0' }, 'rolledBack'],
    ['works on another release', { targetVersion: '3.0.0', state: 'apply', runId: 'r' }, 'notStarted'],
    ['never reported', { state: null }, 'notStarted'],
  ] as const)('a robot that %s counts as %s', (_what, fields, expected) => {
    expect(outcomeOf({ ...base, ...fields }, '2.0.0')).toBe(expected);
  });

  const rollout = (over: Partial<RolloutRecord> = {}): RolloutRecord => ({
    id: 'r',
    product: 'p',
    version: '2.0.0',
    state: 'active',
    createdAt: 0,
    createdBy: 't',
    soakMs: 1000,
    failureThreshold: 0.05,
    minReports: 3,
    halt: null,
    resumedAt: null,
    forgiven: {},
    batches: [
      { index: 1, selector: { all: true }, state: 'open', openedAt: 0 },
      { index: 2, selector: { all: true }, state: 'waiting', openedAt: null },
    ],
    ...over,
  });
  const devices = (committed: number, failed: number) => [
    ...Array.from({ length: committed }, (_, i) => ({ ...base, deviceId: `c${i}`, tags: {}, version: '2.0.0' })),
    ...Array.from({ length: failed }, (_, i) => ({ ...base, deviceId: `f${i}`, tags: {}, state: 'failed', targetVersion: '2.0.0' })),
  ];

  it('halts with the reason when failures pass the threshold with at least minReports outcomes, and not before', () => {
    const r = rollout();
    expect(nextStep(r, countBatches(r, devices(37, 3)), 0)).toEqual({ kind: 'halt', batch: 1, reason: '3 of 40 robots that reported in batch 1 failed: 7.5 % > 5 %' });
    expect(nextStep(r, countBatches(r, devices(1, 1)), 5000)).toEqual({ kind: 'none' });
    // Forgiven at the resume: the same three failures do not halt it again.
    expect(nextStep(rollout({ forgiven: { '1': 3 } }), countBatches(r, devices(37, 3)), 5000)).toEqual({ kind: 'open', batch: 2 });
  });

  it('opens the next batch after the soak with enough reports, and finishes after the last', () => {
    const r = rollout();
    expect(nextStep(r, countBatches(r, devices(3, 0)), 999)).toEqual({ kind: 'none' });
    // Two reports of three robots, minReports 3: not enough; once every robot of the batch reported, enough.
    expect(nextStep(r, countBatches(r, [...devices(2, 0), { ...base, deviceId: 'quiet', tags: {} }]), 1000)).toEqual({ kind: 'none' });
    expect(nextStep(r, countBatches(r, devices(2, 0)), 1000)).toEqual({ kind: 'open', batch: 2 });
    expect(nextStep(r, countBatches(r, devices(3, 0)), 1000)).toEqual({ kind: 'open', batch: 2 });
    const last = rollout({ batches: [{ index: 1, selector: { all: true }, state: 'open', openedAt: 0 }] });
    expect(nextStep(last, countBatches(last, devices(3, 0)), 1000)).toEqual({ kind: 'done' });
    expect(nextStep({ ...last, state: 'halted' }, countBatches(last, devices(3, 0)), 1000)).toEqual({ kind: 'none' });
  });

  it('reads --site-budget and batch lists as documented', () => {
    expect(parseSiteBudgets(['lab=1', '4', 'dock=0'], 2)).toEqual({ default: 4, sites: { lab: 1, dock: 0 } });
    expect(() => parseSiteBudgets(['lab=x'], 2)).toThrow(/--site-budget/);
    expect(parseBatchList('5,25,100')).toEqual([{ percent: 5 }, { percent: 25 }, { percent: 100 }]);
    expect(parseBatchList('site=lab;site=dock+floor=2;*')).toEqual([{ tags: { site: 'lab' } }, { tags: { site: 'dock', floor: '2' } }, { all: true }]);
  });
});

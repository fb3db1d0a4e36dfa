import { describe, expect, it } from 'vitest';
import type { ApplyJournalEntry, ApplyPhase } from '../../../src/release/journal.js';
import { resolveInterrupted } from '../../../src/release/journal.js';
import { verdictOf } from '../../../src/steps/journal-verdict.js';
import { backupMayReplace, badMarkOf, outputOf, planRollback, shouldMarkBad, type RollbackFacts, type RollbackPlan } from '../../../src/steps/rollback.js';

function journal(phase: ApplyPhase, from: string | null = '1.0.0', to = '2.0.0'): ApplyJournalEntry {
  return { schema: 1, product: 'robot-ai', runId: 'r1', from, to, phase, updatedAt: 0 };
}

function facts(over: Partial<RollbackFacts>): RollbackFacts {
  return { journal: null, live: '1.0.0', livePrevious: null, releases: ['1.0.0', '2.0.0'], attempted: '2.0.0', appliedFrom: null, ...over };
}

describe('planRollback with an apply journal', () => {
  const rows: Array<[string, Partial<RollbackFacts>, RollbackPlan]> = [
    ['hook failed before the switch: keep the old release, drop the new one', { journal: journal('prepared'), live: '1.0.0' }, { action: 'keep', failed: '2.0.0', live: '1.0.0', method: 'previous-release', markBad: true }],
    ['services stopped, link still old: keep (services restarted)', { journal: journal('services-stopped'), live: '1.0.0' }, { action: 'keep', failed: '2.0.0', live: '1.0.0', method: 'previous-release', markBad: true }],
    ['switched: switch back to the previous release on disk', { journal: journal('switched'), live: '2.0.0' }, { action: 'switch', failed: '2.0.0', target: '1.0.0' }],
    ['apply done, validation failed: switch back', { journal: journal('done'), live: '2.0.0' }, { action: 'switch', failed: '2.0.0', target: '1.0.0' }],
    ['apply done but the link is back on the old release: keep', { journal: journal('done'), live: '1.0.0' }, { action: 'keep', failed: '2.0.0', live: '1.0.0', method: 'previous-release', markBad: true }],
    ['previous release gone: restore a backup or fail', { journal: journal('done'), live: '2.0.0', releases: ['2.0.0'] }, { action: 'restore', failed: '2.0.0', prefer: '1.0.0', otherwise: 'fail' }],
    ['link on neither release, previous on disk: switch to it', { journal: journal('switched'), live: '0.9.0' }, { action: 'switch', failed: '2.0.0', target: '1.0.0' }],
    ['link missing, previous gone: restore', { journal: journal('switched'), live: null, releases: ['2.0.0'] }, { action: 'restore', failed: '2.0.0', prefer: '1.0.0', otherwise: 'fail' }],
    ['first install switched: remove the link', { journal: journal('services-started', null, '1.0.0'), live: '1.0.0', releases: ['1.0.0'] }, { action: 'unlink', failed: '1.0.0' }],
    ['first install not switched: nothing to undo', { journal: journal('prepared', null, '1.0.0'), live: null, releases: ['1.0.0'] }, { action: 'keep', failed: '1.0.0', live: null, method: 'nothing-to-undo', markBad: true }],
  ];
  for (const [name, f, plan] of rows) {
    it(name, () => {
      expect(planRollback(facts(f))).toEqual(plan);
    });
  }

  it('follows the journal even when the input names another version', () => {
    expect(planRollback(facts({ journal: journal('done'), live: '2.0.0', attempted: '3.0.0' }))).toMatchObject({ action: 'switch', failed: '2.0.0' });
  });
});

describe('planRollback without a journal', () => {
  it('only cleans up when the attempted version never went live, and does not hold it against the version', () => {
    expect(planRollback(facts({ live: '1.0.0', attempted: '2.0.0' }))).toEqual({ action: 'keep', failed: '2.0.0', live: '1.0.0', method: 'nothing-to-undo', markBad: false });
  });

  it('rolls a live release back to the previous one its marker names (a manual rollback after commit)', () => {
    expect(planRollback(facts({ live: '2.0.0', attempted: null, livePrevious: '1.0.0' }))).toEqual({ action: 'switch', failed: '2.0.0', target: '1.0.0' });
  });

  it('prefers the applied run’s own from-release over the marker', () => {
    expect(planRollback(facts({ live: '2.0.0', attempted: '2.0.0', appliedFrom: '1.0.0', livePrevious: '0.5.0', releases: ['0.5.0', '1.0.0', '2.0.0'] }))).toMatchObject({ target: '1.0.0' });
  });

  it('looks for a backup, and otherwise keeps the live release, when the previous release is gone', () => {
    expect(planRollback(facts({ live: '2.0.0', attempted: null, livePrevious: '1.0.0', releases: ['2.0.0'] }))).toEqual({ action: 'restore', failed: '2.0.0', prefer: '1.0.0', otherwise: 'keep' });
    expect(planRollback(facts({ live: '2.0.0', attempted: null, livePrevious: null, releases: ['2.0.0'] }))).toEqual({ action: 'restore', failed: '2.0.0', prefer: null, otherwise: 'keep' });
  });

  it('has nothing to undo when nothing is installed', () => {
    expect(planRollback(facts({ live: null, attempted: null, releases: [] }))).toEqual({ action: 'keep', failed: null, live: null, method: 'nothing-to-undo', markBad: false });
  });
});

describe('outputOf', () => {
  it('names the restored version and the method of each plan', () => {
    expect(outputOf({ action: 'switch', failed: '2.0.0', target: '1.0.0' })).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(outputOf({ action: 'restore', failed: '2.0.0', backup: { path: '/b', version: '1.0.0' } })).toEqual({ restoredVersion: '1.0.0', method: 'backup' });
    expect(outputOf({ action: 'unlink', failed: '1.0.0' })).toEqual({ restoredVersion: null, method: 'nothing-to-undo' });
  });
});

describe('journal verdict for the recovery policy', () => {
  const rows: Array<[ApplyJournalEntry | null, string | null, string]> = [
    [null, '1.0.0', 'none'],
    [journal('prepared'), '1.0.0', 'not-switched'],
    [journal('services-stopped'), '1.0.0', 'not-switched'],
    [journal('services-stopped'), '2.0.0', 'switched'],
    [journal('switched'), '2.0.0', 'switched'],
    [journal('services-started'), '2.0.0', 'switched'],
    [journal('switched'), '1.0.0', 'not-switched'],
    [journal('done'), '2.0.0', 'switched'],
    [journal('switched'), '0.9.0', 'not-switched'],
    [journal('switched'), null, 'not-switched'],
  ];
  for (const [entry, live, verdict] of rows) {
    it(`${entry?.phase ?? 'no journal'} with the link on ${live ?? 'nothing'} → ${verdict}`, () => {
      expect(verdictOf(resolveInterrupted(entry, live))).toBe(verdict);
    });
  }
});

describe('which release a rollback marks bad', () => {
  const switchPlan = { action: 'switch', failed: '2.0.0', target: '1.0.0' } as const;
  const neverRan = { action: 'keep', failed: '2.0.0', live: '1.0.0', method: 'nothing-to-undo', markBad: false } as const;
  it.each([
    ['a failed validation marks the release bad', { cause: 'failure', markBad: false }, switchPlan, true],
    ['a crash loop marks it bad', { cause: 'crash-loop', markBad: false }, switchPlan, true],
    ['a failure before the release ever ran proves nothing', { cause: 'failure', markBad: false }, neverRan, false],
    ['an interruption (crash, power cut) never does', { cause: 'interrupted', markBad: true }, switchPlan, false],
    ['a manual rollback does not, unless asked', { cause: 'manual', markBad: false }, switchPlan, false],
    ['a manual rollback with markBad does', { cause: 'manual', markBad: true }, switchPlan, true],
  ] as const)('%s', (_title, input, plan, expected) => {
    expect(shouldMarkBad(input, plan)).toBe(expected);
  });

  it('says why and who: the failure for an automatic mark, the operator for a manual one', () => {
    const base = { runId: 'r9', requestedBy: 'alice', failure: { code: 'HEALTH_CHECK_FAILED', message: 'unit down' } };
    expect(badMarkOf({ ...base, cause: 'failure', reason: 'validation failed' }, 5)).toEqual({
      reason: 'rolled back automatically: validation failed: HEALTH_CHECK_FAILED: unit down',
      at: 5,
      by: 'automatic',
      actor: 'otad',
      runId: 'r9',
    });
    expect(badMarkOf({ ...base, failure: null, cause: 'manual', reason: 'arm drifts' }, 6)).toEqual({
      reason: 'marked bad by an operator on rollback: arm drifts',
      at: 6,
      by: 'operator',
      actor: 'alice',
      runId: 'r9',
    });
  });
});

describe('which backup may stand in for a missing predecessor', () => {
  it.each([
    ['an older version, when none is preferred', '1.0.0', '2.0.0', null, true],
    ['never a newer one, when none is preferred (that would be an update)', '3.0.0', '2.0.0', null, false],
    ['never the release being left', '2.0.0', '2.0.0', null, false],
    ['any other version when a predecessor is named but not backed up', '3.0.0', '2.0.0', '1.0.0', true],
    ['any version when nothing is being left (nothing was installed)', '3.0.0', null, null, true],
  ] as const)('%s', (_title, version, failed, prefer, expected) => {
    expect(backupMayReplace(version, failed, prefer)).toBe(expected);
  });
});

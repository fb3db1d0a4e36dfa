import { describe, expect, it } from 'vitest';
import { parseEntry, resolveInterrupted, type ApplyJournalEntry, type ApplyPhase } from '../../../src/release/journal.js';

const entry = (phase: ApplyPhase, from: string | null = '1.0.0', to = '2.0.0'): ApplyJournalEntry => ({
  schema: 1,
  product: 'robot-ai',
  runId: 'run-1',
  from,
  to,
  phase,
  updatedAt: 0,
});

describe('resolveInterrupted', () => {
  it('reports nothing to do without a journal, whatever the link says', () => {
    expect(resolveInterrupted(null, '1.0.0')).toEqual({ kind: 'none' });
    expect(resolveInterrupted(null, null)).toEqual({ kind: 'none' });
  });

  it('reports a finished run as complete', () => {
    expect(resolveInterrupted(entry('done'), '2.0.0')).toMatchObject({ kind: 'complete', runId: 'run-1' });
  });

  // [phase, link, kind, servicesMayBeDown, flag] — the disk decides switched / not-switched.
  const table: Array<[ApplyPhase, string | null, 'switched' | 'not-switched' | 'unknown', boolean | null, string]> = [
    // Crash after import, services untouched: old release still live and running.
    ['prepared', '1.0.0', 'not-switched', false, 'journalAhead=false'],
    // Crash with services stopped but before the rename: old release live, services down.
    ['services-stopped', '1.0.0', 'not-switched', true, 'journalAhead=false'],
    // Crash between the rename and the 'switched' write: the disk wins, services still down.
    ['services-stopped', '2.0.0', 'switched', true, 'journalBehind=true'],
    ['prepared', '2.0.0', 'switched', true, 'journalBehind=true'],
    // Crash after the switch was recorded: services must be started on the new release.
    ['switched', '2.0.0', 'switched', true, 'journalBehind=false'],
    // The rename was recorded but did not reach the disk: treat as not switched, restart services.
    ['switched', '1.0.0', 'not-switched', true, 'journalAhead=true'],
    // Services running on the new release: only validation is left.
    ['services-started', '2.0.0', 'switched', false, 'journalBehind=false'],
    ['services-started', '1.0.0', 'not-switched', true, 'journalAhead=true'],
    // The link points at a third release or nowhere: nobody knows, restore from backup.
    ['switched', '0.5.0', 'unknown', null, ''],
    ['services-stopped', null, 'unknown', null, ''],
  ];

  for (const [phase, link, kind, down, flag] of table) {
    it(`phase ${phase} with the link on ${link ?? 'nothing'} is ${kind}${down === null ? '' : down ? ', services may be down' : ', services up'}`, () => {
      const result = resolveInterrupted(entry(phase), link);
      expect(result.kind).toBe(kind);
      if (down !== null) expect(result).toMatchObject({ servicesMayBeDown: down });
      if (flag !== '') {
        const [name, value] = flag.split('=') as [string, string];
        expect(result).toMatchObject({ [name]: value === 'true' });
      }
    });
  }

  it('treats a first install (no previous release) with no link as not switched', () => {
    expect(resolveInterrupted(entry('services-stopped', null), null)).toMatchObject({ kind: 'not-switched', from: null, servicesMayBeDown: true });
    expect(resolveInterrupted(entry('switched', null), '2.0.0')).toMatchObject({ kind: 'switched' });
  });

  it('decides a same-version reinstall by the journal, since the link cannot tell', () => {
    expect(resolveInterrupted(entry('services-stopped', '2.0.0', '2.0.0'), '2.0.0')).toMatchObject({ kind: 'not-switched' });
    expect(resolveInterrupted(entry('switched', '2.0.0', '2.0.0'), '2.0.0')).toMatchObject({ kind: 'switched' });
  });
});

describe('parseEntry', () => {
  it('accepts a well-formed entry and rejects unknown phases or schemas', () => {
    expect(parseEntry(JSON.stringify(entry('switched')))).toEqual(entry('switched'));
    expect(parseEntry(JSON.stringify({ ...entry('switched'), phase: 'half' }))).toBeNull();
    expect(parseEntry(JSON.stringify({ ...entry('switched'), schema: 2 }))).toBeNull();
    expect(parseEntry('{"schema":1')).toBeNull();
  });
});

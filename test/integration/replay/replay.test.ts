/**
 * Replay: a run exported from a real daemon (fake steps, real machine, real SQLite) replays
 * offline into the same state sequence; a tampered recording is reported where it diverges; and a
 * committed export ("a snapshot taken from a robot") loads and replays in a test.
 * OTA_WRITE_FIXTURES=1 rewrites test/fixtures/replay/*.json from fresh runs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startHarness, waitFor, type Harness } from '../api/harness.js';
import { formatReplay, replayRun } from '../../../src/replay/replay.js';
import type { RunExport } from '../../../src/daemon/control.js';

const FIXTURES = resolve(import.meta.dirname, '../../fixtures/replay');
let h: Harness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

/** A run with a failed pre-check, a timer retry, and a commit. */
async function recordCommittedRun(): Promise<RunExport> {
  h = await startHarness({ fake: { offerVersion: '2.1.0', preCheckFailures: 1 }, interfaces: false });
  const d = h.daemon;
  const state = () => d.status().products[0]?.state;
  const { runId } = await d.dispatch({ type: 'CHECK_NOW', source: 'test' });
  await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
  await d.dispatch({ type: 'UPDATE_NOW', source: 'test' });
  await waitFor(() => state() === 'preCheckWaiting', 'preCheckWaiting');
  h.clock.advance(11 * 60_000);
  d.onTimer();
  await waitFor(() => d.status().products[0]?.lastOutcome === 'committed', 'commit');
  return d.exportRun(runId as string);
}

/** A run whose validation fails and is rolled back. */
async function recordRolledBackRun(): Promise<RunExport> {
  h = await startHarness({ fake: { offerVersion: '3.0.0', fail: { validate: 'HEALTH_CHECK_FAILED' } }, interfaces: false });
  const d = h.daemon;
  const { runId } = await d.dispatch({ type: 'CHECK_NOW', source: 'test' });
  await waitFor(() => d.status().products[0]?.state === 'awaitingChoice', 'awaitingChoice');
  await d.dispatch({ type: 'UPDATE_NOW', source: 'test' });
  await waitFor(() => d.status().products[0]?.lastOutcome === 'rolled-back', 'rollback');
  return d.exportRun(runId as string);
}

describe('replaying an exported run offline', () => {
  it('reproduces the recorded state sequence of a committed run, including a timer retry, with the same final context', async () => {
    const exported = JSON.parse(JSON.stringify(await recordCommittedRun())) as RunExport;
    if (process.env.OTA_WRITE_FIXTURES === '1') writeFileSync(join(FIXTURES, 'committed-run.json'), JSON.stringify(exported, null, 2) + '\n');
    const report = replayRun(exported);
    expect(report.divergence).toBeNull();
    expect(report.actualStates).toEqual(exported.transitions.map((t) => t.to));
    expect(report.actualStates).toEqual(['checking', 'awaitingChoice', 'preCheck', 'preCheckWaiting', 'preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'idle']);
    expect(report.finalContextMatches).toBe(true);
    expect(formatReplay(report)).toContain('same state sequence: 11 transitions');
  });

  it('reproduces a rolled-back run', async () => {
    const exported = JSON.parse(JSON.stringify(await recordRolledBackRun())) as RunExport;
    if (process.env.OTA_WRITE_FIXTURES === '1') writeFileSync(join(FIXTURES, 'rolled-back-run.json'), JSON.stringify(exported, null, 2) + '\n');
    const report = replayRun(exported);
    expect(report.divergence).toBeNull();
    expect(report.actualStates.slice(-3)).toEqual(['validate', 'rollback', 'idle']);
    expect(report.finalContextMatches).toBe(true);
  });

  it('reports the first divergence when the recording does not match what the machine decides', async () => {
    const exported = JSON.parse(JSON.stringify(await recordCommittedRun())) as RunExport;
    // Tamper: the check's recorded result now says "up to date", so the machine goes back to idle.
    const check = exported.transitions[1] as { event: { output: { result: { available: boolean } } }; seq: number };
    check.event.output.result.available = false;
    const report = replayRun(exported);
    expect(report.divergence).toMatchObject({ index: 1, seq: check.seq, expected: 'awaitingChoice', actual: 'idle' });
    expect(formatReplay(report)).toContain('DIVERGED at transition 2');
  });

  it('refuses a file that is not a run export', () => {
    expect(() => replayRun({ hello: 'world' } as never)).toThrow(/not an otad run export/);
  });
});

describe('a snapshot taken from a robot (committed fixtures)', () => {
  for (const name of ['committed-run.json', 'rolled-back-run.json']) {
    it(`replays ${name} into its recorded state sequence`, () => {
      const exported = JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as RunExport;
      expect(exported.format).toBe('otad-run/1');
      const report = replayRun(exported);
      expect(report.divergence).toBeNull();
      expect(report.actualStates).toEqual(exported.transitions.map((t) => t.to));
      expect(report.finalContextMatches).toBe(true);
    });
  }
});

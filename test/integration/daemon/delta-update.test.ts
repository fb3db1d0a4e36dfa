/**
 * Delta updates with the REAL daemon (dist/src/cli/otad.js, real steps, REST on loopback) against
 * ota-server serving a repository the real publisher wrote: the second update is staged from a
 * delta, and after a file of the installed release is changed locally the next one falls back to
 * the full package, which the log, the audit trail and the run's saved stage output say.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILT_OTAD, PRODUCT, createCrashWorld, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { query } from '../../support/otad-process.js';
import { checkNowAndSettle, stagedLines as staged } from '../../support/update-run.js';

describe('otad applies deltas end to end', () => {
  let world: CrashWorld | undefined;
  afterAll(async () => {
    await world?.close(false);
  });

  it('stages from the delta when one exists from the installed version, and falls back to the full package after a local change', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    // Every release shares the model, none is broken: every delta is small.
    world = await createCrashWorld({ seed: 1515, modelChangesEvery: 1000, brokenEvery: 1000 });
    const w = world;
    const db = w.sandbox.dbPath;
    let daemon: RunningDaemon = await w.startOtad();
    const update = async (): Promise<string> => {
      const { runId, outcome } = await checkNowAndSettle(w, daemon);
      expect(outcome, w.logTail()).toBe('committed');
      return runId;
    };
    const stagedLines = (runId: string) => staged(w, runId);

    // 1.0.0 is a plain folder nobody published: the first update is the full package.
    await w.publishNext();
    const first = await update();
    expect(stagedLines(first).map((l) => l.via)).toEqual(['package']);

    const r2 = await w.publishNext();
    const second = await update();
    expect(stagedLines(second)).toMatchObject([{ via: 'delta', fromVersion: '1.1.0' }]);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r2.version]);
    expect(readFileSync(w.sandbox.logPath, 'utf8')).toMatch(/update available: delta from 1\.1\.0, \d+ bytes to download \(full package \d+\)/);

    // A file of the installed release changed in place (same size): the delta cannot give the signed tree.
    // The model is the same in every release here, so the delta expects it unchanged.
    const model = join(w.installPath, 'models/planner.bin');
    const bytes = readFileSync(model);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(model, bytes);
    const r3 = await w.publishNext();
    const third = await update();
    expect(stagedLines(third).map((l) => l.via)).toEqual(['package']);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r3.version]);
    const audits = query<{ kind: string; message: string; run_id: string }>(db, "SELECT kind, message, run_id FROM audit WHERE kind = 'delta-fallback'");
    expect(audits).toHaveLength(1);
    expect(audits[0]).toMatchObject({ run_id: third });
    expect(audits[0]!.message).toContain('RELEASE_TREE_MISMATCH');
    expect(audits[0]!.message).toContain('models/planner.bin');
    expect(readFileSync(w.sandbox.logPath, 'utf8')).toContain('delta from 1.2.0 not used: RELEASE_TREE_MISMATCH');

    // The next update goes by delta again: the tree otad installed is the signed one.
    await w.publishNext();
    const fourth = await update();
    expect(stagedLines(fourth)).toMatchObject([{ via: 'delta', fromVersion: r3.version }]);
    await daemon.proc.kill('SIGTERM');
  }, 300_000);
});

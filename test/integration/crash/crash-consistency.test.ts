/**
 * Crash consistency with the REAL daemon: dist/src/cli/otad.js with its real steps updates the demo
 * robot-ai from an ota-server on loopback, and is SIGKILLed again and again — at random instants
 * and on entering chosen states — then restarted on the same state folder.
 *
 * After every kill, before the restart: the install path resolves to ONE complete release (its
 * file hashes equal those of exactly one published release, or of 1.0.0), the one the run came
 * from or the one it was going to. After the daemon settles on its own: the database agrees with
 * the disk, the transition log has no gap, runs never overlap, the service answers from the
 * installed release, and a broken release ends rolled back, marked bad and never offered again.
 *
 * OTA_CRASH_SEED replays a schedule, OTA_TORTURE_KILLS=5000 (or OTA_TORTURE=1) is the long run, OTA_SKIP_CRASH=1
 * skips it (docs/crash-testing.md).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import semver from 'semver';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILT_OTAD, PRODUCT, createCrashWorld, createRng, type CrashWorld, type KnownRelease, type RunningDaemon } from '../../support/crash-harness.js';
import { assertNoGap, query, readSaved, waitUntil, type SavedState } from '../../support/otad-process.js';

const SKIP = process.env.OTA_SKIP_CRASH === '1';
const KILLS = Number(process.env.OTA_TORTURE_KILLS ?? (process.env.OTA_TORTURE === '1' ? 5000 : 50));
const SEED = process.env.OTA_CRASH_SEED !== undefined ? Number(process.env.OTA_CRASH_SEED) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
/** A long run starts a fresh world (repository, install, state) every so many kills to bound disk use. */
const KILLS_PER_WORLD = Number(process.env.OTA_CRASH_KILLS_PER_WORLD ?? 100);
const KEEP = process.env.OTA_TEST_KEEP === '1';

/** Where a kill landed, read from the database and the disk after the process died. */
type KillClass =
  | 'idle'
  | 'checking'
  | 'awaitingChoice'
  | 'preCheck'
  | 'preCheckWaiting'
  | 'backup'
  | 'staging'
  | 'apply:before-switch'
  | 'apply:after-switch'
  | 'validate'
  | 'commit'
  | 'rollback'
  | 'failed'
  | 'other';

/** Every state that runs a step; apply counts twice, on each side of the switch. */
const REQUIRED: readonly KillClass[] = ['checking', 'preCheck', 'backup', 'staging', 'apply:before-switch', 'apply:after-switch', 'validate', 'commit', 'rollback'];
const ORDER: readonly KillClass[] = ['checking', 'awaitingChoice', 'preCheck', 'preCheckWaiting', 'backup', 'staging', 'apply:before-switch', 'apply:after-switch', 'validate', 'commit', 'rollback'];
const SETTLED_OUTCOMES = ['committed', 'rolled-back', 'up-to-date', 'aborted'];

interface Run {
  runId: string;
  from: string;
  to: KnownRelease;
  startedAt: number;
  kills: KillClass[];
}

type TransitionRow = { seq: number; from_state: string; to_state: string; run_id: string | null; event_type: string };
type RunRow = { run_id: string; started_at: number; ended_at: number | null; from_version: string | null; to_version: string | null; outcome: string | null; state: string };

const skipMessage = SKIP ? 'crash-consistency test skipped: OTA_SKIP_CRASH=1' : null;
if (skipMessage) console.log(skipMessage);

describe.skipIf(SKIP)('otad with real steps, SIGKILLed at random instants across every state', () => {
  const worlds: CrashWorld[] = [];
  afterAll(async () => {
    for (const w of worlds) await w.close(KEEP);
  });

  it('the install check tells a complete release from a half-written or altered tree', async () => {
    const world = await createCrashWorld({ seed: SEED, bigFileBytes: 64 * 1024 });
    worlds.push(world);
    const whole = await world.inspectInstall();
    expect(whole).toMatchObject({ kind: 'plain', detected: '1.0.0', marker: null });
    expect(whole.matches.map((m) => m.version)).toEqual(['1.0.0']);

    // A big file cut short, as an interrupted copy or extraction would leave it.
    const big = join(world.installPath, 'models/planner.bin');
    const bytes = readFileSync(big);
    writeFileSync(big, bytes.subarray(0, bytes.length / 2));
    const cut = await world.inspectInstall();
    expect(cut.matches).toEqual([]);
    expect(cut.diff).toEqual(['models/planner.bin: differs']);
    writeFileSync(big, bytes);

    // A file that belongs to no release, and otad's own marker (which is not part of a release).
    writeFileSync(join(world.installPath, 'stray'), 'left behind\n');
    expect((await world.inspectInstall()).diff).toEqual(['stray: differs (not in the release)']);
    rmSync(join(world.installPath, 'stray'));
    writeFileSync(join(world.installPath, '.ota-release.json'), JSON.stringify({ product: PRODUCT, version: '1.0.0', installedAt: 0, runId: null }));
    expect((await world.inspectInstall()).matches.map((m) => m.version)).toEqual(['1.0.0']);
  });

  it('a release interrupted before the switch (in its pre-apply hook) is rolled back, not marked bad, and offered again', async () => {
    const world = await createCrashWorld({ seed: SEED, bigFileBytes: 256 * 1024 });
    worlds.push(world);
    const db = world.sandbox.dbPath;
    const hookStarted = join(world.root, 'pre-apply-started');
    // The first time, the hook holds apply between its journal's `prepared` and the switch.
    const release = await world.publishNext({ preApplyHook: `#!/bin/sh\n[ -e "${hookStarted}" ] && exit 0\ntouch "${hookStarted}"\nsleep 5\n` });
    let daemon = await world.startOtad();
    const check = async () => (await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' })).runId;
    const settled = (runId: string) =>
      waitUntil(() => {
        const s = readSaved(db);
        return s?.state === 'idle' && s.runId === runId && s.context.lastOutcome !== null ? s : null;
      }, { timeoutMs: 60_000, intervalMs: 20, what: `run ${runId} to settle` });

    const first = await check();
    await waitUntil(() => existsSync(hookStarted) && readSaved(db)?.state === 'apply' && world.readJournal()?.phase === 'prepared', {
      timeoutMs: 60_000,
      what: 'the pre-apply hook to run with the journal at prepared',
    });
    await daemon.proc.kill('SIGKILL');
    const killed = await world.inspectInstall();
    expect(killed.matches.map((m) => m.version)).toEqual(['1.0.0']);
    expect(world.liveVersion()).toBe('1.0.0');

    daemon = await world.startOtad();
    const afterKill = await settled(first);
    expect(afterKill.context.lastOutcome).toBe('rolled-back');
    expect(afterKill.context.installedVersion).toBe('1.0.0');
    const bad = query<{ bad_at: number | null }>(db, 'SELECT bad_at FROM releases WHERE product = ? AND version = ?', PRODUCT, release.version)[0];
    expect(bad?.bad_at ?? null, `${release.version} never ran: a kill proves nothing against it`).toBeNull();
    expect(await serviceVersion(world, '1.0.0')).toBe('1.0.0');

    const second = await check();
    const done = await settled(second);
    expect(done.context.lastOutcome).toBe('committed');
    expect(done.context.installedVersion).toBe(release.version);
    expect((await world.inspectInstall()).matches.map((m) => m.version)).toEqual([release.version]);
    expect(await serviceVersion(world, release.version)).toBe(release.version);
    assertNoGap(query(db, 'SELECT seq, from_state, to_state FROM transitions WHERE product = ? ORDER BY seq', PRODUCT));
    await daemon.proc.kill('SIGTERM');
  }, 120_000);

  it(`always leaves one complete release on disk and settles by itself (${KILLS} kills, seed ${SEED})`, async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first (npm test does)`).toBe(true);
    console.log(`crash-consistency: seed ${SEED} (replay with OTA_CRASH_SEED=${SEED}), ${KILLS} kills`);
    const rng = createRng(SEED);
    const started = performance.now();
    const counts = new Map<string, number>();
    const anomalies: string[] = [];
    let kills = 0;
    let misses = 0;
    let runs = 0;
    let chainedKills = 0;
    let estRunMs = 2500;

    while (kills < KILLS) {
      // Releases come in pairs that share the model: half the runs are staged from a delta.
      const world = await createCrashWorld({ seed: SEED + worlds.length, modelChangesEvery: 2 });
      worlds.push(world);
      const db = world.sandbox.dbPath;
      const budget = Math.min(KILLS, kills + KILLS_PER_WORLD);
      let daemon: RunningDaemon = await world.startOtad();
      let restartSeq = 0;

      const saved = (): SavedState => {
        const s = readSaved(db);
        if (s === null) throw new Error('otad saved no state');
        return s;
      };
      const transitions = (): TransitionRow[] =>
        query<TransitionRow>(db, 'SELECT seq, from_state, to_state, run_id, event_type FROM transitions WHERE product = ? ORDER BY seq', PRODUCT);
      const maxSeq = (): number => query<{ s: number | null }>(db, 'SELECT MAX(seq) AS s FROM transitions')[0]?.s ?? 0;
      const badVersions = (): Map<string, number> =>
        new Map(query<{ version: string; bad_at: number }>(db, 'SELECT version, bad_at FROM releases WHERE product = ? AND bad_at IS NOT NULL', PRODUCT).map((r) => [r.version, r.bad_at]));
      const fail = (message: string): never => {
        throw new Error(`${message}\n(seed ${SEED}; replay with OTA_CRASH_SEED=${SEED})\n--- otad log tail ---\n${world.logTail()}`);
      };

      /** The class of the state otad is in now (or died in): apply is split by where the link points. */
      const classify = (s: SavedState, run: Run): KillClass => {
        if (s.state === 'apply') {
          const live = world.liveVersion();
          return live === run.to.version ? 'apply:after-switch' : 'apply:before-switch';
        }
        return (ORDER as readonly string[]).includes(s.state) || s.state === 'idle' || s.state === 'failed' ? (s.state as KillClass) : 'other';
      };
      const settledRun = (s: SavedState, run: Run): boolean =>
        (s.state === 'idle' && s.runId === run.runId && s.context.lastOutcome !== null) || s.state === 'failed';

      /** The states the run may still pass through, given where it was last killed. */
      const pathAfter = (run: Run, last: KillClass | null): KillClass[] => {
        const end: KillClass = run.to.broken ? 'rollback' : 'commit';
        const full = ORDER.filter((c) => c !== 'preCheckWaiting' && c !== (run.to.broken ? 'commit' : 'rollback'));
        if (last === null) return full;
        if (last === 'apply:before-switch' || last === 'rollback') return ['rollback'];
        if (last === 'commit') return ['commit'];
        if (last === 'idle' || last === 'failed' || last === 'other') return [];
        const i = full.indexOf(last);
        return i < 0 ? [end] : full.slice(i);
      };

      /** The least-covered required state still ahead of this run (ties broken by the seeded PRNG). */
      const pickTarget = (ahead: KillClass[]): KillClass | null => {
        const candidates = ahead.filter((c) => REQUIRED.includes(c));
        if (candidates.length === 0) return null;
        const least = Math.min(...candidates.map((c) => counts.get(c) ?? 0));
        const pool = candidates.filter((c) => (counts.get(c) ?? 0) === least);
        return pool[Math.floor(rng() * pool.length)] ?? null;
      };

      /** Polls until the kill instant (a target state, or a random deadline); false when the run ended first. */
      const waitForKillInstant = async (run: Run, target: KillClass | null, delayMs: number): Promise<boolean> => {
        const deadline = performance.now() + delayMs;
        const hardStop = performance.now() + 120_000;
        for (;;) {
          const s = readSaved(db);
          if (s !== null) {
            if (settledRun(s, run)) return false;
            if (target === null) {
              if (performance.now() >= deadline) return true;
            } else {
              const now = classify(s, run);
              if (now === target) return true;
              // Past the target (a short state slipped by): kill here; the class is counted as it is.
              const at = ORDER.indexOf(now);
              const want = ORDER.indexOf(target);
              if (at > want && !(target === 'rollback' && now !== 'rollback')) return true;
            }
          }
          if (performance.now() > hardStop) fail(`run ${run.runId} neither reached ${target ?? 'the kill instant'} nor settled within 120 s (state ${s?.state})`);
          await new Promise((r) => setTimeout(r, target === null ? 3 : 2));
        }
      };

      /** After a kill: the install path is one complete, known release — the run's old or new one. */
      const assertOneCompleteRelease = async (run: Run, klass: KillClass): Promise<void> => {
        const view = await world.inspectInstall();
        const where = `after a kill in ${klass} (run ${run.runId}, ${run.from} → ${run.to.version}, kill #${kills})`;
        if (view.kind !== 'plain' && view.kind !== 'link') fail(`${world.installPath} is ${view.kind} ${where}`);
        if (view.matches.length !== 1) {
          fail(`${world.installPath} → ${view.dir} is not one complete release ${where}: matches ${view.matches.map((m) => m.version).join(', ') || 'none'}; differences: ${view.diff.slice(0, 10).join('; ')}`);
        }
        const version = view.matches[0]!.version;
        if (version !== run.from && version !== run.to.version) fail(`${world.installPath} holds ${version}, neither ${run.from} nor ${run.to.version}, ${where}`);
        if (view.detected !== version) fail(`version detection reads ${view.detected} but the tree is ${version} ${where}`);
        if (view.marker !== null && view.marker !== version) fail(`the release marker says ${view.marker} but the tree is ${version} ${where}`);
      };

      /** After the run settled: the database agrees with the disk, and every log and run is whole. */
      const assertSettled = async (run: Run): Promise<string> => {
        const s = saved();
        if (s.state !== 'idle') fail(`run ${run.runId} ended in ${s.state} (${JSON.stringify(s.context.error)}), not idle; kills in this run: ${run.kills.join(', ')}`);
        const outcome = String(s.context.lastOutcome);
        if (!SETTLED_OUTCOMES.includes(outcome)) fail(`run ${run.runId} settled with outcome ${outcome} (${JSON.stringify(s.context.error)}); kills in this run: ${run.kills.join(', ')}`);
        const view = await world.inspectInstall();
        if (view.matches.length !== 1) fail(`after run ${run.runId} settled, ${world.installPath} is not one complete release: ${view.diff.slice(0, 10).join('; ')}`);
        const onDisk = view.matches[0]!.version;
        if (view.detected !== onDisk) fail(`after run ${run.runId}: detection reads ${view.detected}, the tree is ${onDisk}`);
        if (s.context.installedVersion !== onDisk) fail(`after run ${run.runId} (${outcome}): the database says ${String(s.context.installedVersion)} is installed, the disk holds ${onDisk}`);
        if (world.releases.get(onDisk)?.broken) fail(`after run ${run.runId} (${outcome}): the broken release ${onDisk} is installed`);
        const row = query<RunRow>(db, 'SELECT * FROM runs WHERE run_id = ?', run.runId)[0];
        if (!row) return fail(`run ${run.runId} has no row in runs`);
        if (row.outcome !== outcome || row.ended_at === null) fail(`run row ${JSON.stringify(row)} disagrees with the saved outcome ${outcome}`);
        if (outcome === 'committed' && (row.to_version !== onDisk || onDisk !== run.to.version)) fail(`run ${run.runId} committed ${row.to_version}, the disk holds ${onDisk}, the run aimed at ${run.to.version}`);
        if ((outcome === 'rolled-back' || outcome === 'up-to-date' || outcome === 'aborted') && onDisk !== run.from) {
          fail(`run ${run.runId} ended ${outcome} but the disk holds ${onDisk}, not ${run.from} it started from`);
        }
        if (outcome === 'rolled-back' && row.from_version !== run.from) anomalies.push(`run ${run.runId} rolled back: its row says from ${row.from_version}, it started from ${run.from}`);

        const rows = transitions();
        assertNoGap(rows);
        // One run at a time: a run starts only from idle, and runs never overlap in time.
        for (const r of rows) if (r.to_state === 'checking' && r.from_state !== 'idle' && r.from_state !== 'checking') fail(`transition ${r.seq} enters checking from ${r.from_state}`);
        const all = query<RunRow>(db, 'SELECT * FROM runs WHERE product = ? ORDER BY started_at, run_id', PRODUCT);
        if (all.some((r) => r.ended_at === null)) fail(`a run is still open while otad is idle: ${JSON.stringify(all.filter((r) => r.ended_at === null))}`);
        for (let i = 1; i < all.length; i++) {
          if (all[i]!.started_at < all[i - 1]!.ended_at!) fail(`runs overlap: ${JSON.stringify(all[i - 1])} and ${JSON.stringify(all[i])}`);
        }
        // Bad releases: only broken ones, and never offered again once marked.
        const bad = badVersions();
        for (const v of bad.keys()) if (!world.releases.get(v)?.broken) fail(`the good release ${v} was marked bad`);
        for (const r of all) {
          const badAt = r.to_version === null ? undefined : bad.get(r.to_version);
          if (badAt !== undefined && r.started_at > badAt) fail(`${r.to_version} was offered again by run ${r.run_id} after it was marked bad`);
        }
        if (outcome === 'rolled-back' && run.to.broken && !run.kills.includes('apply:before-switch') && !bad.has(run.to.version)) {
          fail(`the broken release ${run.to.version} was rolled back but not marked bad`);
        }

        // The service: after a commit or rollback done by this process, it answers from the release.
        const settledHere = rows.some((r) => r.run_id === run.runId && r.to_state === 'idle' && r.seq > restartSeq);
        const healthy = async (): Promise<{ ok: boolean; version: string } | null> => {
          const deadline = performance.now() + 10_000;
          for (;;) {
            const h = await world.appHealth();
            if (h?.ok && h.version === onDisk) return h;
            if (performance.now() > deadline) return h;
            await new Promise((r) => setTimeout(r, 50));
          }
        };
        const h = await healthy();
        if (!(h?.ok && h.version === onDisk)) {
          const message = `after run ${run.runId} (${outcome}, kills ${run.kills.join(', ') || 'none'}) the service answers ${JSON.stringify(h)}, expected ${onDisk}`;
          if (settledHere && (outcome === 'committed' || outcome === 'rolled-back')) fail(message);
          anomalies.push(message);
        }
        return outcome;
      };

      const restart = async (): Promise<void> => {
        daemon = await world.startOtad();
        restartSeq = maxSeq();
      };

      /** CHECK_NOW from idle; when nothing newer is pending, the next release is published first (unless draining). */
      const startRun = async (publish = true): Promise<Run> => {
        const s = saved();
        if (s.state !== 'idle') fail(`expected idle before a new run, found ${s.state}`);
        const installed = String(s.context.installedVersion);
        const bad = badVersions();
        let pending = [...world.releases.values()]
          .filter((r) => !bad.has(r.version) && compareVersions(r.version, installed) > 0)
          .sort((a, b) => compareVersions(b.version, a.version))[0];
        pending ??= publish ? await world.publishNext() : world.releases.get(installed);
        if (pending === undefined) return fail(`the installed version ${installed} is not a known release`);
        const res = await daemon.api
          .request<{ runId: string | null }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' })
          .catch((error: unknown) => fail(`CHECK_NOW failed (otad ${daemon.proc.alive() ? 'running' : 'not running'}): ${String(error)}`));
        if (!res.runId) fail('CHECK_NOW returned no run id');
        runs += 1;
        return { runId: res.runId!, from: installed, to: pending, startedAt: performance.now(), kills: [] };
      };

      const settle = async (run: Run): Promise<void> => {
        const deadline = performance.now() + 90_000;
        for (;;) {
          const s = readSaved(db);
          if (s !== null && settledRun(s, run)) return;
          if (!daemon.proc.alive()) fail(`otad exited by itself while run ${run.runId} was in ${s?.state}`);
          if (performance.now() > deadline) fail(`run ${run.runId} did not settle on its own within 90 s: still in ${s?.state}; kills ${run.kills.join(', ')}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };

      while (kills < budget) {
        const run = await startRun();
        let last: KillClass | null = null;
        let chain = true;
        while (chain && kills < budget) {
          const ahead = pathAfter(run, last);
          if (ahead.length === 0) break;
          // Random and targeted kills alternate; a targeted kill waits for the least-covered state ahead.
          const target = kills % 2 === 1 ? pickTarget(ahead) : null;
          const delay = rng() * (last === null ? estRunMs : estRunMs / 2);
          const hit = await waitForKillInstant(run, target, delay);
          if (!hit) {
            misses += 1;
            break;
          }
          await daemon.proc.kill('SIGKILL');
          kills += 1;
          if (last !== null) chainedKills += 1;
          const s = saved();
          last = classify(s, run);
          run.kills.push(last);
          counts.set(last, (counts.get(last) ?? 0) + 1);
          await assertOneCompleteRelease(run, last);
          await restart();
          // Sometimes the recovering run is killed again before it settles.
          chain = rng() < 0.35;
        }
        await settle(run);
        await assertSettled(run);
        if (run.kills.length === 0) estRunMs = 0.7 * estRunMs + 0.3 * (performance.now() - run.startedAt);
      }

      // Drain: without kills, otad ends on the newest good release and every broken one is marked bad.
      for (let i = 0; i < 10; i++) {
        const run = await startRun(false);
        await settle(run);
        if ((await assertSettled(run)) === 'up-to-date') break;
      }
      const s = saved();
      const good = [...world.releases.values()].filter((r) => !r.broken).sort((a, b) => compareVersions(b.version, a.version));
      expect(s.context.installedVersion, 'otad ends on the newest good release').toBe(good[0]!.version);
      const bad = badVersions();
      for (const r of world.releases.values()) expect(bad.has(r.version), `${r.version} marked bad`).toBe(r.broken);
      await daemon.proc.kill('SIGTERM');
    }

    // Delta staging is part of what the kills hit: count the stagings each otad log records.
    let deltaStagings = 0;
    let snapshotStagings = 0;
    let packageStagings = 0;
    for (const w of worlds) {
      const log = existsSync(w.sandbox.logPath) ? readFileSync(w.sandbox.logPath, 'utf8') : '';
      for (const line of log.split('\n')) {
        if (!line.includes('"release staged"')) continue;
        if (line.includes('"via":"delta"')) {
          deltaStagings += 1;
          // On btrfs (TMPDIR there), a delta starts from a snapshot of the installed release.
          if (line.includes('"method":"snapshot"')) snapshotStagings += 1;
        } else if (line.includes('"via":"package"')) packageStagings += 1;
      }
    }
    console.log(`crash-consistency: ${deltaStagings} releases staged from a delta (${snapshotStagings} of them on a btrfs snapshot), ${packageStagings} from the full package`);
    expect(deltaStagings, 'some runs staged from a delta').toBeGreaterThan(0);
    const elapsed = Math.round((performance.now() - started) / 1000);
    const table = [...counts.entries()].sort((a, b) => ORDER.indexOf(a[0] as KillClass) - ORDER.indexOf(b[0] as KillClass)).map(([k, v]) => `${k}=${v}`);
    console.log(
      `crash-consistency: seed ${SEED}: ${kills} kills (${chainedKills} during recovery), ${runs} runs, ${misses} runs ended before their kill, ${elapsed} s; kills per state: ${table.join(' ')}`,
    );
    if (anomalies.length) console.log(`crash-consistency anomalies (reported, not failed):\n  ${anomalies.join('\n  ')}`);
    const missing = REQUIRED.filter((c) => (counts.get(c) ?? 0) === 0);
    expect(missing, `states never hit by a kill (per state: ${table.join(' ')})`).toEqual([]);
  }, Math.max(240_000, KILLS * 15_000));
});

/** The version the service answers with, waiting up to 10 s for `expected` (a restarted service takes a moment). */
async function serviceVersion(world: CrashWorld, expected: string): Promise<string | null> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const h = await world.appHealth();
    if ((h?.ok && h.version === expected) || performance.now() > deadline) return h?.version ?? null;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const compareVersions = (a: string, b: string): number => semver.compare(a, b);

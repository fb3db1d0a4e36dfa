/**
 * The state folder's filesystem fills up the moment the database enters apply (a real otad with
 * real steps, its state folder on a real 20 MiB tmpfs): apply fails with ENOSPC and the move to
 * rollback cannot be saved. otad must not report or publish what it could not save (the API's
 * state is the database's while the disk is full, and every transition on the Socket.IO stream is
 * a row of the transition log), must retry the save by itself, and once space is back finish the
 * rollback on its own: no restart, no command. The product ends on one complete published release
 * with its service answering. Needs root to mount the tmpfs.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { io as connect, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProductStatus } from '../../../src/daemon/control.js';
import { BUILT_OTAD, PRODUCT, TOKEN, createCrashWorld, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { REPO_ROOT, assertNoGap, query, readSaved, waitUntil } from '../../support/otad-process.js';

const exec = promisify(execFile);

const isRoot = process.getuid?.() === 0;
const skipReason = !isRoot ? 'mounting a tmpfs for the state folder needs root' : !existsSync(BUILT_OTAD) ? `${BUILT_OTAD} is missing: run \`npm run build\` first` : null;
if (skipReason) console.warn(`state-disk-full-apply.test.ts: skipped, ${skipReason}`);

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Fill the filesystem of `dir` to its last block; called again, it takes back whatever was freed. */
function filler(dir: string): () => void {
  const own = join(dir, 'test-filler');
  mkdirSync(own, { recursive: true });
  let n = 0;
  return () => {
    for (const size of [1024 * 1024, 64 * 1024, 4096, 512, 1]) {
      for (;;) {
        try {
          writeFileSync(join(own, `f-${n++}`), Buffer.alloc(size, 1));
        } catch {
          break;
        }
      }
    }
  };
}

/** Poll an async probe until it gives a value (waitUntil takes synchronous probes only). */
async function eventually<T>(probe: () => Promise<T | null>, opts: { timeoutMs: number; what: string }): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * A crash world whose state folder is a 20 MiB tmpfs. The process service manager's pid records
 * (state/services) are bind-mounted from outside it: a service stopped by apply frees no block
 * there, so the journal write after the stop meets the full disk, as it does with systemd units.
 */
async function fullableWorld(seed: number): Promise<CrashWorld> {
  const mounts: string[] = [];
  const world = await createCrashWorld({
    seed,
    bigFileBytes: 1024 * 1024,
    prepareStateDir: (dir) => {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', dir]);
      mounts.unshift(dir);
      const outside = join(dirname(dir), 'services-outside-tmpfs');
      mkdirSync(outside, { recursive: true });
      mkdirSync(join(dir, 'services'), { recursive: true });
      execFileSync('mount', ['--bind', outside, join(dir, 'services')]);
      mounts.unshift(join(dir, 'services'));
    },
  });
  cleanups.push(() => rmSync(world.root, { recursive: true, force: true }));
  cleanups.push(() => {
    for (const m of mounts) execFileSync('umount', ['-l', m]);
  });
  cleanups.push(() => world.close(true));
  return world;
}

type TransitionEnvelope = { type: 'transition'; seq: number; payload: { seq: number; product: string; from: string; to: string } };

describe('the state folder full from the start of apply', () => {
  it.skipIf(skipReason !== null)('reports only what is saved, retries the save and finishes the rollback by itself once space is back', async () => {
    const world = await fullableWorld(17);
    const db = world.sandbox.dbPath;
    const state = world.sandbox.stateDir;
    const hookStarted = join(world.root, 'pre-apply-started');
    const go = join(world.root, 'pre-apply-go');
    // The hook holds apply (journal at `prepared`) until the test has filled the disk.
    const release = await world.publishNext({
      preApplyHook: `#!/bin/sh\ntouch "${hookStarted}"\ni=0\nwhile [ ! -e "${go}" ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 1; done\nexit 0\n`,
    });

    const daemon: RunningDaemon = await world.startOtad();
    const published: TransitionEnvelope[] = [];
    const socket: Socket = connect(daemon.url, { path: '/socket.io', auth: { token: TOKEN, topics: ['transition'] }, transports: ['websocket'] });
    cleanups.push(() => void socket.close());
    socket.on('message', (e: TransitionEnvelope) => {
      if (e.type === 'transition') published.push(e);
    });
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res());
      socket.once('connect_error', rej);
    });
    const status = async (): Promise<ProductStatus> => {
      const s = await daemon.api.request<{ products: ProductStatus[] }>('GET', '/api/v1/status');
      return s.products.find((p) => p.product === PRODUCT) as ProductStatus;
    };
    const fail = (message: string): never => {
      throw new Error(`${message}\n--- otad log tail ---\n${world.logTail()}`);
    };

    const { runId } = await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    await waitUntil(() => existsSync(hookStarted) && readSaved(db)?.state === 'apply', { timeoutMs: 90_000, intervalMs: 20, what: 'the database to enter apply' });
    const fill = filler(state);
    fill();
    // Anything otad frees meanwhile (a cleanup finishing) is taken back before apply goes on.
    await new Promise((r) => setTimeout(r, 500));
    fill();
    const publishedBeforeFull = published.length;
    writeFileSync(go, '');

    // While the disk is full: the API's state is the database's, and the move to rollback waits.
    let compared = 0;
    let saveFailure: NonNullable<ProductStatus['saveFailure']> | null = null;
    const fullUntil = Date.now() + 90_000;
    while (saveFailure === null || saveFailure.attempts < 3) {
      if (Date.now() > fullUntil) fail(`the move to rollback was never reported as unsaved (last status ${JSON.stringify(saveFailure)})`);
      fill();
      const before = readSaved(db);
      const api = await status();
      const after = readSaved(db);
      expect(before, 'the database is readable while full').not.toBeNull();
      // Nothing can be saved while the disk is full: both reads of the database agree with the API.
      expect({ api: api.state, runId: api.runId }).toEqual({ api: before?.state, runId: before?.runId });
      expect(after?.state).toBe(before?.state);
      expect(api.state).toBe('apply');
      compared += 1;
      if (api.saveFailure) {
        expect(api.saveFailure, world.logTail(60)).toMatchObject({ to: 'rollback', error: { code: 'DISK_FULL' } });
        expect(api.allowedEvents).toEqual([]);
        saveFailure = api.saveFailure;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(compared).toBeGreaterThan(0);
    // What the stream delivered meanwhile is rows the database held before it filled (a message
    // may arrive late); nothing was saved while it was full, so nothing else was published.
    const savedWhileFull = new Map(
      query<{ seq: number; from_state: string; to_state: string }>(db, 'SELECT seq, from_state, to_state FROM transitions WHERE product = ?', PRODUCT).map((r) => [r.seq, `${r.from_state}→${r.to_state}`]),
    );
    for (const e of published.slice(publishedBeforeFull)) expect(savedWhileFull.get(e.payload.seq), JSON.stringify(e.payload)).toBe(`${e.payload.from}→${e.payload.to}`);
    expect(published.some((e) => e.payload.to === 'rollback')).toBe(false);
    expect(readSaved(db)).toMatchObject({ state: 'apply', runId });
    expect(world.logTail(400)).toMatch(/cannot save the move to rollback: (SQLITE_FULL|SQLITE_IOERR\w*|ENOSPC); retrying/);
    // otactl says the same: the saved state, and the move that waits for its save.
    const shown = await exec(process.execPath, [join(REPO_ROOT, 'dist/src/cli/otactl.js'), '--url', daemon.url, '--token-file', join(world.root, 'etc/tokens.yaml'), 'status']);
    expect(shown.stdout).toContain(' apply');
    expect(shown.stdout).toMatch(/not saved: moved to rollback but cannot save it \(DISK_FULL: [^)]*\); otad retries/);
    // An operator's event is refused with the reason, not queued behind the database's back.
    await expect(daemon.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'ROLLBACK' })).rejects.toMatchObject({ code: 'STATE_NOT_SAVED' });

    // Space is back: otad saves the move, rolls back and settles, all by itself.
    rmSync(join(state, 'test-filler'), { recursive: true, force: true });
    const settled = await waitUntil(
      () => {
        const s = readSaved(db);
        return s !== null && s.runId === runId && (s.state === 'idle' || s.state === 'failed') && s.context.lastOutcome !== null ? s : null;
      },
      { timeoutMs: 90_000, intervalMs: 50, what: `run ${runId} to settle after space came back` },
    ).catch((error: unknown) => fail(String(error)));
    expect(daemon.proc.alive()).toBe(true);
    expect(settled.state, world.logTail()).toBe('idle');
    expect(settled.context.lastOutcome).toBe('rolled-back');
    // What sent the run to rollback: apply's own write after stopping the service met the full disk.
    expect(settled.context.error).toMatchObject({ code: 'DISK_FULL' });
    const after = await status();
    expect(after).toMatchObject({ state: 'idle', runId, lastOutcome: 'rolled-back', installedVersion: '1.0.0', saveFailure: null });
    expect(world.logTail(400)).toMatch(/saved the move to rollback after \d+ failed attempts?/);

    // One complete release on disk (the one installed before the run), its service answering.
    const install = await world.inspectInstall();
    expect(install.matches.map((m) => m.version), install.diff.join('\n')).toEqual(['1.0.0']);
    let app: { ok: boolean; version: string } | null = null;
    const appUntil = Date.now() + 30_000;
    while (Date.now() < appUntil) {
      app = await world.appHealth();
      if (app?.ok && app.version === '1.0.0') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(app).toEqual(expect.objectContaining({ ok: true, version: '1.0.0' }));

    // The log has no gap, holds the rollback, and every transition the stream published is one of its rows.
    const rows = query<{ seq: number; from_state: string; to_state: string }>(db, 'SELECT seq, from_state, to_state FROM transitions WHERE product = ? AND run_id = ? ORDER BY seq', PRODUCT, runId);
    assertNoGap(rows);
    expect(rows.map((r) => r.to_state)).toEqual(expect.arrayContaining(['apply', 'rollback', 'idle']));
    await waitUntil(() => published.some((e) => e.payload.to === 'idle' && e.payload.from === 'rollback'), { timeoutMs: 10_000, what: 'the stream to publish rollback → idle' });
    const all = query<{ seq: number; from_state: string; to_state: string }>(db, 'SELECT seq, from_state, to_state FROM transitions WHERE product = ? ORDER BY seq', PRODUCT);
    const bySeq = new Map(all.map((r) => [r.seq, r]));
    expect(published.length).toBeGreaterThan(0);
    for (const e of published.filter((x) => x.payload.product === PRODUCT)) {
      expect(bySeq.get(e.payload.seq), `published transition ${JSON.stringify(e.payload)} is a saved row`).toMatchObject({ from_state: e.payload.from, to_state: e.payload.to });
    }
    // The release that failed to apply is no longer on the install path.
    expect(install.matches.map((m) => m.version)).not.toContain(release.version);
  }, 300_000);
  it.skipIf(skipReason !== null)('a restart while the move to rollback is unsaved recovers from the saved apply, also on a disk still full; a clean stop there works', async () => {
    const world = await fullableWorld(18);
    const db = world.sandbox.dbPath;
    const state = world.sandbox.stateDir;
    const hookStarted = join(world.root, 'pre-apply-started');
    const go = join(world.root, 'pre-apply-go');
    await world.publishNext({
      preApplyHook: `#!/bin/sh\ntouch "${hookStarted}"\ni=0\nwhile [ ! -e "${go}" ]; do sleep 0.05; i=$((i+1)); [ $i -gt 2400 ] && exit 1; done\nexit 0\n`,
    });
    let daemon: RunningDaemon = await world.startOtad();
    const status = async (): Promise<ProductStatus> => {
      const s = await daemon.api.request<{ products: ProductStatus[] }>('GET', '/api/v1/status');
      return s.products.find((p) => p.product === PRODUCT) as ProductStatus;
    };
    const { runId } = await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    await waitUntil(() => existsSync(hookStarted) && readSaved(db)?.state === 'apply', { timeoutMs: 90_000, intervalMs: 20, what: 'the database to enter apply' });
    const fill = filler(state);
    fill();
    await new Promise((r) => setTimeout(r, 500));
    fill();
    writeFileSync(go, '');
    await eventually(async () => ((await status()).saveFailure?.attempts ?? 0) >= 2 || null, { timeoutMs: 90_000, what: 'the move to rollback to be reported unsaved' });
    await daemon.proc.kill('SIGKILL');
    expect(readSaved(db)).toMatchObject({ state: 'apply', runId });

    // Restarted on the disk still full: it comes up, reports the saved apply, and cannot save the recovery's move either.
    fill();
    daemon = await world.startOtad().catch((error: unknown) => {
      throw new Error(`${String(error)}\n--- otad log tail ---\n${world.logTail(30)}`);
    });
    const restarted = await eventually(async () => {
      const s = await status();
      return (s.saveFailure?.attempts ?? 0) >= 2 ? s : null;
    }, { timeoutMs: 90_000, what: 'the recovery move to be reported unsaved' });
    expect(restarted).toMatchObject({ state: 'apply', runId, saveFailure: { to: 'rollback', error: { code: 'DISK_FULL' } } });
    expect(readSaved(db)).toMatchObject({ state: 'apply', runId });

    // Stopped cleanly on the full disk: it stops at once (nothing runs while the move waits).
    const stopped = await daemon.proc.kill('SIGTERM');
    expect(stopped).toEqual({ code: 0, signal: null });
    expect(readSaved(db)).toMatchObject({ state: 'apply', runId });
    // A clean stop removed the single-instance lock, and a new one cannot be written on the full
    // disk: otad refuses to start and says why (systemd restarts it once there is room).
    fill();
    const refused = await world.startOtad().then(
      () => null,
      (error: unknown) => String(error),
    );
    expect(refused).toContain('exited before it was ready');
    expect(world.logTail(5)).toMatch(/writing the single-instance lock [^:]+: the disk is full/);

    rmSync(join(state, 'test-filler'), { recursive: true, force: true });
    daemon = await world.startOtad();
    const settled = await waitUntil(
      () => {
        const s = readSaved(db);
        return s !== null && s.runId === runId && (s.state === 'idle' || s.state === 'failed') && s.context.lastOutcome !== null ? s : null;
      },
      { timeoutMs: 90_000, intervalMs: 50, what: `run ${runId} to settle after space came back` },
    );
    expect(settled.state, world.logTail()).toBe('idle');
    expect(settled.context.lastOutcome).toBe('rolled-back');
    expect((await world.inspectInstall()).matches.map((m) => m.version)).toEqual(['1.0.0']);
    let app: { ok: boolean; version: string } | null = null;
    const appUntil = Date.now() + 30_000;
    while (Date.now() < appUntil) {
      app = await world.appHealth();
      if (app?.ok && app.version === '1.0.0') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(app).toEqual(expect.objectContaining({ ok: true, version: '1.0.0' }));
    assertNoGap(query(db, 'SELECT seq, from_state, to_state FROM transitions WHERE product = ? ORDER BY seq', PRODUCT));
  }, 300_000);
});

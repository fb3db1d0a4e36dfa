/**
 * Disk full during a database write: the transition cannot be saved, so the step it enters does
 * not start (nothing on the robot changes in a state the database does not know), what otad
 * reports stays what the database holds, the daemon keeps running and retries the save, and once
 * space is back the run continues by itself. Needs root for a small tmpfs. Any other failed write
 * (here SQLite itself refusing the transition row) is handled the same way.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { fakeStepProvider } from '../../support/fake-steps.js';
import { assertNoGap, readSaved, waitUntil } from '../../support/otad-process.js';

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn('database-full.test.ts: skipped, mounting a tmpfs needs root');
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function fill(dir: string): void {
  // Fill the filesystem: write until ENOSPC.
  const chunk = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(dir, `filler-${i}`), chunk);
    } catch {
      break;
    }
  }
  try {
    writeFileSync(join(dir, 'filler-last'), Buffer.alloc(512, 1));
  } catch {
    // Full to the last block.
  }
}

describe('disk full during a database write', () => {
  it.skipIf(!isRoot)('holds the unsaved move back, refuses events, retries the save and continues once space is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-dbfull-'));
    const state = join(dir, 'state');
    mkdirSync(state);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', state]);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    cleanups.push(() => void execFileSync('umount', ['-l', state]));

    const provider = fakeStepProvider({});
    const steps = provider.steps();
    const config = buildConfig({
      paths: { stateDir: state, backupDir: join(dir, 'backups'), cacheDir: join(dir, 'cache') },
      decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai'), precheck: { retryInterval: '300ms' } }],
    });
    const logging = createLogging({ level: 'debug', stdout: false });
    const daemon = new Daemon({ config, logging, clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
    await daemon.start();
    cleanups.push(() => daemon.stop(0).catch(() => {}));
    const product = () => daemon.status().products[0]!;

    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product().state === 'awaitingChoice');
    fill(state);

    const result = await daemon.dispatch({ type: 'UPDATE_NOW', source: 'rest' });
    // The move to preCheck is not in the database: otad still reports awaitingChoice, as saved.
    expect(result.state).toBe('awaitingChoice');
    await waitUntil(() => (product().saveFailure?.attempts ?? 0) >= 2, { what: 'a second attempt to save the move' });
    expect(product()).toMatchObject({ state: 'awaitingChoice', allowedEvents: [], saveFailure: { to: 'preCheck', error: { code: 'DISK_FULL' } } });
    expect(readSaved(config.paths.database)?.state).toBe('awaitingChoice');
    expect(steps.invocations.filter((i) => i.step === 'preCheck')).toEqual([]);
    expect(logging.tail({ level: 'error' }).some((l) => l.message === 'cannot save the move to preCheck: SQLITE_FULL; retrying')).toBe(true);
    await expect(daemon.dispatch({ type: 'CANCEL', source: 'rest' })).rejects.toMatchObject({ code: 'STATE_NOT_SAVED' });
    expect(daemon.health().ok).toBe(true);

    execFileSync('sh', ['-c', `rm -f ${state}/filler-*`]);
    await waitUntil(() => product().state === 'idle' && product().lastOutcome === 'committed', { timeoutMs: 30_000 });
    expect(product().saveFailure).toBeNull();
    expect(logging.tail({ level: 'info' }).some((l) => /^saved the move to preCheck after \d+ failed attempts?$/.test(l.message))).toBe(true);
    const rows = daemon.transitions({ product: 'robot-ai', limit: 100 });
    assertNoGap(rows.map((r) => ({ seq: r.seq, from_state: r.from, to_state: r.to })));
    expect(rows.at(-1)?.to).toBe('idle');
  }, 60_000);
  it('treats any failed write the same: a write refused by SQLite itself, then accepted again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-dbrefused-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const provider = fakeStepProvider({});
    const steps = provider.steps();
    const config = buildConfig({
      paths: { stateDir: join(dir, 'state'), backupDir: join(dir, 'backups'), cacheDir: join(dir, 'cache') },
      decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
      products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai'), precheck: { retryInterval: '300ms' } }],
    });
    const logging = createLogging({ level: 'debug', stdout: false });
    const daemon = new Daemon({ config, logging, clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
    await daemon.start();
    cleanups.push(() => daemon.stop(0).catch(() => {}));
    const product = () => daemon.status().products[0]!;

    await daemon.dispatch({ type: 'CHECK_NOW', source: 'cli' });
    await waitUntil(() => product().state === 'awaitingChoice');
    // Another connection makes SQLite refuse every new transition row (an error that is not ENOSPC).
    const other = new Database(config.paths.database);
    cleanups.push(() => void other.close());
    other.exec("CREATE TRIGGER refuse_transitions BEFORE INSERT ON transitions BEGIN SELECT RAISE(ABORT, 'refused for the test'); END");

    await daemon.dispatch({ type: 'UPDATE_NOW', source: 'rest' });
    await waitUntil(() => (product().saveFailure?.attempts ?? 0) >= 2, { what: 'a second attempt to save the move' });
    expect(product()).toMatchObject({ state: 'awaitingChoice', allowedEvents: [], saveFailure: { to: 'preCheck', error: { code: 'INTERNAL', message: 'refused for the test' } } });
    expect(readSaved(config.paths.database)?.state).toBe('awaitingChoice');
    expect(steps.invocations.filter((i) => i.step === 'preCheck')).toEqual([]);
    expect(logging.tail({ level: 'error' }).some((l) => l.message === 'cannot save the move to preCheck: SQLITE_CONSTRAINT_TRIGGER; retrying')).toBe(true);

    other.exec('DROP TRIGGER refuse_transitions');
    await waitUntil(() => product().state === 'idle' && product().lastOutcome === 'committed', { timeoutMs: 30_000 });
    const rows = daemon.transitions({ product: 'robot-ai', limit: 100 });
    assertNoGap(rows.map((r) => ({ seq: r.seq, from_state: r.from, to_state: r.to })));
    expect(rows.map((r) => r.to)).toContain('preCheck');
  }, 60_000);
});

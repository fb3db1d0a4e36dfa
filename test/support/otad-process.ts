/**
 * Running otad as a real child process in tests: spawn it (the built one or the test-only wiring
 * with fake steps), read its saved state straight from the SQLite file, SIGKILL it, wait for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import YAML from 'yaml';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
/** `npm test` builds the test-only wiring first: a compiled entry starts much faster than tsx. */
const BUILT_FAKE = join(REPO_ROOT, 'dist/test/support/otad-with-fake-steps.js');
/** The real otad whose clock SIGUSR2 moves to the install slot (otad-at-slot.ts). */
const BUILT_AT_SLOT = join(REPO_ROOT, 'dist/test/support/otad-at-slot.js');

export interface OtadProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** Resolves once the process has logged that it is ready (signal handlers installed, state restored). */
  ready(timeoutMs?: number): Promise<void>;
}

export interface Sandbox {
  dir: string;
  stateDir: string;
  configPath: string;
  dbPath: string;
  logPath: string;
  installRoot: string;
}

/** A temp folder with a config file for one product; `extra` is merged into the config document. */
export function makeSandbox(extra: Record<string, unknown> = {}, prefix = 'otad-test-'): Sandbox {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const stateDir = join(dir, 'state');
  const installRoot = join(dir, 'opt');
  mkdirSync(installRoot, { recursive: true });
  const config = {
    environment: 'test',
    paths: { stateDir, trustedRoot: join(dir, 'root.json'), inhibitFile: join(dir, 'inhibit') },
    logging: { level: 'info' },
    api: { enabled: false },
    products: [{ name: 'robot-ai', installPath: join(installRoot, 'robot-ai') }],
    ...extra,
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, YAML.stringify(config));
  return { dir, stateDir, configPath, dbPath: join(stateDir, 'otad.db'), logPath: join(dir, 'otad.log'), installRoot };
}

export function spawnOtad(
  sandbox: Sandbox,
  opts: { fake?: Record<string, unknown>; env?: Record<string, string>; entry?: 'fake' | 'built' | 'source' | 'at-slot' } = {},
): OtadProcess {
  const entry = opts.entry ?? 'fake';
  const args =
    entry === 'at-slot'
      ? existsSync(BUILT_AT_SLOT)
        ? [BUILT_AT_SLOT, '--config', sandbox.configPath]
        : ['--import', 'tsx', join(REPO_ROOT, 'test/support/otad-at-slot.ts'), '--config', sandbox.configPath]
      : entry === 'built'
      ? [join(REPO_ROOT, 'dist/src/cli/otad.js'), '--config', sandbox.configPath]
      : entry === 'source'
        ? ['--import', 'tsx', join(REPO_ROOT, 'src/cli/otad.ts'), '--config', sandbox.configPath]
        : existsSync(BUILT_FAKE)
          ? [BUILT_FAKE, '--config', sandbox.configPath]
          : ['--import', 'tsx', join(REPO_ROOT, 'test/support/otad-with-fake-steps.ts'), '--config', sandbox.configPath];
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      ...(opts.fake ? { OTA_TEST_FAKE_STEPS: JSON.stringify(opts.fake) } : {}),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Readiness is read only from what THIS process wrote: the log is shared by every restart on the
  // same sandbox, and a pid can come back after the kernel's pid counter wraps (pid_max 32768).
  const logStart = existsSync(sandbox.logPath) ? statSync(sandbox.logPath).size : 0;
  const log = createWriteStream(sandbox.logPath, { flags: 'a' });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => {
    child.on('exit', (code, signal) => {
      done = true;
      res({ code, signal });
    });
  });
  return {
    child,
    exited,
    alive: () => !done,
    async ready(timeoutMs = 60_000) {
      const logged = () =>
        existsSync(sandbox.logPath) &&
        readFileSync(sandbox.logPath)
          .subarray(logStart)
          .toString('utf8')
          .split('\n')
          .some((l) => l.includes('"otad ready"') && l.includes(`"pid":${child.pid}`));
      await waitUntil(() => done || logged(), {
        timeoutMs,
        intervalMs: 20,
        what: 'otad to be ready',
      });
      if (done) throw new Error('otad exited before it was ready');
    },
    async kill(signal = 'SIGKILL') {
      if (!done) child.kill(signal);
      return exited;
    },
  };
}

export interface SavedState {
  state: string;
  runId: string | null;
  context: Record<string, unknown>;
}

/** The state as the daemon last saved it, read through a separate read-only connection. */
export function readSaved(dbPath: string, product = 'robot-ai'): SavedState | null {
  let db: Database.Database | null = null;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    const row = db.prepare('SELECT state, run_id, snapshot FROM snapshots WHERE product = ?').get(product) as
      | { state: string; run_id: string | null; snapshot: string }
      | undefined;
    if (!row) return null;
    const snap = JSON.parse(row.snapshot) as { context: Record<string, unknown> };
    return { state: row.state, runId: row.run_id, context: snap.context };
  } catch {
    return null;
  } finally {
    db?.close();
  }
}

export function query<T>(dbPath: string, sql: string, ...args: unknown[]): T[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare(sql).all(...args) as T[];
  } finally {
    db.close();
  }
}

export async function waitUntil<T>(probe: () => T | null | undefined | false, opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'a condition'}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}

/** Every row's from-state is the previous row's to-state: the log has no gap. */
export function assertNoGap(rows: Array<{ from_state: string; to_state: string; seq: number }>): void {
  for (let i = 1; i < rows.length; i++) {
    const prev = rows[i - 1]!;
    const row = rows[i]!;
    if (row.from_state !== prev.to_state) {
      throw new Error(`transition log gap at seq ${row.seq}: previous row ended in ${prev.to_state}, this one starts from ${row.from_state}`);
    }
  }
}

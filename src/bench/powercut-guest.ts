/**
 * The guest side of the power-cut harness (npm run powercut, docs/crash-testing.md "Power cuts"),
 * run by the guest's init (scripts/powercut-guest-init.sh) with the Node runtime otad ships:
 *
 *   powercut-guest.js pre     prints what the power cut left on disk, BEFORE otad starts: the saved
 *                             state, the apply journal, the install link and its tree (the database
 *                             is read from a copy, so reading it changes nothing otad will find)
 *   powercut-guest.js boot    both, in one Node start: the pre view, then otad, then the server
 *   powercut-guest.js serve   serves the host on port 8471 (qemu forwards a host port to it):
 *                             GET /pre, GET /check (the same view now, plus the run rows, the
 *                             transition log's gaps, the release store, leftovers, the database's
 *                             integrity check, the service's /health), POST /check-now (CHECK_NOW
 *                             to otad's local API), GET /log (the tail of otad's log)
 *
 * The guest only reports; the host (src/bench/powercut.ts) holds the published trees and judges.
 */
import { appendFileSync, copyFileSync, existsSync, openSync, writeFileSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { hashTree } from '../package/create.js';

export const GUEST_PORT = 8471;
export const GUEST_API_PORT = 8470;
export const GUEST_TOKEN = 'powercut-control-token-0123456789abcdef';
export const GUEST_PRODUCT = 'robot-ai';
export const GUEST_APP_PORT = 8480;
const STATE_DIR = '/var/lib/ota';
const INSTALL = '/opt/robot-ai';
const RELEASES = join(dirname(INSTALL), '.otad', GUEST_PRODUCT, 'releases');
const STAGING = join(dirname(RELEASES), 'staging');

export interface RunRow {
  run_id: string;
  started_at: number;
  ended_at: number | null;
  from_version: string | null;
  to_version: string | null;
  outcome: string | null;
  state: string;
}

export interface GuestView {
  at: number;
  saved: { state: string; runId: string | null; lastOutcome: string | null; installedVersion: string | null } | null;
  journal: { phase: string; from: string | null; to: string; runId: string } | null;
  install: { kind: 'plain' | 'link' | 'missing' | 'other'; target: string | null; dir: string | null; tree: Record<string, string> | null; version: string | null };
  /** Each entry of the release store, with its tree (names starting with '.' are otad's work folders). */
  releases: Array<{ name: string; tree: Record<string, string> | null }>;
  /** The run folders under the product's staging folder (a settled product has none). */
  staging: string[];
  runs: RunRow[];
  openRuns: RunRow[];
  gaps: string[];
  bad: string[];
  integrity: string;
  leftovers: string[];
  health: { ok: boolean; version: string } | null;
  error?: string;
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

async function treeOf(dir: string): Promise<Record<string, string> | null> {
  try {
    return await hashTree(dir);
  } catch {
    return null;
  }
}

/** Files whose names say an atomic write or a download was cut short (in the state folder and the product's folders). */
function leftovers(): string[] {
  const out: string[] = [];
  const visit = (dir: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(dir, name);
      if (/\.(tmp|part|partial)$|\.tmp[.-]|~$/.test(name)) out.push(p);
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory() && depth < 6 && !/^\d+\.\d+\.\d+$/.test(name)) visit(p, depth + 1);
    }
  };
  visit(STATE_DIR, 0);
  visit(join(dirname(INSTALL), '.otad'), 0);
  return out.sort();
}

function readDb(file: string): Pick<GuestView, 'saved' | 'runs' | 'openRuns' | 'gaps' | 'bad' | 'integrity'> {
  const empty = { saved: null, runs: [], openRuns: [], gaps: [], bad: [], integrity: 'no database' };
  if (!existsSync(file)) return empty;
  const db = new Database(file, { fileMustExist: true });
  try {
    const row = db.prepare('SELECT state, run_id, snapshot FROM snapshots WHERE product = ?').get(GUEST_PRODUCT) as { state: string; run_id: string | null; snapshot: string } | undefined;
    const ctx = row ? ((JSON.parse(row.snapshot) as { context: Record<string, unknown> }).context ?? {}) : {};
    const saved = row
      ? { state: row.state, runId: row.run_id, lastOutcome: (ctx.lastOutcome as string | null) ?? null, installedVersion: (ctx.installedVersion as string | null) ?? null }
      : null;
    const runs = db.prepare('SELECT run_id, started_at, ended_at, from_version, to_version, outcome, state FROM runs WHERE product = ? ORDER BY started_at, run_id').all(GUEST_PRODUCT) as RunRow[];
    const transitions = db.prepare('SELECT seq, from_state, to_state FROM transitions WHERE product = ? ORDER BY seq').all(GUEST_PRODUCT) as Array<{ seq: number; from_state: string; to_state: string }>;
    const gaps: string[] = [];
    for (let i = 1; i < transitions.length; i++) {
      if (transitions[i]!.from_state !== transitions[i - 1]!.to_state) gaps.push(`seq ${transitions[i]!.seq}: ${transitions[i - 1]!.to_state} then ${transitions[i]!.from_state}`);
    }
    const bad = (db.prepare('SELECT version FROM releases WHERE product = ? AND bad_at IS NOT NULL ORDER BY version').all(GUEST_PRODUCT) as Array<{ version: string }>).map((r) => r.version);
    const integrity = (db.prepare('PRAGMA integrity_check').all() as Array<{ integrity_check: string }>).map((r) => r.integrity_check).join('; ');
    return { saved, runs: runs.slice(-6), openRuns: runs.filter((r) => r.ended_at === null), gaps, bad, integrity };
  } finally {
    db.close();
  }
}

export async function view(options: { copyDb: boolean }): Promise<GuestView> {
  const dbFile = join(STATE_DIR, 'otad.db');
  let dbView: ReturnType<typeof readDb>;
  let error: string | undefined;
  try {
    if (options.copyDb && existsSync(dbFile)) {
      // A copy (with its write-ahead log): opening the real file would recover and checkpoint it.
      const copy = '/run/powercut-pre-db';
      rmSync(copy, { recursive: true, force: true });
      mkdirSync(copy, { recursive: true });
      for (const suffix of ['', '-wal']) if (existsSync(dbFile + suffix)) copyFileSync(dbFile + suffix, join(copy, `otad.db${suffix}`));
      dbView = readDb(join(copy, 'otad.db'));
    } else {
      dbView = readDb(dbFile);
    }
  } catch (e) {
    error = `database: ${(e as Error).message}`;
    dbView = { saved: null, runs: [], openRuns: [], gaps: [], bad: [], integrity: 'unreadable' };
  }
  let install: GuestView['install'] = { kind: 'missing', target: null, dir: null, tree: null, version: null };
  try {
    const st = lstatSync(INSTALL);
    const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'plain' : 'other';
    const target = kind === 'link' ? readlinkSync(INSTALL) : null;
    const dir = kind === 'other' ? null : realpathSync(INSTALL);
    const marker = dir ? readJson<{ version: string }>(join(dir, '.ota-release.json')) : null;
    let version = marker?.version ?? null;
    if (version === null && dir) version = readFileSync(join(dir, 'VERSION'), 'utf8').trim() || null;
    install = { kind, target: target === null ? null : resolve(dirname(INSTALL), target), dir, tree: dir ? await treeOf(dir) : null, version };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') error = `install: ${(e as Error).message}`;
  }
  const releases: GuestView['releases'] = [];
  for (const name of existsSync(RELEASES) ? readdirSync(RELEASES).sort() : []) releases.push({ name, tree: await treeOf(join(RELEASES, name)) });
  const health = await appHealth();
  return {
    at: Date.now(),
    ...dbView,
    journal: readJson(join(STATE_DIR, 'journal', `${GUEST_PRODUCT}.apply-journal.json`)),
    install,
    releases,
    staging: existsSync(join(STAGING, GUEST_PRODUCT)) ? readdirSync(join(STAGING, GUEST_PRODUCT)).sort() : [],
    leftovers: leftovers(),
    health,
    ...(error ? { error } : {}),
  };
}

async function appHealth(): Promise<GuestView['health']> {
  try {
    const res = await fetch(`http://127.0.0.1:${GUEST_APP_PORT}/health`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as { ok: boolean; version: string };
  } catch {
    return null;
  }
}

/** Whether otad is up: its API answers (after a cut the saved state says idle long before otad runs). */
async function otadUp(): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${GUEST_API_PORT}/api/v1/status`, { headers: { authorization: `Bearer ${GUEST_TOKEN}` }, signal: AbortSignal.timeout(5000) });
    return res.ok;
  } catch {
    return false;
  }
}

async function checkNow(): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${GUEST_API_PORT}/api/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${GUEST_TOKEN}` },
    body: JSON.stringify({ product: GUEST_PRODUCT, type: 'CHECK_NOW' }),
    signal: AbortSignal.timeout(10_000),
  });
  return { status: res.status, body: await res.text() };
}

function serve(): void {
  createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    void (async () => {
      try {
        if (req.method === 'GET' && req.url === '/pre') return send(200, readFileSync('/run/powercut-pre.json', 'utf8'));
        if (req.method === 'GET' && req.url === '/check') return send(200, await view({ copyDb: false }));
        if (req.method === 'POST' && req.url === '/check-now') {
          const r = await checkNow();
          return send(r.status, r.body);
        }
        if (req.method === 'GET' && req.url === '/state') {
          const db = existsSync(join(STATE_DIR, 'otad.db')) ? new Database(join(STATE_DIR, 'otad.db'), { readonly: true, fileMustExist: true }) : null;
          try {
            const saved = db?.prepare('SELECT state, run_id AS runId FROM snapshots WHERE product = ?').get(GUEST_PRODUCT) ?? null;
            return send(200, { saved, otadUp: await otadUp() });
          } finally {
            db?.close();
          }
        }
        if (req.method === 'POST' && req.url === '/poweroff') {
          // The end of a harness run: a clean shutdown, so the host's fsck -n sees a clean file system.
          send(200, { ok: true });
          setTimeout(() => {
            spawnSync('sh', ['-c', 'pkill -TERM -f otad.js; sleep 2; sync; mount -o remount,ro /; busybox poweroff -f']);
          }, 200);
          return;
        }
        if (req.method === 'GET' && req.url === '/health') return send(200, { health: await appHealth() });
        if (req.method === 'GET' && req.url === '/log') {
          const text = existsSync('/var/log/otad.log') ? readFileSync('/var/log/otad.log', 'utf8') : '';
          return send(200, { tail: text.trimEnd().split('\n').slice(-25).join('\n') });
        }
        send(404, { error: 'no such endpoint' });
      } catch (e) {
        send(500, { error: (e as Error).message });
      }
    })();
  }).listen(GUEST_PORT, '0.0.0.0');
}

if (process.argv[1]?.endsWith('powercut-guest.js')) {
  const cmd = process.argv[2];
  if (cmd === 'pre') {
    process.stdout.write(JSON.stringify(await view({ copyDb: true })) + '\n');
  } else if (cmd === 'boot') {
    // One Node start instead of two (under emulation each costs seconds): the view of what the cut
    // left, then otad (detached, its output to /var/log/otad.log), then the server for the host.
    const pre = JSON.stringify(await view({ copyDb: true }));
    writeFileSync('/run/powercut-pre.json', pre + '\n');
    appendFileSync('/dev/console', `POWERCUT-PRE ${pre}\n`);
    const log = openSync('/var/log/otad.log', 'a');
    const otad = spawn(process.execPath, [join(dirname(process.argv[1]!), '../cli/otad.js'), '--config', '/etc/ota/config.yaml'], { stdio: ['ignore', log, log], detached: true });
    otad.unref();
    appendFileSync('/dev/console', `POWERCUT-OTAD-STARTED ${otad.pid}\n`);
    serve();
  } else if (cmd === 'serve') {
    serve();
  } else {
    process.stderr.write('usage: powercut-guest.js pre|boot|serve\n');
    process.exit(2);
  }
}

/**
 * `npm run fleet-sim`: N simulated robots against one or two real ota-server processes (spawned from
 * dist, on loopback), on SQLite and on PostgreSQL. Each robot has its own ed25519 key and device id,
 * is preauthorized (ota-server --preauthorize) and checks in through otad's own client code:
 * src/fleet/device-fleet.ts (signing, the halt memory, the lease client), src/fleet/checkin-client.ts
 * (the check-in and what its answer means) and src/fleet/fleet-gate.ts (the pre-check's halt and lease
 * gate). Each robot's place in the check cycle is deviceDelayMs (src/schedule/spread.ts), so a fleet's
 * cycle compresses into `--window`. Prints check-ins per second, p50/p99 latency, peak concurrent
 * check-ins as a fraction of the fleet and the database size, each next to its goal; and, when the
 * server has rollouts (GET /api/v1/rollouts answers), injects failures into a rollout's first batch
 * and measures how long after the halt robots still start installs, and whether any robot outside
 * that batch starts the release.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { Agent, fetch as undiciFetch } from 'undici';
import { buildConfig, type Config } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import { parseDurationArg } from '../core/duration.js';
import { isOtaError, OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { newCheckinMemory, sendCheckin, type CheckinBody, type CheckinClient } from '../fleet/checkin-client.js';
import { createDeviceFleet, type DeviceFleet } from '../fleet/device-fleet.js';
import { createFleetGate, type FleetGate } from '../fleet/fleet-gate.js';
import { keyFingerprint, rawPublicKey, type DeviceKey } from '../fleet/signing.js';
import { createPublisher } from '../repo/repository.js';
import { deviceDelayMs, rolloutBucket } from '../schedule/spread.js';
import { postgresUnavailable, startPostgresCluster, type PostgresCluster } from './postgres-cluster.js';
import { processCpuMs, treeCpuMs } from './proc-cpu.js';

const SERVER_CLI = fileURLToPath(new URL('../cli/ota-server.js', import.meta.url));
const PRODUCT = 'sim-app';
const FROM = '1.0.0';
const RELEASE = '2.0.0';
/** otad's default fleet.checkinInterval: what one simulated check cycle stands for. */
const OTAD_CHECKIN_INTERVAL_MS = 3_600_000;
const GOAL_CONCURRENCY = 1 / 20;
const GOAL_P99_MS = 50;
const GOAL_RATE = 200;
const FIRST_BATCH_PERCENT = 5;
const FAILURE_THRESHOLD = 0.05;

export interface SimOptions {
  robots: number;
  servers: 1 | 2;
  dbs: ('sqlite' | 'postgres')[];
  windowMs: number;
  durationMs: number;
  installMs: number;
  failRate: number;
  pgUrl: string | null;
  json: boolean;
  /** Write the servers' CPU profiles (node --cpu-prof) here. */
  profileDir: string | null;
}

interface ClientCounts {
  /** Warnings and errors of the client code, other than the fleet gate's. */
  warn: number;
  lastWarn: string | null;
  /** The fleet gate's warnings: an install it held back (a halt, a wait, a refused lease). */
  gate: number;
}

/** A logger that keeps nothing but counts what would have been a warning or an error. */
function countingLogger(counts: ClientCounts, component: unknown = null): Logger {
  const bad = (m: string) => {
    if (component === 'fleet-gate') counts.gate++;
    else {
      counts.warn++;
      counts.lastWarn = m;
    }
  };
  return { debug: () => {}, info: () => {}, warn: bad, error: bad, child: (f) => countingLogger(counts, f.component ?? component) };
}

interface Robot {
  index: number;
  deviceId: string;
  fleet: DeviceFleet;
  gate: FleetGate;
  client: CheckinClient;
  usesLease: boolean;
  checkinOffsetMs: number;
  updateOffsetMs: number;
  version: string;
  state: string;
  lastOutcome: string | null;
  runId: string | null;
  targetVersion: string | null;
  /** Set once its install of the release started (its time, by the wall clock). */
  startedAt: number | null;
  willFail: boolean;
  inFirstBatch: boolean;
  checkedIn: number;
}

interface Figures {
  db: 'sqlite' | 'postgres';
  servers: number;
  robots: number;
  windowMs: number;
  durationMs: number;
  /** How long the check-in load ran. */
  elapsedMs: number;
  sent: number;
  accepted: number;
  refused: number;
  otherStatus: number;
  unreached: number;
  robotsCheckedIn: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  peakInFlight: number;
  peakFraction: number;
  busiestSecond: number;
  databaseBytes: number;
  databaseRows: { devices: number; checkins: number };
  databaseVersion: string;
  clientWarnings: number;
  gateWarnings: number;
  lastClientWarning: string | null;
  serverErrors: number;
  loadBefore: number[];
  loadAfter: number[];
  /** CPU milliseconds each party used during the check-in load (not the halt phase). */
  cpu: CpuFigures;
  /**
   * The simulator's own event-loop delay over the check-in load (perf_hooks, 5 ms resolution):
   * a check-in's measured latency includes the time the simulator's loop was late, so this bounds
   * how much of the latency is the simulator's, not the servers'.
   */
  simulatorLoopDelay: { p50Ms: number; p99Ms: number; maxMs: number };
  halt: HaltFigures | { unavailable: string };
}

interface CpuFigures {
  simulatorMs: number;
  /** Per ota-server process; null when its /proc entry could not be read. */
  serversMs: (number | null)[];
  /** The PostgreSQL cluster (postmaster and all backends); null on SQLite, or a --pg-url server not on this machine's /proc. */
  postgresMs: number | null;
}

interface CpuMark {
  simulator: NodeJS.CpuUsage;
  servers: (number | null)[];
  postgres: number | null;
}

interface HaltFigures {
  rolloutId: string;
  firstBatch: number;
  injectedFailures: number;
  haltedAt: number | null;
  haltBy: string | null;
  haltReason: string | null;
  startsBeforeHalt: number;
  startsAfterHalt: number;
  lastStartAfterHaltMs: number;
  startsOutsideFirstBatch: number;
  leaseRobots: number;
  refusals: Record<string, number>;
  /** The check-ins of this phase. */
  sent: number;
  accepted: number;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

interface SpawnedServer {
  url: string;
  child: ChildProcess;
  errors: () => number;
  tail: () => string;
  stop(): Promise<void>;
}

async function spawnServer(args: string[], profileDir: string | null): Promise<SpawnedServer> {
  const child = spawn(process.execPath, [...(profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), SERVER_CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let errors = 0;
  const tail: string[] = [];
  let buffered = '';
  let resolveUrl: (url: string) => void;
  let rejectUrl: (error: Error) => void;
  const listening = new Promise<string>((res, rej) => {
    resolveUrl = res;
    rejectUrl = rej;
  });
  const onLine = (line: string): void => {
    const m = /^ota-server listening on (\S+)/.exec(line);
    if (m) resolveUrl(m[1]!);
    if (line.includes('"level":"error"')) errors++;
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, nl));
      buffered = buffered.slice(nl + 1);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    errors++;
    tail.push(chunk.trim());
  });
  child.once('exit', (code) => rejectUrl(new OtaError('INTERNAL', `ota-server exited (${code}) before listening: ${tail.join('\n')}`)));
  const url = await listening;
  return {
    url,
    child,
    errors: () => errors,
    tail: () => tail.join('\n'),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000).then(() => child.kill('SIGKILL'))]);
    },
  };
}

async function databaseSize(db: 'sqlite' | 'postgres', location: string): Promise<{ bytes: number; rows: { devices: number; checkins: number }; version: string }> {
  if (db === 'sqlite') {
    const { default: Database } = await import('better-sqlite3');
    const d = new Database(location, { readonly: true });
    try {
      const count = (t: string) => (d.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
      const rows = { devices: count('devices'), checkins: count('checkins') };
      const bytes = ['', '-wal', '-shm'].reduce((sum, s) => sum + (existsSync(location + s) ? statSync(location + s).size : 0), 0);
      return { bytes, rows, version: (d.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v };
    } finally {
      d.close();
    }
  }
  const { default: pg } = await import('pg');
  const c = new pg.Client({ connectionString: location });
  await c.connect();
  try {
    const n = async (sql: string) => Number((await c.query<{ n: string }>(sql)).rows[0]!.n);
    return {
      bytes: await n('SELECT pg_database_size(current_database()) AS n'),
      rows: { devices: await n('SELECT count(*) AS n FROM devices'), checkins: await n('SELECT count(*) AS n FROM checkins') },
      version: (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v,
    };
  } finally {
    await c.end();
  }
}

interface Identity {
  deviceId: string;
  key: DeviceKey;
}

/** Every robot's device id and key, and the preauthorization file that accepts them. */
function makeIdentities(n: number): { identities: Identity[]; preauthorize: string } {
  const width = String(n).length;
  const identities = Array.from({ length: n }, (_, i) => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    return { deviceId: `sim-${String(i).padStart(width, '0')}`, key: { privateKey, publicKey: rawPublicKey(publicKey) } };
  });
  return { identities, preauthorize: `${identities.map((d) => `${d.deviceId} ${d.key.publicKey}`).join('\n')}\n` };
}

function makeRobots(identities: Identity[], urls: string[], agents: Agent[], opts: SimOptions, counts: ClientCounts): Robot[] {
  const logger = countingLogger(counts);
  // Half the robots take update leases, half learn halts from check-ins only.
  const configs: Config[] = urls.flatMap((url) => [false, true].map((enabled) => buildConfig({ server: { url }, fleet: { lease: { enabled, ttl: '10m', unreachable: 'wait' } } })));
  const robots: Robot[] = [];
  for (const [i, { deviceId, key }] of identities.entries()) {
    const values = new Map<string, string>();
    const server = i % urls.length;
    const usesLease = i % 2 === 0;
    const config = configs[server * 2 + (usesLease ? 1 : 0)]!;
    const fleet = createDeviceFleet({
      deviceId,
      key,
      fingerprint: keyFingerprint(key.publicKey),
      store: { getValue: (k) => values.get(k) ?? null, setValue: (k, v) => void values.set(k, v) },
      logger,
      now: () => Date.now(),
      dispatcher: agents[server]!,
    });
    const client: CheckinClient = { http: fleet.http(config), halts: fleet.halts, memory: newCheckinMemory(), log: logger, fingerprint: fleet.fingerprint, publicKey: key.publicKey, now: () => Date.now() };
    const inFirstBatch = rolloutBucket(deviceId, PRODUCT, RELEASE) < FIRST_BATCH_PERCENT;
    robots.push({
      index: i,
      deviceId,
      fleet,
      gate: createFleetGate(fleet, config, logger),
      client,
      usesLease,
      checkinOffsetMs: deviceDelayMs(deviceId, 'otad/fleet-sim/checkin', opts.windowMs),
      updateOffsetMs: deviceDelayMs(deviceId, 'otad/fleet-sim/update', opts.windowMs),
      version: FROM,
      state: 'idle',
      lastOutcome: null,
      runId: null,
      targetVersion: null,
      startedAt: null,
      willFail: false,
      inFirstBatch,
      checkedIn: 0,
    });
  }
  // The injected failures: a share of the first batch (at least one robot) rolls back.
  const first = robots.filter((r) => r.inFirstBatch);
  const failing = Math.max(1, Math.ceil(first.length * opts.failRate));
  for (const r of first.slice(0, failing)) r.willFail = true;
  return robots;
}

function bodyOf(r: Robot): CheckinBody {
  return { deviceId: r.deviceId, product: PRODUCT, version: r.version, state: r.state, lastOutcome: r.lastOutcome, error: null, runId: r.runId, targetVersion: r.targetVersion };
}

interface Load {
  sent: number;
  accepted: number;
  refused: number;
  otherStatus: number;
  unreached: number;
  inFlight: number;
  peakInFlight: number;
  latencies: number[];
  perSecond: Map<number, number>;
}

const newLoad = (): Load => ({ sent: 0, accepted: 0, refused: 0, otherStatus: 0, unreached: 0, inFlight: 0, peakInFlight: 0, latencies: [], perSecond: new Map() });

async function checkIn(r: Robot, load: Load, t0: number): Promise<void> {
  load.sent++;
  load.inFlight++;
  if (load.inFlight > load.peakInFlight) load.peakInFlight = load.inFlight;
  const start = performance.now();
  const second = Math.floor((start - t0) / 1000);
  load.perSecond.set(second, (load.perSecond.get(second) ?? 0) + 1);
  const result = await sendCheckin(r.client, bodyOf(r));
  load.latencies.push(performance.now() - start);
  load.inFlight--;
  if (result.kind === 'accepted') {
    load.accepted++;
    r.checkedIn++;
  } else if (result.kind === 'refused') load.refused++;
  else if (result.kind === 'unreached') load.unreached++;
  else load.otherStatus++;
}

/**
 * Fire `event(robot)` at offset + k × window for every robot, from `fromMs` to `untilMs` after t0,
 * without waiting for one to end before the next begins (robots do not wait for each other).
 */
async function runCycles(robots: Robot[], offset: (r: Robot) => number, windowMs: number, t0: number, fromMs: number, untilMs: number, event: (r: Robot) => Promise<void>, stop: () => boolean = () => false): Promise<void> {
  const order = [...robots].sort((a, b) => offset(a) - offset(b));
  const pending = new Set<Promise<void>>();
  for (let cycle = Math.floor(fromMs / windowMs); cycle * windowMs < untilMs && !stop(); cycle++) {
    for (const r of order) {
      const at = cycle * windowMs + offset(r);
      if (at < fromMs) continue;
      if (at >= untilMs || stop()) break;
      const wait = t0 + at - performance.now();
      if (wait > 1) await sleep(wait);
      const p = event(r).catch(() => {});
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
  }
  await Promise.all(pending);
}

async function operator(url: string, token: string, method: string, apiPath: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> | null }> {
  const res = await undiciFetch(`${url}${apiPath}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = text === '' ? null : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed };
}

/**
 * The halt: a server-side rollout of RELEASE in two batches (5 %, then everyone else), created first;
 * the release is offered one check cycle later, once every robot has checked in and been told to
 * wait. A share of the first batch rolls back. Half the robots take update leases (the server
 * answers a halted rollout at once), half learn halts only from their check-ins.
 */
async function haltScenario(robots: Robot[], opts: SimOptions, url: string, token: string, load: Load): Promise<HaltFigures> {
  const W = opts.windowMs;
  const created = await operator(url, token, 'POST', '/api/v1/rollouts', {
    product: PRODUCT,
    version: RELEASE,
    batches: [{ percent: FIRST_BATCH_PERCENT }, { all: true }],
    soak: 2 * W,
    failureThreshold: FAILURE_THRESHOLD,
    minReports: 3,
  });
  if (created.status !== 201 || typeof created.body?.id !== 'string') {
    throw new OtaError('INTERNAL', `creating the rollout answered HTTP ${created.status}: ${JSON.stringify(created.body)}`);
  }
  const rolloutId = created.body.id;
  const refusals: Record<string, number> = {};
  let halt: { at: number; by: string; reason: string } | null = null;
  let stopAt = Infinity;
  const t0 = performance.now();
  const poll = (async () => {
    while (halt === null && performance.now() - t0 < 5 * W) {
      // An overloaded server may drop the operator's poll: that is not the end of the run, ask again.
      const r = await operator(url, token, 'GET', `/api/v1/rollouts/${rolloutId}`).catch(() => ({ status: 0, body: null as Record<string, unknown> | null }));
      const h = r.body?.halt as { at?: number; by?: string; reason?: string } | null | undefined;
      if (r.body?.state === 'halted' && h && typeof h.at === 'number') {
        halt = { at: h.at, by: String(h.by), reason: String(h.reason) };
        // One more check cycle for every robot to hear of it, and its installs to end.
        stopAt = performance.now() - t0 + W + opts.installMs + 1000;
      }
      await sleep(200);
    }
  })();
  const until = () => Math.min(5 * W, stopAt);
  const install = async (r: Robot): Promise<void> => {
    if (r.startedAt !== null || r.version !== FROM) return;
    const held = r.gate.halted(PRODUCT, RELEASE);
    if (held) {
      refusals[held.code] = (refusals[held.code] ?? 0) + 1;
      return;
    }
    const runId = `run-${r.deviceId}`;
    const admitted = await r.gate.admit({ product: PRODUCT, runId, version: RELEASE, fromVersion: FROM }, AbortSignal.timeout(10_000));
    if (!admitted.ok) {
      refusals[admitted.reason.code] = (refusals[admitted.reason.code] ?? 0) + 1;
      return;
    }
    r.startedAt = Date.now();
    Object.assign(r, { state: 'apply', runId, targetVersion: RELEASE, lastOutcome: null });
    await checkIn(r, load, t0);
    await sleep(opts.installMs);
    if (r.willFail) Object.assign(r, { state: 'idle', lastOutcome: 'rolled-back' });
    else Object.assign(r, { state: 'idle', version: RELEASE, lastOutcome: 'committed' });
    // otad checks in when a run ends, and returns its lease.
    await checkIn(r, load, t0);
    await r.fleet.leases.release(PRODUCT);
  };
  await Promise.all([
    runCycles(robots, (r) => r.checkinOffsetMs, W, t0, 0, Infinity, (r) => checkIn(r, load, t0), () => performance.now() - t0 >= until()),
    runCycles(robots, (r) => r.updateOffsetMs, W, t0, W, Infinity, install, () => performance.now() - t0 >= until()),
    poll,
  ]);
  const h = halt as { at: number; by: string; reason: string } | null;
  const started = robots.filter((r) => r.startedAt !== null);
  const after = h === null ? [] : started.filter((r) => (r.startedAt as number) > h.at);
  return {
    rolloutId,
    firstBatch: robots.filter((r) => r.inFirstBatch).length,
    injectedFailures: robots.filter((r) => r.willFail).length,
    haltedAt: h?.at ?? null,
    haltBy: h?.by ?? null,
    haltReason: h?.reason ?? null,
    startsBeforeHalt: started.length - after.length,
    startsAfterHalt: after.length,
    lastStartAfterHaltMs: h === null ? NaN : Math.max(0, ...after.map((r) => (r.startedAt as number) - h.at)),
    startsOutsideFirstBatch: started.filter((r) => !r.inFirstBatch).length,
    leaseRobots: robots.filter((r) => r.usesLease).length,
    refusals,
    sent: load.sent,
    accepted: load.accepted,
  };
}

async function runOne(db: 'sqlite' | 'postgres', opts: SimOptions, cluster: PostgresCluster | null, say: (line: string) => void): Promise<Figures> {
  const dir = mkdtempSync(path.join(tmpdir(), 'otad-fleet-sim-'));
  const servers: SpawnedServer[] = [];
  const agents: Agent[] = [];
  try {
    const repoDir = path.join(dir, 'repo');
    const keysDir = path.join(dir, 'keys');
    await createPublisher({ repoDir, keysDir, clock: systemClock }).init();
    const token = randomBytes(16).toString('hex');
    writeFileSync(path.join(dir, 'token'), token, { mode: 0o600 });
    const database = db === 'sqlite' ? path.join(dir, 'fleet.db') : await (opts.pgUrl ? freshDatabaseAt(opts.pgUrl) : (cluster as PostgresCluster).freshDatabase());
    const serverCount = db === 'sqlite' ? 1 : opts.servers;
    const counts: ClientCounts = { warn: 0, lastWarn: null, gate: 0 };
    const common = ['--repo', repoDir, '--keys', keysDir, '--host', '127.0.0.1', '--port', '0', '--database', database, '--token-file', path.join(dir, 'token'), '--no-timestamp-refresh',
      // Every simulated robot comes from 127.0.0.1: the per-source limit would otherwise refuse the fleet as one robot.
      '--device-rate', '1000000', '--device-burst', '1000000', '--max-pending', String(opts.robots + 10)];
    const pre = makeIdentities(opts.robots);
    writeFileSync(path.join(dir, 'robots.txt'), pre.preauthorize);
    servers.push(await spawnServer([...common, '--preauthorize', path.join(dir, 'robots.txt')], opts.profileDir));
    if (serverCount === 2) servers.push(await spawnServer(common, opts.profileDir));
    for (const _ of servers) agents.push(new Agent({ connections: 64, keepAliveTimeout: 30_000 }));
    const robots = makeRobots(pre.identities, servers.map((x) => x.url), agents, opts, counts);
    const postmaster = db === 'postgres' && cluster !== null && !opts.pgUrl ? cluster.postmasterPid() : null;
    const mark = (): CpuMark => ({
      simulator: process.cpuUsage(),
      servers: servers.map((s) => (s.child.pid === undefined ? null : processCpuMs(s.child.pid))),
      postgres: postmaster === null ? null : treeCpuMs(postmaster),
    });
    const loadBefore = loadavg();
    const load = newLoad();
    const cpuBefore = mark();
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const t0 = performance.now();
    say(`  ${db}: ${serverCount} server(s) up; ${opts.robots} robots checking in for ${Math.round(opts.durationMs / 1000)} s`);
    await runCycles(robots, (r) => r.checkinOffsetMs, opts.windowMs, t0, 0, opts.durationMs, (r) => checkIn(r, load, t0));
    loopDelay.disable();
    // The histogram holds the intervals between the 5 ms timer's runs; lateness is what exceeds 5 ms.
    const late = (ns: number) => Math.max(0, ns / 1e6 - 5);
    const simulatorLoopDelay = { p50Ms: late(loopDelay.percentile(50)), p99Ms: late(loopDelay.percentile(99)), maxMs: late(loopDelay.max) };
    const elapsed = performance.now() - t0;
    const cpuAfter = mark();
    const loadAfter = loadavg();
    const since = (after: number | null, before: number | null) => (after === null || before === null ? null : after - before);
    const simulatorUsage = process.cpuUsage(cpuBefore.simulator);
    const cpu: CpuFigures = {
      simulatorMs: (simulatorUsage.user + simulatorUsage.system) / 1000,
      serversMs: cpuAfter.servers.map((a, i) => since(a, cpuBefore.servers[i] ?? null)),
      postgresMs: since(cpuAfter.postgres, cpuBefore.postgres),
    };
    const sorted = Float64Array.from(load.latencies).sort();
    const phase: Load = { ...load };
    const size = await databaseSize(db, database);
    let halt: HaltFigures | { unavailable: string };
    const probe = await operator(servers[0]!.url, token, 'GET', '/api/v1/rollouts');
    if (probe.status === 404) halt = { unavailable: 'needs rollouts on the server' };
    else if (probe.status !== 200) halt = { unavailable: `GET /api/v1/rollouts answered HTTP ${probe.status}` };
    else {
      say(`  ${db}: rollout with a failing first batch`);
      halt = await haltScenario(robots, opts, servers[0]!.url, token, newLoad());
    }
    return {
      db,
      servers: serverCount,
      robots: opts.robots,
      windowMs: opts.windowMs,
      durationMs: opts.durationMs,
      elapsedMs: elapsed,
      sent: phase.sent,
      accepted: phase.accepted,
      refused: phase.refused,
      otherStatus: phase.otherStatus,
      unreached: phase.unreached,
      robotsCheckedIn: robots.filter((r) => r.checkedIn > 0).length,
      perSecond: phase.sent / (elapsed / 1000),
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
      peakInFlight: phase.peakInFlight,
      peakFraction: phase.peakInFlight / opts.robots,
      busiestSecond: Math.max(0, ...phase.perSecond.values()),
      databaseBytes: size.bytes,
      databaseRows: size.rows,
      databaseVersion: size.version,
      clientWarnings: counts.warn,
      gateWarnings: counts.gate,
      lastClientWarning: counts.lastWarn,
      serverErrors: servers.reduce((n, s) => n + s.errors(), 0),
      loadBefore,
      loadAfter,
      simulatorLoopDelay,
      cpu,
      halt,
    };
  } finally {
    for (const s of servers) await s.stop();
    for (const a of agents) await a.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function freshDatabaseAt(baseUrl: string): Promise<string> {
  const { default: pg } = await import('pg');
  const name = `otad_fleet_sim_${process.pid}_${Date.now()}`;
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;
const ms = (x: number) => (Number.isFinite(x) ? `${x.toFixed(1)} ms` : 'n/a');
const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
const la = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');

export function report(f: Figures): string[] {
  const lines: string[] = [];
  const pad = (s: string) => s.padEnd(30);
  lines.push(`== ${f.db === 'sqlite' ? `SQLite ${f.databaseVersion}` : `PostgreSQL ${f.databaseVersion}`}, ${f.servers} ota-server process${f.servers === 1 ? '' : 'es'} ==`);
  const errors = f.refused + f.otherStatus + f.unreached;
  lines.push(`${pad('check-ins')}${f.sent} sent, ${f.accepted} accepted, ${f.refused} refused, ${f.otherStatus} other answers, ${f.unreached} unanswered; ${f.robotsCheckedIn} of ${f.robots} robots checked in`);
  lines.push(`${pad('errors')}${errors} failed check-ins; over the whole run ${f.clientWarnings} client warnings${f.lastClientWarning ? ` (last: ${f.lastClientWarning})` : ''}, ${f.serverErrors} server error lines; ${f.gateWarnings} installs held back by the fleet gate`);
  lines.push(`${pad('check-ins per second')}${f.perSecond.toFixed(1)} (busiest second ${f.busiestSecond})`);
  const p99Goal = f.db === 'postgres' && f.servers === 2;
  const atRate = f.perSecond >= GOAL_RATE * 0.95;
  lines.push(
    `${pad('latency p50 / p99 / max')}${ms(f.p50Ms)} / ${ms(f.p99Ms)} / ${ms(f.maxMs)}   goal: p99 < ${GOAL_P99_MS} ms at ${GOAL_RATE}/s on PostgreSQL with 2 servers: ${
      p99Goal ? (atRate ? verdict(f.p99Ms < GOAL_P99_MS) : `MISS (ran at ${f.perSecond.toFixed(0)}/s, not ${GOAL_RATE}/s)`) : 'not this setup'
    }`,
  );
  const d = f.simulatorLoopDelay;
  lines.push(`${pad("simulator's loop delay")}p50 ${ms(d.p50Ms)} / p99 ${ms(d.p99Ms)} / max ${ms(d.maxMs)} (how late the simulator's own event loop ran, sampled every 5 ms: part of every latency above)`);
  lines.push(`${pad('peak concurrent check-ins')}${f.peakInFlight} (${pct(f.peakFraction)} of the fleet)   goal: ≤ 1/20 (5 %): ${verdict(f.peakFraction <= GOAL_CONCURRENCY)}`);
  // CPU milliseconds per check-in are CPU seconds per 1,000 check-ins.
  const per1000 = (cpuMs: number | null) => (cpuMs === null ? 'n/a' : `${(cpuMs / Math.max(1, f.sent)).toFixed(2)} s`);
  const parties = [`simulator ${per1000(f.cpu.simulatorMs)}`, ...f.cpu.serversMs.map((s, i) => `server ${i + 1} ${per1000(s)}`)];
  if (f.db === 'postgres') parties.push(`PostgreSQL ${f.cpu.postgresMs === null ? 'n/a (--pg-url: not this machine\'s cluster)' : per1000(f.cpu.postgresMs)}`);
  const known = [f.cpu.simulatorMs, ...f.cpu.serversMs, ...(f.db === 'postgres' ? [f.cpu.postgresMs] : [])];
  const total = known.every((x) => x !== null) ? (known as number[]).reduce((a, b) => a + b, 0) : null;
  lines.push(`${pad('CPU per 1,000 check-ins')}${parties.join(', ')}${total === null ? '' : `; all ${per1000(total)} (${(total / Math.max(1, f.elapsedMs)).toFixed(2)} cores busy)`}`);
  lines.push(`${pad('database size')}${(f.databaseBytes / 2 ** 20).toFixed(1)} MiB (${f.databaseRows.devices} devices, ${f.databaseRows.checkins} check-in history rows)`);
  if ('unavailable' in f.halt) {
    lines.push(`halt latency: ${f.halt.unavailable}`);
  } else {
    const h = f.halt;
    lines.push(`${pad('rollout')}${h.rolloutId}: batch 1 = ${h.firstBatch} robots (${FIRST_BATCH_PERCENT} %), ${h.injectedFailures} of them roll back (injected); threshold ${FAILURE_THRESHOLD * 100} %; ${h.leaseRobots} robots take leases, the others learn halts from check-ins; ${h.sent} check-ins, ${h.accepted} accepted`);
    if (h.haltedAt === null) {
      lines.push(`${pad('halt')}the server did not halt the rollout   goal: halt within one check cycle: MISS`);
    } else {
      lines.push(`${pad('halt')}by ${h.haltBy}: ${h.haltReason}`);
      lines.push(`${pad('installs started')}${h.startsBeforeHalt} before the halt, ${h.startsAfterHalt} after it; refused: ${Object.entries(h.refusals).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
      lines.push(`${pad('halt latency')}the last install started ${(h.lastStartAfterHaltMs / 1000).toFixed(1)} s after the halt (check cycle ${(f.windowMs / 1000).toFixed(0)} s)   goal: within one check cycle: ${verdict(h.lastStartAfterHaltMs <= f.windowMs)}`);
    }
    lines.push(`${pad('outside the halted batch')}${h.startsOutsideFirstBatch} robots started the release   goal: none: ${verdict(h.startsOutsideFirstBatch === 0)}`);
  }
  lines.push(`${pad('load average')}before ${la(f.loadBefore)}, after ${la(f.loadAfter)}`);
  return lines;
}

export async function simulate(opts: SimOptions, say: (line: string) => void): Promise<Figures[]> {
  let cluster: PostgresCluster | null = null;
  const out: Figures[] = [];
  try {
    for (const db of opts.dbs) {
      if (db === 'postgres' && opts.pgUrl === null && cluster === null) {
        const why = postgresUnavailable();
        if (why !== null) throw new OtaError('CONFIG_INVALID', `--db postgres needs PostgreSQL: ${why}, or --pg-url`);
        cluster = await startPostgresCluster({ durable: true, maxConnections: 100 });
      }
      out.push(await runOne(db, opts, cluster, say));
    }
  } finally {
    await cluster?.stop();
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('fleet-sim')
    .description('simulated robots checking in to real ota-server processes; prints throughput, latency, concurrency, database size and halt latency against their goals')
    .option('--robots <n>', 'simulated robots', '10000')
    .option('--servers <n>', 'ota-server processes sharing the PostgreSQL database (1 or 2; SQLite always runs one)', '2')
    .option('--db <kind>', 'sqlite, postgres or both', 'both')
    .option('--window <duration>', 'the check cycle: every robot checks in once per window, at its own place in it', '50s')
    .option('--duration <duration>', 'how long the check-in load runs per database (at least one window)', '100s')
    .option('--install <duration>', 'how long a simulated install takes', '2s')
    .option('--fail-rate <fraction>', "share of the rollout's first batch that rolls back", '0.1')
    .option('--pg-url <url>', 'an existing PostgreSQL server to create the database in (default: a throwaway cluster)')
    .option('--profile <dir>', "write each ota-server's CPU profile (node --cpu-prof) into <dir>")
    .option('--quick', 'a CI-sized run: 100 robots, 4 s window, 8 s')
    .option('--json', 'also print the figures as one JSON line (FLEET-SIM-JSON …)')
    .exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.code === 'commander.helpDisplayed' ? 0 : 2;
    throw error;
  }
  const o = program.opts<{ robots: string; servers: string; db: string; window: string; duration: string; install: string; failRate: string; pgUrl?: string; profile?: string; quick?: boolean; json?: boolean }>();
  const given = (name: string) => program.getOptionValueSource(name) === 'cli';
  const robots = Number(o.quick && !given('robots') ? 100 : o.robots);
  const windowMs = parseDurationArg(o.quick && !given('window') ? '4s' : o.window, '--window');
  const durationMs = parseDurationArg(o.quick && !given('duration') ? '8s' : o.duration, '--duration');
  const installMs = parseDurationArg(o.quick && !given('install') ? '500ms' : o.install, '--install');
  if (!Number.isInteger(robots) || robots < 1) throw new OtaError('CONFIG_INVALID', `--robots ${o.robots}: expected a positive whole number`);
  if (o.servers !== '1' && o.servers !== '2') throw new OtaError('CONFIG_INVALID', `--servers ${o.servers}: expected 1 or 2`);
  if (!['sqlite', 'postgres', 'both'].includes(o.db)) throw new OtaError('CONFIG_INVALID', `--db ${o.db}: expected sqlite, postgres or both`);
  if (windowMs < 1000) throw new OtaError('CONFIG_INVALID', '--window must be at least 1s');
  if (durationMs < windowMs) throw new OtaError('CONFIG_INVALID', `--duration ${o.duration} is shorter than one --window: not every robot would check in`);
  const failRate = Number(o.failRate);
  if (!(failRate > 0 && failRate <= 1)) throw new OtaError('CONFIG_INVALID', `--fail-rate ${o.failRate}: expected a fraction in (0, 1]`);
  const opts: SimOptions = {
    robots,
    servers: o.servers === '1' ? 1 : 2,
    dbs: o.db === 'both' ? ['sqlite', 'postgres'] : [o.db as 'sqlite' | 'postgres'],
    windowMs,
    durationMs,
    installMs,
    failRate,
    pgUrl: o.pgUrl ?? null,
    json: o.json === true,
    profileDir: o.profile === undefined ? null : path.resolve(o.profile),
  };
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const compression = OTAD_CHECKIN_INTERVAL_MS / windowMs;
  say(`fleet-sim: ${robots} robots, each checking in once per ${windowMs / 1000} s window (deviceDelayMs spreads them), ${durationMs / 1000} s per database`);
  say(`  the window stands for otad's default fleet.checkinInterval (1 h): time compressed ${compression.toFixed(0)}×; the fleet's planned rate is ${(robots / (windowMs / 1000)).toFixed(1)} check-ins/s`);
  say(`  machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), node ${process.version}, load average ${la(loadavg())}`);
  const figures = await simulate(opts, say);
  for (const f of figures) for (const line of report(f)) say(line);
  if (opts.json) say(`FLEET-SIM-JSON ${JSON.stringify(figures)}`);
  return 0;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(isOtaError(error) ? `fleet-sim: ${error.code}: ${error.message}\n` : `fleet-sim: error: ${(error as Error).stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

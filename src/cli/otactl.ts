#!/usr/bin/env node
/**
 * otactl: the command-line client of otad for people and scripts on the robot.
 *
 * Talks to the daemon's local API (REST v1 and the Socket.IO stream). The daemon is found by
 * --url, OTA_URL, `<stateDir>/api.json`, or api.host/api.port of the configuration; the token by
 * --token-file, OTA_TOKEN_FILE, or the configured api.tokensFile. Output is readable by default and
 * JSON with --json. Exit codes: 0 ok, 1 failure (or a replay that diverged), 2 usage or
 * configuration, 3 not allowed now (409), 4 authentication or permission, 5 daemon unreachable.
 */
import { Command, CommanderError, Option } from 'commander';
import Database from 'better-sqlite3';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { loadConfig, type Config } from '../config/load.js';
import { parseDuration } from '../config/duration.js';
import { isOtaError, OtaError } from '../core/errors.js';
import { OTAD_VERSION } from '../daemon/daemon.js';
import type { BadMarkInfo, DaemonStatus, DispatchResult, ReleaseHistory, RunExport } from '../daemon/control.js';
import type { RunRecord } from '../store/store.js';
import type { LogLine } from '../core/logging.js';
import { ApiClient, ApiClientError, readTokenFile, resolveApiUrl } from '../api/client.js';
import type { Envelope, ResyncEnvelope } from '../api/socket.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, notAllowed: 3, auth: 4, unreachable: 5 } as const;

interface Globals {
  config?: string;
  url?: string;
  tokenFile?: string;
  json?: boolean;
}

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '-');

const program = new Command()
  .name('otactl')
  .description('Control and watch the otad update daemon')
  .version(OTAD_VERSION)
  .option('-c, --config <file>', 'otad configuration file (default: $OTA_CONFIG or /etc/ota/config.yaml)')
  .option('--url <url>', 'otad API address (default: $OTA_URL, <stateDir>/api.json, or api.host:api.port)')
  .option('--token-file <file>', 'file with an API token (default: $OTA_TOKEN_FILE or api.tokensFile)')
  .option('--json', 'machine-readable output')
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const globals = () => program.opts<Globals>();
let cachedConfig: Config | null = null;
function config(): Config {
  const g = globals();
  cachedConfig ??= loadConfig({ ...(g.config ? { path: g.config } : {}), allowMissingDefault: true });
  return cachedConfig;
}

function client(): ApiClient {
  const g = globals();
  const cfg = config();
  const url = resolveApiUrl({ url: g.url, env: process.env, config: cfg });
  const tokenFile = g.tokenFile ?? process.env.OTA_TOKEN_FILE ?? cfg.api.tokensFile;
  let token: string | null = null;
  if (existsSync(tokenFile)) {
    try {
      token = readTokenFile(tokenFile);
    } catch (error) {
      throw new OtaError('CONFIG_INVALID', `cannot read the token file ${tokenFile}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  } else if (g.tokenFile ?? process.env.OTA_TOKEN_FILE) {
    throw new OtaError('CONFIG_NOT_FOUND', `token file ${tokenFile} does not exist`);
  }
  return new ApiClient(url, token);
}

function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

// ----- status ------------------------------------------------------------------------------

function printStatus(s: DaemonStatus): void {
  out(`device ${s.deviceId}  otad ${s.otadVersion}  environment ${s.environment}${s.simulation ? '  SIMULATION' : ''}${s.stepsConfigured ? '' : '  (no update steps configured)'}`);
  for (const p of s.products) {
    out(`${p.product}: ${p.state}  installed ${p.installedVersion ?? '-'}${p.offeredVersion ? `  offered ${p.offeredVersion}` : ''}${p.lastOutcome ? `  last run ${p.lastOutcome}` : ''}`);
    if (p.releaseNotes) out(`  notes: ${p.releaseNotes.split('\n')[0]}`);
    if (p.deadlines.scheduledAt) out(`  scheduled for ${iso(p.deadlines.scheduledAt)}`);
    if (p.progress) out(`  ${p.progress.step}: ${p.progress.bytes}${p.progress.total ? `/${p.progress.total}` : ''} bytes`);
    if (p.preCheckReasons.length) out(`  waiting: ${p.preCheckReasons.map((r) => r.message).join('; ')}`);
    if (p.error) out(`  error: ${p.error.code}: ${p.error.message}`);
    out(`  allowed now: ${p.allowedEvents.join(', ') || 'none'}   last check ${iso(p.lastCheckAt)}   next check ${iso(p.nextCheckAt)}`);
    if (p.allowedEvents.includes('ROLLBACK') && p.rollbackTarget) out(`  rollback goes to ${p.rollbackTarget.version ?? 'nothing (first install undone)'} (otactl rollback)`);
  }
  for (const i of s.inhibits) out(`inhibit: ${i.holder} until ${iso(i.expiresAt)}: ${i.reason}`);
}

interface SnapshotRow {
  product: string;
  state: string;
  run_id: string | null;
  snapshot: string;
  updated_at: number;
}

/** The state as the daemon last saved it: for when the daemon is not running. */
function offlineStatus(reason: string): void {
  const cfg = config();
  if (!existsSync(cfg.paths.database)) {
    throw new ApiClientError(null, 'UNREACHABLE', `${reason}; and there is no state database at ${cfg.paths.database} to read instead`);
  }
  const db = new Database(cfg.paths.database, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT product, state, run_id, snapshot, updated_at FROM snapshots ORDER BY product').all() as SnapshotRow[];
    const products = rows.map((r) => {
      const ctx = (JSON.parse(r.snapshot) as { context?: Record<string, unknown> }).context ?? {};
      const offer = ctx.offer as { version?: string } | null | undefined;
      return {
        product: r.product,
        state: r.state,
        runId: r.run_id,
        installedVersion: (ctx.installedVersion as string | null) ?? null,
        offeredVersion: offer?.version ?? null,
        lastOutcome: (ctx.lastOutcome as string | null) ?? null,
        updatedAt: new Date(r.updated_at).toISOString(),
      };
    });
    if (globals().json) {
      printJson({ source: 'database', daemonReachable: false, reason, products });
      return;
    }
    out(`otad is not reachable (${reason}); showing the state it last saved in ${cfg.paths.database}:`);
    if (products.length === 0) out('no product state saved yet');
    for (const p of products) {
      out(`${p.product}: ${p.state}  installed ${p.installedVersion ?? '-'}${p.offeredVersion ? `  offered ${p.offeredVersion}` : ''}${p.lastOutcome ? `  last run ${p.lastOutcome}` : ''}  (saved ${p.updatedAt})`);
    }
  } finally {
    db.close();
  }
}

program
  .command('status')
  .description("show each product's lifecycle state (from the saved state when the daemon is not running)")
  .action(async () => {
    let status: DaemonStatus;
    try {
      status = await client().request<DaemonStatus>('GET', '/api/v1/status');
    } catch (error) {
      if (error instanceof ApiClientError && error.unreachable) return offlineStatus(error.message);
      throw error;
    }
    if (globals().json) printJson(status);
    else printStatus(status);
  });

// ----- events ------------------------------------------------------------------------------

function eventCommand(name: string, type: string, description: string, withReason = false): void {
  const cmd = program.command(`${name} [product]`).description(description);
  if (withReason) cmd.option('-r, --reason <text>', 'why (recorded in the audit log)');
  cmd.action(async (product: string | undefined, opts: { reason?: string }) => {
    const result = await client().request<DispatchResult>('POST', '/api/v1/events', {
      type,
      ...(product ? { product } : {}),
      ...(opts.reason ? { reason: opts.reason } : {}),
    });
    if (globals().json) printJson(result);
    else out(`${result.product}: ${type} accepted; now ${result.state}${result.runId ? ` (run ${result.runId})` : ''}`);
  });
}
eventCommand('check', 'CHECK_NOW', 'check for an update now');
eventCommand('update-now', 'UPDATE_NOW', 'install the offered update now');
eventCommand('schedule', 'SCHEDULE_3AM', 'install the offered update in the next maintenance slot (3 AM)');
eventCommand('confirm', 'CONFIRM', 'confirm an UPDATE_NOW that needs confirmation');
eventCommand('cancel', 'CANCEL', 'cancel the current run (until apply starts)');
eventCommand('reset', 'RESET', 'acknowledge a failed run and return to idle');

// ----- rollback and releases -------------------------------------------------------------

/** The product named, or the only one the daemon manages. */
async function productOrOnly(c: ApiClient, product: string | undefined): Promise<string> {
  if (product) return product;
  const s = await c.request<DaemonStatus>('GET', '/api/v1/status');
  if (s.products.length === 1) return (s.products[0] as DaemonStatus['products'][number]).product;
  throw new OtaError('CONFIG_INVALID', `name a product: this robot manages ${s.products.map((p) => p.product).join(', ') || 'none'}`);
}

const releasesPath = (product: string) => `/api/v1/products/${encodeURIComponent(product)}/releases`;

program
  .command('rollback [product]')
  .description('roll back to the previous release (refused when there is nothing to go back to); the release left is marked bad only with --mark-bad')
  .option('-r, --reason <text>', 'why (recorded in the audit log and the bad mark)')
  .option('--mark-bad', 'also mark the release it leaves bad, so no check offers it again (undo: otactl releases unmark VERSION)')
  .action(async (productArg: string | undefined, opts: { reason?: string; markBad?: boolean }) => {
    const c = client();
    const product = await productOrOnly(c, productArg);
    const before = await c.request<ReleaseHistory>('GET', releasesPath(product));
    const result = await c.request<DispatchResult>('POST', '/api/v1/events', {
      product,
      type: 'ROLLBACK',
      ...(opts.reason ? { reason: opts.reason } : {}),
      ...(opts.markBad ? { markBad: true } : {}),
    });
    if (globals().json) return printJson({ ...result, rollbackTarget: before.rollbackTarget, markBad: opts.markBad === true });
    const t = before.rollbackTarget;
    const to = t === null ? 'the previous release' : t.version === null ? 'nothing (the failed first install is undone)' : t.version;
    out(`${result.product}: rolling back to ${to}${t?.method === 'backup' ? ' (from a backup)' : ''}; now ${result.state}${result.runId ? ` (run ${result.runId})` : ''}`);
    const leaves = t?.leaves ?? before.installedVersion;
    if (leaves !== null && leaves !== t?.version) {
      out(
        opts.markBad
          ? `  ${leaves} is marked bad and will not be offered again (undo: otactl releases unmark ${leaves})`
          : `  ${leaves} is not marked bad: a later check may offer it again (use --mark-bad to keep it away)`,
      );
    }
  });

function badText(b: BadMarkInfo): string {
  const who = b.by === null ? 'recorded before otad kept who' : b.by === 'operator' ? `by operator ${b.actor ?? '(unknown)'}` : `automatically by ${b.actor ?? 'otad'}`;
  return `BAD since ${iso(b.at)} ${who}${b.runId ? ` (run ${b.runId})` : ''}: ${b.reason}`;
}

const releases = program
  .command('releases')
  .description('every release known for a product: installed, previous (where a rollback goes), on disk, backed up, bad and why')
  .option('-p, --product <name>')
  .action(async (opts: { product?: string }) => {
    const c = client();
    const product = await productOrOnly(c, opts.product);
    const h = await c.request<ReleaseHistory>('GET', releasesPath(product));
    if (globals().json) return printJson(h);
    const t = h.rollbackTarget;
    out(`${h.product}: installed ${h.installedVersion ?? '-'}   ${t === null ? `rollback: nothing to go back to${h.rollbackUnavailable ? ` (${h.rollbackUnavailable})` : ''}` : `rollback goes to ${t.version ?? 'nothing (first install undone)'}${t.method === 'backup' ? ' (from a backup)' : ''}`}`);
    if (h.releases.length === 0) out('  no releases known yet');
    for (const r of h.releases) {
      const tags = [r.installed ? 'installed' : null, r.previous ? 'previous' : null, r.onDisk ? 'on disk' : null, r.backup ? 'backup' : null, r.foundAt ? `found ${iso(r.foundAt)}` : null].filter((x) => x !== null);
      out(`  ${r.version.padEnd(12)} ${tags.join(', ') || '-'}`);
      if (r.bad) out(`  ${' '.repeat(12)} ${badText(r.bad)}`);
    }
  });
releases
  .command('unmark <version>')
  .description('clear the bad mark of a release, so a check may offer it again (audited)')
  .option('-p, --product <name>')
  .action(async (version: string, opts: { product?: string }) => {
    const c = client();
    const product = await productOrOnly(c, opts.product ?? releases.opts<{ product?: string }>().product);
    const r = await c.request<{ product: string; version: string; cleared: BadMarkInfo }>('DELETE', `${releasesPath(product)}/${encodeURIComponent(version)}/bad`);
    if (globals().json) return printJson(r);
    out(`${r.product} ${r.version}: bad mark cleared (it was ${badText(r.cleared)}); a check may offer it again`);
  });

const inhibit = program.command('inhibit').description('hold or release an inhibit: no update starts while one is held');
inhibit
  .command('hold <holder>')
  .requiredOption('-r, --reason <text>', 'why updates must wait')
  .option('-d, --duration <duration>', 'how long (for example 30m, 2h); capped by inhibit.maxHold')
  .action(async (holder: string, opts: { reason: string; duration?: string }) => {
    let durationMs: number | undefined;
    if (opts.duration !== undefined) {
      try {
        durationMs = parseDuration(opts.duration);
      } catch (error) {
        throw new OtaError('CONFIG_INVALID', `--duration ${opts.duration}: ${(error as Error).message}`);
      }
    }
    const r = await client().request<{ holder: string; expiresAt: number }>('POST', '/api/v1/inhibit', { holder, reason: opts.reason, ...(durationMs ? { durationMs } : {}) });
    if (globals().json) printJson(r);
    else out(`inhibit held by ${r.holder} until ${iso(r.expiresAt)}`);
  });
inhibit.command('release <holder>').action(async (holder: string) => {
  const r = await client().request<{ released: boolean }>('DELETE', `/api/v1/inhibit/${encodeURIComponent(holder)}`);
  if (globals().json) printJson(r);
  else out(`inhibit of ${holder} released`);
});

program
  .command('ack <product> [version]')
  .description('acknowledge the release notification of a product')
  .action(async (product: string, version: string | undefined) => {
    const r = await client().request<{ acknowledged: number }>('POST', '/api/v1/notifications/ack', { product, ...(version ? { version } : {}) });
    if (globals().json) printJson(r);
    else out(`${r.acknowledged} notification(s) acknowledged`);
  });

// ----- reading -----------------------------------------------------------------------------

program
  .command('history')
  .description('update runs, newest first')
  .option('-p, --product <name>')
  .option('-n, --limit <n>', 'at most this many', '20')
  .action(async (opts: { product?: string; limit: string }) => {
    const q = new URLSearchParams({ limit: opts.limit, ...(opts.product ? { product: opts.product } : {}) });
    const r = await client().request<{ runs: RunRecord[] }>('GET', `/api/v1/history?${q}`);
    if (globals().json) return printJson(r);
    if (r.runs.length === 0) out('no runs yet');
    for (const run of r.runs) {
      out(`${run.runId}  ${run.product}  ${run.kind}  ${iso(run.startedAt)}  ${run.fromVersion ?? '-'} → ${run.toVersion ?? '-'}  ${run.outcome ?? run.state}${run.error ? `  ${run.error.code}` : ''}`);
    }
  });

program
  .command('logs')
  .description("the daemon's recent log lines")
  .addOption(new Option('-l, --level <level>', 'this level and more severe').choices(['error', 'warn', 'info', 'debug']))
  .option('-n, --limit <n>', 'at most this many', '50')
  .option('--contains <text>', 'only lines containing this text')
  .action(async (opts: { level?: string; limit: string; contains?: string }) => {
    const q = new URLSearchParams({ limit: opts.limit, ...(opts.level ? { level: opts.level } : {}), ...(opts.contains ? { contains: opts.contains } : {}) });
    const r = await client().request<{ lines: LogLine[] }>('GET', `/api/v1/logs?${q}`);
    if (globals().json) return printJson(r);
    for (const l of r.lines) out(`${iso(l.time)} ${l.level.padEnd(5)} ${l.message}`);
  });

program
  .command('export <runId>')
  .description("write a run's transitions and snapshots to a file, for `otactl replay`")
  .option('-o, --output <file>', 'write here instead of standard output')
  .action(async (runId: string, opts: { output?: string }) => {
    const r = await client().request<RunExport>('GET', `/api/v1/runs/${encodeURIComponent(runId)}/export`);
    const text = JSON.stringify(r, null, 2) + '\n';
    if (opts.output) {
      writeFileSync(opts.output, text);
      if (!globals().json) process.stderr.write(`run ${runId}: ${r.transitions.length} transitions written to ${opts.output}\n`);
    } else {
      process.stdout.write(text);
    }
  });

program
  .command('replay <file>')
  .description('feed an exported run into the machine offline and compare the state sequence (exit 1 when it diverges)')
  .action(async (file: string) => {
    // Loaded on demand: the other commands start faster without the machine.
    const { formatReplay, replayRun, validateExport } = await import('../replay/replay.js');
    let exported: RunExport;
    try {
      exported = validateExport(JSON.parse(readFileSync(file, 'utf8')));
    } catch (error) {
      throw new OtaError('CONFIG_INVALID', `${file}: ${isOtaError(error) ? error.message : (error as Error).message}`);
    }
    const report = replayRun(exported);
    if (globals().json) printJson(report);
    else out(formatReplay(report));
    if (report.divergence) process.exitCode = EXIT.failure;
  });

// ----- watch -------------------------------------------------------------------------------

program
  .command('watch')
  .description('follow transitions, progress and notifications live (Ctrl-C to stop)')
  .option('-p, --product <name>', 'only this product')
  .option('--until <state>', 'exit 0 when a product reaches this state')
  .option('--since-seq <n>', 'first replay the transitions after this sequence number')
  .option('--logs', 'also stream log lines')
  .option('-t, --timeout <duration>', 'give up (exit 1) after this long')
  .action(async (opts: { product?: string; until?: string; sinceSeq?: string; logs?: boolean; timeout?: string }) => {
    const [{ io: connectSocket }, { default: cliProgress }] = await Promise.all([import('socket.io-client'), import('cli-progress')]);
    const c = client();
    const token = c.token;
    const json = globals().json === true;
    const topics = ['transition', 'progress', 'notification', ...(opts.logs ? ['log'] : [])];
    const socket = connectSocket(c.baseUrl, {
      path: '/socket.io',
      transports: ['websocket'],
      auth: { token, topics, ...(opts.sinceSeq !== undefined ? { lastSeq: Number(opts.sinceSeq) } : {}) },
      reconnectionDelayMax: 5000,
    });
    let lastSeq: number | null = opts.sinceSeq !== undefined ? Number(opts.sinceSeq) : null;
    const bar = process.stderr.isTTY && !json ? new cliProgress.SingleBar({ stream: process.stderr, format: '  {step} [{bar}] {percentage}% {value}/{total} bytes', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
    let barStep: string | null = null;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        bar?.stop();
        socket.disconnect();
        if (error) reject(error);
        else resolve();
      };
      if (opts.timeout) {
        const ms = parseDuration(opts.timeout);
        setTimeout(() => done(new OtaError('CANCELLED', `watch: no ${opts.until ? `"${opts.until}" state` : 'end'} within ${opts.timeout}`)), ms).unref();
      }
      socket.on('connect', () => {
        process.stderr.write(`watching otad at ${c.baseUrl}\n`);
      });
      socket.on('connect_error', (e: Error & { data?: { code?: string } }) => {
        if (e.data?.code === 'API_UNAUTHORIZED') done(new ApiClientError(401, 'API_UNAUTHORIZED', `the stream refused the token: ${e.message}`));
        else if (!socket.active) done(new ApiClientError(null, 'UNREACHABLE', `otad is not reachable at ${c.baseUrl}: ${e.message}`));
      });
      // On reconnection the daemon is asked for what was missed.
      socket.io.on('reconnect_attempt', () => {
        if (lastSeq !== null) socket.auth = { token, topics, lastSeq };
      });
      socket.on('message', (m: Envelope) => {
        const product = (m.payload as { product?: string }).product;
        if (opts.product && product !== undefined && product !== opts.product) return;
        if (m.type === 'transition' || (m as { type: string }).type === 'resync') lastSeq = m.seq;
        if (json) out(JSON.stringify(m));
        else if ((m as { type: string }).type === 'resync') {
          const r = (m as unknown as ResyncEnvelope).payload;
          out(`otad no longer holds the transitions after ${r.lastSeq} (${r.reason}); continuing from ${r.latestSeq} (otactl history and status show the rest)`);
        }
        else if (m.type === 'transition') {
          const t = m.payload as Envelope<'transition'>['payload'];
          if (bar && barStep) {
            bar.stop();
            barStep = null;
          }
          out(`${iso(t.at)} ${t.product}: ${t.from} → ${t.to}  (${t.event})`);
        } else if (m.type === 'progress') {
          const p = m.payload as Envelope<'progress'>['payload'];
          if (bar) {
            if (barStep !== p.step) {
              bar.stop();
              bar.start(p.total ?? p.bytes, p.bytes, { step: p.step });
              barStep = p.step;
            } else bar.update(p.bytes, { step: p.step });
          } else out(`${iso(m.time)} ${p.product}: ${p.step} ${p.bytes}${p.total !== null ? `/${p.total}` : ''} bytes`);
        } else if (m.type === 'notification') {
          const n = m.payload as Envelope<'notification'>['payload'];
          out(`${iso(m.time)} ${n.product}: ${n.kind}${n.version ? ` ${n.version}` : ''}${n.error ? ` (${n.error.code})` : ''}`);
        } else {
          const l = m.payload as Envelope<'log'>['payload'];
          out(`${iso(l.time)} ${l.level} ${l.message}`);
        }
        if (opts.until && m.type === 'transition' && (m.payload as { to: string }).to === opts.until) done();
      });
    });
  });

// ----- exit codes --------------------------------------------------------------------------

function exitCodeFor(error: unknown): number {
  if (error instanceof ApiClientError) {
    if (error.status === null) return EXIT.unreachable;
    if (error.status === 409) return EXIT.notAllowed;
    if (error.status === 401 || error.status === 403) return EXIT.auth;
    if (error.status === 400 || error.status === 404 || error.status === 413) return EXIT.usage;
    return EXIT.failure;
  }
  if (isOtaError(error) && error.category === 'config') return EXIT.usage;
  return EXIT.failure;
}

program.parseAsync().then(
  () => process.exit(process.exitCode ?? EXIT.ok),
  (error: unknown) => {
    if (error instanceof CommanderError) {
      process.exit(error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help' ? EXIT.ok : EXIT.usage);
    }
    const message = error instanceof ApiClientError || isOtaError(error) ? `${(error as { code: string }).code}: ${error.message}` : String(error);
    const details = error instanceof ApiClientError && error.status === 409 && error.details?.state ? ` (current state: ${String(error.details.state)})` : '';
    process.stderr.write(`otactl: ${message}${details}\n`);
    process.exit(exitCodeFor(error));
  },
);

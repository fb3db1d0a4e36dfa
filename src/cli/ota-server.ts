#!/usr/bin/env node
/**
 * ota-server: serve a repository folder to robots, accept uploads, keep the timestamp fresh and
 * take signed device check-ins into the fleet database. Localhost by default; put TLS (nginx, a load
 * balancer) in front for a fleet. `ota-server devices …` works on the fleet database directly.
 */
import { readStudioRepositories } from '../server/studio/repositories.js';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { systemClock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import type { Logger, LogFields } from '../core/logger.js';
import { parseDurationArg } from '../core/duration.js';
import { createServer, DEFAULT_DEVICE_RATE, DEFAULT_MAX_PENDING, DEFAULT_SITE_BUDGETS } from '../server/app.js';
import { describeBudgets, parseSiteBudgets } from '../server/rollouts/site-budget.js';
import { parseSourceRoots } from '../server/studio/source-roots.js';
import { DEFAULT_RETENTION } from '../server/store/sql-fleet-store.js';
import { describeDatabase, openFleetStore } from '../server/store/open-fleet-store.js';
import { preauthorizeFromFile, runDevicesCommand } from './ota-server-devices.js';
import { runRolloutsCommand } from './ota-server-rollouts.js';

/** JSON lines on stdout for journald; the daemon's winston logger is not needed here. */
function consoleLogger(base: LogFields = {}): Logger {
  const write = (level: string) => (message: string, fields?: LogFields) =>
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...base, ...fields })}\n`);
  return { debug: () => {}, info: write('info'), warn: write('warn'), error: write('error'), child: (f) => consoleLogger({ ...base, ...f }) };
}

function positiveNumber(text: string, name: string, integer = true): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new OtaError('CONFIG_INVALID', `${name} is ${JSON.stringify(text)}: expected a positive ${integer ? 'whole ' : ''}number`);
  return n;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'devices' || argv[0] === 'rollouts') {
    const run = argv[0] === 'devices' ? runDevicesCommand : runRolloutsCommand;
    try {
      await run(argv.slice(1), (text) => process.stdout.write(`${text}\n`));
      return 0;
    } catch (error) {
      if (error instanceof CommanderError) return error.code === 'commander.helpDisplayed' || error.code === 'commander.help' ? 0 : 2;
      throw error;
    }
  }
  const program = new Command('ota-server')
    .description('reference update server for otad')
    .requiredOption('--repo <dir>', 'repository folder created by ota-repo init')
    .requiredOption('--keys <dir>', 'online keys (timestamp, snapshot; targets for uploads)')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port', '8080')
    .option('--token-file <file>', 'bearer token for uploads, the publisher studio and the fleet view (without it all are disabled)')
    .option('--source-root <[name=]dir>', 'a folder the publisher studio may build releases from (repeatable)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--product-types <dir>', 'product-type templates the studio offers and edits (default: the ones shipped with otad)')
    .option('--studio-config <file>', 'the publisher studio\'s repositories to test and publish to (YAML: repositories: [{ name, url, trustedRoot, warnDays, local, path, keys }]; path and keys make one writable)')
    .option('--max-upload <bytes>', 'largest accepted package', String(1024 * 1024 * 1024))
    .option('--database <db>', 'fleet database: a SQLite file or a postgres:// URL (default: <repo>/fleet.db)')
    .option('--preauthorize <file>', 'accept the devices listed in <file> before serving ("<device id> <public key> [site=<site>] [key=value…]")')
    .option('--max-pending <n>', 'refuse new unknown devices while this many are pending', String(DEFAULT_MAX_PENDING))
    .option('--device-rate <per-second>', 'device requests per second per source address', String(DEFAULT_DEVICE_RATE.perSecond))
    .option('--device-burst <n>', 'device requests a source address may send at once', String(DEFAULT_DEVICE_RATE.burst))
    .option('--trust-proxy <value>', "express 'trust proxy' (e.g. loopback, or a hop count) when a proxy in front sets X-Forwarded-For")
    .option('--checkin-history <n>', 'check-ins kept per device', String(DEFAULT_RETENTION.checkinsPerDevice))
    .option('--history-max-age <duration>', 'check-ins and audit entries older than this are removed', '30d')
    .option('--db-connections <n>', 'PostgreSQL: connections this process opens at most', '10')
    .option('--timestamp-interval <duration>', 'how often to check the timestamp expiry', '1h')
    .option('--timestamp-refresh-within <duration>', 're-sign when the timestamp expires within this', '12h')
    .option('--no-timestamp-refresh', 'never re-sign the timestamp')
    .option('--site-budget <budget>', 'robots of one site updating at once (repeatable: a number for every site, site=n for one; 0: no budget)', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('--lease-retry <duration>', 'how long a robot refused a lease for a halt or a closed batch waits before asking again', '1m')
    .option('--rollout-interval <duration>', 'how often this process evaluates the rollouts (open batches after their soak, halt on failures)', '10s')
    .exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) return error.code === 'commander.helpDisplayed' ? 0 : 2;
    throw error;
  }
  const o = program.opts<{
    repo: string;
    keys: string;
    host: string;
    port: string;
    tokenFile?: string;
    sourceRoot: string[];
    productTypes?: string;
    studioConfig?: string;
    maxUpload: string;
    database?: string;
    preauthorize?: string;
    maxPending: string;
    deviceRate: string;
    deviceBurst: string;
    trustProxy?: string;
    checkinHistory: string;
    historyMaxAge: string;
    dbConnections: string;
    timestampInterval: string;
    timestampRefreshWithin: string;
    timestampRefresh: boolean;
    siteBudget: string[];
    leaseRetry: string;
    rolloutInterval: string;
  }>();
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new OtaError('CONFIG_INVALID', `--port is ${JSON.stringify(o.port)}: expected 0-65535`);
  const maxUpload = Number(o.maxUpload);
  if (!Number.isInteger(maxUpload) || maxUpload < 1) throw new OtaError('CONFIG_INVALID', `--max-upload is ${JSON.stringify(o.maxUpload)}: expected a byte count`);
  const logger = consoleLogger();
  const repoDir = path.resolve(o.repo);
  const database = o.database !== undefined ? (/^postgres(ql)?:\/\//.test(o.database) ? o.database : path.resolve(o.database)) : path.join(repoDir, 'fleet.db');
  // Every option is checked before the database is opened.
  const retention = { checkinsPerDevice: positiveNumber(o.checkinHistory, '--checkin-history'), maxAgeMs: parseDurationArg(o.historyMaxAge, '--history-max-age') };
  const maxConnections = positiveNumber(o.dbConnections, '--db-connections');
  const maxPendingDevices = positiveNumber(o.maxPending, '--max-pending');
  const deviceRateLimit = { perSecond: positiveNumber(o.deviceRate, '--device-rate', false), burst: positiveNumber(o.deviceBurst, '--device-burst') };
  const timestampRefresh = o.timestampRefresh
    ? { intervalMs: parseDurationArg(o.timestampInterval, '--timestamp-interval'), refreshWithinMs: parseDurationArg(o.timestampRefreshWithin, '--timestamp-refresh-within') }
    : (false as const);
  const siteBudgets = parseSiteBudgets(o.siteBudget, DEFAULT_SITE_BUDGETS.default);
  const leaseRetryMs = parseDurationArg(o.leaseRetry, '--lease-retry');
  const rolloutIntervalMs = parseDurationArg(o.rolloutInterval, '--rollout-interval');
  const sourceRoots = parseSourceRoots(o.sourceRoot);
  if (rolloutIntervalMs < 100) throw new OtaError('CONFIG_INVALID', `--rollout-interval ${o.rolloutInterval} is below 100 ms`);
  const fleetStore = await openFleetStore(database, { retention, maxConnections });
  process.stdout.write(`fleet database: ${describeDatabase(database)}\n`);
  const legacy = path.join(repoDir, 'devices.json');
  if (existsSync(legacy)) {
    // Its records carry no device keys, so none of them can be trusted: robots register again, signed.
    process.stdout.write(`ignoring ${legacy}: it holds unsigned check-ins from before device keys; each robot appears again as pending on its first signed check-in (the file can be deleted)\n`);
  }
  if (o.preauthorize !== undefined) {
    try {
      process.stdout.write(`${await preauthorizeFromFile(fleetStore, path.resolve(o.preauthorize), systemClock.now())}\n`);
    } catch (error) {
      // A PostgreSQL pool left open would keep the process alive after the error.
      await fleetStore.close();
      throw error;
    }
  }
  const server = createServer({
    repoDir,
    keysDir: path.resolve(o.keys),
    clock: systemClock,
    logger,
    audit: { audit: (event) => logger.info(`audit: ${event.message}`, { audit: event.kind, ...event.details }) },
    ...(o.tokenFile !== undefined ? { tokenFile: path.resolve(o.tokenFile) } : {}),
    sourceRoots,
    ...(o.productTypes !== undefined ? { productTypesDir: path.resolve(o.productTypes) } : {}),
    ...(o.studioConfig !== undefined ? { studioRepositories: readStudioRepositories(path.resolve(o.studioConfig)) } : {}),
    fleetStore,
    maxPendingDevices,
    deviceRateLimit,
    ...(o.trustProxy !== undefined ? { trustProxy: /^[0-9]+$/.test(o.trustProxy) ? Number(o.trustProxy) : o.trustProxy } : {}),
    maxUploadBytes: maxUpload,
    timestampRefresh,
    siteBudgets,
    leaseRetryMs,
    rolloutTick: { intervalMs: rolloutIntervalMs },
  });
  await server.publisher.loadState();
  const { url } = await server.start(port, o.host);
  process.stdout.write(`ota-server listening on ${url}\n`);
  process.stdout.write(`publisher studio: ${url}/studio/ (source roots: ${sourceRoots.map((r) => `${r.name}=${r.dir}`).join(', ') || 'none; add --source-root'})\n`);
  process.stdout.write(`update leases: ${describeBudgets(siteBudgets)}; rollouts evaluated every ${o.rolloutInterval}\n`);
  // Re-sign once at start so a server that was down for a day does not serve an expired timestamp.
  await server.tick();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  await fleetStore.close();
  return 0;
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(isOtaError(error) ? `ota-server: ${error.code}: ${error.message}\n` : `ota-server: error: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

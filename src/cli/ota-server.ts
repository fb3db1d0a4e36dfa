#!/usr/bin/env node
/**
 * ota-server: serve a repository folder to robots, accept uploads, keep the timestamp fresh and
 * record device check-ins. Localhost by default; put TLS (nginx, a load balancer) in front for a fleet.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { systemClock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import type { Logger, LogFields } from '../core/logger.js';
import { parseDurationArg } from '../core/duration.js';
import { createServer } from '../server/app.js';

/** JSON lines on stdout for journald; the daemon's winston logger is not needed here. */
function consoleLogger(base: LogFields = {}): Logger {
  const write = (level: string) => (message: string, fields?: LogFields) =>
    process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), level, message, ...base, ...fields })}\n`);
  return { debug: () => {}, info: write('info'), warn: write('warn'), error: write('error'), child: (f) => consoleLogger({ ...base, ...f }) };
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('ota-server')
    .description('reference update server for otad')
    .requiredOption('--repo <dir>', 'repository folder created by ota-repo init')
    .requiredOption('--keys <dir>', 'online keys (timestamp, snapshot; targets for uploads)')
    .option('--host <host>', 'listen address', '127.0.0.1')
    .option('--port <port>', 'listen port', '8080')
    .option('--token-file <file>', 'bearer token for uploads and the fleet view (without it both are disabled)')
    .option('--max-upload <bytes>', 'largest accepted package', String(1024 * 1024 * 1024))
    .option('--devices <file>', 'device check-in store (default: <repo>/devices.json)')
    .option('--timestamp-interval <duration>', 'how often to check the timestamp expiry', '1h')
    .option('--timestamp-refresh-within <duration>', 're-sign when the timestamp expires within this', '12h')
    .option('--no-timestamp-refresh', 'never re-sign the timestamp')
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
    maxUpload: string;
    devices?: string;
    timestampInterval: string;
    timestampRefreshWithin: string;
    timestampRefresh: boolean;
  }>();
  const port = Number(o.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new OtaError('CONFIG_INVALID', `--port is ${JSON.stringify(o.port)}: expected 0-65535`);
  const maxUpload = Number(o.maxUpload);
  if (!Number.isInteger(maxUpload) || maxUpload < 1) throw new OtaError('CONFIG_INVALID', `--max-upload is ${JSON.stringify(o.maxUpload)}: expected a byte count`);
  const logger = consoleLogger();
  const server = createServer({
    repoDir: path.resolve(o.repo),
    keysDir: path.resolve(o.keys),
    clock: systemClock,
    logger,
    audit: { audit: (event) => logger.info(`audit: ${event.message}`, { audit: event.kind, ...event.details }) },
    ...(o.tokenFile !== undefined ? { tokenFile: path.resolve(o.tokenFile) } : {}),
    ...(o.devices !== undefined ? { devicesFile: path.resolve(o.devices) } : {}),
    maxUploadBytes: maxUpload,
    timestampRefresh: o.timestampRefresh
      ? { intervalMs: parseDurationArg(o.timestampInterval, '--timestamp-interval'), refreshWithinMs: parseDurationArg(o.timestampRefreshWithin, '--timestamp-refresh-within') }
      : false,
  });
  await server.publisher.loadState();
  const { url } = await server.start(port, o.host);
  process.stdout.write(`ota-server listening on ${url}\n`);
  // Re-sign once at start so a server that was down for a day does not serve an expired timestamp.
  await server.tick();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
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

/**
 * The API server: one HTTP server on 127.0.0.1 (by default) that carries REST v1, /metrics and the
 * Socket.IO stream, and optionally the same REST app on a unix socket. Once listening, the real
 * address is written to `<stateDir>/api.json` atomically (port 0 picks a free port: clients and
 * tests learn it there) and logged.
 */
import { chmodSync, closeSync, existsSync, ftruncateSync, lstatSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { atomicWriteFile } from '../core/atomic-file.js';
import type { Clock } from '../core/clock.js';
import { OtaError, toErrorData } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { Config } from '../config/load.js';
import type { DaemonControl } from '../daemon/control.js';
import { API_ADDRESS_FILE } from './client.js';
import type { Edge } from './edge.js';
import { createMetrics } from './metrics.js';
import { createAuthFailureGuard } from './auth-failures.js';
import { createRestApp } from './rest.js';
import { attachSocketStream } from './socket.js';
import type { TokenVerifier } from './tokens.js';

export interface ApiAddress {
  host: string;
  port: number;
  url: string;
  socketPath: string | null;
  pid: number;
}

export interface ApiServer {
  address: ApiAddress;
  server: Server;
  close(): Promise<void>;
}

export interface ApiServerDeps {
  control: DaemonControl;
  edge: Edge;
  tokens: TokenVerifier;
  api: Config['api'];
  stateDir: string;
  clock: Clock;
  logger: Logger;
  audit: AuditSink;
}

export { API_ADDRESS_FILE };

function listen(server: Server, target: { port: number; host: string } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const where = 'path' in target ? target.path : `${target.host}:${target.port}`;
      reject(new OtaError('CONFIG_INVALID', `the API cannot listen on ${where}: ${error.code ?? error.message}; change api.host/api.port/api.socketPath`, { cause: error, details: { where } }));
    };
    server.once('error', onError);
    server.listen(target, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export async function startApiServer(deps: ApiServerDeps): Promise<ApiServer> {
  const { api, logger } = deps;
  const metrics = createMetrics(deps.control);
  const authFailures = createAuthFailureGuard({ audit: deps.audit, windowMs: api.authFailures.window, max: api.authFailures.max });
  const app = createRestApp({
    control: deps.control,
    edge: deps.edge,
    tokens: deps.tokens,
    allowedHosts: api.allowedHosts,
    bodyLimitBytes: api.bodyLimitBytes,
    metrics,
    logger,
    audit: deps.audit,
    authFailures,
  });
  const server = createServer(app);
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  const stream = attachSocketStream(server, {
    control: deps.control,
    edge: deps.edge,
    tokens: deps.tokens,
    allowedHosts: api.allowedHosts,
    allowedOrigins: api.allowedOrigins,
    maxMessageBytes: api.bodyLimitBytes,
    clock: deps.clock,
    logger,
    audit: deps.audit,
    authFailures,
  });
  await listen(server, { host: api.host, port: api.port });
  const port = (server.address() as AddressInfo).port;

  let unixServer: Server | null = null;
  if (api.socketPath) {
    // A socket file left by a killed otad is removed; anything else at that path is not touched.
    if (existsSync(api.socketPath)) {
      if (!lstatSync(api.socketPath).isSocket()) throw new OtaError('CONFIG_INVALID', `api.socketPath ${api.socketPath} exists and is not a socket`);
      unlinkSync(api.socketPath);
    }
    unixServer = createServer(app);
    await listen(unixServer, { path: api.socketPath });
    chmodSync(api.socketPath, 0o660);
  }

  const hostForUrl = api.host.includes(':') ? `[${api.host}]` : api.host;
  const address: ApiAddress = { host: api.host, port, url: `http://${hostForUrl}:${port}`, socketPath: api.socketPath ?? null, pid: process.pid };
  const addressFile = join(deps.stateDir, API_ADDRESS_FILE);
  let addressRetry: NodeJS.Timeout | null = null;
  const writeAddress = async (attempt: number): Promise<void> => {
    addressRetry = null;
    try {
      await writeAddressFile(addressFile, JSON.stringify(address, null, 2) + '\n');
      if (attempt > 1) logger.info(`wrote ${addressFile} after ${attempt - 1} failed attempt${attempt === 2 ? '' : 's'}`);
    } catch (error) {
      // A full or failing state folder must not keep the API down: it serves, and the file follows.
      if (attempt === 1) logger.error(`cannot write ${addressFile}: ${(error as NodeJS.ErrnoException).code ?? 'error'}; retrying (until then clients find the API only at its configured address)`, { error: toErrorData(error) });
      addressRetry = setTimeout(() => void writeAddress(attempt + 1), 5_000);
      addressRetry.unref();
    }
  };
  await writeAddress(1);
  logger.info(`API listening on ${address.url}${address.socketPath ? ` and ${address.socketPath}` : ''}`, { ...address });

  return {
    address,
    server,
    async close() {
      if (addressRetry !== null) clearTimeout(addressRetry);
      metrics.close();
      authFailures.close();
      await stream.close();
      await closeServer(server);
      if (unixServer) {
        await closeServer(unixServer);
        try {
          unlinkSync(api.socketPath as string);
        } catch {
          // Already gone.
        }
      }
      try {
        unlinkSync(join(deps.stateDir, API_ADDRESS_FILE));
      } catch {
        // Already gone.
      }
    },
  };
}

/**
 * The address file, written atomically. When that fails for want of space and a file is there
 * (left by an earlier otad), it is rewritten in place: its blocks are already allocated, and the
 * content (well under one block) never needs more.
 */
async function writeAddressFile(file: string, text: string): Promise<void> {
  try {
    await atomicWriteFile(file, text, { mode: 0o600 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code !== 'ENOSPC' && code !== 'EDQUOT') || !existsSync(file)) throw error;
    const fd = openSync(file, 'r+');
    try {
      const bytes = Buffer.from(text);
      writeSync(fd, bytes, 0, bytes.length, 0);
      ftruncateSync(fd, bytes.length);
    } finally {
      closeSync(fd);
    }
  }
}

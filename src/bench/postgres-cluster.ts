/**
 * A throwaway PostgreSQL cluster: initdb into a temp folder, listen on loopback on a free port with
 * the unix socket in that folder, stopped and deleted afterwards. As root the cluster runs as the
 * `postgres` user (PostgreSQL refuses to run as root). The tests (test/support/postgres.ts) run it
 * without fsync; the fleet simulator runs it with PostgreSQL's durable defaults, so what it measures
 * includes the commits' flushes. `postgresUnavailable()` says why there is none to be had.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface PostgresCluster {
  /** The cluster's `postgres` database, as a URL. */
  baseUrl: string;
  /** A new, empty database in the cluster; answers its URL. */
  freshDatabase(): Promise<string>;
  /** The postmaster's process id (the parent of every backend), or null when it cannot be read. */
  postmasterPid(): number | null;
  stop(): Promise<void>;
}

function binDir(): string | null {
  const candidates = [process.env.OTA_PG_BIN ?? process.env.OTA_TEST_PG_BIN, ...listVersions().map((v) => `/usr/lib/postgresql/${v}/bin`)].filter((d): d is string => d !== undefined && d !== '');
  return candidates.find((d) => existsSync(path.join(d, 'initdb')) && existsSync(path.join(d, 'pg_ctl'))) ?? null;
}

function listVersions(): string[] {
  try {
    return readdirSync('/usr/lib/postgresql').sort((a, b) => Number(b) - Number(a));
  } catch {
    return [];
  }
}

/** Why the PostgreSQL tests cannot run here, or null when they can. */
export function postgresUnavailable(): string | null {
  if (binDir() === null) return 'no PostgreSQL binaries (install Debian package postgresql)';
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root but there is no postgres user to run the cluster as';
  return null;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

let counter = 0;
export function databaseCreator(baseUrl: string): () => Promise<string> {
  return async () => {
    const name = `otad_test_${process.pid}_${Date.now()}_${counter++}`;
    const client = new pg.Client({ connectionString: baseUrl });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    const url = new URL(baseUrl);
    url.pathname = `/${name}`;
    return url.toString();
  };
}

export interface ClusterOptions {
  /** false: fsync, synchronous_commit and full_page_writes off (fast, for tests); true: PostgreSQL's defaults. */
  durable?: boolean;
  maxConnections?: number;
}

export async function startPostgresCluster(options: ClusterOptions = {}): Promise<PostgresCluster> {
  const bin = binDir();
  if (bin === null) throw new Error(postgresUnavailable() ?? 'no PostgreSQL');
  const dir = mkdtempSync(path.join(tmpdir(), 'otad-pg-'));
  const data = path.join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const run = (command: string, args: string[]): void => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path.join(bin, command), ...args]] : [path.join(bin, command), args];
    const result = spawnSync(file, argv, { encoding: 'utf8', cwd: dir });
    if (result.status !== 0) throw new Error(`${command} failed (${result.status}): ${result.stderr || result.stdout}`);
  };
  run('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const settings = [`-c listen_addresses=127.0.0.1`, `-p ${port}`, `-k ${dir}`, ...(options.durable ? [] : ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off']), `-c max_connections=${options.maxConnections ?? 200}`].join(' ');
  run('pg_ctl', ['-D', data, '-l', path.join(dir, 'postgres.log'), '-o', settings, '-w', '-t', '60', 'start']);
  const baseUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    try {
      run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  // A test process that ends without stop() (a failed hook, an uncaught error) still takes its cluster down.
  process.once('exit', stop);
  return {
    baseUrl,
    freshDatabase: databaseCreator(baseUrl),
    postmasterPid() {
      try {
        const pid = Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
        return Number.isInteger(pid) && pid > 0 ? pid : null;
      } catch {
        return null;
      }
    },
    async stop() {
      process.removeListener('exit', stop);
      stop();
    },
  };
}

/**
 * Test helpers for the fleet server: a store per backend (SQLite in a temp folder, or a fresh
 * database in the throwaway PostgreSQL), row counts of every table (to prove a refused request
 * stored nothing), and signed check-ins over real HTTP.
 */
import { generateKeyPairSync, createPublicKey } from 'node:crypto';
import path from 'node:path';
import { rawPublicKey, signRequest, type DeviceKey } from '../../src/fleet/signing.js';
import { openPostgresDriver } from '../../src/server/store/postgres-driver.js';
import { openSqliteDriver } from '../../src/server/store/sqlite-driver.js';
import { isPostgresUrl } from '../../src/server/store/open-fleet-store.js';
import { postgresUnavailable, startPostgres, type PostgresCluster } from './postgres.js';

export const TABLES = ['devices', 'key_conflicts', 'device_products', 'checkins', 'nonces', 'audit', 'leases', 'rollout_devices'] as const;

export type Backend = 'sqlite' | 'postgres';

/** The two backends for describe.each, PostgreSQL marked skipped (with the reason) when it cannot run. */
export const BACKENDS: Array<{ backend: Backend; skip: boolean }> = [
  { backend: 'sqlite', skip: false },
  { backend: 'postgres', skip: postgresUnavailable() !== null },
];

let cluster: Promise<PostgresCluster> | null = null;

/** One PostgreSQL cluster per test file, started on first use; call `stopSharedPostgres` in afterAll. */
export function sharedPostgres(): Promise<PostgresCluster> {
  cluster ??= startPostgres();
  return cluster;
}

export async function stopSharedPostgres(): Promise<void> {
  if (cluster === null) return;
  const c = cluster;
  cluster = null;
  await (await c).stop();
}

/** A new, empty database of the backend: a SQLite file in `dir`, or a fresh PostgreSQL database. */
export async function freshDatabase(backend: Backend, dir: string): Promise<string> {
  if (backend === 'sqlite') return path.join(dir, `fleet-${Math.random().toString(36).slice(2)}.db`);
  return (await sharedPostgres()).freshDatabase();
}

export async function tableCounts(database: string): Promise<Record<string, number>> {
  const driver = isPostgresUrl(database) ? openPostgresDriver(database, { maxConnections: 1 }) : openSqliteDriver(database);
  try {
    const counts: Record<string, number> = {};
    for (const table of TABLES) counts[table] = Number((await driver.query(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n);
    return counts;
  } finally {
    await driver.close();
  }
}

export function newDeviceKey(): DeviceKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
}

export interface SignedPost {
  url: string;
  key: DeviceKey;
  body: Record<string, unknown>;
  now: number;
  nonce?: string;
  /** Sign as this id (the header) while the body may say another. */
  signAs?: string;
  unsigned?: boolean;
}

export async function postCheckin(p: SignedPost): Promise<{ status: number; body: Record<string, any>; headers: Headers }> {
  const text = JSON.stringify(p.body);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (!p.unsigned) {
    Object.assign(
      headers,
      signRequest({ method: 'POST', path: '/api/v1/checkin', deviceId: p.signAs ?? String(p.body.deviceId), body: text, key: p.key, now: p.now, ...(p.nonce !== undefined ? { nonce: p.nonce } : {}) }),
    );
  }
  const res = await fetch(`${p.url}/api/v1/checkin`, { method: 'POST', headers, body: text });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
}

export const report = (deviceId: string, extra: Record<string, unknown> = {}) => ({ deviceId, product: 'robot-ai', version: '1.0.0', state: 'idle', ...extra });

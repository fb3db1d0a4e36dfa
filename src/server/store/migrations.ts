/**
 * The fleet database's schema, one list for SQLite and PostgreSQL. Each entry is applied once, in
 * order, and recorded in `schema_migrations`; a change to the schema is a NEW entry at the end
 * (rollouts, batches and leases are entry 2), never an edit of an applied one. Most SQL
 * is the same for both; where the dialects differ (auto-numbered ids) an entry gives both texts.
 *
 * Conventions: times are BIGINT milliseconds since the epoch, JSON is TEXT, booleans are 0/1.
 */
import { OtaError } from '../../core/errors.js';
import type { Dialect, SqlDriver } from './sql-driver.js';

export interface Migration {
  version: number;
  name: string;
  sql: string | Record<Dialect, string>;
}

const autoId: Record<Dialect, string> = { sqlite: 'INTEGER PRIMARY KEY AUTOINCREMENT', postgres: 'BIGSERIAL PRIMARY KEY' };

const devicesSchema = (d: Dialect) => `
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  public_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected')),
  reported_tags TEXT NOT NULL DEFAULT '{}',
  operator_tags TEXT NOT NULL DEFAULT '{}',
  site TEXT,
  source TEXT,
  first_seen BIGINT,
  last_seen BIGINT,
  checkins BIGINT NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  decided_by TEXT,
  decided_at BIGINT
);
CREATE INDEX devices_status ON devices (status, id);
CREATE INDEX devices_site ON devices (site);
CREATE TABLE key_conflicts (
  device_id TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  public_key TEXT NOT NULL,
  source TEXT,
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  count BIGINT NOT NULL,
  PRIMARY KEY (device_id, fingerprint)
);
CREATE TABLE device_products (
  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  product TEXT NOT NULL,
  version TEXT,
  state TEXT NOT NULL,
  last_outcome TEXT,
  error TEXT,
  run_id TEXT,
  target_version TEXT,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (device_id, product)
);
CREATE TABLE checkins (
  id ${autoId[d]},
  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  product TEXT NOT NULL,
  at BIGINT NOT NULL,
  version TEXT,
  state TEXT NOT NULL,
  last_outcome TEXT,
  error TEXT,
  run_id TEXT,
  target_version TEXT
);
CREATE INDEX checkins_device ON checkins (device_id, id);
CREATE INDEX checkins_at ON checkins (at);
CREATE TABLE nonces (
  device_id TEXT NOT NULL,
  nonce TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (device_id, nonce)
);
CREATE INDEX nonces_expiry ON nonces (expires_at);
CREATE TABLE audit (
  id ${autoId[d]},
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  device_id TEXT,
  source TEXT,
  actor TEXT,
  code TEXT,
  message TEXT NOT NULL,
  details TEXT
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_device ON audit (device_id, id);
`;

// One rollout per release that is not done (the partial unique index), batches in order from 1,
// the run each device was seen aiming at the release (rollout_runs: otad clears its offer when it
// rolls back, so the run id is what ties a later outcome to the release), and the update leases.
const rolloutsSchema = `
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  product TEXT NOT NULL,
  version TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'halted', 'done')),
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  soak_ms BIGINT NOT NULL,
  failure_threshold DOUBLE PRECISION NOT NULL,
  min_reports BIGINT NOT NULL,
  halt_by TEXT,
  halt_reason TEXT,
  halt_at BIGINT,
  resumed_at BIGINT,
  forgiven TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX rollouts_release ON rollouts (product, version) WHERE state <> 'done';
CREATE INDEX rollouts_created ON rollouts (created_at);
CREATE TABLE rollout_batches (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  selector TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('waiting', 'open', 'done')),
  opened_at BIGINT,
  PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE rollout_runs (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  run_id TEXT NOT NULL,
  seen_at BIGINT NOT NULL,
  PRIMARY KEY (rollout_id, device_id)
);
CREATE TABLE leases (
  id TEXT PRIMARY KEY,
  device_id TEXT NOT NULL,
  site TEXT,
  product TEXT NOT NULL,
  version TEXT NOT NULL,
  from_version TEXT,
  created_at BIGINT NOT NULL,
  ttl_ms BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX leases_site ON leases (site, expires_at);
CREATE INDEX leases_device ON leases (device_id, product);
CREATE TABLE site_locks (site TEXT PRIMARY KEY);
`;

// Rollout counts kept up to date by the check-ins that change them (sql-rollout-counts.ts): each
// batch's counters, and per rollout and device the batch and outcome it is counted with and the
// run seen aiming at the release (what rollout_runs held). A rollout from before this entry has
// counted = 0 and is counted once, whole, when a server opens the store.
const rolloutCountsSchema = `
ALTER TABLE rollout_batches ADD COLUMN n_devices BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_batches ADD COLUMN n_not_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_batches ADD COLUMN n_running BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_batches ADD COLUMN n_committed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_batches ADD COLUMN n_rolled_back BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollout_batches ADD COLUMN n_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rollouts ADD COLUMN counted INTEGER NOT NULL DEFAULT 0;
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  run_id TEXT,
  batch INTEGER,
  outcome TEXT,
  PRIMARY KEY (rollout_id, device_id)
);
INSERT INTO rollout_devices (rollout_id, device_id, run_id) SELECT rollout_id, device_id, run_id FROM rollout_runs;
DROP TABLE rollout_runs;
`;

/** The downtime a check-in reports (JSON of DowntimeReport, fleet-store.ts). */
const downtimeSchema = `
ALTER TABLE device_products ADD COLUMN downtime TEXT;
ALTER TABLE checkins ADD COLUMN downtime TEXT;
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'devices, key conflicts, product state, check-in history, nonces, audit', sql: { sqlite: devicesSchema('sqlite'), postgres: devicesSchema('postgres') } },
  { version: 2, name: 'rollouts, their batches and runs, update leases', sql: rolloutsSchema },
  { version: 3, name: 'rollout counters kept by the check-ins, rollout_devices replaces rollout_runs', sql: rolloutCountsSchema },
  { version: 4, name: "each product's last reported downtime, and in the check-in history", sql: downtimeSchema },
];

/** Applies the entries the database has not seen, under the migration lock; answers their versions. */
export async function migrate(driver: SqlDriver, migrations: readonly Migration[] = MIGRATIONS, now: number = Date.now()): Promise<number[]> {
  return driver.withMigrationLock(async (tx) => {
    await driver.exec(tx, 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)');
    const done = new Set((await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).map((r) => Number(r.version)));
    const known = new Set(migrations.map((m) => m.version));
    const newer = [...done].filter((v) => !known.has(v));
    if (newer.length > 0) {
      throw new OtaError('CONFIG_INVALID', `the fleet database has schema version ${Math.max(...newer)}, newer than this ota-server knows (${Math.max(...known)}): upgrade ota-server`);
    }
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await driver.exec(tx, typeof m.sql === 'string' ? m.sql : m.sql[driver.dialect]);
      await tx.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, now]);
      applied.push(m.version);
    }
    return applied;
  });
}

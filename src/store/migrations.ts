import { DOWNTIME_MIGRATION } from './downtime.js';

/**
 * Schema migrations, applied in order by `PRAGMA user_version`. Never edit a migration that has
 * shipped: add a new one. Each runs in the same transaction as the user_version bump.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: the lifecycle's persisted state, its transition log and the history of runs
  `
  CREATE TABLE snapshots (
    product TEXT PRIMARY KEY,
    machine_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    run_id TEXT,
    snapshot TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    product TEXT NOT NULL,
    run_id TEXT,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event TEXT NOT NULL,
    at INTEGER NOT NULL,
    machine_version INTEGER NOT NULL,
    snapshot TEXT
  );
  CREATE INDEX transitions_run ON transitions(run_id, seq);
  CREATE INDEX transitions_product ON transitions(product, seq);
  CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    from_version TEXT,
    to_version TEXT,
    state TEXT NOT NULL,
    outcome TEXT,
    error TEXT
  );
  CREATE INDEX runs_product ON runs(product, started_at);
  CREATE TABLE restores (
    run_id TEXT NOT NULL,
    state TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (run_id, state)
  );
  CREATE TABLE choices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    product TEXT NOT NULL,
    run_id TEXT,
    choice TEXT NOT NULL,
    source TEXT NOT NULL,
    at INTEGER NOT NULL
  );
  CREATE TABLE releases (
    product TEXT NOT NULL,
    version TEXT NOT NULL,
    channel TEXT NOT NULL,
    notes TEXT NOT NULL,
    released_at INTEGER NOT NULL,
    found_at INTEGER NOT NULL,
    offer TEXT NOT NULL,
    notified INTEGER NOT NULL DEFAULT 1,
    acknowledged_at INTEGER,
    bad_at INTEGER,
    bad_reason TEXT,
    PRIMARY KEY (product, version)
  );
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    product TEXT,
    run_id TEXT,
    actor TEXT,
    details TEXT
  );
  CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // 2: update inhibits held by the robot's app while it is on a mission
  `
  CREATE TABLE inhibits (
    holder TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
  );
  `,
  // 3: who or what marked a release bad (an automatic rollback after a failure, or an operator),
  //    and the run that did it; the index serves history retention (oldest ended runs first)
  `
  ALTER TABLE releases ADD COLUMN bad_by TEXT;
  ALTER TABLE releases ADD COLUMN bad_actor TEXT;
  ALTER TABLE releases ADD COLUMN bad_run_id TEXT;
  CREATE INDEX runs_ended ON runs(product, ended_at);
  CREATE INDEX transitions_at ON transitions(at);
  `,
  // 4: each run's downtime, from the first service stop to the first all-green probe round,
  //    split into stop, switch, start and probe (see downtime.ts)
  DOWNTIME_MIGRATION,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

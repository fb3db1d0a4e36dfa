/**
 * Opens the fleet store named by `--database`: a postgres:// or postgresql:// URL, or a SQLite file.
 * The schema is brought up to date before the store is handed out.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { FleetStore, Retention } from './fleet-store.js';
import { migrate } from './migrations.js';
import { openPostgresDriver } from './postgres-driver.js';
import { openSqliteDriver } from './sqlite-driver.js';
import { DEFAULT_RETENTION, openSqlFleetStore } from './sql-fleet-store.js';

export interface OpenFleetStoreOptions {
  retention?: Retention;
  /** PostgreSQL: connections this process opens at most. */
  maxConnections?: number;
  now?: number;
}

export const isPostgresUrl = (database: string): boolean => /^postgres(ql)?:\/\//.test(database);

export async function openFleetStore(database: string, options: OpenFleetStoreOptions = {}): Promise<FleetStore> {
  let driver;
  if (isPostgresUrl(database)) {
    driver = openPostgresDriver(database, options.maxConnections !== undefined ? { maxConnections: options.maxConnections } : {});
  } else {
    mkdirSync(path.dirname(path.resolve(database)), { recursive: true, mode: 0o700 });
    driver = openSqliteDriver(database);
  }
  try {
    await migrate(driver, undefined, options.now);
    return await openSqlFleetStore(driver, options.retention ?? DEFAULT_RETENTION);
  } catch (error) {
    await driver.close().catch(() => {});
    throw error;
  }
}

/** The database as people may see it: a PostgreSQL URL without its password. */
export function describeDatabase(database: string): string {
  if (!isPostgresUrl(database)) return database;
  try {
    const url = new URL(database);
    if (url.password !== '') url.password = '***';
    return url.toString();
  } catch {
    return 'postgres://…';
  }
}

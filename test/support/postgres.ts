/**
 * A throwaway PostgreSQL for the store and server tests (src/bench/postgres-cluster.ts, without
 * fsync). With OTA_TEST_PG_URL set, that server is used instead (each test still gets its own
 * database). Without PostgreSQL binaries `postgresUnavailable()` says why, and the tests skip saying so.
 */
import { databaseCreator, postgresUnavailable as noCluster, startPostgresCluster, type PostgresCluster } from '../../src/bench/postgres-cluster.js';

export type { PostgresCluster };

/** Why the PostgreSQL tests cannot run here, or null when they can. */
export function postgresUnavailable(): string | null {
  if (process.env.OTA_TEST_PG_URL) return null;
  const why = noCluster();
  return why === null ? null : `${why}, or set OTA_TEST_PG_URL`;
}

/** Call at the top of a test file that skips its PostgreSQL part: says so instead of skipping silently. */
export function notePostgresSkip(): void {
  const why = postgresUnavailable();
  if (why !== null) console.warn(`PostgreSQL tests skipped: ${why}`);
}

export async function startPostgres(): Promise<PostgresCluster> {
  const given = process.env.OTA_TEST_PG_URL;
  if (given) return { baseUrl: given, freshDatabase: databaseCreator(given), postmasterPid: () => null, stop: async () => {} };
  return startPostgresCluster({ durable: false });
}

/**
 * PostgreSQL through a `pg` pool: several ota-server processes share one database. Nothing a
 * request needs lives only in one process: nonces, devices and audit are rows, and uniqueness is the
 * database's constraint, so a replay sent to another process is refused there too.
 */
import pg from 'pg';
import type { SqlDriver, SqlExecutor, SqlValue, Row } from './sql-driver.js';

/** Any 64-bit key of our own; every ota-server migrating the same database takes this lock. */
const MIGRATION_LOCK_KEY = 7_020_515_001;

// BIGINT (int8) columns hold milliseconds and counters, all below 2^53: read them as numbers.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === 20 ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/**
 * Statements with parameters run as named (prepared) statements: each connection parses and plans
 * one the first time it sees it, and later runs only bind and execute it, which is most of what a
 * small statement costs PostgreSQL. Not prepared: statements without parameters (BEGIN, COMMIT,
 * the migrations' multi-statement texts, which need the simple protocol) and statements whose
 * result is `*`, because a column added by a newer server's migration would change their result
 * type, which PostgreSQL refuses for a prepared statement ("cached plan must not change result
 * type"). The names are per process and bounded: past MAX_PREPARED texts (statements built with
 * a varying number of placeholders) the rest run unnamed.
 */
const MAX_PREPARED = 512;
const STAR_RESULT = /\b(SELECT|RETURNING)\s+(\w+\.)?\*/i;

export function statementNamer(): (sql: string, params: readonly SqlValue[]) => string | undefined {
  const names = new Map<string, string | null>();
  return (sql, params) => {
    if (params.length === 0) return undefined;
    let name = names.get(sql);
    if (name === undefined) {
      const preparable = !STAR_RESULT.test(sql) && names.size < MAX_PREPARED;
      name = preparable ? `otad_${names.size}` : null;
      if (preparable || names.size < MAX_PREPARED) names.set(sql, name);
    }
    return name ?? undefined;
  };
}

export interface PostgresOptions {
  /** Largest number of connections this process opens. */
  maxConnections?: number;
}

export function openPostgresDriver(url: string, options: PostgresOptions = {}): SqlDriver {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10, types });
  // An idle client that loses its connection must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const nameOf = statementNamer();
  const send = (client: pg.Pool | pg.PoolClient, sql: string, params: readonly SqlValue[]) => {
    const name = nameOf(sql, params);
    return name === undefined ? client.query(sql, params as SqlValue[]) : client.query({ name, text: sql, values: params as SqlValue[] });
  };
  const over = (client: pg.Pool | pg.PoolClient): SqlExecutor => ({
    async query<T extends Row>(sql: string, params: readonly SqlValue[] = []) {
      return (await send(client, sql, params)).rows as T[];
    },
    async run(sql: string, params: readonly SqlValue[] = []) {
      return (await send(client, sql, params)).rowCount ?? 0;
    },
  });
  async function inTransaction<T>(fn: (tx: SqlExecutor) => Promise<T>, before?: string): Promise<T> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      if (before !== undefined) await client.query(before);
      const result = await fn(over(client));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }
  const direct = over(pool);
  return {
    dialect: 'postgres',
    query: direct.query,
    run: direct.run,
    transaction: (fn) => inTransaction(fn),
    withMigrationLock: (fn) => inTransaction(fn, `SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`),
    async exec(tx, sql) {
      await tx.run(sql);
    },
    isUniqueViolation: (error) => (error as { code?: string }).code === '23505',
    async close() {
      await pool.end();
    },
  };
}

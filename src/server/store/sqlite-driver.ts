/**
 * SQLite through better-sqlite3: the embedded default. better-sqlite3 is synchronous, so a
 * transaction that awaits between statements could interleave with another request's statements on
 * the same connection; transactions are therefore queued one at a time on this connection, and
 * other processes are kept out by SQLite's own lock (BEGIN IMMEDIATE, WAL, busy timeout).
 */
import Database from 'better-sqlite3';
import type { SqlDriver, SqlExecutor, SqlValue, Row } from './sql-driver.js';

const PLACEHOLDER = /\$(\d+)/g;

export function openSqliteDriver(file: string): SqlDriver {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  // `$n` becomes an anonymous `?`, and each occurrence takes the n-th value (a `$2` may appear twice).
  const statements = new Map<string, { statement: Database.Statement; order: number[] }>();
  const prepare = (sql: string, params: readonly SqlValue[]): [Database.Statement, SqlValue[]] => {
    let entry = statements.get(sql);
    if (entry === undefined) {
      const order: number[] = [];
      const statement = db.prepare(sql.replace(PLACEHOLDER, (_m, n: string) => (order.push(Number(n) - 1), '?')));
      entry = { statement, order };
      statements.set(sql, entry);
    }
    return [entry.statement, entry.order.map((i) => params[i] ?? null)];
  };
  const executor: SqlExecutor = {
    async query<T extends Row>(sql: string, params: readonly SqlValue[] = []) {
      const [statement, values] = prepare(sql, params);
      return statement.all(...values) as T[];
    },
    async run(sql: string, params: readonly SqlValue[] = []) {
      const [statement, values] = prepare(sql, params);
      return statement.run(...values).changes;
    },
  };
  let queue: Promise<unknown> = Promise.resolve();
  function serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = queue.then(fn);
    queue = run.catch(() => {});
    return run;
  }
  async function inTransaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return serialised(async () => {
      db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(executor);
        db.exec('COMMIT');
        return result;
      } catch (error) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw error;
      }
    });
  }
  return {
    dialect: 'sqlite',
    // Plain statements also wait for a running transaction, so they never land inside it.
    query: (sql, params) => serialised(() => executor.query(sql, params)),
    run: (sql, params) => serialised(() => executor.run(sql, params)),
    transaction: inTransaction,
    // BEGIN IMMEDIATE takes SQLite's write lock: a second process migrating waits (busy timeout).
    withMigrationLock: inTransaction,
    async exec(_tx, sql) {
      db.exec(sql);
    },
    isUniqueViolation: (error) => {
      const code = (error as { code?: string }).code;
      return code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === 'SQLITE_CONSTRAINT_UNIQUE';
    },
    async close() {
      await queue;
      db.close();
    },
  };
}

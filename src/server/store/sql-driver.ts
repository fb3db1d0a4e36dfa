/**
 * The one port the fleet store talks to a database through. Two drivers implement it (SQLite and
 * PostgreSQL); the store and its migrations write one SQL text with `$1, $2…` placeholders, which
 * both accept (the SQLite driver rewrites them to `?1, ?2…`).
 */
export type Dialect = 'sqlite' | 'postgres';

export type SqlValue = string | number | null;
export type Row = Record<string, unknown>;

export interface SqlExecutor {
  query<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /** Statements without rows; answers the number of rows changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

export interface SqlDriver extends SqlExecutor {
  readonly dialect: Dialect;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Runs `fn` while holding the database-wide migration lock (other processes wait). */
  withMigrationLock<T>(fn: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /** Several statements separated by `;`, no parameters (migrations). */
  exec(tx: SqlExecutor, sql: string): Promise<void>;
  /** True when the error is a unique-constraint violation. */
  isUniqueViolation(error: unknown): boolean;
  close(): Promise<void>;
}

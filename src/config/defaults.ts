/**
 * Defaults that both the schema and otactl's light read of the configuration use: one value each,
 * so the daemon and its client never disagree about where the state or the API is.
 */
import { join } from 'node:path';

export const DEFAULT_STATE_DIR = '/var/lib/ota';
export const DEFAULT_API_HOST = '127.0.0.1';
export const DEFAULT_API_PORT = 7780;
export const DEFAULT_TOKENS_FILE = '/etc/ota/tokens.yaml';

/** The state database when paths.database is not set. */
export const databasePath = (stateDir: string): string => join(stateDir, 'otad.db');

/**
 * What a client of the daemon (otactl) needs from the configuration: where the state folder and
 * database are, and the API's address and tokens file. Read from the same file and environment
 * overrides as the daemon's configuration, with the same defaults, but without validating every
 * other key: a command that answers in a few milliseconds must not load the whole schema, and a
 * client should not refuse to talk to a running daemon over a key it never uses. When one of the
 * keys it does use has the wrong type, the full validator is loaded to report it in its words.
 */
import { existsSync } from 'node:fs';
import { OtaError } from '../core/errors.js';
import { DEFAULT_API_HOST, DEFAULT_API_PORT, DEFAULT_STATE_DIR, DEFAULT_TOKENS_FILE, databasePath } from './defaults.js';
import { applyEnvOverrides, parseYamlFile, resolveConfigPath, type LoadOptions } from './source.js';

const CLIENT_SECTIONS = ['paths', 'api', 'dbus'] as const;

export interface ClientConfig {
  /** The file read, or null when the default file is missing and defaults apply. */
  source: string | null;
  paths: { stateDir: string; database: string };
  api: { host: string; port: number; tokensFile: string };
  /** Where otad's D-Bus service is (otactl inhibit hold over D-Bus). */
  dbus: { enabled: boolean; bus: string; name: string };
}

export async function readClientConfig(opts: LoadOptions = {}): Promise<ClientConfig> {
  const env = opts.env ?? process.env;
  const { path, explicit } = resolveConfigPath(opts);
  let doc: Record<string, unknown> = {};
  let source: string | null = path;
  if (existsSync(path)) doc = parseYamlFile(path);
  else if (explicit || !opts.allowMissingDefault) throw new OtaError('CONFIG_NOT_FOUND', `configuration file ${path} does not exist`, { details: { path } });
  else source = null;
  // Only these sections matter here; for them the daemon applies the same overrides.
  applyEnvOverrides(doc, env, CLIENT_SECTIONS);

  const paths = section(doc.paths);
  const api = section(doc.api);
  const dbusSection = section(doc.dbus);
  const picked = {
    stateDir: paths?.stateDir ?? DEFAULT_STATE_DIR,
    database: paths?.database,
    host: api?.host ?? DEFAULT_API_HOST,
    port: api?.port ?? DEFAULT_API_PORT,
    tokensFile: api?.tokensFile ?? DEFAULT_TOKENS_FILE,
    dbusEnabled: dbusSection?.enabled ?? false,
    dbusBus: dbusSection?.bus ?? 'system',
    dbusName: dbusSection?.name ?? 'io.otad.Daemon1',
  };
  const wellTyped =
    paths !== undefined &&
    api !== undefined &&
    typeof picked.stateDir === 'string' &&
    (picked.database === undefined || typeof picked.database === 'string') &&
    typeof picked.host === 'string' &&
    Number.isInteger(picked.port) &&
    (picked.port as number) >= 0 &&
    (picked.port as number) <= 65535 &&
    typeof picked.tokensFile === 'string' &&
    dbusSection !== undefined &&
    typeof picked.dbusEnabled === 'boolean' &&
    typeof picked.dbusBus === 'string' &&
    typeof picked.dbusName === 'string';
  if (!wellTyped) {
    // Throws the validator's message naming the key; should it accept the file, use what it read.
    const { loadConfig } = await import('./load.js');
    const full = loadConfig(opts);
    return { source: full.source, paths: { stateDir: full.paths.stateDir, database: full.paths.database }, api: { host: full.api.host, port: full.api.port, tokensFile: full.api.tokensFile }, dbus: { ...full.dbus } };
  }
  const stateDir = picked.stateDir as string;
  return {
    source,
    paths: { stateDir, database: (picked.database as string | undefined) ?? databasePath(stateDir) },
    api: { host: picked.host as string, port: picked.port as number, tokensFile: picked.tokensFile as string },
    dbus: { enabled: picked.dbusEnabled as boolean, bus: picked.dbusBus as string, name: picked.dbusName as string },
  };
}

/** A mapping section, {} when absent, undefined when it is something else (then the validator speaks). */
function section(value: unknown): Record<string, unknown> | undefined {
  if (value === undefined) return {};
  if (typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  return undefined;
}

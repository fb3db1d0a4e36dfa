/**
 * Loading configuration: the YAML file (default /etc/ota/config.yaml, `--config`, OTA_CONFIG),
 * product-type templates, environment-variable overrides (OTA_SERVER__URL → server.url), then
 * validation whose messages name the key, the value and what was expected.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OtaError } from '../core/errors.js';
import type { z } from 'zod';
import { databasePath } from './defaults.js';
import { configSchema, type ParsedConfig, type ProductConfig } from './schema.js';
import { applyEnvOverrides as applyOverrides, parseYamlFile, resolveConfigPath, type LoadOptions } from './source.js';
import { describeUnknownKeys, formatPath, knownKeys } from './unknown-keys.js';

export { DEFAULT_CONFIG_PATH, resolveConfigPath, type LoadOptions } from './source.js';

/** The configuration with every derived value filled in: what the daemon runs on. */
export interface Config extends Omit<ParsedConfig, 'paths' | 'products' | 'server'> {
  paths: Required<Omit<ParsedConfig['paths'], 'productTypesDir'>> & { productTypesDir: string };
  server: ParsedConfig['server'] & { url: string };
  products: ProductConfig[];
  /** Where it came from, for status and reload reports. */
  source: string | null;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const { path, explicit } = resolveConfigPath(opts);
  let raw: Record<string, unknown> = {};
  let source: string | null = path;
  if (existsSync(path)) {
    raw = parseYamlFile(path);
  } else if (explicit || !opts.allowMissingDefault) {
    throw new OtaError('CONFIG_NOT_FOUND', `configuration file ${path} does not exist`, { details: { path } });
  } else {
    source = null;
  }
  return buildConfig(raw, { env, source });
}

/** Validates a raw document (already parsed YAML) into a Config: shared by the loader and tests. */
export function buildConfig(raw: Record<string, unknown>, opts: { env?: NodeJS.ProcessEnv; source?: string | null } = {}): Config {
  const env = opts.env ?? {};
  const doc = structuredClone(raw);
  applyEnvOverrides(doc, env);
  const typesDir = productTypesDir(doc);
  expandProducts(doc, typesDir);

  const result = configSchema.safeParse(doc, { reportInput: true });
  if (!result.success) {
    const issues = configIssues(result.error.issues, doc);
    const problems = issues.map((i) => i.message);
    // One code for the whole file: unknown keys alone have their own, anything else is invalid.
    const code = issues.every((i) => i.code === 'CONFIG_UNKNOWN_KEY') ? 'CONFIG_UNKNOWN_KEY' : 'CONFIG_INVALID';
    throw new OtaError(code, `invalid configuration${opts.source ? ` in ${opts.source}` : ''}:\n  ${problems.join('\n  ')}`, {
      details: { problems, issues, source: opts.source ?? null },
    });
  }
  const parsed = result.data;
  const endpoint = parsed.environments[parsed.environment];
  const url = parsed.server.url ?? endpoint?.serverUrl;
  if (!url) {
    throw new OtaError('CONFIG_INVALID', `invalid configuration: environment "${parsed.environment}" has no entry in environments and server.url is not set`, {
      details: { environment: parsed.environment },
    });
  }
  const targetBaseUrl = parsed.server.targetBaseUrl ?? endpoint?.targetBaseUrl;
  const stateDir = parsed.paths.stateDir;
  const names = new Set<string>();
  for (const p of parsed.products) {
    if (names.has(p.name)) {
      throw new OtaError('CONFIG_INVALID', `invalid configuration: products has two entries named "${p.name}"; product names must be unique`, {
        details: { product: p.name },
      });
    }
    names.add(p.name);
    const repoNames = [p.repository.name, ...p.repositories.map((r) => r.name)];
    const twice = repoNames.find((n, i) => repoNames.indexOf(n) !== i);
    if (twice !== undefined) {
      throw new OtaError('CONFIG_INVALID', `invalid configuration: product ${p.name} has two repositories named "${twice}" (repository.name and repositories[].name must differ)`, {
        details: { product: p.name, repository: twice },
      });
    }
    const local = [p.repository, ...p.repositories].find((r) => r.kind === 'local' && (r.path === undefined || r.path === ''));
    if (local !== undefined) {
      throw new OtaError('CONFIG_INVALID', `invalid configuration: product ${p.name} has repository ${local.name} of kind "local" but no path; expected the folder that holds metadata/ and targets/`, {
        details: { product: p.name, repository: local.name },
      });
    }
  }
  const config: Config = {
    ...parsed,
    server: { ...parsed.server, url, ...(targetBaseUrl ? { targetBaseUrl } : {}) },
    paths: {
      ...parsed.paths,
      stateDir,
      database: parsed.paths.database ?? databasePath(stateDir),
      cacheDir: parsed.paths.cacheDir ?? join(stateDir, 'cache'),
      backupDir: parsed.paths.backupDir ?? join(stateDir, 'backups'),
      lockFile: parsed.paths.lockFile ?? join(stateDir, 'otad.lock'),
      productTypesDir: typesDir,
    },
    products: parsed.products.map((p) => ({
      ...p,
      releasesDir: p.releasesDir ?? join(dirname(p.installPath), '.otad', p.name, 'releases'),
    })),
    simulation: parsed.simulation || parsed.environment === 'simulation',
    source: opts.source ?? null,
  };
  return config;
}

/** One problem of a configuration document, with its own code: what --check-config lists. */
export interface ConfigIssue {
  code: 'CONFIG_UNKNOWN_KEY' | 'CONFIG_INVALID';
  /** The key, e.g. `products[0].healthCheks`. */
  path: string;
  message: string;
  /** For unknown keys: the closest known key at that place. */
  suggestion?: string;
}

function configIssues(zodIssues: readonly z.core.$ZodIssue[], doc: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const i of zodIssues) {
    if (i.code === 'unrecognized_keys') {
      for (const u of describeUnknownKeys(configSchema, doc, i.path, i.keys)) {
        out.push({ code: 'CONFIG_UNKNOWN_KEY', path: u.path, message: u.message, ...(u.suggestion === null ? {} : { suggestion: u.suggestion }) });
      }
      continue;
    }
    const key = formatPath(i.path);
    const value = 'input' in i && i.input !== undefined ? ` = ${JSON.stringify(i.input)}` : ' (missing)';
    out.push({ code: 'CONFIG_INVALID', path: key, message: `${key}${value}: ${i.message}` });
  }
  return out;
}

const TOP_LEVEL_KEYS = knownKeys(configSchema);

/** OTA_SERVER__URL=… sets server.url; OTA_PRODUCTS__0__CHANNEL=beta sets products[0].channel (see ./source.ts). */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  return applyOverrides(doc, env, TOP_LEVEL_KEYS);
}

function productTypesDir(doc: Record<string, unknown>): string {
  const paths = doc.paths as Record<string, unknown> | undefined;
  if (paths && typeof paths.productTypesDir === 'string') return paths.productTypesDir;
  // The templates shipped with otad: <package>/config/product-types, from src/config or dist/src/config.
  const here = dirname(fileURLToPath(import.meta.url));
  for (const candidate of [resolve(here, '../../config/product-types'), resolve(here, '../../../config/product-types')]) {
    if (existsSync(candidate)) return candidate;
  }
  return resolve(here, '../../config/product-types');
}

export function listProductTypes(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => f.slice(0, -5))
    .sort();
}

/** A product's `type` pulls in a template; the global schedule and decision fill what it leaves unset. */
function expandProducts(doc: Record<string, unknown>, typesDir: string): void {
  if (!Array.isArray(doc.products)) return;
  const globalSchedule = (doc.schedule as Record<string, unknown> | undefined) ?? {};
  const globalDecision = (doc.decision as Record<string, unknown> | undefined) ?? {};
  doc.products = doc.products.map((entry: unknown, index: number) => {
    if (typeof entry !== 'object' || entry === null) return entry;
    let product = entry as Record<string, unknown>;
    if (typeof product.type === 'string') {
      const file = join(typesDir, `${product.type}.yaml`);
      if (!existsSync(file)) {
        const known = listProductTypes(typesDir);
        throw new OtaError(
          'CONFIG_INVALID',
          `invalid configuration:\n  products[${index}].type = ${JSON.stringify(product.type)}: expected one of the product types in ${typesDir} (${known.join(', ') || 'none found'})`,
        );
      }
      product = deepMerge(parseYamlFile(file), product);
    }
    product.schedule = { ...globalSchedule, ...((product.schedule as Record<string, unknown>) ?? {}) };
    product.decision = { ...globalDecision, ...((product.decision as Record<string, unknown>) ?? {}) };
    return product;
  });
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

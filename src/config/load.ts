/**
 * Loading configuration: the YAML file (default /etc/ota/config.yaml, `--config`, OTA_CONFIG),
 * product-type templates, environment-variable overrides (OTA_SERVER__URL → server.url), then
 * validation whose messages name the key, the value and what was expected.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { OtaError } from '../core/errors.js';
import type { z } from 'zod';
import { configSchema, type ParsedConfig, type ProductConfig } from './schema.js';
import { describeUnknownKeys, formatPath, knownKeys } from './unknown-keys.js';

export const DEFAULT_CONFIG_PATH = '/etc/ota/config.yaml';

/** The configuration with every derived value filled in: what the daemon runs on. */
export interface Config extends Omit<ParsedConfig, 'paths' | 'products' | 'server'> {
  paths: Required<Omit<ParsedConfig['paths'], 'productTypesDir'>> & { productTypesDir: string };
  server: ParsedConfig['server'] & { url: string };
  products: ProductConfig[];
  /** Where it came from, for status and reload reports. */
  source: string | null;
}

export interface LoadOptions {
  /** Explicit path (the --config flag); otherwise OTA_CONFIG, otherwise the default path. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** When true, a missing file at the default path is not an error: defaults apply. */
  allowMissingDefault?: boolean;
}

export function resolveConfigPath(opts: LoadOptions): { path: string; explicit: boolean } {
  const env = opts.env ?? process.env;
  if (opts.path) return { path: resolve(opts.path), explicit: true };
  if (env.OTA_CONFIG) return { path: resolve(env.OTA_CONFIG), explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
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
  }
  const config: Config = {
    ...parsed,
    server: { ...parsed.server, url, ...(targetBaseUrl ? { targetBaseUrl } : {}) },
    paths: {
      ...parsed.paths,
      stateDir,
      database: parsed.paths.database ?? join(stateDir, 'otad.db'),
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

function parseYamlFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new OtaError('CONFIG_NOT_FOUND', `cannot read configuration file ${path}: ${(cause as Error).message}`, { cause });
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text, { prettyErrors: true });
  } catch (cause) {
    throw new OtaError('CONFIG_PARSE', `configuration file ${path} is not valid YAML: ${(cause as Error).message}`, { cause });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new OtaError('CONFIG_PARSE', `configuration file ${path} must hold a mapping of keys at the top level`);
  }
  return doc as Record<string, unknown>;
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

const snakeToCamel = (s: string): string => s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

const TOP_LEVEL_KEYS = knownKeys(configSchema);

/** OTA_SERVER__URL=… sets server.url; OTA_PRODUCTS__0__CHANNEL=beta sets products[0].channel. */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
  const applied: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OTA_') || value === undefined) continue;
    if (name === 'OTA_CONFIG' || name.startsWith('OTA_TEST_')) continue;
    const segments = name.slice(4).split('__').filter(Boolean).map(snakeToCamel);
    if (segments.length === 0) continue;
    // OTA_TOKEN_FILE, OTA_PRODUCT (hook environment) and the like are not configuration: a name
    // without "__" is an override only when it names a top-level key (OTA_SIMULATION). A name with
    // "__" always is one, so a misspelled section is refused as an unknown key, not ignored.
    if (segments.length === 1 && !TOP_LEVEL_KEYS.includes(segments[0] as string)) continue;
    let node: Record<string, unknown> | unknown[] = doc;
    for (let i = 0; i < segments.length - 1; i++) {
      const seg = segments[i] as string;
      const key: string | number = Array.isArray(node) ? Number(seg) : seg;
      let next = (node as Record<string | number, unknown>)[key];
      if (next === undefined || next === null || typeof next !== 'object') {
        next = /^\d+$/.test(segments[i + 1] as string) ? [] : {};
        (node as Record<string | number, unknown>)[key] = next;
      }
      node = next as Record<string, unknown>;
    }
    const last = segments[segments.length - 1] as string;
    let parsed: unknown = value;
    try {
      parsed = YAML.parse(value);
    } catch {
      parsed = value;
    }
    (node as Record<string | number, unknown>)[Array.isArray(node) ? Number(last) : last] = parsed ?? value;
    applied.push(segments.join('.'));
  }
  return applied;
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

/** What changed between two configurations, as dotted keys: the SIGHUP report. */
export function diffConfig(a: unknown, b: unknown, prefix = ''): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    const out: string[] = [];
    for (const k of [...keys].sort()) {
      if (k === 'source') continue;
      out.push(...diffConfig((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
    }
    return out;
  }
  return [prefix || '(top level)'];
}

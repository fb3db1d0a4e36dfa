/**
 * Where configuration comes from, before any validation: which file (`--config`, OTA_CONFIG, the
 * default path), its YAML, and the environment overrides (OTA_SERVER__URL → server.url). Kept apart
 * from the schema so a client that needs two keys (otactl) reads them without loading the validator.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseYaml } from './yaml-lite.js';
import { OtaError } from '../core/errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/ota/config.yaml';

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

export function parseYamlFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new OtaError('CONFIG_NOT_FOUND', `cannot read configuration file ${path}: ${(cause as Error).message}`, { cause });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (cause) {
    throw new OtaError('CONFIG_PARSE', `configuration file ${path} is not valid YAML: ${(cause as Error).message}`, { cause });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new OtaError('CONFIG_PARSE', `configuration file ${path} must hold a mapping of keys at the top level`);
  }
  return doc as Record<string, unknown>;
}

const snakeToCamel = (s: string): string => s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * OTA_SERVER__URL=… sets server.url; OTA_PRODUCTS__0__CHANNEL=beta sets products[0].channel.
 * `topLevelKeys` are the configuration's top-level keys (the schema's, passed in so this file does
 * not load it).
 */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv, topLevelKeys: readonly string[]): string[] {
  const applied: string[] = [];
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OTA_') || value === undefined) continue;
    if (name === 'OTA_CONFIG' || name.startsWith('OTA_TEST_')) continue;
    const segments = name.slice(4).split('__').filter(Boolean).map(snakeToCamel);
    if (segments.length === 0) continue;
    // OTA_TOKEN_FILE, OTA_PRODUCT (hook environment) and the like are not configuration: a name
    // without "__" is an override only when it names a top-level key (OTA_SIMULATION). A name with
    // "__" always is one, so a misspelled section is refused as an unknown key, not ignored.
    if (segments.length === 1 && !topLevelKeys.includes(segments[0] as string)) continue;
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
      parsed = parseYaml(value);
    } catch {
      parsed = value;
    }
    (node as Record<string | number, unknown>)[Array.isArray(node) ? Number(last) : last] = parsed ?? value;
    applied.push(segments.join('.'));
  }
  return applied;
}

/**
 * The product-type templates (config/product-types/<type>.yaml): what a robot's product entry of
 * that type gets unless it says otherwise (src/config/load.ts merges them), and what a publisher
 * reads to know where a release of that type keeps its version file. One reader for both
 * publishing tools (ota-repo, the studio), so they agree with the robot on every field.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { OtaError } from '../core/errors.js';

/** The templates shipped with otad, from src/products or dist/src/products. */
export function shippedProductTypesDir(moduleUrl: string = import.meta.url): string {
  const here = path.dirname(fileURLToPath(moduleUrl));
  const candidates = [path.resolve(here, '../../config/product-types'), path.resolve(here, '../../../config/product-types')];
  return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
}

export interface HealthCheckTemplate {
  kind: string;
  [key: string]: unknown;
}

/** The fields of a template a publisher sees; the whole document is kept in `raw`. */
export interface ProductTypeTemplate {
  name: string;
  file: string;
  versionFile: string;
  channel: string;
  services: string[];
  healthChecks: HealthCheckTemplate[];
  preservedPaths: string[];
  raw: Record<string, unknown>;
}

export async function listProductTypeNames(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  return names.filter((f) => f.endsWith('.yaml')).map((f) => f.slice(0, -5)).sort();
}

const TYPE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export async function readProductType(dir: string, name: string): Promise<ProductTypeTemplate> {
  if (!TYPE_NAME.test(name)) throw new OtaError('CONFIG_INVALID', `product type ${JSON.stringify(name)}: expected a name such as robot-ai`);
  const file = path.join(dir, `${name}.yaml`);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    const known = await listProductTypeNames(dir);
    throw new OtaError('CONFIG_INVALID', `no product type ${file} (known: ${known.join(', ') || 'none'})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (cause) {
    throw new OtaError('CONFIG_INVALID', `product type ${file} is not valid YAML: ${(cause as Error).message.split('\n')[0]}`, { cause });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new OtaError('CONFIG_INVALID', `product type ${file}: expected a mapping at the top level`);
  const raw = doc as Record<string, unknown>;
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return {
    name,
    file,
    versionFile: typeof raw.versionFile === 'string' ? raw.versionFile : 'VERSION',
    channel: typeof raw.channel === 'string' ? raw.channel : 'stable',
    services: strings(raw.services),
    healthChecks: Array.isArray(raw.healthChecks) ? raw.healthChecks.filter((h): h is HealthCheckTemplate => typeof h === 'object' && h !== null && typeof (h as { kind?: unknown }).kind === 'string') : [],
    preservedPaths: strings(raw.preservedPaths),
    raw,
  };
}

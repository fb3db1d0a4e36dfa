/**
 * The product registry: which products this robot has (from configuration), whether each is
 * installed, in which layout and at which version. Detection reads, in order: the release marker
 * otad writes into every release it installs, then the product's version file.
 */
import { lstat, readFile, readlink } from 'node:fs/promises';
import { join, resolve, dirname } from 'node:path';
import semver from 'semver';
import type { ProductConfig } from '../config/schema.js';

/** Written by otad into the root of every release it installs. */
export const RELEASE_MARKER = '.ota-release.json';

export interface ReleaseMarker {
  product: string;
  version: string;
  installedAt: number;
  runId: string | null;
}

export type InstallLayout = 'managed' | 'plain' | 'missing';

export interface DetectedProduct {
  product: string;
  installPath: string;
  layout: InstallLayout;
  /** Where the install path points (managed layout only). */
  releaseDir: string | null;
  version: string | null;
  versionSource: 'marker' | 'version-file' | null;
}

export async function detectProduct(p: Pick<ProductConfig, 'name' | 'installPath' | 'versionFile'>): Promise<DetectedProduct> {
  const base: DetectedProduct = { product: p.name, installPath: p.installPath, layout: 'missing', releaseDir: null, version: null, versionSource: null };
  let st;
  try {
    st = await lstat(p.installPath);
  } catch {
    return base;
  }
  let dir = p.installPath;
  if (st.isSymbolicLink()) {
    const target = await readlink(p.installPath);
    dir = resolve(dirname(p.installPath), target);
    base.layout = 'managed';
    base.releaseDir = dir;
  } else if (st.isDirectory()) {
    base.layout = 'plain';
  } else {
    return base;
  }
  const marker = await readMarker(dir);
  if (marker && marker.product === p.name) return { ...base, version: marker.version, versionSource: 'marker' };
  const version = await readVersionFile(join(dir, p.versionFile));
  return version ? { ...base, version, versionSource: 'version-file' } : base;
}

export async function readMarker(dir: string): Promise<ReleaseMarker | null> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, RELEASE_MARKER), 'utf8')) as Partial<ReleaseMarker>;
    if (typeof parsed.product === 'string' && typeof parsed.version === 'string') return parsed as ReleaseMarker;
  } catch {
    // No marker: not installed by otad (or not yet).
  }
  return null;
}

async function readVersionFile(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return null;
  }
  return parseVersionText(text);
}

/**
 * The version a product's version file states: its first line, a leading `v` dropped, read as
 * semver (coerced when it is not strict). The robot and the publisher read it the same way.
 */
export function parseVersionText(text: string): string | null {
  const first = text.split('\n')[0]?.trim().replace(/^v/, '') ?? '';
  return semver.valid(first) ?? semver.coerce(first)?.version ?? null;
}

export interface ProductRegistry {
  products(): ProductConfig[];
  get(name: string): ProductConfig | undefined;
  detect(name: string): Promise<DetectedProduct>;
  detectAll(): Promise<DetectedProduct[]>;
}

export function createProductRegistry(products: ProductConfig[]): ProductRegistry {
  const byName = new Map(products.map((p) => [p.name, p]));
  return {
    products: () => [...byName.values()],
    get: (name) => byName.get(name),
    async detect(name) {
      const p = byName.get(name);
      if (!p) throw new Error(`unknown product ${name}`);
      return detectProduct(p);
    },
    async detectAll() {
      return Promise.all([...byName.values()].map((p) => detectProduct(p)));
    },
  };
}

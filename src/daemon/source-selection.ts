/**
 * Which channel and repository a product follows. The configuration names the default
 * (`channel`, `repository`) and the further choices (`channels`, `repositories`); an operator
 * picks among them through the API (PUT /api/v1/products/{product}/source, the dashboard, otactl
 * source). The choice is kept in the store's key-value table (`source:<product>`), like the other
 * facts otad must remember across restarts, and applied on top of the configuration at start and
 * after every reload. A choice the configuration no longer offers, or a product whose policy
 * (`allowSourceSwitch: false`) forbids switching, falls back to the configured default.
 */
import type { EventSource } from '../../machines/types.js';
import type { Config } from '../config/load.js';
import type { ProductConfig } from '../config/schema.js';

export const SOURCE_KEY = (product: string): string => `source:${product}`;

/** What the store keeps of an operator's choice. */
export interface StoredSource {
  channel: string;
  repository: string;
  at: number;
  actor: string | null;
  via: EventSource;
}

export interface RepositoryChoice {
  name: string;
  kind: 'tuf' | 'local';
  /** The base URL (tuf) or folder (local); null: the server's URL (server.url). */
  location: string | null;
}

/** A product's source as the API reports it. */
export interface ProductSource {
  product: string;
  channel: string;
  repository: string;
  /** The configured default. */
  defaults: { channel: string; repository: string };
  channels: string[];
  repositories: RepositoryChoice[];
  /** False when the configuration forbids switching (allowSourceSwitch: false). */
  switchAllowed: boolean;
  /** The operator's choice in force (null: the configured default applies). */
  selected: { at: number; actor: string | null; via: EventSource } | null;
}

export function channelChoices(p: ProductConfig): string[] {
  return [...new Set([p.channel, ...p.channels])];
}

export function repositoryChoices(p: ProductConfig): Array<ProductConfig['repository']> {
  return [p.repository, ...p.repositories];
}

export function describeRepository(r: ProductConfig['repository'], config: Config): RepositoryChoice {
  return { name: r.name, kind: r.kind, location: r.kind === 'local' ? (r.path ?? null) : (r.url ?? config.server.url ?? null) };
}

/** Why a stored choice no longer applies (null: it does). */
export function staleReason(p: ProductConfig, s: StoredSource): string | null {
  if (!p.allowSourceSwitch) return 'the configuration forbids switching (allowSourceSwitch: false)';
  if (!channelChoices(p).includes(s.channel)) return `channel ${s.channel} is no longer among the configured channels (${channelChoices(p).join(', ')})`;
  if (!repositoryChoices(p).some((r) => r.name === s.repository)) return `repository ${s.repository} is no longer configured`;
  return null;
}

/** The product as its steps use it: the chosen channel and repository in place of the defaults. */
export function withSource(p: ProductConfig, s: { channel: string; repository: string } | null): ProductConfig {
  if (s === null) return p;
  const repository = repositoryChoices(p).find((r) => r.name === s.repository) ?? p.repository;
  return { ...p, channel: s.channel, repository };
}

export function parseStoredSource(raw: string | null): StoredSource | null {
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as Partial<StoredSource>;
    if (typeof v.channel !== 'string' || typeof v.repository !== 'string' || typeof v.at !== 'number') return null;
    return { channel: v.channel, repository: v.repository, at: v.at, actor: typeof v.actor === 'string' ? v.actor : null, via: (v.via ?? 'rest') as EventSource };
  } catch {
    return null;
  }
}

export function productSource(p: ProductConfig, config: Config, stored: StoredSource | null): ProductSource {
  const applies = stored !== null && staleReason(p, stored) === null;
  return {
    product: p.name,
    channel: applies ? stored.channel : p.channel,
    repository: applies ? stored.repository : p.repository.name,
    defaults: { channel: p.channel, repository: p.repository.name },
    channels: channelChoices(p),
    repositories: repositoryChoices(p).map((r) => describeRepository(r, config)),
    switchAllowed: p.allowSourceSwitch,
    selected: applies ? { at: stored.at, actor: stored.actor, via: stored.via } : null,
  };
}

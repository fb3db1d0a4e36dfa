/**
 * The HTTP client otactl uses: finds the daemon (flag, OTA_URL, `<stateDir>/api.json`, then the
 * configured host and port), reads a token file, and turns every answer into data or an ApiClientError
 * that carries the HTTP status and the stable error code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import type { Config } from '../config/load.js';

/** Written by the API server in the state folder once it listens: { host, port, url, socketPath, pid }. */
export const API_ADDRESS_FILE = 'api.json';

export class ApiClientError extends Error {
  constructor(
    readonly status: number | null,
    readonly code: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ApiClientError';
  }
  get unreachable(): boolean {
    return this.status === null;
  }
}

export function resolveApiUrl(opts: { url?: string | undefined; env: NodeJS.ProcessEnv; config: Config }): string {
  if (opts.url) return opts.url.replace(/\/$/, '');
  if (opts.env.OTA_URL) return opts.env.OTA_URL.replace(/\/$/, '');
  const file = join(opts.config.paths.stateDir, API_ADDRESS_FILE);
  if (existsSync(file)) {
    try {
      const a = JSON.parse(readFileSync(file, 'utf8')) as { url?: string };
      if (a.url) return a.url;
    } catch {
      // A half-written or foreign file: fall back to the configuration.
    }
  }
  const host = opts.config.api.host.includes(':') ? `[${opts.config.api.host}]` : opts.config.api.host;
  return `http://${host}:${opts.config.api.port}`;
}

/**
 * A token file holds either the token alone (first line) or otad's tokens YAML, from which the
 * first control token (else the first token) is taken: root on the robot needs no extra file.
 */
export function readTokenFile(path: string): string {
  const text = readFileSync(path, 'utf8');
  try {
    const doc = YAML.parse(text) as { tokens?: Array<{ token?: unknown; scope?: unknown }> } | null;
    if (doc && typeof doc === 'object' && Array.isArray(doc.tokens)) {
      const pick = doc.tokens.find((t) => t.scope === 'control') ?? doc.tokens[0];
      if (pick && typeof pick.token === 'string') return pick.token;
    }
  } catch {
    // Not YAML: a bare token.
  }
  return (text.split('\n')[0] ?? '').trim();
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    readonly token: string | null,
  ) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}),
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).message;
      throw new ApiClientError(null, 'UNREACHABLE', `otad is not reachable at ${this.baseUrl} (${cause}); is otad running? (systemctl status otad)`);
    }
    const text = await res.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!res.ok) {
      const e = (data as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | null)?.error;
      throw new ApiClientError(res.status, e?.code ?? `HTTP_${res.status}`, e?.message ?? `otad answered ${res.status}`, e?.details);
    }
    return data as T;
  }
}

/**
 * The HTTP client otactl uses: finds the daemon (flag, OTA_URL, `<stateDir>/api.json`, then the
 * configured host and port), reads a token file, and turns every answer into data or an ApiClientError
 * that carries the HTTP status and the stable error code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseYaml } from '../config/yaml-lite.js';

const requireBuiltin = createRequire(import.meta.url) as (id: 'node:http' | 'node:https') => typeof import('node:http');

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

/** The part of the configuration that locates the API: the daemon's Config and otactl's ClientConfig both fit. */
export interface ApiLocation {
  paths: { stateDir: string };
  api: { host: string; port: number };
}

export function resolveApiUrl(opts: { url?: string | undefined; env: NodeJS.ProcessEnv; config: ApiLocation }): string {
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
    const doc = parseYaml(text) as { tokens?: Array<{ token?: unknown; scope?: unknown }> } | null;
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

  /**
   * One request over node:http (node:https for an https URL). Not fetch: its HTTP stack is loaded
   * on first use and costs a one-shot command like `otactl status` more time than the request.
   * Loaded with require(), not import(): on Node 24 the ESM view of node:http reads every export,
   * which includes lazy getters (WebSocket and friends) that load Node's bundled undici, about
   * 40 ms of compiling for a status command (measured with --cpu-prof).
   */
  async request<T>(method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? REQUEST_TIMEOUT_MS;
    const url = new URL(`${this.baseUrl}${path}`);
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const transport: typeof import('node:http') = url.protocol === 'https:' ? requireBuiltin('node:https') : requireBuiltin('node:http');
    let answer: { status: number; text: string };
    try {
      answer = await new Promise((resolve, reject) => {
        const req = transport.request(
          url,
          {
            method,
            headers: {
              ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}),
              ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
            },
            timeout: timeoutMs,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs / 1000}s`), { code: 'ETIMEDOUT' })));
        req.on('error', reject);
        req.end(payload ?? undefined);
      });
    } catch (error) {
      const cause = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new ApiClientError(null, 'UNREACHABLE', `otad is not reachable at ${this.baseUrl} (${cause}); is otad running? (systemctl status otad)`);
    }
    let data: unknown = null;
    try {
      data = answer.text ? JSON.parse(answer.text) : null;
    } catch {
      data = answer.text;
    }
    if (answer.status < 200 || answer.status >= 300) {
      const e = (data as { error?: { code?: string; message?: string; details?: Record<string, unknown> } } | null)?.error;
      throw new ApiClientError(answer.status, e?.code ?? `HTTP_${answer.status}`, e?.message ?? `otad answered ${answer.status}`, e?.details);
    }
    return data as T;
  }
}

const REQUEST_TIMEOUT_MS = 15_000;

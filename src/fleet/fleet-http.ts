/**
 * One signed request to the fleet server: build the URL under server.url (keeping its own path
 * prefix, which is part of what is signed), sign exactly the path sent, and read the JSON answer.
 * Network failures come back as `{ reached: false }`, never as a throw: every caller has its own
 * policy for an unreachable server (check-ins: a debug line; leases: fleet.lease.unreachable).
 */
import { fetch as undiciFetch, type Dispatcher } from 'undici';
import { signRequest, type DeviceKey } from './signing.js';

export interface FleetIdentity {
  deviceId: string;
  key: DeviceKey;
}

export interface FleetHttpOptions {
  /** config.server.url; null or a non-HTTP URL (a local folder) means there is no fleet server. */
  serverUrl: string | null;
  identity: FleetIdentity;
  now: () => number;
  timeoutMs?: number;
  /** The connection pool (server.caFile's CA, the connect timeout); undici's global one when absent. */
  dispatcher?: Dispatcher;
}

export type FleetAnswer =
  | { reached: true; status: number; body: Record<string, unknown> | null }
  | { reached: false; error: string };

export interface FleetHttp {
  /** False when server.url is not an HTTP(S) URL: nothing is sent. */
  readonly configured: boolean;
  request(method: 'POST' | 'DELETE', apiPath: string, body?: unknown, signal?: AbortSignal): Promise<FleetAnswer>;
}

/** The URL of an API path under the base URL, and the path and query that go on the wire (and are signed). */
export function fleetUrl(serverUrl: string, apiPath: string): { url: string; path: string } {
  const base = new URL(serverUrl.endsWith('/') ? serverUrl : `${serverUrl}/`);
  const url = new URL(apiPath.replace(/^\//, ''), base);
  return { url: url.toString(), path: `${url.pathname}${url.search}` };
}

export function createFleetHttp(opts: FleetHttpOptions): FleetHttp {
  const configured = opts.serverUrl !== null && /^https?:\/\//.test(opts.serverUrl);
  return {
    configured,
    async request(method, apiPath, body, signal) {
      if (!configured) return { reached: false, error: 'server.url is not an HTTP(S) URL' };
      let target: { url: string; path: string };
      try {
        target = fleetUrl(opts.serverUrl as string, apiPath);
      } catch (error) {
        return { reached: false, error: `server.url ${opts.serverUrl} is not a URL: ${(error as Error).message}` };
      }
      const text = body === undefined ? '' : JSON.stringify(body);
      const headers: Record<string, string> = {
        ...signRequest({ method, path: target.path, deviceId: opts.identity.deviceId, body: text, key: opts.identity.key, now: opts.now() }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      };
      const timeout = AbortSignal.timeout(opts.timeoutMs ?? 5000);
      try {
        const res = await undiciFetch(target.url, {
          method,
          headers,
          ...(body === undefined ? {} : { body: text }),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
          ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
        });
        const raw = await res.text();
        let parsed: Record<string, unknown> | null = null;
        try {
          const v: unknown = raw === '' ? null : JSON.parse(raw);
          parsed = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
        } catch {
          parsed = null;
        }
        return { reached: true, status: res.status, body: parsed };
      } catch (error) {
        return { reached: false, error: (error as Error).message };
      }
    },
  };
}

/** `{ error: { code } }` of an answer, if it has one. */
export function errorCode(body: Record<string, unknown> | null): string | null {
  const e = body?.error;
  if (typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string') return (e as { code: string }).code;
  return null;
}

export function errorMessage(body: Record<string, unknown> | null): string | null {
  const e = body?.error;
  if (typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string') return (e as { message: string }).message;
  return null;
}

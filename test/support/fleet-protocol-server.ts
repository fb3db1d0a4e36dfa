/**
 * The PROTOCOL TEST SERVER: a loopback HTTP server that speaks the device side of
 * docs/fleet-protocol.md (signed check-ins and update leases) and nothing more, for otad's tests
 * while the real ota-server grows the same endpoints. It verifies every device request with
 * `verifyRequest`, refuses replays, keeps device records (pending until accepted), rollouts and
 * leases in memory. Tests drive it only through its URL: the device endpoints, and a small
 * operator surface under `/_test/` (accept a device, set a rollout's state, set the site budget,
 * read what was received), so the same tests can later run against ota-server.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OtaError } from '../../src/core/errors.js';
import { verifyRequest } from '../../src/fleet/signing.js';

export interface ReceivedRequest {
  method: string;
  path: string;
  deviceId: string;
  body: unknown;
  status: number;
}

export interface ProtocolServer {
  /** Base URL including the path prefix, if one was asked for. */
  url: string;
  close(): Promise<void>;
}

interface Device {
  publicKey: string;
  status: 'pending' | 'accepted' | 'rejected';
}

interface Lease {
  id: string;
  deviceId: string;
  product: string;
  version: string;
  expiresAt: number;
  ttlMs: number;
}

export async function startFleetProtocolServer(opts: { prefix?: string; now?: () => number } = {}): Promise<ProtocolServer> {
  const now = opts.now ?? Date.now;
  const prefix = (opts.prefix ?? '').replace(/\/$/, '');
  const devices = new Map<string, Device>();
  const nonces = new Set<string>();
  const rollouts = new Map<string, { product: string; version: string; state: string; reason: string }>();
  const leases = new Map<string, Lease>();
  const received: ReceivedRequest[] = [];
  const leaseLog: Array<{ event: 'granted' | 'renewed' | 'returned' | 'refused'; id?: string; deviceId: string; code?: string; at: number }> = [];
  let budget = Infinity;
  let retryAfterMs = 200;
  let autoAccept = false;

  const send = (res: ServerResponse, status: number, body?: unknown): void => {
    res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const fail = (res: ServerResponse, status: number, code: string, message: string, extra: Record<string, unknown> = {}): void => send(res, status, { error: { code, message }, ...extra });
  const activeLeases = (): Lease[] => [...leases.values()].filter((l) => l.expiresAt > now());
  const halted = (): Array<{ product: string; version: string; state: string; reason: string }> => [...rollouts.values()].filter((r) => r.state !== 'active');

  async function readBody(req: IncomingMessage): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  /** The signature and the device record, as the protocol's table says; null when the answer is already sent. */
  function authenticate(req: IncomingMessage, res: ServerResponse, path: string, body: Buffer): { deviceId: string; device: Device; created: boolean } | null {
    let verified;
    try {
      verified = verifyRequest({ method: req.method ?? 'GET', path, header: (n) => req.headers[n] as string | undefined, body, now: now() });
    } catch (error) {
      const code = error instanceof OtaError ? error.code : 'DEVICE_SIGNATURE_INVALID';
      fail(res, 401, code, (error as Error).message);
      return null;
    }
    const nonceKey = `${verified.deviceId} ${verified.nonce}`;
    if (nonces.has(nonceKey)) {
      fail(res, 401, 'DEVICE_REPLAY', 'this nonce was already used');
      return null;
    }
    nonces.add(nonceKey);
    let device = devices.get(verified.deviceId);
    let created = false;
    if (device === undefined) {
      device = { publicKey: verified.publicKey, status: autoAccept ? 'accepted' : 'pending' };
      devices.set(verified.deviceId, device);
      created = true;
    } else if (device.publicKey !== verified.publicKey) {
      fail(res, 401, 'DEVICE_KEY_CONFLICT', 'another key is on record for this device id');
      return null;
    }
    return { deviceId: verified.deviceId, device, created };
  }

  async function device(req: IncomingMessage, res: ServerResponse, path: string, route: string): Promise<void> {
    const raw = await readBody(req);
    const auth = authenticate(req, res, path, raw);
    const record = (status: number, body: unknown): void => {
      received.push({ method: req.method ?? '', path, deviceId: auth?.deviceId ?? '', body, status });
    };
    if (auth === null) {
      record(401, null);
      return;
    }
    const body: Record<string, unknown> = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
    const { device: d, deviceId } = auth;
    if (req.method === 'POST' && route === '/api/v1/checkin') {
      if (body.deviceId !== deviceId) return (record(400, body), fail(res, 400, 'API_BAD_REQUEST', 'deviceId must equal OTA-Device-Id'));
      if (d.status === 'rejected') return (record(403, body), fail(res, 403, 'DEVICE_REJECTED', 'this device was rejected'));
      if (d.status === 'pending') return (record(202, body), send(res, 202, { status: 'pending' }));
      record(200, body);
      return send(res, 200, { status: 'accepted', lastSeen: now(), rollouts: halted() });
    }
    if (d.status !== 'accepted') {
      record(403, body);
      return fail(res, 403, d.status === 'rejected' ? 'DEVICE_REJECTED' : 'DEVICE_PENDING', `this device is ${d.status}`);
    }
    if (req.method === 'POST' && route === '/api/v1/leases') {
      const r = rollouts.get(`${String(body.product)} ${String(body.version)}`);
      if (r && r.state !== 'active') {
        record(409, body);
        leaseLog.push({ event: 'refused', deviceId, code: 'ROLLOUT_HALTED', at: now() });
        return fail(res, 409, 'ROLLOUT_HALTED', r.reason, { retryAfterMs });
      }
      if (activeLeases().length >= budget) {
        record(409, body);
        leaseLog.push({ event: 'refused', deviceId, code: 'SITE_BUDGET_FULL', at: now() });
        return fail(res, 409, 'SITE_BUDGET_FULL', `${activeLeases().length} of ${budget} update slots of this site are taken`, { retryAfterMs });
      }
      const ttlMs = typeof body.ttlMs === 'number' ? body.ttlMs : 600_000;
      const lease: Lease = { id: randomUUID(), deviceId, product: String(body.product), version: String(body.version), ttlMs, expiresAt: now() + ttlMs };
      leases.set(lease.id, lease);
      leaseLog.push({ event: 'granted', id: lease.id, deviceId, at: now() });
      record(200, body);
      return send(res, 200, { lease: { id: lease.id, expiresAt: lease.expiresAt, ttlMs } });
    }
    const m = /^\/api\/v1\/leases\/([^/]+)(\/renew)?$/.exec(route);
    if (m) {
      const lease = leases.get(decodeURIComponent(m[1] as string));
      const mine = lease !== undefined && lease.deviceId === deviceId && lease.expiresAt > now();
      if (req.method === 'POST' && m[2]) {
        if (!mine) return (record(404, body), fail(res, 404, 'LEASE_EXPIRED', 'the server no longer holds this lease'));
        lease.expiresAt = now() + lease.ttlMs;
        leaseLog.push({ event: 'renewed', id: lease.id, deviceId, at: now() });
        record(200, body);
        return send(res, 200, { expiresAt: lease.expiresAt });
      }
      if (req.method === 'DELETE' && !m[2]) {
        if (lease && lease.deviceId === deviceId) {
          leases.delete(lease.id);
          leaseLog.push({ event: 'returned', id: lease.id, deviceId, at: now() });
        }
        record(204, body);
        return send(res, 204);
      }
    }
    record(404, body);
    fail(res, 404, 'API_NOT_FOUND', `no route ${req.method} ${route}`);
  }

  /** The operator surface tests use (the real server has its CLI and fleet page for this). */
  async function operator(req: IncomingMessage, res: ServerResponse, route: string): Promise<void> {
    const raw = await readBody(req);
    const body = raw.length ? (JSON.parse(raw.toString('utf8')) as Record<string, unknown>) : {};
    const accept = /^\/_test\/devices\/([^/]+)\/(accept|reject)$/.exec(route);
    if (req.method === 'POST' && accept) {
      const d = devices.get(decodeURIComponent(accept[1] as string));
      if (!d) return fail(res, 404, 'API_NOT_FOUND', 'unknown device');
      d.status = accept[2] === 'accept' ? 'accepted' : 'rejected';
      return send(res, 200, { ok: true });
    }
    if (req.method === 'POST' && route === '/_test/rollouts') {
      rollouts.set(`${String(body.product)} ${String(body.version)}`, { product: String(body.product), version: String(body.version), state: String(body.state), reason: String(body.reason ?? '') });
      return send(res, 200, { ok: true });
    }
    if (req.method === 'POST' && route === '/_test/settings') {
      if (typeof body.budget === 'number') budget = body.budget;
      if (body.budget === null) budget = Infinity;
      if (typeof body.retryAfterMs === 'number') retryAfterMs = body.retryAfterMs;
      if (typeof body.autoAccept === 'boolean') autoAccept = body.autoAccept;
      return send(res, 200, { ok: true });
    }
    if (req.method === 'GET' && route === '/_test/state') {
      return send(res, 200, {
        devices: Object.fromEntries(devices),
        received,
        leases: activeLeases(),
        leaseLog,
      });
    }
    fail(res, 404, 'API_NOT_FOUND', `no route ${req.method} ${route}`);
  }

  const server: Server = createServer((req, res) => {
    const path = req.url ?? '/';
    const pathname = path.split('?')[0] as string;
    const handle = pathname.startsWith('/_test/')
      ? operator(req, res, pathname)
      : pathname.startsWith(`${prefix}/api/v1/`)
        ? device(req, res, path, pathname.slice(prefix.length))
        : Promise.resolve(fail(res, 404, 'API_NOT_FOUND', `no route ${pathname}`));
    handle.catch((error: unknown) => {
      if (!res.headersSent) fail(res, 500, 'INTERNAL', String(error));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The operator surface, through the URL only. */
export function protocolOperator(serverUrl: string) {
  const origin = new URL(serverUrl).origin;
  const post = async (path: string, body: unknown): Promise<void> => {
    const res = await fetch(`${origin}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (!res.ok) throw new Error(`${path}: HTTP ${res.status} ${await res.text()}`);
  };
  return {
    accept: (deviceId: string) => post(`/_test/devices/${encodeURIComponent(deviceId)}/accept`, {}),
    reject: (deviceId: string) => post(`/_test/devices/${encodeURIComponent(deviceId)}/reject`, {}),
    setRollout: (r: { product: string; version: string; state: 'active' | 'halted' | 'paused'; reason?: string }) => post('/_test/rollouts', r),
    settings: (s: { budget?: number | null; retryAfterMs?: number; autoAccept?: boolean }) => post('/_test/settings', s),
    state: async () =>
      (await (await fetch(`${origin}/_test/state`)).json()) as {
        devices: Record<string, { publicKey: string; status: string }>;
        received: ReceivedRequest[];
        leases: Array<{ id: string; deviceId: string; expiresAt: number }>;
        leaseLog: Array<{ event: string; id?: string; deviceId: string; code?: string }>;
      },
  };
}

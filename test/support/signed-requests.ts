/**
 * Signed device requests of any kind over real HTTP (leases, renewals, returns, check-ins), signed
 * with the one signing module otad uses. For the rollout and lease tests.
 */
import { signRequest, type DeviceKey } from '../../src/fleet/signing.js';

export interface Robot {
  id: string;
  key: DeviceKey;
}

export interface SignedAnswer {
  status: number;
  body: Record<string, any>;
}

export async function signedRequest(url: string, robot: Robot, method: string, route: string, body: unknown, now: number, nonce?: string): Promise<SignedAnswer> {
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers: Record<string, string> = {
    ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    ...signRequest({ method, path: route, deviceId: robot.id, body: text, key: robot.key, now, ...(nonce !== undefined ? { nonce } : {}) }),
  };
  const res = await fetch(`${url}${route}`, { method, headers, ...(body === undefined ? {} : { body: text }) });
  const raw = await res.text();
  return { status: res.status, body: raw === '' ? {} : (JSON.parse(raw) as Record<string, any>) };
}

export const askLease = (url: string, robot: Robot, version: string, now: number, extra: Record<string, unknown> = {}) =>
  signedRequest(url, robot, 'POST', '/api/v1/leases', { deviceId: robot.id, product: 'robot-ai', version, fromVersion: '1.0.0', ...extra }, now);

export const renewLease = (url: string, robot: Robot, id: string, now: number) => signedRequest(url, robot, 'POST', `/api/v1/leases/${id}/renew`, undefined, now);
export const returnLease = (url: string, robot: Robot, id: string, now: number) => signedRequest(url, robot, 'DELETE', `/api/v1/leases/${id}`, undefined, now);

export const checkin = (url: string, robot: Robot, now: number, report: Record<string, unknown>) =>
  signedRequest(url, robot, 'POST', '/api/v1/checkin', { deviceId: robot.id, product: 'robot-ai', version: '1.0.0', state: 'idle', ...report }, now);

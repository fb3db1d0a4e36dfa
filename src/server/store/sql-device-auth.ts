/**
 * A signed device request other than the check-in (lease, renew, return) against the device record,
 * inside the caller's transaction: the nonce is claimed in the same `nonces` table the check-in uses
 * (so a request replayed to another process, or replayed as another kind of request, is refused),
 * then the record decides. A refusal is thrown as `DeviceRefused` so the caller's transaction rolls
 * back whole and nothing the request sent stays behind.
 */
import type { Device, DeviceRefusal, DeviceRequestAuth } from './fleet-store.js';
import type { SqlExecutor } from './sql-driver.js';

export class DeviceRefused {
  constructor(readonly refusal: DeviceRefusal) {}
}

export async function authenticateDevice(
  tx: SqlExecutor,
  auth: DeviceRequestAuth,
  readDevice: (tx: SqlExecutor, id: string) => Promise<Device | null>,
): Promise<Device> {
  const fresh = await tx.run('INSERT INTO nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT (device_id, nonce) DO NOTHING', [auth.deviceId, auth.nonce, auth.nonceExpiresAt]);
  if (fresh === 0) throw new DeviceRefused({ kind: 'replay' });
  const device = await readDevice(tx, auth.deviceId);
  if (device === null) throw new DeviceRefused({ kind: 'unknown' });
  if (device.publicKey !== auth.publicKey) throw new DeviceRefused({ kind: 'conflict', device });
  if (device.status === 'rejected') throw new DeviceRefused({ kind: 'rejected', device });
  if (device.status === 'pending') throw new DeviceRefused({ kind: 'pending', device });
  return device;
}

/** Runs `fn` in a transaction; a `DeviceRefused` thrown inside rolls it back and becomes the answer. */
export async function refusable<T>(transaction: <R>(fn: (tx: SqlExecutor) => Promise<R>) => Promise<R>, fn: (tx: SqlExecutor) => Promise<T>): Promise<T | DeviceRefusal> {
  try {
    return await transaction(fn);
  } catch (error) {
    if (error instanceof DeviceRefused) return error.refusal;
    throw error;
  }
}

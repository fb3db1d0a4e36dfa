/**
 * The one check of a signed device request against the database, for every device endpoint (the
 * check-in, and the lease, renew and return): inside the caller's transaction, the nonce is claimed
 * in the `nonces` table (its primary key refuses a replay, in whichever process and as whichever
 * kind of request it arrives), then the device's record is read and locked, and a request signed
 * with another key than the record's, or from a rejected device, is refused. A refusal is thrown as
 * `DeviceRefused` so the caller's transaction rolls back whole and nothing the request sent stays
 * behind; `settleRefusal` then records what a refusal must leave (a key conflict's row), the same
 * for every endpoint. The signature and its clock skew are checked before, by verifyRequest
 * (src/fleet/signing.ts), identically for every endpoint too.
 */
import { keyFingerprint } from '../../fleet/signing.js';
import type { Device, DeviceRefusal, DeviceRequestAuth, KeyConflict } from './fleet-store.js';
import type { Row, SqlDriver, SqlExecutor } from './sql-driver.js';
import { toDevice } from './sql-fleet-store.js';

/** A refusal found inside a transaction, thrown to roll it back. */
export class DeviceRefused<T = DeviceRefusal> {
  constructor(readonly refusal: T) {}
}

/** The columns a Device is made of (named, not `*`, so the statement can be prepared: postgres-driver.ts). */
export const DEVICE_COLUMNS = 'id, status, public_key, fingerprint, reported_tags, operator_tags, site, source, first_seen, last_seen, checkins, created_at, decided_by, decided_at';

export async function readDevice(tx: SqlExecutor, dialect: SqlDriver['dialect'], id: string, lock = false): Promise<Device | null> {
  const rows = await tx.query(`SELECT ${DEVICE_COLUMNS} FROM devices WHERE id = $1${lock && dialect === 'postgres' ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] === undefined ? null : toDevice(rows[0]);
}

/** The conflict a request signed with another key makes, before it is recorded. */
function conflictOf(auth: DeviceRequestAuth): KeyConflict {
  return { fingerprint: keyFingerprint(auth.publicKey), publicKey: auth.publicKey, source: auth.source ?? null, firstSeen: auth.now, lastSeen: auth.now, count: 1 };
}

/** Refuses a request for this record: signed with another key, or from a rejected device. */
export function checkRecord(device: Device, auth: DeviceRequestAuth): void {
  if (device.publicKey !== auth.publicKey) throw new DeviceRefused({ kind: 'conflict', device, conflict: conflictOf(auth) });
  if (device.status === 'rejected') throw new DeviceRefused({ kind: 'rejected', device });
}

/**
 * Claims the nonce and reads the device's record, locked until the transaction ends; null when
 * there is no such device (the check-in registers it, other requests refuse it).
 */
export async function claimDevice(tx: SqlExecutor, dialect: SqlDriver['dialect'], auth: DeviceRequestAuth): Promise<Device | null> {
  const fresh = await tx.run('INSERT INTO nonces (device_id, nonce, expires_at) VALUES ($1, $2, $3) ON CONFLICT (device_id, nonce) DO NOTHING', [auth.deviceId, auth.nonce, auth.nonceExpiresAt]);
  if (fresh === 0) throw new DeviceRefused({ kind: 'replay' });
  const device = await readDevice(tx, dialect, auth.deviceId, true);
  if (device !== null) checkRecord(device, auth);
  return device;
}

/** For requests other than the check-in: the device must be known and accepted. */
export async function authenticateDevice(tx: SqlExecutor, dialect: SqlDriver['dialect'], auth: DeviceRequestAuth): Promise<Device> {
  const device = await claimDevice(tx, dialect, auth);
  if (device === null) throw new DeviceRefused({ kind: 'unknown' });
  if (device.status === 'pending') throw new DeviceRefused({ kind: 'pending', device });
  return device;
}

function toConflict(r: Row): KeyConflict {
  return { fingerprint: String(r.fingerprint), publicKey: String(r.public_key), source: r.source === null ? null : String(r.source), firstSeen: Number(r.first_seen), lastSeen: Number(r.last_seen), count: Number(r.count) };
}

/** After the refused transaction rolled back: a key conflict is recorded (a cloned identity must show). */
export async function settleRefusal<T extends { kind: string }>(driver: SqlDriver, refusal: T, deviceId: string, now: number): Promise<T> {
  if (refusal.kind !== 'conflict') return refusal;
  const c = (refusal as unknown as { conflict: KeyConflict }).conflict;
  const rows = await driver.query(
    `INSERT INTO key_conflicts (device_id, fingerprint, public_key, source, first_seen, last_seen, count) VALUES ($1, $2, $3, $4, $5, $5, 1)
     ON CONFLICT (device_id, fingerprint) DO UPDATE SET last_seen = excluded.last_seen, source = excluded.source, count = key_conflicts.count + 1
     RETURNING *`,
    [deviceId, c.fingerprint, c.publicKey, c.source, now],
  );
  return { ...refusal, conflict: toConflict(rows[0]!) };
}

/** Runs `fn` in a transaction; a `DeviceRefused` thrown inside rolls it back, is settled and becomes the answer. */
export async function refusable<T, R extends { kind: string } = DeviceRefusal>(driver: SqlDriver, auth: Pick<DeviceRequestAuth, 'deviceId' | 'now'>, fn: (tx: SqlExecutor) => Promise<T>): Promise<T | R> {
  try {
    return await driver.transaction(fn);
  } catch (error) {
    if (error instanceof DeviceRefused) return settleRefusal(driver, error.refusal as R, auth.deviceId, auth.now);
    throw error;
  }
}

/**
 * Update leases on SQL. A lease request is one transaction: the device's nonce and record
 * (sql-device-auth.ts), the rollout gate, then the site's budget. The budget is counted while
 * holding the site's lock row (SELECT … FOR UPDATE on PostgreSQL; on SQLite BEGIN IMMEDIATE already
 * admits one writer at a time), so two processes granting at the same moment see each other's
 * leases and never hand out more than the budget. A lease counts only while `expires_at` is in the
 * future: a robot that died frees its slot when its TTL passes, without anyone deleting the row.
 */
import { randomBytes } from 'node:crypto';
import { gateFor } from '../rollouts/rollout-model.js';
import type { FleetStore, Lease, SiteBudgets } from './fleet-store.js';
import { authenticateDevice, refusable } from './sql-device-auth.js';
import type { Row, SqlDriver, SqlExecutor } from './sql-driver.js';
import { loadRollout } from './sql-rollout-store.js';

type LeaseMethods = Pick<FleetStore, 'requestLease' | 'renewLease' | 'returnLease' | 'listLeases'>;

function toLease(r: Row): Lease {
  return {
    id: String(r.id),
    deviceId: String(r.device_id),
    site: r.site === null || r.site === undefined ? null : String(r.site),
    product: String(r.product),
    version: String(r.version),
    fromVersion: r.from_version === null || r.from_version === undefined ? null : String(r.from_version),
    createdAt: Number(r.created_at),
    ttlMs: Number(r.ttl_ms),
    expiresAt: Number(r.expires_at),
  };
}

/** The budget of a site: its own entry, else the default; a robot without a site has none (0). */
export function budgetOf(budgets: SiteBudgets, site: string | null): number {
  if (site === null) return 0;
  return budgets.sites[site] ?? budgets.default;
}

export function createSqlLeaseStore(driver: SqlDriver): LeaseMethods {
  async function lockSite(tx: SqlExecutor, site: string): Promise<void> {
    await tx.run('INSERT INTO site_locks (site) VALUES ($1) ON CONFLICT (site) DO NOTHING', [site]);
    if (driver.dialect === 'postgres') await tx.query('SELECT site FROM site_locks WHERE site = $1 FOR UPDATE', [site]);
  }

  return {
    async requestLease(req) {
      return refusable(driver, req, async (tx) => {
        const device = await authenticateDevice(tx, driver.dialect, req);
        const rollout = await tx.query("SELECT id FROM rollouts WHERE product = $1 AND version = $2 AND state <> 'done'", [req.product, req.version]);
        if (rollout[0] !== undefined) {
          const r = (await loadRollout(tx, driver.dialect, String(rollout[0].id)))!;
          const gate = gateFor(r, device.id, device.tags);
          if (gate !== null) return { kind: gate.code === 'ROLLOUT_HALTED' ? ('halted' as const) : ('wait' as const), rolloutId: r.id, reason: gate.reason };
        }
        const max = budgetOf(req.budgets, device.site);
        if (device.site !== null && max > 0) await lockSite(tx, device.site);
        // Asking again (a run re-checked after a restart) replaces the device's lease for the product.
        await tx.run('DELETE FROM leases WHERE device_id = $1 AND product = $2', [device.id, req.product]);
        if (device.site !== null && max > 0) {
          const held = await tx.query('SELECT expires_at FROM leases WHERE site = $1 AND expires_at > $2 ORDER BY expires_at', [device.site, req.now]);
          if (held.length >= max) {
            return { kind: 'budget-full' as const, site: device.site, max, held: held.length, retryAfterMs: Number(held[0]!.expires_at) - req.now };
          }
        }
        const lease: Lease = {
          id: randomBytes(12).toString('hex'),
          deviceId: device.id,
          site: device.site,
          product: req.product,
          version: req.version,
          fromVersion: req.fromVersion,
          createdAt: req.now,
          ttlMs: req.ttlMs,
          expiresAt: req.now + req.ttlMs,
        };
        await tx.run('INSERT INTO leases (id, device_id, site, product, version, from_version, created_at, ttl_ms, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)', [
          lease.id,
          lease.deviceId,
          lease.site,
          lease.product,
          lease.version,
          lease.fromVersion,
          lease.createdAt,
          lease.ttlMs,
          lease.expiresAt,
        ]);
        return { kind: 'granted' as const, lease };
      });
    },

    async renewLease(auth, leaseId) {
      return refusable(driver, auth, async (tx) => {
        await authenticateDevice(tx, driver.dialect, auth);
        const rows = await tx.query('SELECT * FROM leases WHERE id = $1 AND device_id = $2', [leaseId, auth.deviceId]);
        const lease = rows[0] === undefined ? null : toLease(rows[0]);
        // Past its TTL the slot may already be someone else's: the lease is gone, not revived.
        if (lease === null || lease.expiresAt <= auth.now) {
          if (lease !== null) await tx.run('DELETE FROM leases WHERE id = $1', [leaseId]);
          return { kind: 'expired' as const };
        }
        const expiresAt = auth.now + lease.ttlMs;
        await tx.run('UPDATE leases SET expires_at = $2 WHERE id = $1', [leaseId, expiresAt]);
        return { kind: 'renewed' as const, lease: { ...lease, expiresAt } };
      });
    },

    async returnLease(auth, leaseId) {
      return refusable(driver, auth, async (tx) => {
        await authenticateDevice(tx, driver.dialect, auth);
        const removed = await tx.run('DELETE FROM leases WHERE id = $1 AND device_id = $2 AND expires_at > $3', [leaseId, auth.deviceId, auth.now]);
        await tx.run('DELETE FROM leases WHERE id = $1 AND device_id = $2', [leaseId, auth.deviceId]);
        return removed === 1 ? { kind: 'returned' as const } : { kind: 'expired' as const };
      });
    },

    async listLeases(now) {
      const rows = await driver.query('SELECT * FROM leases WHERE expires_at > $1 ORDER BY created_at, id', [now]);
      return rows.map(toLease);
    },
  };
}

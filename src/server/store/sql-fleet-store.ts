/**
 * The fleet store on SQL: the same statements on SQLite and PostgreSQL (sql-driver.ts). A check-in
 * touches only its own device's rows (one device row, one product row, one history row, one nonce),
 * so its cost does not grow with the fleet. The nonce's primary key is what refuses a replay, in
 * whichever process it arrives; a refused check-in's transaction is rolled back whole.
 */
import { keyFingerprint } from '../../fleet/signing.js';
import type {
  AuditEntry,
  CheckinInput,
  CheckinOutcome,
  Device,
  DeviceStatus,
  DeviceView,
  FleetStore,
  KeyConflict,
  ListDevicesQuery,
  Preauthorization,
  DowntimeReport,
  ProductReport,
  ProductState,
  Retention,
  StoredAudit,
  Tags,
} from './fleet-store.js';
import type { Row, SqlDriver, SqlExecutor, SqlValue } from './sql-driver.js';
import { checkRecord, claimDevice, DEVICE_COLUMNS, DeviceRefused, readDevice as readDeviceRow, refusable } from './sql-device-auth.js';
import { createSqlLeaseStore } from './sql-lease-store.js';
import { createRolloutCounter, type RolloutCounter } from './sql-rollout-counts.js';
import { createSqlRolloutStore } from './sql-rollout-store.js';

export const DEFAULT_RETENTION: Retention = { checkinsPerDevice: 100, maxAgeMs: 30 * 24 * 3_600_000 };

const NEW_DEVICE_LOCK_KEY = 7_020_515_002;

export const parseTags = (text: unknown): Tags => {
  try {
    const value = JSON.parse(String(text)) as unknown;
    return value !== null && typeof value === 'object' ? (value as Tags) : {};
  } catch {
    return {};
  }
};

const num = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
const str = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));

export function toDevice(r: Row): Device {
  const reportedTags = parseTags(r.reported_tags);
  const operatorTags = parseTags(r.operator_tags);
  return {
    id: String(r.id),
    status: r.status as DeviceStatus,
    publicKey: String(r.public_key),
    fingerprint: String(r.fingerprint),
    tags: { ...reportedTags, ...operatorTags },
    reportedTags,
    operatorTags,
    site: str(r.site),
    source: str(r.source),
    firstSeen: num(r.first_seen),
    lastSeen: num(r.last_seen),
    checkins: Number(r.checkins),
    createdAt: Number(r.created_at),
    decidedBy: str(r.decided_by),
    decidedAt: num(r.decided_at),
  };
}

/**
 * The WHERE clause of a device listing, its parameters numbered from `first`. The search is a
 * substring of the id or the site, with LIKE's wildcards escaped, lower-cased on both sides
 * because SQLite's LIKE ignores ASCII case and PostgreSQL's does not.
 */
function deviceFilter(status: DeviceStatus | undefined, search: string | undefined, first: number): { where: string; params: SqlValue[] } {
  const clauses: string[] = [];
  const params: SqlValue[] = [];
  if (status !== undefined) {
    params.push(status);
    clauses.push(`status = $${first + params.length - 1}`);
  }
  if (search !== undefined && search !== '') {
    params.push(`%${search.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    const n = `$${first + params.length - 1}`;
    clauses.push(`(LOWER(id) LIKE ${n} ESCAPE '\\' OR LOWER(COALESCE(site, '')) LIKE ${n} ESCAPE '\\')`);
  }
  return { where: clauses.length === 0 ? '' : `WHERE ${clauses.join(' AND ')}`, params };
}

function toReport(r: Row): ProductReport {
  return {
    product: String(r.product),
    version: str(r.version),
    state: String(r.state),
    lastOutcome: str(r.last_outcome),
    error: str(r.error),
    runId: str(r.run_id),
    targetVersion: str(r.target_version),
    downtime: r.downtime === null || r.downtime === undefined ? null : (JSON.parse(String(r.downtime)) as DowntimeReport),
  };
}

function toConflict(r: Row): KeyConflict {
  return { fingerprint: String(r.fingerprint), publicKey: String(r.public_key), source: str(r.source), firstSeen: Number(r.first_seen), lastSeen: Number(r.last_seen), count: Number(r.count) };
}

const siteOf = (reported: Tags, operator: Tags): string | null => operator.site ?? reported.site ?? null;

/** The store, with the rollouts counted before from before the counters (migration 3) counted once. */
export async function openSqlFleetStore(driver: SqlDriver, retention: Retention = DEFAULT_RETENTION): Promise<FleetStore> {
  const counter = createRolloutCounter(driver);
  await counter.recountUncounted();
  return createSqlFleetStore(driver, retention, counter);
}

export function createSqlFleetStore(driver: SqlDriver, retention: Retention = DEFAULT_RETENTION, counter: RolloutCounter = createRolloutCounter(driver)): FleetStore {
  const readDevice = (tx: SqlExecutor, id: string, lock = false) => readDeviceRow(tx, driver.dialect, id, lock);

  async function views(devices: Device[]): Promise<DeviceView[]> {
    if (devices.length === 0) return [];
    const ids = devices.map((d) => d.id);
    const list = ids.map((_, i) => `$${i + 1}`).join(', ');
    const products = await driver.query(`SELECT * FROM device_products WHERE device_id IN (${list}) ORDER BY device_id, product`, ids);
    const conflicts = await driver.query(`SELECT * FROM key_conflicts WHERE device_id IN (${list}) ORDER BY device_id, first_seen`, ids);
    return devices.map((d) => ({
      ...d,
      products: products.filter((p) => p.device_id === d.id).map((p): ProductState => ({ ...toReport(p), updatedAt: Number(p.updated_at) })),
      conflicts: conflicts.filter((c) => c.device_id === d.id).map(toConflict),
    }));
  }

  async function recordReport(tx: SqlExecutor, input: CheckinInput, device: Device): Promise<Device> {
    const r = input.report;
    // A device that does not send a downtime (an older otad, none measured yet) keeps the one it reported before.
    const downtime = r.downtime ? JSON.stringify(r.downtime) : null;
    const reportedTags = input.reportedTags ?? device.reportedTags;
    const reported = JSON.stringify(reportedTags);
    const site = siteOf(reportedTags, device.operatorTags);
    const updateDevice = `UPDATE devices SET last_seen = $2, first_seen = COALESCE(first_seen, $2), checkins = checkins + 1, reported_tags = $3, site = $4, source = $5 WHERE id = $1`;
    const upsertProduct = `INSERT INTO device_products (device_id, product, version, state, last_outcome, error, run_id, target_version, updated_at, downtime)
       VALUES ($1, $6, $7, $8, $9, $10, $11, $12, $2, $13)
       ON CONFLICT (device_id, product) DO UPDATE SET version = excluded.version, state = excluded.state, last_outcome = excluded.last_outcome,
         error = excluded.error, run_id = excluded.run_id, target_version = excluded.target_version, updated_at = excluded.updated_at,
         downtime = COALESCE(excluded.downtime, device_products.downtime)`;
    const insertCheckin = `INSERT INTO checkins (device_id, product, at, version, state, last_outcome, error, run_id, target_version, downtime) VALUES ($1, $6, $2, $7, $8, $9, $10, $11, $12, $13)`;
    // Keep the newest N of this device only: an index seek on (device_id, id), whatever the fleet's size.
    const trimCheckins = (offset: string) =>
      `DELETE FROM checkins WHERE device_id = $1 AND id <= (SELECT id FROM checkins WHERE device_id = $1 ORDER BY id DESC LIMIT 1 OFFSET ${offset})`;
    const params = [device.id, input.now, reported, site, input.source, r.product, r.version, r.state, r.lastOutcome, r.error, r.runId, r.targetVersion, downtime];
    if (driver.dialect === 'postgres') {
      // One statement, one round trip (five on their own): the four writes as data-modifying CTEs
      // and the device's new record from the UPDATE's RETURNING. Every CTE sees the table as it was
      // before the statement, so the trim does not see the check-in inserted beside it: it keeps
      // N - 1 of the earlier ones, and the new one makes N. The columns are named so that the
      // driver prepares the statement (it leaves results of `*` unprepared).
      const rows = await tx.query(
        `WITH d AS (${updateDevice} RETURNING ${DEVICE_COLUMNS}),
              p AS (${upsertProduct}),
              c AS (${insertCheckin}),
              t AS (${trimCheckins('$14')})
         SELECT ${DEVICE_COLUMNS} FROM d`,
        [...params, Math.max(0, retention.checkinsPerDevice - 1)],
      );
      return toDevice(rows[0]!);
    }
    // SQLite has no data-modifying CTEs, and in-process statements cost no round trip.
    await tx.run(updateDevice, params.slice(0, 5));
    await tx.run(upsertProduct, params);
    await tx.run(insertCheckin, params);
    await tx.run(trimCheckins('$2'), [device.id, retention.checkinsPerDevice]);
    return (await readDevice(tx, device.id))!;
  }

  async function decideCheckin(tx: SqlExecutor, input: CheckinInput): Promise<CheckinOutcome> {
    // The nonce, the record, its key and decision: the same check every device request goes through.
    let device = await claimDevice(tx, driver.dialect, input);
    let created = false;
    if (device === null) {
      // New devices are created one at a time across all processes, so the cap below is exact
      // (SQLite's BEGIN IMMEDIATE already serialises every transaction).
      if (driver.dialect === 'postgres') await tx.query(`SELECT pg_advisory_xact_lock(${NEW_DEVICE_LOCK_KEY})`);
      const pending = Number((await tx.query<{ n: unknown }>("SELECT COUNT(*) AS n FROM devices WHERE status = 'pending'"))[0]!.n);
      if (pending >= input.maxPending) throw new DeviceRefused<CheckinOutcome>({ kind: 'pending-full', pending });
      const inserted = await tx.run(
        `INSERT INTO devices (id, public_key, fingerprint, status, created_at) VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (id) DO NOTHING`,
        [input.deviceId, input.publicKey, keyFingerprint(input.publicKey), input.now],
      );
      created = inserted === 1;
      // Another process created it in between: decide on its record like any known device.
      device = (await readDevice(tx, input.deviceId, true))!;
      checkRecord(device, input);
    }
    const before = device;
    const updated = await recordReport(tx, input, device);
    const tagsChanged = JSON.stringify(before.tags) !== JSON.stringify(updated.tags);
    const failedIn = await counter.refresh(tx, updated, { report: input.report, allProducts: tagsChanged });
    if (updated.status !== 'accepted') return { kind: 'pending', device: updated, created };
    return { kind: 'accepted', device: updated, rollouts: await counter.notices(tx, updated), failedIn };
  }

  return {
    backend: driver.dialect,

    async checkin(input) {
      return refusable<CheckinOutcome, CheckinOutcome>(driver, input, (tx) => decideCheckin(tx, input));
    },

    async getDevice(id) {
      const device = await readDevice(driver, id);
      return device === null ? null : (await views([device]))[0]!;
    },

    async listDevices(query) {
      const filter = deviceFilter(query.status, query.search, 3);
      const rows = await driver.query(`SELECT * FROM devices ${filter.where} ORDER BY id LIMIT $1 OFFSET $2`, [query.limit, query.offset, ...filter.params]);
      return { devices: await views(rows.map(toDevice)), total: await this.countDevices(query.status, query.search) };
    },

    async countDevices(status, search) {
      const filter = deviceFilter(status, search, 1);
      return Number((await driver.query(`SELECT COUNT(*) AS n FROM devices ${filter.where}`, filter.params))[0]!.n);
    },

    async decide(id, status, actor, now) {
      return driver.transaction(async (tx) => {
        const changed = await tx.run('UPDATE devices SET status = $2, decided_by = $3, decided_at = $4 WHERE id = $1', [id, status, actor, now]);
        if (changed === 0) return null;
        const device = (await readDevice(tx, id))!;
        // Accepting puts the device in its rollout batches, rejecting takes it out: the counters follow.
        await counter.refresh(tx, device, { allProducts: true });
        return device;
      });
    },

    async setOperatorTags(id, tags, actor, now) {
      return driver.transaction(async (tx) => {
        const device = await readDevice(tx, id, true);
        if (device === null) return null;
        await tx.run('UPDATE devices SET operator_tags = $2, site = $3 WHERE id = $1', [id, JSON.stringify(tags), siteOf(device.reportedTags, tags)]);
        await tx.run('INSERT INTO audit (at, kind, device_id, actor, message) VALUES ($1, $2, $3, $4, $5)', [now, 'device-tags', id, actor, `tags of ${id} set to ${JSON.stringify(tags)}`]);
        const updated = (await readDevice(tx, id))!;
        await counter.refresh(tx, updated, { allProducts: true });
        return updated;
      });
    },

    async preauthorize(entries, actor, now) {
      return driver.transaction(async (tx) => {
        let created = 0;
        let updated = 0;
        for (const e of entries) {
          const existing = await readDevice(tx, e.deviceId, true);
          const operatorTags = { ...(existing?.operatorTags ?? {}), ...e.tags };
          const site = siteOf(existing?.reportedTags ?? {}, operatorTags);
          if (existing === null) {
            await tx.run(
              `INSERT INTO devices (id, public_key, fingerprint, status, operator_tags, site, created_at, decided_by, decided_at) VALUES ($1, $2, $3, 'accepted', $4, $5, $6, $7, $6)`,
              [e.deviceId, e.publicKey, keyFingerprint(e.publicKey), JSON.stringify(operatorTags), site, now, actor],
            );
            created += 1;
          } else {
            // The operator's list names the real key: it replaces whatever key the id arrived with.
            await tx.run(
              `UPDATE devices SET public_key = $2, fingerprint = $3, status = 'accepted', operator_tags = $4, site = $5, decided_by = $6, decided_at = $7 WHERE id = $1`,
              [e.deviceId, e.publicKey, keyFingerprint(e.publicKey), JSON.stringify(operatorTags), site, actor, now],
            );
            updated += 1;
          }
          await counter.refresh(tx, (await readDevice(tx, e.deviceId))!, { allProducts: true });
        }
        return { created, updated };
      });
    },

    async checkinHistory(deviceId, limit) {
      const rows = await driver.query('SELECT * FROM checkins WHERE device_id = $1 ORDER BY id DESC LIMIT $2', [deviceId, limit]);
      return rows.map((r) => ({ ...toReport(r), at: Number(r.at) }));
    },

    async audit(entry) {
      await driver.run('INSERT INTO audit (at, kind, device_id, source, actor, code, message, details) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
        entry.at,
        entry.kind,
        entry.deviceId ?? null,
        entry.source ?? null,
        entry.actor ?? null,
        entry.code ?? null,
        entry.message,
        entry.details === undefined ? null : JSON.stringify(entry.details),
      ]);
    },

    async listAudit(limit, deviceId) {
      const rows =
        deviceId === undefined
          ? await driver.query('SELECT * FROM audit ORDER BY id DESC LIMIT $1', [limit])
          : await driver.query('SELECT * FROM audit WHERE device_id = $2 ORDER BY id DESC LIMIT $1', [limit, deviceId]);
      return rows.map(
        (r): StoredAudit => ({
          id: Number(r.id),
          at: Number(r.at),
          kind: String(r.kind),
          message: String(r.message),
          deviceId: str(r.device_id),
          source: str(r.source),
          actor: str(r.actor),
          code: str(r.code),
          details: r.details === null ? null : (JSON.parse(String(r.details)) as Record<string, unknown>),
        }),
      );
    },

    async prune(now) {
      const cutoff = now - retention.maxAgeMs;
      return {
        nonces: await driver.run('DELETE FROM nonces WHERE expires_at < $1', [now]),
        checkins: await driver.run('DELETE FROM checkins WHERE at < $1', [cutoff]),
        audit: await driver.run('DELETE FROM audit WHERE at < $1', [cutoff]),
        leases: await driver.run('DELETE FROM leases WHERE expires_at <= $1', [now]),
      };
    },

    ...createSqlRolloutStore(driver, counter),
    ...createSqlLeaseStore(driver),

    close: () => driver.close(),
  };
}

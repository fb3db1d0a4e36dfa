/**
 * Rollout counts kept incrementally (both dialects). Each rollout that is counted (not done, or
 * done but still its product's newest: robots that were late go on reporting their outcomes to it)
 * has one `rollout_devices` row per device it counts (its batch and outcome, and the run the server saw
 * aiming at the release) and counters on each `rollout_batches` row. Whatever changes a device's
 * place (its check-in, an operator's accept, reject or tags, a preauthorization) calls `refresh`
 * in its own transaction, after writing the device row: it compares the device's new place with
 * its stored one and moves the counters by the difference (`n = n + 1`, which PostgreSQL applies
 * atomically on the row's latest version, so two processes counting at once never lose a change).
 * A check-in that changes nothing costs one indexed read. Counting a rollout whole (`recount`)
 * happens once, when it is created (or, for a rollout from before these counters, when a server
 * opens the store), under a SHARE lock on `devices` on PostgreSQL, so no device changes between
 * the count and the first incremental update; SQLite's BEGIN IMMEDIATE already admits one writer.
 *
 * Lock order, so that concurrent transactions never deadlock: the device row (the caller), then
 * `rollout_devices`, then batch rows by rollout id and index ascending. The rollout row itself is
 * locked only by evaluations and operator actions, never by a refresh.
 */
import {
  batchOf,
  emptyCounts,
  gateFor,
  outcomeOf,
  type BatchCounts,
  type BatchSelector,
  type BatchState,
  type DeviceOutcome,
  type RolloutState,
} from '../rollouts/rollout-model.js';
import type { DeviceStatus, ProductReport, RolloutNotice, Tags } from './fleet-store.js';
import type { Row, SqlDriver, SqlExecutor, SqlValue } from './sql-driver.js';

const COLUMN: Record<DeviceOutcome, string> = {
  notStarted: 'n_not_started',
  running: 'n_running',
  committed: 'n_committed',
  rolledBack: 'n_rolled_back',
  failed: 'n_failed',
};
const OUTCOMES = new Set(Object.keys(COLUMN));

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));

/** A batch row's counters. */
export function countsOfRow(b: Row): BatchCounts {
  return {
    devices: Number(b.n_devices ?? 0),
    notStarted: Number(b.n_not_started ?? 0),
    running: Number(b.n_running ?? 0),
    committed: Number(b.n_committed ?? 0),
    rolledBack: Number(b.n_rolled_back ?? 0),
    failed: Number(b.n_failed ?? 0),
  };
}

/** What decides a device's batch: fixed when the rollout is created, so a process may cache it. */
interface Shape {
  product: string;
  version: string;
  batches: Array<{ index: number; selector: BatchSelector }>;
}

/** The device as a refresh needs it (its record after the change). */
export interface CountedDevice {
  id: string;
  status: DeviceStatus;
  tags: Tags;
}

type ReportFields = Pick<ProductReport, 'version' | 'state' | 'lastOutcome' | 'runId' | 'targetVersion'>;

interface Place {
  runId: string | null;
  batch: number | null;
  outcome: DeviceOutcome | null;
}

export interface RolloutCounter {
  /**
   * Brings the device's places in the rollouts that are counted up to date. `report`: the product
   * report this transaction just wrote (a check-in); its run aiming at a rolled-out release is
   * remembered. `allProducts`: the device's tags or status changed, so every product's rollouts are
   * looked at, not only the report's. Answers the active rollouts where the device just became a
   * failure (worth evaluating at once).
   */
  refresh(tx: SqlExecutor, device: CountedDevice, change: { report?: ProductReport; allProducts: boolean }): Promise<string[]>;
  /** Counts the rollout whole and stores every place and counter (creation, or a rollout from before the counters). */
  recount(tx: SqlExecutor, rolloutId: string): Promise<void>;
  /** Counts every rollout not counted yet (a database from before the counters), each in its own transaction. */
  recountUncounted(): Promise<number>;
  /** The halts and waits the device must obey, over every product it has reported. */
  notices(tx: SqlExecutor, device: { id: string; tags: Tags }): Promise<RolloutNotice[]>;
}

export function createRolloutCounter(driver: SqlDriver): RolloutCounter {
  const shapes = new Map<string, Shape>();

  async function shapeOf(tx: SqlExecutor, id: string, product: string, version: string): Promise<Shape> {
    const cached = shapes.get(id);
    if (cached !== undefined) return cached;
    const rows = await tx.query('SELECT idx, selector FROM rollout_batches WHERE rollout_id = $1 ORDER BY idx', [id]);
    const shape: Shape = { product, version, batches: rows.map((b) => ({ index: Number(b.idx), selector: JSON.parse(String(b.selector)) as BatchSelector })) };
    // A rollout with no batch rows yet is being created in a transaction not visible here: do not cache it.
    if (shape.batches.length > 0) {
      if (shapes.size >= 4096) shapes.clear();
      shapes.set(id, shape);
    }
    return shape;
  }

  function placeOf(shape: Shape, device: CountedDevice, report: ReportFields | null, runId: string | null): Place {
    if (device.status !== 'accepted') return { runId, batch: null, outcome: null };
    const batch = batchOf(shape.batches, device.id, device.tags, shape.product, shape.version);
    if (batch === null) return { runId, batch: null, outcome: null };
    const p = report ?? { version: null, state: null, lastOutcome: null, runId: null, targetVersion: null };
    return { runId, batch, outcome: outcomeOf({ ...p, state: p.state, rolloutRunId: runId }, shape.version) };
  }

  /** The counter changes between two places, batch rows in ascending index order. */
  async function moveCounters(tx: SqlExecutor, rolloutId: string, before: Place, after: Place): Promise<void> {
    const deltas = new Map<number, Map<string, number>>();
    const add = (batch: number | null, outcome: DeviceOutcome | null, d: number) => {
      if (batch === null || outcome === null) return;
      const m = deltas.get(batch) ?? new Map<string, number>();
      m.set('n_devices', (m.get('n_devices') ?? 0) + d);
      m.set(COLUMN[outcome], (m.get(COLUMN[outcome]) ?? 0) + d);
      deltas.set(batch, m);
    };
    add(before.batch, before.outcome, -1);
    add(after.batch, after.outcome, +1);
    for (const batch of [...deltas.keys()].sort((a, b) => a - b)) {
      const changes = [...deltas.get(batch)!].filter(([, d]) => d !== 0);
      if (changes.length === 0) continue;
      const set = changes.map(([column, d]) => `${column} = ${column} + ${d}`).join(', ');
      await tx.run(`UPDATE rollout_batches SET ${set} WHERE rollout_id = $1 AND idx = $2`, [rolloutId, batch]);
    }
  }

  const storedPlace = (row: Row): Place => ({
    runId: str(row.run_id),
    batch: row.batch === null || row.batch === undefined ? null : Number(row.batch),
    outcome: OUTCOMES.has(String(row.outcome)) ? (row.outcome as DeviceOutcome) : null,
  });

  const samePlace = (a: Place, b: Place) => a.runId === b.runId && a.batch === b.batch && a.outcome === b.outcome;

  return {
    async refresh(tx, device, change) {
      const report = change.report;
      const byProduct = !change.allProducts && report !== undefined;
      const rows = await tx.query(
        `SELECT r.id, r.product, r.version, r.state, rd.device_id AS has_row, rd.run_id, rd.batch, rd.outcome
         FROM rollouts r LEFT JOIN rollout_devices rd ON rd.rollout_id = r.id AND rd.device_id = $1
         WHERE r.counted = 1${byProduct ? ' AND r.product = $2' : ''}
           AND (r.state <> 'done' OR r.created_at = (SELECT MAX(created_at) FROM rollouts n WHERE n.product = r.product))
         ORDER BY r.id`,
        byProduct ? [device.id, report.product] : [device.id],
      );
      if (rows.length === 0) return [];
      let stored: Map<string, ReportFields> | null = null;
      const reportOf = async (product: string): Promise<ReportFields | null> => {
        if (report !== undefined && report.product === product) return report;
        stored ??= new Map(
          (await tx.query('SELECT product, version, state, last_outcome, run_id, target_version FROM device_products WHERE device_id = $1', [device.id])).map((p) => [
            String(p.product),
            { version: str(p.version), state: String(p.state), lastOutcome: str(p.last_outcome), runId: str(p.run_id), targetVersion: str(p.target_version) },
          ]),
        );
        return stored.get(product) ?? null;
      };
      const failures: string[] = [];
      for (const row of rows) {
        const id = String(row.id);
        const shape = await shapeOf(tx, id, String(row.product), String(row.version));
        const before = storedPlace(row);
        const fresh = report !== undefined && report.product === shape.product && report.targetVersion === shape.version && report.runId !== null;
        const after = placeOf(shape, device, await reportOf(shape.product), fresh ? report.runId : before.runId);
        if (samePlace(before, after)) continue;
        if (row.has_row === null || row.has_row === undefined) {
          await tx.run('INSERT INTO rollout_devices (rollout_id, device_id, run_id, batch, outcome) VALUES ($1, $2, $3, $4, $5)', [id, device.id, after.runId, after.batch, after.outcome]);
        } else {
          await tx.run('UPDATE rollout_devices SET run_id = $3, batch = $4, outcome = $5 WHERE rollout_id = $1 AND device_id = $2', [id, device.id, after.runId, after.batch, after.outcome]);
        }
        await moveCounters(tx, id, before, after);
        const failure = (o: DeviceOutcome | null) => o === 'failed' || o === 'rolledBack';
        if (row.state === 'active' && failure(after.outcome) && !failure(before.outcome)) failures.push(id);
      }
      return failures;
    },

    async recount(tx, rolloutId) {
      if (driver.dialect === 'postgres') await tx.query('LOCK TABLE devices IN SHARE MODE');
      const r = (await tx.query('SELECT product, version FROM rollouts WHERE id = $1', [rolloutId]))[0];
      if (r === undefined) return;
      shapes.delete(rolloutId);
      const shape = await shapeOf(tx, rolloutId, String(r.product), String(r.version));
      const rows = await tx.query(
        `SELECT d.id, d.status, d.reported_tags, d.operator_tags, p.version, p.state, p.last_outcome, p.run_id, p.target_version, rd.run_id AS rollout_run_id
         FROM devices d
         LEFT JOIN device_products p ON p.device_id = d.id AND p.product = $1
         LEFT JOIN rollout_devices rd ON rd.rollout_id = $2 AND rd.device_id = d.id
         WHERE d.status = 'accepted'`,
        [shape.product, rolloutId],
      );
      const counts = new Map(shape.batches.map((b) => [b.index, emptyCounts()]));
      const places: Array<[string, Place]> = [];
      for (const d of rows) {
        const device: CountedDevice = { id: String(d.id), status: 'accepted', tags: { ...parseJson(d.reported_tags), ...parseJson(d.operator_tags) } };
        const report: ReportFields | null =
          d.state === null || d.state === undefined ? null : { version: str(d.version), state: String(d.state), lastOutcome: str(d.last_outcome), runId: str(d.run_id), targetVersion: str(d.target_version) };
        const place = placeOf(shape, device, report, str(d.rollout_run_id));
        if (place.batch === null || place.outcome === null) continue;
        const c = counts.get(place.batch)!;
        c.devices += 1;
        c[place.outcome] += 1;
        places.push([device.id, place]);
      }
      // Rows of devices no longer counted keep only their run; the counted ones are written in chunks.
      await tx.run('UPDATE rollout_devices SET batch = NULL, outcome = NULL WHERE rollout_id = $1', [rolloutId]);
      const CHUNK = 200;
      for (let i = 0; i < places.length; i += CHUNK) {
        const chunk = places.slice(i, i + CHUNK);
        const params: SqlValue[] = [rolloutId];
        const values = chunk.map(([deviceId, p]) => {
          params.push(deviceId, p.runId, p.batch, p.outcome);
          const n = params.length;
          return `($1, $${n - 3}, $${n - 2}, $${n - 1}, $${n})`;
        });
        await tx.run(
          `INSERT INTO rollout_devices (rollout_id, device_id, run_id, batch, outcome) VALUES ${values.join(', ')}
           ON CONFLICT (rollout_id, device_id) DO UPDATE SET run_id = excluded.run_id, batch = excluded.batch, outcome = excluded.outcome`,
          params,
        );
      }
      for (const [idx, c] of counts) {
        await tx.run(
          'UPDATE rollout_batches SET n_devices = $3, n_not_started = $4, n_running = $5, n_committed = $6, n_rolled_back = $7, n_failed = $8 WHERE rollout_id = $1 AND idx = $2',
          [rolloutId, idx, c.devices, c.notStarted, c.running, c.committed, c.rolledBack, c.failed],
        );
      }
      await tx.run('UPDATE rollouts SET counted = 1 WHERE id = $1', [rolloutId]);
    },

    async recountUncounted() {
      const ids = await driver.query('SELECT id FROM rollouts WHERE counted = 0 ORDER BY created_at');
      let n = 0;
      for (const row of ids) {
        const counted = await driver.transaction(async (tx) => {
          const lock = driver.dialect === 'postgres' ? ' FOR UPDATE' : '';
          const r = (await tx.query(`SELECT counted FROM rollouts WHERE id = $1${lock}`, [String(row.id)]))[0];
          // Another process counted it meanwhile.
          if (r === undefined || Number(r.counted) === 1) return false;
          await this.recount(tx, String(row.id));
          return true;
        });
        if (counted) n += 1;
      }
      return n;
    },

    async notices(tx, device) {
      const rows = await tx.query(
        `SELECT r.id, r.product, r.version, r.state, r.halt_reason, p.version AS installed, b.idx, b.state AS batch_state
         FROM rollouts r JOIN device_products p ON p.device_id = $1 AND p.product = r.product
         JOIN rollout_batches b ON b.rollout_id = r.id
         WHERE r.state <> 'done' ORDER BY r.created_at, r.id, b.idx`,
        [device.id],
      );
      const rollouts = new Map<string, { product: string; version: string; state: RolloutState; halt: { reason: string } | null; installed: string | null; states: Map<number, BatchState> }>();
      for (const row of rows) {
        const id = String(row.id);
        let r = rollouts.get(id);
        if (r === undefined) {
          r = {
            product: String(row.product),
            version: String(row.version),
            state: row.state as RolloutState,
            halt: row.halt_reason === null || row.halt_reason === undefined ? null : { reason: String(row.halt_reason) },
            installed: str(row.installed),
            states: new Map(),
          };
          rollouts.set(id, r);
        }
        r.states.set(Number(row.idx), row.batch_state as BatchState);
      }
      const notices: RolloutNotice[] = [];
      for (const [id, r] of rollouts) {
        const shape = await shapeOf(tx, id, r.product, r.version);
        const batches = shape.batches.map((b) => ({ ...b, state: r.states.get(b.index) ?? ('waiting' as const), openedAt: null }));
        const gate = gateFor({ state: r.state, halt: r.halt === null ? null : { by: 'server', reason: r.halt.reason, at: 0 }, batches, product: r.product, version: r.version }, device.id, device.tags);
        // A wait means nothing to a robot that already runs the release; a halt is passed on always.
        if (gate === null || (gate.code === 'ROLLOUT_WAIT' && r.installed === r.version)) continue;
        notices.push({ product: r.product, version: r.version, state: gate.code === 'ROLLOUT_HALTED' ? 'halted' : 'wait', reason: gate.reason });
      }
      return notices;
    },
  };
}

function parseJson(text: unknown): Tags {
  try {
    const v = JSON.parse(String(text)) as unknown;
    return v !== null && typeof v === 'object' ? (v as Tags) : {};
  } catch {
    return {};
  }
}

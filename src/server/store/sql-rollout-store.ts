/**
 * Rollouts on SQL (both dialects). Every change of a rollout's state happens in one transaction that
 * first locks the rollout's row (FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE takes the write
 * lock), re-reads it, decides with the pure rules of rollouts/rollout-model.ts and writes the change
 * with its audit entry. So any number of ota-server processes may evaluate the same rollout at once:
 * the second one sees the first one's result and has nothing left to do.
 */
import { randomBytes } from 'node:crypto';
import { nextStep, type Batch, type BatchSelector, type Rollout, type RolloutRecord, type RolloutStep } from '../rollouts/rollout-model.js';
import type { FleetStore } from './fleet-store.js';
import type { Row, SqlDriver, SqlExecutor } from './sql-driver.js';
import { countsOfRow, type RolloutCounter } from './sql-rollout-counts.js';
import { parseTags } from './sql-fleet-store.js';

type RolloutMethods = Pick<FleetStore, 'createRollout' | 'listRollouts' | 'getRollout' | 'haltRollout' | 'resumeRollout' | 'evaluateRollouts' | 'rolloutNotices'>;

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function toRollout(r: Row, batches: Row[]): Rollout {
  return {
    id: String(r.id),
    product: String(r.product),
    version: String(r.version),
    state: r.state as RolloutRecord['state'],
    createdAt: Number(r.created_at),
    createdBy: String(r.created_by),
    soakMs: Number(r.soak_ms),
    failureThreshold: Number(r.failure_threshold),
    minReports: Number(r.min_reports),
    halt: r.halt_by === null || r.halt_by === undefined ? null : { by: r.halt_by as 'server' | 'operator', reason: String(r.halt_reason), at: Number(r.halt_at) },
    resumedAt: num(r.resumed_at),
    forgiven: parseTags(r.forgiven) as unknown as Record<string, number>,
    batches: batches
      .map((b) => ({
        index: Number(b.idx),
        selector: JSON.parse(String(b.selector)) as BatchSelector,
        state: b.state as Batch['state'],
        openedAt: num(b.opened_at),
        counts: countsOfRow(b),
      }))
      .sort((a, b) => a.index - b.index),
  };
}

/**
 * A rollout with its batches and their counters (kept by the check-ins, sql-rollout-counts.ts);
 * `lock` locks its row until the transaction ends (PostgreSQL). Reads two rows' worth of tables,
 * whatever the fleet's size.
 */
export async function loadRollout(tx: SqlExecutor, dialect: SqlDriver['dialect'], id: string, lock = false): Promise<Rollout | null> {
  const rows = await tx.query(`SELECT * FROM rollouts WHERE id = $1${lock && dialect === 'postgres' ? ' FOR UPDATE' : ''}`, [id]);
  if (rows[0] === undefined) return null;
  return toRollout(rows[0], await tx.query('SELECT * FROM rollout_batches WHERE rollout_id = $1', [id]));
}

const countsOf = (r: Rollout) => new Map(r.batches.map((b) => [b.index, b.counts]));

export function createSqlRolloutStore(driver: SqlDriver, counter: RolloutCounter): RolloutMethods {
  const load = (tx: SqlExecutor, id: string, lock = false) => loadRollout(tx, driver.dialect, id, lock);

  const audit = (tx: SqlExecutor, now: number, kind: string, actor: string, message: string, details: Record<string, unknown>) =>
    tx.run('INSERT INTO audit (at, kind, actor, message, details) VALUES ($1, $2, $3, $4, $5)', [now, kind, actor, message, JSON.stringify(details)]);

  /** Writes the step with conditional updates (a state already changed is left alone); true when it changed something. */
  async function apply(tx: SqlExecutor, r: RolloutRecord, step: RolloutStep, now: number): Promise<boolean> {
    const name = `${r.product} ${r.version}`;
    switch (step.kind) {
      case 'halt':
        if ((await tx.run("UPDATE rollouts SET state = 'halted', halt_by = 'server', halt_reason = $2, halt_at = $3 WHERE id = $1 AND state = 'active'", [r.id, step.reason, now])) === 0) return false;
        await audit(tx, now, 'rollout-halted', 'ota-server', `rollout ${r.id} of ${name} halted by the server: ${step.reason}`, { rolloutId: r.id, batch: step.batch });
        return true;
      case 'open':
        await tx.run("UPDATE rollout_batches SET state = 'done' WHERE rollout_id = $1 AND idx = $2 AND state = 'open'", [r.id, step.batch - 1]);
        if ((await tx.run("UPDATE rollout_batches SET state = 'open', opened_at = $3 WHERE rollout_id = $1 AND idx = $2 AND state = 'waiting'", [r.id, step.batch, now])) === 0) return false;
        await audit(tx, now, 'rollout-batch-opened', 'ota-server', `rollout ${r.id} of ${name}: batch ${step.batch} opened (batch ${step.batch - 1} healthy after its soak)`, { rolloutId: r.id, batch: step.batch });
        return true;
      case 'done':
        // One batch row at a time in index order: the order check-ins move counters in (no deadlock).
        for (const b of r.batches) if (b.state === 'open') await tx.run("UPDATE rollout_batches SET state = 'done' WHERE rollout_id = $1 AND idx = $2 AND state = 'open'", [r.id, b.index]);
        if ((await tx.run("UPDATE rollouts SET state = 'done' WHERE id = $1 AND state = 'active'", [r.id])) === 0) return false;
        await audit(tx, now, 'rollout-done', 'ota-server', `rollout ${r.id} of ${name} is done: its last batch is healthy after its soak`, { rolloutId: r.id });
        return true;
      case 'none':
        return false;
    }
  }

  /** Steps until the rules have nothing more to do (one evaluation may open a batch and finish). */
  async function evaluate(tx: SqlExecutor, id: string, now: number): Promise<RolloutStep[]> {
    const steps: RolloutStep[] = [];
    for (;;) {
      const r = await load(tx, id, true);
      if (r === null) return steps;
      const step = nextStep(r, countsOf(r), now);
      if (step.kind === 'none' || steps.length > r.batches.length + 1) return steps;
      if (!(await apply(tx, r, step, now))) return steps;
      steps.push(step);
    }
  }

  return {
    async createRollout(input, actor, now) {
      const id = `r-${randomBytes(6).toString('hex')}`;
      try {
        return await driver.transaction(async (tx) => {
          await tx.run(
            `INSERT INTO rollouts (id, product, version, state, created_at, created_by, soak_ms, failure_threshold, min_reports) VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8)`,
            [id, input.product, input.version, now, actor, input.soakMs, input.failureThreshold, input.minReports],
          );
          for (const [i, selector] of input.batches.entries()) {
            await tx.run('INSERT INTO rollout_batches (rollout_id, idx, selector, state, opened_at) VALUES ($1, $2, $3, $4, $5)', [
              id,
              i + 1,
              JSON.stringify(selector),
              i === 0 ? 'open' : 'waiting',
              i === 0 ? now : null,
            ]);
          }
          // The product's earlier rollouts that are done stop being counted (their counts stay as they are).
          await tx.run("DELETE FROM rollout_devices WHERE rollout_id IN (SELECT id FROM rollouts WHERE product = $1 AND state = 'done')", [input.product]);
          await counter.recount(tx, id);
          await audit(tx, now, 'rollout-created', actor, `rollout ${id} of ${input.product} ${input.version} created with ${input.batches.length} batch(es); batch 1 open`, { rolloutId: id, ...input });
          return { kind: 'created' as const, rollout: (await load(tx, id))! };
        });
      } catch (error) {
        if (!driver.isUniqueViolation(error)) throw error;
        const rows = await driver.query("SELECT id FROM rollouts WHERE product = $1 AND version = $2 AND state <> 'done'", [input.product, input.version]);
        return { kind: 'exists', id: String(rows[0]?.id ?? '') };
      }
    },

    async listRollouts() {
      const ids = await driver.query('SELECT id FROM rollouts ORDER BY created_at DESC, id');
      const out: Rollout[] = [];
      for (const row of ids) {
        const r = await load(driver, String(row.id));
        if (r !== null) out.push(r);
      }
      return out;
    },

    async getRollout(id) {
      return load(driver, id);
    },

    async haltRollout(id, reason, actor, now) {
      return driver.transaction(async (tx) => {
        const r = await load(tx, id, true);
        if (r === null) return null;
        if (r.state !== 'active') return { kind: 'unchanged' as const, rollout: r };
        await tx.run("UPDATE rollouts SET state = 'halted', halt_by = 'operator', halt_reason = $2, halt_at = $3 WHERE id = $1", [id, reason, now]);
        await audit(tx, now, 'rollout-halted', actor, `rollout ${id} of ${r.product} ${r.version} halted by ${actor}: ${reason}`, { rolloutId: id });
        return { kind: 'changed' as const, rollout: (await load(tx, id))! };
      });
    },

    async resumeRollout(id, actor, now) {
      return driver.transaction(async (tx) => {
        const r = await load(tx, id, true);
        if (r === null) return null;
        if (r.state !== 'halted') return { kind: 'unchanged' as const, rollout: r };
        // The failures seen so far were the operator's to judge; the halt rule counts only new ones.
        const counts = countsOf(r);
        const forgiven = Object.fromEntries([...counts].map(([k, c]) => [String(k), c.failed + c.rolledBack]));
        await tx.run("UPDATE rollouts SET state = 'active', halt_by = NULL, halt_reason = NULL, halt_at = NULL, resumed_at = $2, forgiven = $3 WHERE id = $1", [id, now, JSON.stringify(forgiven)]);
        const was = r.halt === null ? '' : ` (halted by ${r.halt.by}: ${r.halt.reason})`;
        await audit(tx, now, 'rollout-resumed', actor, `rollout ${id} of ${r.product} ${r.version} resumed by ${actor}${was}`, { rolloutId: id, forgiven });
        return { kind: 'changed' as const, rollout: (await load(tx, id))! };
      });
    },

    async evaluateRollouts(now, ids) {
      const active =
        ids === undefined
          ? await driver.query("SELECT id FROM rollouts WHERE state = 'active' ORDER BY created_at")
          : ids.map((id) => ({ id }));
      const out: Array<{ rolloutId: string; step: RolloutStep }> = [];
      for (const row of active) {
        const id = String(row.id);
        for (const step of await driver.transaction((tx) => evaluate(tx, id, now))) out.push({ rolloutId: id, step });
      }
      return out;
    },

    async rolloutNotices(deviceId) {
      const devices = await driver.query('SELECT reported_tags, operator_tags FROM devices WHERE id = $1', [deviceId]);
      if (devices[0] === undefined) return [];
      return counter.notices(driver, { id: deviceId, tags: { ...parseTags(devices[0].reported_tags), ...parseTags(devices[0].operator_tags) } });
    },
  };
}

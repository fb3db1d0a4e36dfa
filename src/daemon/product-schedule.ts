/**
 * A product's schedule, as pure functions of its configuration: the daily check task, the next
 * install slot (local installAt plus this device's delay), and what a passed deadline means
 * (TICK, or RESCHEDULE when a scheduled install was missed by more than its catch-up window).
 */
import type { UpdateEvent } from '../../machines/types.js';
import type { ProductConfig } from '../config/schema.js';
import { decideCatchUp } from '../schedule/catch-up.js';
import { nextLocalSlot } from '../schedule/slot.js';
import { parseTaskSpec, type TaskSpec } from '../schedule/spec.js';
import { deviceDelayMs } from '../schedule/spread.js';

export interface CheckTask {
  id: string;
  product: string;
  kind: 'check';
  spec: TaskSpec;
}

export function resolveTimeZone(tz: string): string {
  return tz === 'local' ? Intl.DateTimeFormat().resolvedOptions().timeZone : tz;
}

/** The daily check task of a product, validated (a cron expression the scheduler refuses throws). */
export function checkTask(p: ProductConfig): CheckTask {
  const timeZone = resolveTimeZone(p.schedule.timeZone);
  const spec: TaskSpec = p.schedule.checkCron
    ? { cron: p.schedule.checkCron, timeZone, windowMs: p.schedule.window, catchUpWindowMs: p.schedule.catchUp }
    : { time: p.schedule.checkAt, timeZone, windowMs: p.schedule.window, catchUpWindowMs: p.schedule.catchUp };
  return { id: `check:${p.name}`, product: p.name, kind: 'check', spec: parseTaskSpec(spec) };
}

/** The next install slot for SCHEDULE_3AM: local installAt plus this device's delay. */
export function nextInstallSlot(product: ProductConfig, deviceId: string, now: number): number {
  const tz = resolveTimeZone(product.schedule.timeZone);
  const delay = deviceDelayMs(deviceId, `${product.name}:install`, product.schedule.window);
  return nextLocalSlot({ after: now - delay, time: product.schedule.installAt, timeZone: tz }) + delay;
}

export type DeadlineEvent =
  | { event: UpdateEvent; missed?: undefined }
  | { event: UpdateEvent; missed: { missedByMs: number; at: number } };

/**
 * The event for a deadline that has passed (null: not yet, or none). A scheduled install missed by
 * more than installCatchUp is moved to the next slot: installing hours late could interrupt the
 * robot's working day.
 */
export function eventForDeadline(input: { product: ProductConfig; deviceId: string; state: string; deadline: number | null; now: number }): DeadlineEvent | null {
  const { product, deviceId, state, deadline, now } = input;
  if (deadline === null || now < deadline) return null;
  if (state === 'scheduled') {
    const decision = decideCatchUp({ scheduledAt: deadline, now, catchUpWindowMs: product.schedule.installCatchUp });
    if (decision.action === 'skip') {
      const at = nextInstallSlot(product, deviceId, now);
      return { event: { type: 'RESCHEDULE', now, source: 'timer', at }, missed: { missedByMs: decision.missedByMs, at } };
    }
  }
  return { event: { type: 'TICK', now, source: 'timer', nextSlotAt: nextInstallSlot(product, deviceId, now) } };
}

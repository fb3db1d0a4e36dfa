import { describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { checkTask, eventForDeadline, nextInstallSlot } from '../../../src/daemon/product-schedule.js';

const product = buildConfig({
  products: [{ name: 'robot-ai', installPath: '/opt/robot-ai', schedule: { installAt: '03:00', timeZone: 'UTC', window: '0s', installCatchUp: '1h' } }],
}).products[0]!;
const DEVICE = 'mac-0242ac110002';
const at3 = Date.UTC(2026, 11, 2, 3, 0);

describe('a product schedule', () => {
  it('puts the next install slot at installAt in the product time zone', () => {
    expect(nextInstallSlot(product, DEVICE, Date.UTC(2026, 11, 2, 1, 0))).toBe(at3);
    expect(nextInstallSlot(product, DEVICE, at3 + 1)).toBe(at3 + 86_400_000);
  });

  it('sends nothing before a deadline and a TICK once it has passed', () => {
    expect(eventForDeadline({ product, deviceId: DEVICE, state: 'scheduled', deadline: at3, now: at3 - 1 })).toBeNull();
    expect(eventForDeadline({ product, deviceId: DEVICE, state: 'awaitingChoice', deadline: null, now: at3 })).toBeNull();
    expect(eventForDeadline({ product, deviceId: DEVICE, state: 'scheduled', deadline: at3, now: at3 + 60_000 })).toEqual({
      event: { type: 'TICK', now: at3 + 60_000, source: 'timer', nextSlotAt: at3 + 86_400_000 },
    });
  });

  it('moves a scheduled install missed by more than installCatchUp to the next slot', () => {
    const now = at3 + 2 * 3_600_000;
    expect(eventForDeadline({ product, deviceId: DEVICE, state: 'scheduled', deadline: at3, now })).toEqual({
      event: { type: 'RESCHEDULE', now, source: 'timer', at: at3 + 86_400_000 },
      missed: { missedByMs: 2 * 3_600_000, at: at3 + 86_400_000 },
    });
  });

  it('refuses a check cron expression the scheduler cannot read', () => {
    expect(checkTask(product)).toMatchObject({ id: 'check:robot-ai', kind: 'check', spec: { time: '03:00', timeZone: 'UTC' } });
    expect(() => checkTask({ ...product, schedule: { ...product.schedule, checkCron: 'every full moon' } })).toThrow();
  });
});

import { describe, expect, it } from 'vitest';
import { createHaltMemory, parseRollouts } from '../../../src/fleet/halts.js';
import { nextCheckinDelay } from '../../../src/daemon/checkin.js';
import { buildConfig } from '../../../src/config/load.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createFleetGate } from '../../../src/fleet/fleet-gate.js';
import type { DeviceFleet } from '../../../src/fleet/device-fleet.js';

const mapStore = () => {
  const values = new Map<string, string>();
  return { getValue: (k: string) => values.get(k) ?? null, setValue: (k: string, v: string) => void values.set(k, v) };
};

describe('remembered halts', () => {
  it('keeps every rollout that is not active, and ignores malformed entries', () => {
    expect(
      parseRollouts(
        [
          { product: 'robot-ai', version: '2.2.0', state: 'halted', reason: 'too many failures' },
          { product: 'robot-ai', version: '2.1.0', state: 'active' },
          { product: 'robot-ai', version: '2.3.0', state: 'paused' },
          { product: 7, version: '1', state: 'halted' },
          'nonsense',
        ],
        5,
      ),
    ).toEqual([
      { product: 'robot-ai', version: '2.2.0', state: 'halted', reason: 'too many failures', learnedAt: 5 },
      { product: 'robot-ai', version: '2.3.0', state: 'paused', reason: '', learnedAt: 5 },
    ]);
  });

  it('survive a new memory on the same store, and an answer without them lifts them', () => {
    const store = mapStore();
    createHaltMemory(store).replaceAll([{ product: 'robot-ai', version: '2.2.0', state: 'halted', reason: 'r' }], 1);
    const again = createHaltMemory(store);
    expect(again.find('robot-ai', '2.2.0')).toMatchObject({ state: 'halted', reason: 'r', learnedAt: 1 });
    expect(again.find('robot-ai', '2.3.0')).toBeNull();
    again.replaceAll([], 2);
    expect(createHaltMemory(store).all()).toEqual([]);
  });

  it('keep the time a halt was first learned when later answers repeat it', () => {
    const memory = createHaltMemory(mapStore());
    memory.replaceAll([{ product: 'p', version: '1', state: 'halted', reason: 'r' }], 1);
    memory.replaceAll([{ product: 'p', version: '1', state: 'halted', reason: 'r' }], 9);
    expect(memory.find('p', '1')?.learnedAt).toBe(1);
  });
});

describe('the periodic check-in', () => {
  it('comes within 10 % of the interval', () => {
    expect(nextCheckinDelay(3_600_000, 0)).toBe(3_240_000);
    expect(nextCheckinDelay(3_600_000, 0.5)).toBe(3_600_000);
    expect(nextCheckinDelay(3_600_000, 0.999999)).toBeLessThanOrEqual(3_960_000);
  });
});

describe('the fleet gate', () => {
  it('turns a remembered wait into ROLLOUT_WAIT and a halt into ROLLOUT_HALTED, each with the server\'s reason', () => {
    const halts = createHaltMemory(mapStore());
    halts.replaceAll(
      [
        { product: 'robot-ai', version: '2.0.0', state: 'wait', reason: 'batch 2 of the rollout of robot-ai 2.0.0 is not open yet' },
        { product: 'robot-ai', version: '3.0.0', state: 'halted', reason: 'field reports' },
      ],
      1,
    );
    // Without leases and without check-ins the gate cannot ask the server: what it remembers decides.
    const gate = createFleetGate({ halts } as unknown as DeviceFleet, buildConfig({ fleet: { checkins: false } }), silentLogger);
    expect(gate.halted('robot-ai', '2.0.0')).toEqual({ code: 'ROLLOUT_WAIT', message: 'the fleet server holds this robot back from robot-ai 2.0.0: batch 2 of the rollout of robot-ai 2.0.0 is not open yet' });
    expect(gate.halted('robot-ai', '3.0.0')).toEqual({ code: 'ROLLOUT_HALTED', message: 'the fleet server halted the rollout of robot-ai 3.0.0: field reports' });
    expect(gate.halted('robot-ai', '4.0.0')).toBeNull();
    // With leases on, a wait is left to the lease answer, which knows whether the batch opened since.
    const leased = createFleetGate({ halts } as unknown as DeviceFleet, buildConfig({ fleet: { lease: { enabled: true } } }), silentLogger);
    expect(leased.halted('robot-ai', '2.0.0')).toBeNull();
    expect(leased.halted('robot-ai', '3.0.0')?.code).toBe('ROLLOUT_HALTED');
  });
});

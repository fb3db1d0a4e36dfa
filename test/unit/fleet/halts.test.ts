import { describe, expect, it } from 'vitest';
import { createHaltMemory, parseRollouts } from '../../../src/fleet/halts.js';
import { nextCheckinDelay } from '../../../src/daemon/checkin.js';

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

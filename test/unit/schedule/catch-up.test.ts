import { describe, expect, it } from 'vitest';
import { decideCatchUp } from '../../../src/schedule/catch-up.js';

const HOUR = 3_600_000;
const slot = Date.parse('2026-06-02T01:00:00Z');

describe('decideCatchUp', () => {
  it('waits for a run that is not due yet', () => {
    expect(decideCatchUp({ scheduledAt: slot, now: slot - 1, catchUpWindowMs: HOUR })).toEqual({ action: 'wait', runAt: slot });
  });

  it('runs on time when the timer woke within the late tolerance', () => {
    expect(decideCatchUp({ scheduledAt: slot, now: slot + 500, catchUpWindowMs: 0, delayMs: 60_000 })).toEqual({
      action: 'run', runAt: slot + 500, catchUp: false, missedByMs: 500,
    });
  });

  it('runs a missed slot now plus the device delay while within the window', () => {
    expect(decideCatchUp({ scheduledAt: slot, now: slot + 2 * HOUR, catchUpWindowMs: 12 * HOUR, delayMs: 90_000 })).toEqual({
      action: 'run', runAt: slot + 2 * HOUR + 90_000, catchUp: true, missedByMs: 2 * HOUR,
    });
    expect(decideCatchUp({ scheduledAt: slot, now: slot + HOUR, catchUpWindowMs: HOUR }).action).toBe('run');
  });

  it('skips a slot missed by more than the window', () => {
    expect(decideCatchUp({ scheduledAt: slot, now: slot + HOUR + 1, catchUpWindowMs: HOUR })).toEqual({ action: 'skip', missedByMs: HOUR + 1 });
  });

  it('rejects a negative window', () => {
    expect(() => decideCatchUp({ scheduledAt: slot, now: slot, catchUpWindowMs: -1 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

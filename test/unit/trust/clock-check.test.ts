import { describe, expect, it } from 'vitest';
import { assessClockAhead, assessClockBehind, DEFAULT_CLOCK_POLICY } from '../../../src/trust/clock-check.js';

const day = 86_400_000;
const signed = Date.parse('2026-03-01T00:00:00Z');

describe('clock plausibility', () => {
  it('a clock before the build floor is behind', () => {
    expect(assessClockBehind(Date.parse('2001-01-01T00:00:00Z'), [], DEFAULT_CLOCK_POLICY)).toMatchObject({ ok: false, direction: 'behind' });
  });
  it('a clock more than the skew behind signed metadata is behind; within the skew it is fine', () => {
    expect(assessClockBehind(signed - 2 * day, [signed], DEFAULT_CLOCK_POLICY).ok).toBe(false);
    expect(assessClockBehind(signed - 60_000, [signed, undefined], DEFAULT_CLOCK_POLICY).ok).toBe(true);
  });
  it('a clock years past the newest expiry is ahead; a day past is an honest expiry', () => {
    expect(assessClockAhead(signed + 3 * 365 * day, signed, DEFAULT_CLOCK_POLICY)).toMatchObject({ ok: false, direction: 'ahead' });
    expect(assessClockAhead(signed + day, signed, DEFAULT_CLOCK_POLICY).ok).toBe(true);
    expect(assessClockAhead(signed, undefined, DEFAULT_CLOCK_POLICY).ok).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { detectClockJump, readClock } from '../../../src/schedule/clock-jump.js';

describe('detectClockJump', () => {
  it('reports no jump when wall and monotonic time move together', () => {
    const clock = new ManualClock('2026-06-01T12:00:00Z');
    const before = readClock(clock);
    clock.advance(60_000);
    expect(detectClockJump(before, readClock(clock))).toBe(0);
  });

  it('reports a forward jump (an NTP sync after a boot without RTC) in ms', () => {
    const clock = new ManualClock('1970-01-01T00:00:10Z');
    const before = readClock(clock);
    clock.advance(30_000);
    clock.jumpTo(Date.parse('2026-06-01T12:00:40Z'));
    expect(detectClockJump(before, readClock(clock))).toBe(Date.parse('2026-06-01T12:00:40Z') - 40_000);
  });

  it('reports a backward jump as a negative number', () => {
    const clock = new ManualClock('2026-06-01T12:00:00Z');
    const before = readClock(clock);
    clock.advance(10_000);
    clock.jumpTo(Date.parse('2026-06-01T09:00:10Z'));
    expect(detectClockJump(before, readClock(clock))).toBe(-3 * 3_600_000);
  });

  it('ignores a difference within the tolerance (slewing, lag between reads)', () => {
    expect(detectClockJump({ wall: 1_000, mono: 0 }, { wall: 62_500, mono: 60_000 }, 2_000)).toBe(0);
    expect(detectClockJump({ wall: 1_000, mono: 0 }, { wall: 63_500, mono: 60_000 }, 2_000)).toBe(2_500);
  });
});

/**
 * Wall-clock jump detection. Between two readings of the Clock port the monotonic clock measures
 * how much time really passed; when the wall clock moved by a different amount, it was set (an NTP
 * sync on a robot without an RTC, a manual `date`, a resume from suspend). Slow NTP slewing stays far
 * below the tolerance and is not a jump.
 */
import type { Clock } from '../core/clock.js';

export interface ClockReading {
  wall: number;
  mono: number;
}

/** Default: jumps smaller than this are noise (slewing, scheduling lag between the two reads). */
export const DEFAULT_JUMP_TOLERANCE_MS = 2_000;

export function readClock(clock: Clock): ClockReading {
  return { wall: clock.now(), mono: clock.monotonic() };
}

/**
 * The wall-clock jump between two readings in ms: positive when the wall clock went forward
 * beyond elapsed time, negative when it went back; 0 when the difference is within the tolerance.
 */
export function detectClockJump(
  previous: ClockReading,
  current: ClockReading,
  toleranceMs: number = DEFAULT_JUMP_TOLERANCE_MS,
): number {
  const jump = current.wall - previous.wall - (current.mono - previous.mono);
  return Math.abs(jump) > toleranceMs ? jump : 0;
}

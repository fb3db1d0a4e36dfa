/**
 * Time comes from a clock port, never from the wall inside logic. The daemon uses SystemClock;
 * tests use ManualClock and move time by hand.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch (wall clock: can jump when NTP syncs). */
  now(): number;
  /** A monotonic reading in milliseconds: never jumps, meaningful only as a difference. */
  monotonic(): number;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
};

export class ManualClock implements Clock {
  private wall: number;
  private mono = 0;

  constructor(start: number | string | Date = 0) {
    this.wall = typeof start === 'number' ? start : new Date(start).getTime();
  }

  now(): number {
    return this.wall;
  }

  monotonic(): number {
    return this.mono;
  }

  /** Time passes: both clocks move forward. */
  advance(ms: number): void {
    this.wall += ms;
    this.mono += ms;
  }

  /** The wall clock jumps (an NTP sync): the monotonic clock does not move. */
  jumpTo(wall: number | string | Date): void {
    this.wall = typeof wall === 'number' ? wall : new Date(wall).getTime();
  }
}

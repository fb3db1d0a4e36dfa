/**
 * The minimum-throughput floor (TUF leaves slow retrieval to the client). Like curl's
 * --speed-limit/--speed-time: the average rate over each window of `graceMs` must reach
 * `bytesPerSec`, otherwise the transfer is judged too slow. A server that drips one byte a second
 * keeps the connection "alive" forever, so an idle timeout alone cannot catch it.
 * Pure: time is passed in (monotonic milliseconds from the Clock port).
 */
export interface ThroughputFloor {
  bytesPerSec: number;
  graceMs: number;
}

export interface TooSlow {
  rateBps: number;
  windowMs: number;
  windowBytes: number;
}

export interface ThroughputGuard {
  record(bytes: number): void;
  /** Null while the transfer keeps up; the measured shortfall once a full window fell below the floor. */
  check(nowMs: number): TooSlow | null;
}

export function createThroughputGuard(floor: ThroughputFloor, startMs: number): ThroughputGuard {
  let windowStart = startMs;
  let windowBytes = 0;
  return {
    record(bytes) {
      windowBytes += bytes;
    },
    check(nowMs) {
      const windowMs = nowMs - windowStart;
      if (floor.bytesPerSec <= 0 || windowMs < floor.graceMs) return null;
      const rateBps = (windowBytes * 1000) / windowMs;
      if (rateBps < floor.bytesPerSec) return { rateBps, windowMs, windowBytes };
      windowStart = nowMs;
      windowBytes = 0;
      return null;
    },
  };
}

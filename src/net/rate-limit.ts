/**
 * The download rate cap: a token bucket the downloader awaits after every chunk it wrote. While it
 * waits it does not read, the client's bounded queue fills (512 KiB) and pauses the socket, and
 * TCP flow control slows the sender: the cap is held on the wire, not only on the disk.
 *
 * The bucket holds at most `burstBytes` (default: a tenth of a second at the cap, at least 16 KiB),
 * so over any window longer than a second the average rate stays within the burst of the cap.
 * The throttle keeps its own accounting (bytes passed, time spent waiting) for tests and the bench.
 * Time is monotonic milliseconds; `now` and `sleep` are injectable.
 */
export interface RateLimiterOptions {
  bytesPerSec: number;
  burstBytes?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface RateLimiterStats {
  bytes: number;
  waitedMs: number;
  /** Monotonic ms of the first byte taken, null before. */
  startedAt: number | null;
}

export interface RateLimiter {
  readonly bytesPerSec: number;
  /** The most the bucket holds: bytes that may pass at once after a pause. */
  readonly burstBytes: number;
  /** Waits until `bytes` may pass at the cap (resolves at once while the bucket has them). */
  take(bytes: number, signal?: AbortSignal): Promise<void>;
  stats(): RateLimiterStats;
}

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const rate = options.bytesPerSec;
  if (!Number.isFinite(rate) || rate <= 0) throw new RangeError(`rate limit must be a positive number of bytes per second, got ${rate}`);
  const burst = options.burstBytes ?? Math.max(16 * 1024, Math.ceil(rate / 10));
  const now = options.now ?? (() => performance.now());
  const sleep = options.sleep ?? defaultSleep;
  let tokens = burst;
  let refilledAt: number | null = null;
  const stats: RateLimiterStats = { bytes: 0, waitedMs: 0, startedAt: null };

  const refill = (): void => {
    const t = now();
    if (refilledAt === null) refilledAt = t;
    tokens = Math.min(burst, tokens + ((t - refilledAt) * rate) / 1000);
    refilledAt = t;
  };

  return {
    bytesPerSec: rate,
    burstBytes: burst,
    async take(bytes, signal) {
      if (stats.startedAt === null) stats.startedAt = now();
      refill();
      // A chunk larger than the bucket is taken on credit: the debt is waited off before the next read.
      tokens -= bytes;
      stats.bytes += bytes;
      if (tokens >= 0) return;
      const waitMs = (-tokens * 1000) / rate;
      const before = now();
      await sleep(waitMs, signal);
      stats.waitedMs += now() - before;
      refill();
    },
    stats: () => ({ ...stats }),
  };
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

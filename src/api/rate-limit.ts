/**
 * A fixed-window rate limiter on the injected clock: at most `max` actions per key in each window.
 * Small on purpose: control actions on one robot are few, and a flood must not reach the machine.
 */
import type { Clock } from '../core/clock.js';

export interface RateLimiter {
  /** Counts one action for `key`; `ok: false` once the window's budget is spent. */
  take(key: string): { ok: true } | { ok: false; retryAfterMs: number };
}

export function createFixedWindowLimiter(opts: { windowMs: number; max: number; clock: Clock }): RateLimiter {
  const windows = new Map<string, { start: number; count: number }>();
  return {
    take(key) {
      const now = opts.clock.monotonic();
      let w = windows.get(key);
      if (!w || now - w.start >= opts.windowMs) {
        w = { start: now, count: 0 };
        windows.set(key, w);
        // Keys of finished windows are dropped so the map cannot grow without bound.
        if (windows.size > 1000) for (const [k, v] of windows) if (now - v.start >= opts.windowMs) windows.delete(k);
      }
      if (w.count >= opts.max) return { ok: false, retryAfterMs: Math.max(0, w.start + opts.windowMs - now) };
      w.count++;
      return { ok: true };
    },
  };
}

/**
 * Failed authentication is cheap and quiet. Every refusal of the local API (no or wrong token,
 * a credential in a query string, a foreign Host or Origin, a read token on a control endpoint)
 * goes through here, per remote address:
 *
 * - The first refusal of each kind in a window is audited at once, with its detail.
 * - Later ones in the same window are only counted; when the window ends, one audit entry says how
 *   many there were ("412 more … from 127.0.0.1 in the last 60 s"). 2,000 bad requests cost a few
 *   lines, not 2,000 in the log and 2,000 in the audit log.
 * - Past `max` refusals in a window, a remote's requests that would be refused are answered 429
 *   (API_RATE_LIMITED, Retry-After) instead of 401/403, and counted in the summary rather than
 *   audited one by one. Requests that carry a valid token are never throttled here: on a robot
 *   every local client shares 127.0.0.1, and one misbehaving process must not lock robot-ai out
 *   of its own updater (tokens are long random strings; throttling is not what protects them).
 */
import type { AuditSink } from '../core/logger.js';

export interface AuthFailureOptions {
  audit: AuditSink;
  /** Window for counting and for the summary entry (ms). */
  windowMs: number;
  /** Refusals per remote and window before unauthenticated requests get 429. */
  max: number;
  now?: () => number;
}

export interface AuthRefusal {
  /** Remote address (or "unix socket"). */
  remote: string;
  /** no-token, wrong-token, query-token, host, origin, scope … */
  reason: string;
  /** The audit message of the first refusal: what was refused, never a credential. */
  message: string;
  details?: Record<string, unknown>;
}

export interface AuthFailureGuard {
  /** Records a refusal: audited when it is the first of its kind in the window, counted otherwise. */
  refuse(refusal: AuthRefusal): void;
  /** ms until this remote may try again without a valid token, or 0 when it is not throttled. */
  throttledFor(remote: string): number;
  /** Writes the pending summaries now (on shutdown). */
  flush(): void;
  close(): void;
}

interface Window {
  start: number;
  total: number;
  /** Refusals counted but not yet audited, by reason. */
  pending: Map<string, number>;
  /** Reasons already audited in this window. */
  seen: Set<string>;
  /** Requests answered 429 in this window. */
  throttled: number;
}

/** Remotes tracked at once; beyond it the oldest windows are summarised and dropped. */
const MAX_REMOTES = 1024;

export function createAuthFailureGuard(opts: AuthFailureOptions): AuthFailureGuard {
  const now = opts.now ?? (() => Date.now());
  const windows = new Map<string, Window>();

  function summarise(remote: string, w: Window): void {
    const counted = [...w.pending.entries()].filter(([, n]) => n > 0);
    if (counted.length === 0 && w.throttled === 0) return;
    const more = counted.reduce((s, [, n]) => s + n, 0);
    const seconds = Math.round(opts.windowMs / 1000);
    opts.audit.audit({
      kind: 'api-auth-failure',
      message: `${more} more refused API request${more === 1 ? '' : 's'} from ${remote} in the last ${seconds} s (${counted.map(([r, n]) => `${r} ${n}`).join(', ') || 'none'})${w.throttled > 0 ? `; ${w.throttled} more answered 429 (throttled)` : ''}`,
      details: { remote, reason: 'summary', counts: Object.fromEntries(counted), throttled: w.throttled, windowMs: opts.windowMs },
    });
    w.pending.clear();
  }

  function current(remote: string): Window {
    const t = now();
    let w = windows.get(remote);
    if (w && t - w.start >= opts.windowMs) {
      summarise(remote, w);
      windows.delete(remote);
      w = undefined;
    }
    if (!w) {
      w = { start: t, total: 0, pending: new Map(), seen: new Set(), throttled: 0 };
      windows.set(remote, w);
      if (windows.size > MAX_REMOTES) {
        const [oldest, ow] = windows.entries().next().value as [string, Window];
        summarise(oldest, ow);
        windows.delete(oldest);
      }
    }
    return w;
  }

  function sweep(): void {
    const t = now();
    for (const [remote, w] of windows) {
      if (t - w.start >= opts.windowMs) {
        summarise(remote, w);
        windows.delete(remote);
      }
    }
  }

  // Summaries are written when their window ends even if the flood stopped; unref'd so it never
  // keeps the process alive.
  const timer = setInterval(sweep, Math.max(250, Math.min(opts.windowMs, 60_000)));
  timer.unref();

  return {
    refuse(refusal) {
      const w = current(refusal.remote);
      w.total += 1;
      if (!w.seen.has(refusal.reason)) {
        w.seen.add(refusal.reason);
        opts.audit.audit({ kind: 'api-auth-failure', message: refusal.message, details: { ...refusal.details, reason: refusal.reason, remote: refusal.remote } });
        return;
      }
      w.pending.set(refusal.reason, (w.pending.get(refusal.reason) ?? 0) + 1);
    },
    throttledFor(remote) {
      const w = windows.get(remote);
      if (!w) return 0;
      const t = now();
      if (t - w.start >= opts.windowMs) return 0;
      if (w.total < opts.max) return 0;
      w.throttled += 1;
      return w.start + opts.windowMs - t;
    },
    flush() {
      for (const [remote, w] of windows) summarise(remote, w);
    },
    close() {
      clearInterval(timer);
      this.flush();
      windows.clear();
    },
  };
}

/**
 * How long an offered update may be deferred. A release may carry `maxDeferralMs` (relative to when
 * this robot was first offered it) and `installBy` (an absolute instant, epoch ms); the deadline is
 * the earlier of the two. Past the deadline the update is no longer optional: the daemon installs it
 * at the next install slot instead of waiting for a person's choice.
 */
import { OtaError } from '../core/errors.js';

export interface DeferralInput {
  /** When this robot was first offered the release (epoch ms). Persist it: it must not reset on restart. */
  offeredAt: number;
  now: number;
  maxDeferralMs?: number | undefined;
  installBy?: number | undefined;
}

export interface DeferralStatus {
  /** The instant deferral ends, or null when the release sets no limit. */
  deadline: number | null;
  /** True from the deadline on (now >= deadline). */
  expired: boolean;
  /** Milliseconds left before the deadline (0 once expired), or null without a deadline. */
  remainingMs: number | null;
}

function finite(name: string, value: number): number {
  if (!Number.isFinite(value)) {
    throw new OtaError('CONFIG_INVALID', `deferral field ${name} is ${String(value)}; expected a finite number of milliseconds`, {
      details: { [name]: value },
    });
  }
  return value;
}

export function deferralStatus(input: DeferralInput): DeferralStatus {
  const offeredAt = finite('offeredAt', input.offeredAt);
  const now = finite('now', input.now);
  const candidates: number[] = [];
  if (input.maxDeferralMs !== undefined) {
    const max = finite('maxDeferralMs', input.maxDeferralMs);
    if (max < 0) {
      throw new OtaError('CONFIG_INVALID', `deferral field maxDeferralMs is ${max}; expected 0 or more milliseconds`, {
        details: { maxDeferralMs: max },
      });
    }
    candidates.push(offeredAt + max);
  }
  if (input.installBy !== undefined) candidates.push(finite('installBy', input.installBy));
  if (candidates.length === 0) return { deadline: null, expired: false, remainingMs: null };
  const deadline = Math.min(...candidates);
  const expired = now >= deadline;
  return { deadline, expired, remainingMs: expired ? 0 : deadline - now };
}

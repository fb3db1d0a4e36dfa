/**
 * Is the device clock plausible? TUF's expiry checks are only as good as the clock: a clock in the
 * past makes expired (frozen) metadata look fresh, a clock far in the future rejects everything.
 * Pure: the repository gathers the evidence, this decides.
 */

export interface ClockPolicy {
  /** No correct clock reads earlier than this (the build of this otad). */
  floorMs: number;
  /** Signed data may be this much "from the future" before we blame our clock. */
  skewMs: number;
  /** Expired by more than this: the clock is wrong, not the repository. */
  futureToleranceMs: number;
}

export const DEFAULT_CLOCK_POLICY: ClockPolicy = {
  floorMs: Date.parse('2025-01-01T00:00:00Z'),
  skewMs: 24 * 3_600_000,
  futureToleranceMs: 365 * 24 * 3_600_000,
};

export type ClockVerdict = { ok: true } | { ok: false; direction: 'behind' | 'ahead'; message: string };

/** `issuedMs`: times at which trusted metadata was signed (x-otad-issued). */
export function assessClockBehind(now: number, issuedMs: Array<number | undefined>, policy: ClockPolicy): ClockVerdict {
  if (now < policy.floorMs) {
    return { ok: false, direction: 'behind', message: `device clock reads ${iso(now)}, earlier than ${iso(policy.floorMs)}: the clock is not set` };
  }
  const newest = Math.max(...issuedMs.filter((t): t is number => t !== undefined && Number.isFinite(t)), -Infinity);
  if (Number.isFinite(newest) && now < newest - policy.skewMs) {
    return {
      ok: false,
      direction: 'behind',
      message: `device clock reads ${iso(now)}, but trusted metadata was signed at ${iso(newest)}: the clock is behind`,
    };
  }
  return { ok: true };
}

/** `expiresMs`: expiry of the newest timestamp seen (even unverified: only used to pick the code). */
export function assessClockAhead(now: number, expiresMs: number | undefined, policy: ClockPolicy): ClockVerdict {
  if (expiresMs === undefined || !Number.isFinite(expiresMs)) return { ok: true };
  if (now > expiresMs + policy.futureToleranceMs) {
    return {
      ok: false,
      direction: 'ahead',
      message: `device clock reads ${iso(now)}, more than ${Math.round(policy.futureToleranceMs / 86_400_000)} days past the newest timestamp's expiry ${iso(expiresMs)}: the clock is ahead`,
    };
  }
  return { ok: true };
}

function iso(ms: number): string {
  return Number.isFinite(ms) ? new Date(ms).toISOString() : String(ms);
}

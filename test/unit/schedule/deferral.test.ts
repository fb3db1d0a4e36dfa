import { describe, expect, it } from 'vitest';
import { deferralStatus } from '../../../src/schedule/deferral.js';

const DAY = 86_400_000;
const offeredAt = Date.parse('2026-06-01T10:00:00Z');

describe('deferralStatus', () => {
  it('has no deadline when the release sets neither maxDeferralMs nor installBy', () => {
    expect(deferralStatus({ offeredAt, now: offeredAt + 100 * DAY })).toEqual({ deadline: null, expired: false, remainingMs: null });
  });

  it('ends maxDeferralMs after the offer', () => {
    expect(deferralStatus({ offeredAt, now: offeredAt + DAY, maxDeferralMs: 7 * DAY })).toEqual({
      deadline: offeredAt + 7 * DAY, expired: false, remainingMs: 6 * DAY,
    });
  });

  it('takes the earlier of offeredAt + maxDeferralMs and installBy', () => {
    const installBy = offeredAt + 3 * DAY;
    expect(deferralStatus({ offeredAt, now: offeredAt, maxDeferralMs: 7 * DAY, installBy }).deadline).toBe(installBy);
    expect(deferralStatus({ offeredAt, now: offeredAt, maxDeferralMs: DAY, installBy }).deadline).toBe(offeredAt + DAY);
    expect(deferralStatus({ offeredAt, now: offeredAt, installBy }).deadline).toBe(installBy);
  });

  it('is expired from the deadline on, not before', () => {
    const installBy = offeredAt + DAY;
    expect(deferralStatus({ offeredAt, now: installBy - 1, installBy }).expired).toBe(false);
    expect(deferralStatus({ offeredAt, now: installBy, installBy })).toEqual({ deadline: installBy, expired: true, remainingMs: 0 });
    // An installBy already past when offered: expired at once.
    expect(deferralStatus({ offeredAt, now: offeredAt, installBy: offeredAt - DAY }).expired).toBe(true);
  });

  it('rejects a negative or non-finite field with CONFIG_INVALID', () => {
    expect(() => deferralStatus({ offeredAt, now: offeredAt, maxDeferralMs: -1 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => deferralStatus({ offeredAt, now: offeredAt, installBy: Number.NaN })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

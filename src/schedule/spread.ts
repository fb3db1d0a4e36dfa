/**
 * Fleet spreading without a coordinator: every robot derives, from its own device id, a delay
 * inside the jitter window and its place in a phased rollout. Both are deterministic (the same
 * robot always gets the same answer, across restarts and clock jumps) and uniform over the fleet,
 * so a fleet never stampedes the server and nobody has to assign slots.
 *
 * The two hashes use different domain tags, so a robot's delay says nothing about its rollout
 * bucket, and the rollout bucket includes the version, so a different slice of the fleet goes
 * first for each release.
 */
import { createHash } from 'node:crypto';
import { OtaError } from '../core/errors.js';

const TWO_POW_48 = 2 ** 48;

/**
 * A number in [0, 1) from SHA-256 over the JSON array of the parts (JSON keeps the parts
 * unambiguous: ('a:b','c') and ('a','b:c') hash differently). 48 bits fit a double exactly.
 */
export function hashUnit(parts: readonly string[]): number {
  const digest = createHash('sha256').update(JSON.stringify(parts), 'utf8').digest();
  return digest.readUIntBE(0, 6) / TWO_POW_48;
}

function assertDeviceId(deviceId: string): void {
  if (typeof deviceId !== 'string' || deviceId.length === 0) {
    throw new OtaError('CONFIG_INVALID', `device id ${JSON.stringify(deviceId)} is empty; spreading needs a stable non-empty device id`);
  }
}

/**
 * The device's delay after a slot: an integer in [0, windowMs), uniform over device ids, fixed per
 * (device id, key). windowMs 0 gives 0.
 */
export function deviceDelayMs(deviceId: string, key: string, windowMs: number): number {
  assertDeviceId(deviceId);
  if (!Number.isFinite(windowMs) || windowMs < 0) {
    throw new OtaError('CONFIG_INVALID', `jitter window ${String(windowMs)} ms is not a non-negative finite number of milliseconds`, {
      details: { windowMs },
    });
  }
  return Math.floor(hashUnit(['otad/spread/v1', deviceId, key]) * Math.floor(windowMs));
}

/** The device's rollout bucket for one release: a number in [0, 100). */
export function rolloutBucket(deviceId: string, product: string, version: string): number {
  assertDeviceId(deviceId);
  return hashUnit(['otad/rollout/v1', deviceId, product, version]) * 100;
}

/**
 * Whether this device takes part in a release rolled out to `percent` of the fleet: its bucket is
 * below percent. 100 → every device, 0 → none; lowering the percent only removes devices and raising
 * it only adds them, because the bucket does not depend on the percent.
 */
export function inRollout(deviceId: string, product: string, version: string, percent: number): boolean {
  if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
    throw new OtaError('CONFIG_INVALID', `rollout percentage ${String(percent)} is outside 0..100`, {
      details: { percent, product, version },
    });
  }
  if (percent >= 100) return true;
  return rolloutBucket(deviceId, product, version) < percent;
}

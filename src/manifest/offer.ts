/**
 * Whether a verified manifest is an update this robot should be offered. Pure: the check step
 * calls it after the repository proved the manifest genuine.
 */
import semver from 'semver';
import type { ErrorCode } from '../core/errors.js';
import type { Offer, TargetRef } from '../../machines/types.js';
import type { Manifest } from './schema.js';

export interface OfferInput {
  manifest: Manifest;
  /** The product this robot manages under that name. */
  product: string;
  /** null when nothing is installed yet: any release is offered. */
  installedVersion: string | null;
  /** Beta-like channels allow prerelease versions (2.1.0-rc.1); stable does not. */
  channelAllowsPrerelease: boolean;
  /** Only an operator's explicit choice allows installing an older version. */
  allowDowngrade: boolean;
}

export type NotOfferedReason = 'up-to-date' | 'wrong-product' | 'downgrade' | 'incompatible' | 'prerelease';

export type OfferDecision =
  | { offered: true }
  | { offered: false; reason: NotOfferedReason; code?: ErrorCode; message: string };

export function evaluateOffer(input: OfferInput): OfferDecision {
  const { manifest, product, installedVersion } = input;
  if (manifest.product !== product) {
    return {
      offered: false,
      reason: 'wrong-product',
      code: 'RELEASE_WRONG_PRODUCT',
      message: `release is for product ${manifest.product}, expected ${product}`,
    };
  }
  if (semver.prerelease(manifest.version) !== null && !input.channelAllowsPrerelease) {
    return { offered: false, reason: 'prerelease', message: `release ${manifest.version} is a prerelease and the channel does not allow prereleases` };
  }
  if (installedVersion === null) return { offered: true };
  const installed = semver.valid(installedVersion);
  if (installed === null) {
    // An installed version we cannot order (adopted plain install): let the release decide via minFromVersion.
    if (manifest.minFromVersion !== undefined) {
      return {
        offered: false,
        reason: 'incompatible',
        code: 'RELEASE_INCOMPATIBLE',
        message: `installed version ${JSON.stringify(installedVersion)} is not a semantic version and release ${manifest.version} requires at least ${manifest.minFromVersion}`,
      };
    }
    return { offered: true };
  }
  const order = semver.compare(manifest.version, installed);
  if (order === 0) return { offered: false, reason: 'up-to-date', message: `version ${installed} is installed and is the latest release` };
  if (order < 0 && !input.allowDowngrade) {
    return {
      offered: false,
      reason: 'downgrade',
      code: 'RELEASE_DOWNGRADE',
      message: `release ${manifest.version} is older than installed ${installed}; downgrades need an explicit choice`,
    };
  }
  if (manifest.minFromVersion !== undefined && semver.lt(installed, manifest.minFromVersion)) {
    return {
      offered: false,
      reason: 'incompatible',
      code: 'RELEASE_INCOMPATIBLE',
      message: `release ${manifest.version} needs at least ${manifest.minFromVersion} installed, found ${installed}`,
    };
  }
  return { offered: true };
}

/** The Offer the machine carries: JSON only, times as epoch milliseconds. */
export function toOffer(manifest: Manifest, manifestTarget: TargetRef, installedVersion: string | null = null): Offer {
  const offer: Offer = {
    product: manifest.product,
    version: manifest.version,
    channel: manifest.channel,
    releasedAt: Date.parse(manifest.releasedAt),
    notes: manifest.notes,
    manifest: { ...manifestTarget },
    package: { name: manifest.package.target, length: manifest.package.length, sha256: manifest.package.sha256 },
  };
  if (manifest.rolloutPercent !== undefined) offer.rolloutPercent = manifest.rolloutPercent;
  if (manifest.installBy !== undefined) offer.installBy = Date.parse(manifest.installBy);
  if (manifest.maxDeferralHours !== undefined) offer.maxDeferralMs = Math.round(manifest.maxDeferralHours * 3_600_000);
  if (manifest.minFromVersion !== undefined) offer.minFromVersion = manifest.minFromVersion;
  if (manifest.requirements?.minFreeBytes !== undefined) offer.minFreeBytes = manifest.requirements.minFreeBytes;
  if (manifest.index !== undefined) {
    const { target, length, sha256, entries, bytes } = manifest.index;
    offer.index = { name: target, length, sha256, entries, bytes };
    // A delta needs the index to be proven; without one (schema 1.0) the full package is the only way.
    const delta = installedVersion === null ? undefined : manifest.deltas?.find((d) => d.fromVersion === installedVersion);
    if (delta !== undefined) offer.delta = { fromVersion: delta.fromVersion, target: { name: delta.target, length: delta.length, sha256: delta.sha256 } };
  }
  offer.downloadBytes = offer.delta?.target.length ?? offer.package.length;
  return offer;
}

/**
 * The one interface the check and stage steps use to reach releases: a TUF repository over HTTP,
 * a local folder (USB stick), or a scriptable fake in tests. Whatever it returns was proven
 * genuine; whatever fails throws an OtaError with a stable code.
 */
import type { TargetRef } from '../../machines/types.js';
import type { OtaError } from '../core/errors.js';
import type { Manifest } from '../manifest/schema.js';

export interface LatestReleaseOptions {
  /** Only manifests of this channel (default: stable). */
  channel?: string;
  /** Consider prerelease versions (2.1.0-rc.1). Default false. */
  allowPrerelease?: boolean;
  signal?: AbortSignal;
  /**
   * Whether a genuine release is for this robot (signed requirements: architecture, OS). A release
   * refused here is passed over and the next older one is considered.
   */
  accept?: (manifest: Manifest) => OtaError | null;
  /** Told about every newer release that was passed over, and why, before the one returned. */
  onPassedOver?: (passed: PassedOverRelease) => void;
}

/**
 * A release newer than the one returned that cannot be offered: its signed manifest is malformed
 * (the publisher's mistake, reported and skipped so it does not hide an older valid release) or
 * its requirements do not fit this robot.
 */
export interface PassedOverRelease {
  target: string;
  version: string;
  error: OtaError;
}

/**
 * Codes of a manifest that arrived intact (bytes equal to the signed hash) but says something
 * unusable. Anything else (transport failure, a hash or length mismatch) stops the check: skipping
 * past tampered bytes would let whoever tampers choose which older release a robot installs.
 */
export const PASS_OVER_CODES: ReadonlySet<string> = new Set(['MANIFEST_INVALID', 'MANIFEST_SCHEMA_UNSUPPORTED', 'RELEASE_WRONG_PRODUCT', 'RELEASE_REQUIREMENTS_UNMET']);

/** A manifest whose bytes matched a signed target, and that target. */
export interface VerifiedRelease {
  manifest: Manifest;
  manifestTarget: TargetRef;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (progress: { bytes: number; total: number }) => void;
}

export interface UpdateRepository {
  /** Run the TUF client workflow: root chain, timestamp, snapshot, targets. */
  refresh(signal?: AbortSignal): Promise<void>;
  /** The newest release of a product in the signed targets, or null when there is none. */
  latestRelease(product: string, options?: LatestReleaseOptions): Promise<VerifiedRelease | null>;
  /** Download a signed target to dest; on any failure nothing is left at dest. */
  downloadTarget(target: TargetRef, dest: string, options?: DownloadOptions): Promise<{ path: string }>;
  /** Check a file on disk against a signed target's length and SHA-256. */
  verifyFile(target: TargetRef, path: string): Promise<void>;
}

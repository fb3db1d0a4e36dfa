/**
 * Caps applied to every package before a single byte of it reaches the disk. They bound what an
 * archive may cost us (entries, inflated bytes, inflated bytes per compressed byte), so a gzip bomb
 * or a million tiny files is stopped while reading, not after the disk is full.
 */
import type { EntryOrigin } from './name-rules.js';

export interface PackageLimits {
  /** Headers of any kind (files, directories, links) the archive may hold. */
  maxEntries: number;
  /** Sum of the declared sizes of all file entries. */
  maxTotalBytes: number;
  /** Declared size of any one file entry. */
  maxEntryBytes: number;
  /**
   * Inflated tar bytes per byte of the compressed file (0: no ratio cap). Every archive may inflate
   * to at least COMPRESSION_RATIO_FLOOR_BYTES, so tiny packages are never judged by their ratio.
   */
  maxCompressionRatio: number;
  /** Who wrote the archive: 'package' (a publisher; every rule) or 'backup' (otad itself). */
  origin?: EntryOrigin;
}

/**
 * Generous for a robot application release (a Python venv has tens of thousands of files; software
 * compresses 2-10×, a file of zeros 1000×).
 */
export const DEFAULT_PACKAGE_LIMITS: Readonly<PackageLimits> = Object.freeze({
  maxEntries: 200_000,
  maxTotalBytes: 4 * 1024 ** 3,
  maxEntryBytes: 1024 ** 3,
  maxCompressionRatio: 100,
});

/** Inflated bytes every archive may reach whatever its ratio: 16 MiB. */
export const COMPRESSION_RATIO_FLOOR_BYTES = 16 * 1024 * 1024;

/**
 * The inflated tar stream is larger than the sum of its files: a 512-byte header and up to 511
 * bytes of padding per entry, long-name records, and the end-of-archive blocks. Anything beyond this
 * allowance is padding nobody needs (a stream of zeros is a valid-looking "empty" tar forever).
 */
export function maxInflatedBytes(limits: PackageLimits): number {
  return limits.maxTotalBytes + (limits.maxEntries + 2) * 2048 + 1024 * 1024;
}

/** The ratio cap in bytes for a compressed file of `compressedBytes`; Infinity when there is none. */
export function ratioCapBytes(limits: PackageLimits, compressedBytes: number): number {
  if (limits.maxCompressionRatio === 0) return Number.POSITIVE_INFINITY;
  return Math.max(COMPRESSION_RATIO_FLOOR_BYTES, limits.maxCompressionRatio * compressedBytes);
}

const NUMERIC_KEYS = ['maxEntries', 'maxTotalBytes', 'maxEntryBytes', 'maxCompressionRatio'] as const;

export function resolveLimits(limits?: Partial<PackageLimits>): PackageLimits {
  const merged: PackageLimits = { ...DEFAULT_PACKAGE_LIMITS, ...(limits ?? {}) };
  for (const key of NUMERIC_KEYS) {
    const value = merged[key];
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`package limit ${key} must be a non-negative integer, got ${String(value)}`);
    }
  }
  if (merged.origin !== undefined && merged.origin !== 'package' && merged.origin !== 'backup') {
    throw new RangeError(`package origin must be "package" or "backup", got ${String(merged.origin)}`);
  }
  return merged;
}

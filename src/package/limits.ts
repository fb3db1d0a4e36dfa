/**
 * Caps applied to every package before a single byte of it reaches the disk. They bound what an
 * archive may cost us (entries, inflated bytes), so a gzip bomb or a million tiny files is stopped
 * while reading, not after the disk is full.
 */
export interface PackageLimits {
  /** Headers of any kind (files, directories, links) the archive may hold. */
  maxEntries: number;
  /** Sum of the declared sizes of all file entries. */
  maxTotalBytes: number;
  /** Declared size of any one file entry. */
  maxEntryBytes: number;
}

/** Generous for a robot application release (a Python venv has tens of thousands of files). */
export const DEFAULT_PACKAGE_LIMITS: Readonly<PackageLimits> = Object.freeze({
  maxEntries: 200_000,
  maxTotalBytes: 4 * 1024 ** 3,
  maxEntryBytes: 1024 ** 3,
});

/**
 * The inflated tar stream is larger than the sum of its files: a 512-byte header and up to 511
 * bytes of padding per entry, long-name records, and the end-of-archive blocks. Anything beyond this
 * allowance is padding nobody needs (a stream of zeros is a valid-looking "empty" tar forever).
 */
export function maxInflatedBytes(limits: PackageLimits): number {
  return limits.maxTotalBytes + (limits.maxEntries + 2) * 2048 + 1024 * 1024;
}

export function resolveLimits(limits?: Partial<PackageLimits>): PackageLimits {
  const merged = { ...DEFAULT_PACKAGE_LIMITS, ...(limits ?? {}) };
  for (const [key, value] of Object.entries(merged)) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`package limit ${key} must be a non-negative integer, got ${String(value)}`);
    }
  }
  return merged;
}

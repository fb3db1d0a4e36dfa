/**
 * The read side every package pass shares: file → SHA-256 of the compressed bytes → gunzip or zstd
 * (chosen by the file's first bytes, never its name) → a counter that stops the stream at the inflated-size cap and checks the end-of-archive marker.
 * Whoever consumes the tar bytes (the scanner, the extractor's writer, the indexer) sits at the end of the same pipeline.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OtaError, isAbortError, toOtaError } from '../core/errors.js';
import { createDecompressor, requireCompression, ZSTD_WINDOW_LOG_MAX, type PackageCompression } from './compression.js';
import { maxInflatedBytes, ratioCapBytes, type PackageLimits } from './limits.js';

export interface ArchiveReadResult {
  /** SHA-256 (hex) of the compressed file as it was read. */
  sha256: string;
  compressedBytes: number;
  inflatedBytes: number;
  compression: PackageCompression;
}

/**
 * Streams `file` into `sink` (a tar parser). `firstError` lets the sink's own verdict (a rejected
 * entry) win over the generic "stream destroyed" errors the other stages report after it.
 */
export async function readArchiveInto(
  file: string,
  sink: Writable | NodeJS.WritableStream,
  limits: PackageLimits,
  firstError: () => unknown,
  signal?: AbortSignal,
): Promise<ArchiveReadResult> {
  const hash = createHash('sha256');
  let compressedBytes = 0;
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      compressedBytes += chunk.length;
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  // The ratio cap is measured against the whole compressed file, so a bomb stops at the same byte
  // however the decompressor happens to chunk its output.
  const compressedSize = await stat(file).then((st) => st.size).catch(() => 0);
  const ratioCap = ratioCapBytes(limits, compressedSize);
  const counter = new InflatedCounter(maxInflatedBytes(limits), ratioCap, limits.maxCompressionRatio, compressedSize);
  // The decompressor comes from the magic bytes; every cap below applies to either alike.
  let compression: PackageCompression;
  let decompressor;
  try {
    compression = await requireCompression(file);
    decompressor = createDecompressor(compression, `package ${file}`);
  } catch (error) {
    throw classify(error, file);
  }
  // 1 MiB reads: at the default 64 KiB (16 KiB for some streams) the per-chunk cost of hash,
  // decompression and tar parsing dominates.
  const stages = [createReadStream(file, { highWaterMark: 1 << 20 }), hasher, decompressor, counter, sink] as const;
  // pipeline() reports the first error; a stage destroyed later still emits one, and an 'error'
  // without a listener would crash the daemon. Every stage gets a listener that only swallows.
  for (const stage of stages) (stage as NodeJS.EventEmitter).on('error', ignore);
  try {
    await pipeline(stages[0], stages[1], stages[2], stages[3], stages[4] as Writable, signal === undefined ? {} : { signal });
  } catch (error) {
    throw classify(firstError() ?? counter.error ?? error, file);
  }
  const rejected = firstError();
  if (rejected !== undefined) throw classify(rejected, file);
  if (!counter.endsWithMarker()) {
    throw new OtaError('PACKAGE_CORRUPT', `package ${file} is truncated: the tar end-of-archive marker is missing`, {
      details: { file, inflatedBytes: counter.bytes },
    });
  }
  return { sha256: hash.digest('hex'), compressedBytes, inflatedBytes: counter.bytes, compression };
}

function ignore(): void {}

/** Counts inflated bytes, fails at the cap (so nothing past it is inflated), remembers the tail. */
class InflatedCounter extends Transform {
  bytes = 0;
  error: OtaError | undefined;
  private tail = Buffer.alloc(0);

  constructor(
    private readonly cap: number,
    private readonly ratioCap: number,
    private readonly ratio: number,
    private readonly compressedSize: number,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.ratioCap && this.ratioCap < this.cap) {
      this.error = new OtaError(
        'PACKAGE_TOO_LARGE',
        `package of ${this.compressedSize} bytes inflates past ${this.ratioCap} bytes, more than the compression-ratio cap of ${this.ratio}:1; reading stopped at the cap`,
        { details: { limit: 'maxCompressionRatio', maxCompressionRatio: this.ratio, compressedBytes: this.compressedSize, cap: this.ratioCap, inflatedBytes: this.bytes } },
      );
      cb(this.error);
      return;
    }
    if (this.bytes > this.cap) {
      this.error = new OtaError('PACKAGE_TOO_LARGE', `package inflates past ${this.cap} bytes; reading stopped at the cap`, {
        details: { limit: 'inflatedBytes', cap: this.cap, inflatedBytes: this.bytes },
      });
      cb(this.error);
      return;
    }
    // Only the last 1 KiB is kept; a large chunk is not copied whole.
    this.tail = chunk.length >= 1024 ? Buffer.from(chunk.subarray(chunk.length - 1024)) : Buffer.concat([this.tail, chunk]).subarray(-1024);
    cb(null, chunk);
  }

  /** A complete tar ends with two zero blocks; a cut at an entry boundary does not. */
  endsWithMarker(): boolean {
    return this.tail.length === 1024 && this.tail.every((b) => b === 0);
  }
}

function classify(error: unknown, file: string): OtaError {
  if (error instanceof OtaError) return error;
  if (isAbortError(error)) return toOtaError(error, 'CANCELLED', `reading package ${file}`);
  const errno = (error as NodeJS.ErrnoException).code;
  // Node system errors (ENOENT, EIO...) are about the disk; zlib and tar parse errors are about the bytes.
  if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) return toOtaError(error, 'IO_FAILED', `reading package ${file}`, { file });
  const reason = error instanceof Error ? error.message : String(error);
  if (errno === 'ZSTD_error_frameParameter_windowTooLarge') {
    return new OtaError('PACKAGE_TOO_LARGE', `package ${file} asks for a zstd window larger than ${2 ** ZSTD_WINDOW_LOG_MAX} bytes (what zstd levels up to 19 use); refused before decompressing`, {
      cause: error,
      details: { file, limit: 'zstdWindowLog', zstdWindowLogMax: ZSTD_WINDOW_LOG_MAX },
    });
  }
  return new OtaError('PACKAGE_CORRUPT', `package ${file} is corrupt or truncated: ${reason}`, { cause: error, details: { file } });
}

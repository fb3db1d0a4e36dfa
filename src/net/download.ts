/**
 * The verified, resumable downloader. Invariants:
 * - nothing appears at `dest` unless its length and SHA-256 equal the signed ones (rename is the
 *   commit point, after fsync of the file; the directory is fsynced after);
 * - never more than `expectedLength` bytes are accepted: one byte beyond → TRUST_LENGTH_MISMATCH and
 *   the partial is removed;
 * - bytes already received survive a broken connection (and a restart of the daemon) in
 *   `dest + '.partial'`, and the next attempt asks only for the rest (Range: bytes=N-);
 * - the hash is computed as bytes are written; a partial found on disk is re-hashed first.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Clock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import { hashFile, hashInto } from '../core/files.js';
import type { Logger } from '../core/logger.js';
import type { HttpClient, StreamResponse } from './http-client.js';
import { abortReasonToError, redactUrl } from './http-errors.js';
import { createProgressThrottle } from './progress.js';
import type { ProgressEvent } from './progress.js';
import { planRangeResponse } from './range.js';
import type { RateLimiter } from './rate-limit.js';
import { createThroughputGuard } from './throughput.js';
import type { ThroughputFloor, ThroughputGuard } from './throughput.js';
import { withRetry } from './retry.js';
import type { RetryPolicy } from './retry.js';

export type { ProgressEvent } from './progress.js';

export interface DownloaderOptions {
  http: HttpClient;
  clock: Clock;
  logger: Logger;
  retry?: Partial<RetryPolicy>;
  minThroughput: ThroughputFloor;
  /** Budget for one download() call, all attempts and backoff included. */
  deadlineMs: number;
  /** How often the deadline and the throughput floor are checked. Default 250 ms. */
  checkIntervalMs?: number;
  /** Progress throttle: at most one event per this many ms (or per 1 % of the total). Default 250. */
  progressIntervalMs?: number;
  /** Told how many bytes each attempt moved and how long it took (feeds the network monitor). */
  onThroughput?: (bytes: number, ms: number) => void;
  /** The download rate cap (bytes per second on any link): awaited after every chunk. */
  rateLimit?: RateLimiter;
  /** Metered links: may refuse an attempt before it starts or stop it mid-way, and counts the bytes. */
  meter?: DownloadMeter;
}

/** What the metered-link policy of a product needs from the downloader (src/net/metered.ts). */
export interface DownloadMeter {
  /** Before each attempt: an error (METERED_*) when `bytes` more may not be fetched now. */
  admit(bytes: number, url: string): OtaError | null;
  /** Bytes that arrived; an error stops the attempt (the link turned metered under a `wait` policy, the budget ran out). */
  record(bytes: number): OtaError | null;
  /** After each attempt: make the count durable. */
  flush(): void;
}

export interface DownloadRequest {
  url: string;
  dest: string;
  expectedLength: number;
  /** Lower-case hex SHA-256 of the whole target. */
  expectedSha256: string;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Offset the successful attempt started from (0: the whole file came in one go). */
  resumedFrom: number;
  /** Network attempts made by this call (0 when dest was already complete). */
  attempts: number;
}

export interface Downloader {
  download(request: DownloadRequest): Promise<DownloadResult>;
}

/** What is on disk in the partial file and hashed so far: kept in step with every write. */
interface PartialState {
  bytes: number;
  hash: Hash;
}

export function createDownloader(options: DownloaderOptions): Downloader {
  const { http, clock } = options;
  const log = options.logger.child({ component: 'download' });
  const checkIntervalMs = options.checkIntervalMs ?? 250;

  return {
    async download(request) {
      validateRequest(request);
      const { url, dest, expectedLength } = request;
      const expectedSha256 = request.expectedSha256.toLowerCase();
      const partialPath = `${dest}.partial`;
      const safeUrl = redactUrl(url);
      const rlog = log.child({ url: safeUrl, dest });

      const existing = await hashIfLength(dest, expectedLength);
      if (existing === expectedSha256) {
        await removeQuietly(partialPath);
        rlog.info('download skipped: destination already holds the expected file');
        return { path: dest, bytes: expectedLength, sha256: existing, resumedFrom: 0, attempts: 0 };
      }
      const startedMs = performance.now();

      const startMs = clock.monotonic();
      const stop = new AbortController();
      const signal = request.signal === undefined ? stop.signal : AbortSignal.any([request.signal, stop.signal]);
      let current: { guard: ThroughputGuard; abort: AbortController } | null = null;
      let attempts = 0;
      let resumedFrom = 0;

      const deadlineError = (): OtaError =>
        new OtaError('NETWORK_TIMEOUT', `download of ${safeUrl} did not finish within its ${options.deadlineMs} ms deadline`, {
          details: { url: safeUrl, deadlineMs: options.deadlineMs, deadline: true },
        });
      const checkLimits = (): void => {
        const now = clock.monotonic();
        if (now - startMs > options.deadlineMs) {
          if (!stop.signal.aborted) stop.abort(deadlineError());
          return;
        }
        const attempt = current;
        if (attempt === null || attempt.abort.signal.aborted) return;
        const slow = attempt.guard.check(now);
        if (slow !== null) {
          attempt.abort.abort(
            new OtaError(
              'NETWORK_TOO_SLOW',
              `download of ${safeUrl} ran at ${Math.round(slow.rateBps)} B/s over ${slow.windowMs} ms; ` +
                `the floor is ${options.minThroughput.bytesPerSec} B/s`,
              { details: { url: safeUrl, rateBps: Math.round(slow.rateBps), windowMs: slow.windowMs, floorBps: options.minThroughput.bytesPerSec } },
            ),
          );
        }
      };
      const state: PartialState = await loadPartial(partialPath, expectedLength);
      if (state.bytes > 0) rlog.info('found a partial download', { bytes: state.bytes });
      const progress = createProgressThrottle({
        total: expectedLength,
        startMs,
        startBytes: state.bytes,
        intervalMs: options.progressIntervalMs ?? 250,
      });
      const report = (bytes: number, final = false): void => {
        if (request.onProgress === undefined) return;
        const event = final ? progress.final(bytes, clock.monotonic()) : progress.update(bytes, clock.monotonic());
        if (event !== null) request.onProgress(event);
      };

      const resetPartial = async (): Promise<void> => {
        await removeQuietly(partialPath);
        state.bytes = 0;
        state.hash = createHash('sha256');
      };

      /** One network attempt: brings the partial up to expectedLength or throws. */
      const attempt = async (): Promise<void> => {
        checkLimits();
        if (signal.aborted) throw signal.reason;
        if (state.bytes === expectedLength) {
          // Complete on disk already: only verification is left. An empty target still needs its file.
          if (expectedLength === 0) await (await openPartial(partialPath, false)).close();
          return;
        }
        const offset = state.bytes;
        const refused = options.meter?.admit(expectedLength - offset, safeUrl) ?? null;
        if (refused !== null) throw refused;
        const abort = new AbortController();
        const attemptSignal = AbortSignal.any([signal, abort.signal]);
        const attemptStart = clock.monotonic();
        let response: StreamResponse;
        try {
          response = await http.stream(url, {
            signal: attemptSignal,
            ...(offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {}),
          });
        } catch (error) {
          if (isOtaError(error) && error.details?.status === 416 && offset > 0) {
            await resetPartial();
            throw new OtaError('HTTP_STATUS', `${safeUrl} refused the range bytes=${offset}-; restarting from zero`, {
              cause: error,
              details: { url: safeUrl, requestedOffset: offset },
              retryable: true,
            });
          }
          throw error;
        }

        const decision = planRangeResponse({ url, requestedOffset: offset, status: response.status, headers: response.headers, expectedLength });
        if (decision.kind === 'reject') {
          response.cancel();
          if (decision.discardPartial) await resetPartial();
          throw decision.error;
        }
        if (decision.kind === 'restart') {
          rlog.warn('server ignored the Range request; restarting from zero', { requestedOffset: offset, status: response.status });
          await resetPartial();
        }
        // The floor applies to the body only: waiting for headers is the headers timeout's job.
        const guard = createThroughputGuard(options.minThroughput, clock.monotonic());
        current = { guard, abort };
        resumedFrom = state.bytes;
        if (resumedFrom > 0) rlog.info('resuming download', { offset: resumedFrom });

        let received = 0;
        let file: FileHandle | undefined;
        try {
          file = await openPartial(partialPath, state.bytes > 0);
          for await (const chunk of response.body) {
            if (state.bytes + chunk.length > expectedLength) {
              response.cancel();
              await file.close();
              file = undefined;
              await resetPartial();
              throw new OtaError(
                'TRUST_LENGTH_MISMATCH',
                `${safeUrl} sent more than its signed length of ${expectedLength} bytes; download stopped at the length`,
                { details: { url: safeUrl, expectedLength, receivedAtLeast: state.bytes + chunk.length } },
              );
            }
            // Hash on this thread while the write runs in the pool. If the write fails the call
            // ends (storage errors are not retried here), so the hash never outruns the file.
            const writing = writeAll(file, chunk, state.bytes);
            state.hash.update(chunk);
            await writing;
            state.bytes += chunk.length;
            received += chunk.length;
            guard.record(chunk.length);
            report(state.bytes);
            const stopped = options.meter?.record(chunk.length) ?? null;
            if (stopped !== null) {
              response.cancel();
              throw stopped;
            }
            if (options.rateLimit !== undefined) {
              await options.rateLimit.take(chunk.length, attemptSignal).catch((reason: unknown) => {
                throw abortReasonToError(attemptSignal.reason ?? reason, `GET ${safeUrl}`);
              });
            }
          }
        } catch (error) {
          response.cancel();
          if (isDiskFull(error)) {
            await file?.close().catch(() => {});
            file = undefined;
            await resetPartial();
            throw new OtaError('DISK_FULL', `no space left to store ${dest} (${expectedLength} bytes); partial download removed`, {
              cause: error,
              details: { dest, expectedLength },
            });
          }
          throw error;
        } finally {
          await file?.close().catch(() => {});
          current = null;
          options.meter?.flush();
          options.onThroughput?.(received, clock.monotonic() - attemptStart);
        }
        if (state.bytes < expectedLength) {
          // A clean end short of the length: a body without Content-Length cut by a proxy, or a
          // server whose file is shorter. Keep what we have; the next attempt resumes.
          throw new OtaError('NETWORK_RESET', `${safeUrl} ended after ${state.bytes} of ${expectedLength} bytes`, {
            details: { url: safeUrl, bytes: state.bytes, expectedLength },
          });
        }
      };

      const ticker = setInterval(checkLimits, checkIntervalMs);
      try {
        await withRetry(
          async (n) => {
            attempts = n;
            await attempt();
          },
          {
            operation: `download ${safeUrl}`,
            logger: rlog,
            signal,
            ...(options.retry === undefined ? {} : { policy: options.retry }),
            // Only transport trouble is worth an immediate retry; a full disk or a bad hash is not.
            shouldRetry: (error) => error.category === 'network',
          },
        );
      } finally {
        clearInterval(ticker);
        current = null;
      }

      const sha256 = state.hash.digest('hex');
      if (sha256 !== expectedSha256) {
        await removeQuietly(partialPath);
        throw new OtaError(
          'TRUST_HASH_MISMATCH',
          `${safeUrl} has SHA-256 ${sha256}; the signed hash is ${expectedSha256}. The download was discarded`,
          { details: { url: safeUrl, expectedSha256, actualSha256: sha256, bytes: state.bytes } },
        );
      }
      await commit(partialPath, dest);
      report(state.bytes, true);
      // The average over this call (resumed bytes excluded), and the cap it was held to: what an
      // operator reads to see that network.maxRateBps is in force.
      const ms = Math.round(performance.now() - startedMs);
      const averageBps = ms > 0 ? Math.round(((state.bytes - resumedFrom) * 1000) / ms) : null;
      rlog.info('download complete', { bytes: state.bytes, attempts, resumedFrom, ms, averageBps, ...(options.rateLimit === undefined ? {} : { rateCapBps: options.rateLimit.bytesPerSec }) });
      return { path: dest, bytes: state.bytes, sha256, resumedFrom, attempts };
    },
  };
}

function validateRequest(request: DownloadRequest): void {
  if (!Number.isSafeInteger(request.expectedLength) || request.expectedLength < 0) {
    throw new OtaError('INTERNAL', `download expectedLength must be a non-negative integer, got ${request.expectedLength}`);
  }
  if (!/^[0-9a-fA-F]{64}$/.test(request.expectedSha256)) {
    throw new OtaError('INTERNAL', `download expectedSha256 must be 64 hex digits, got "${request.expectedSha256}"`);
  }
}

/** Reads a partial left by an earlier attempt or process. One longer than the target is garbage. */
async function loadPartial(path: string, expectedLength: number): Promise<PartialState> {
  const size = await fileSize(path);
  if (size === null || size === 0) return { bytes: 0, hash: createHash('sha256') };
  if (size > expectedLength) {
    await removeQuietly(path);
    return { bytes: 0, hash: createHash('sha256') };
  }
  const hash = createHash('sha256');
  const bytes = await hashInto(path, hash);
  return { bytes, hash };
}

async function hashIfLength(path: string, expectedLength: number): Promise<string | null> {
  if ((await fileSize(path)) !== expectedLength) return null;
  return (await hashFile(path)).sha256;
}

async function fileSize(path: string): Promise<number | null> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : null;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(`cannot stat ${path}`, error);
  }
}

async function openPartial(path: string, append: boolean): Promise<FileHandle> {
  try {
    // 'w' truncates: a fresh start never inherits stale bytes. 0600: a download is otad's own
    // (packages, deltas, tree indexes under the private cache), whatever the umask.
    return await open(path, append ? 'r+' : 'w', 0o600);
  } catch (error) {
    if (isDiskFull(error)) throw error;
    throw ioError(`cannot open ${path} for writing`, error);
  }
}

/** Positional writes: the file offset always equals the bytes already accounted for. */
async function writeAll(file: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < chunk.length) {
    const { bytesWritten } = await file.write(chunk, done, chunk.length - done, position + done);
    done += bytesWritten;
  }
}

/** fsync the file, rename it over dest (the commit point), fsync the directory. */
async function commit(partialPath: string, dest: string): Promise<void> {
  try {
    const file = await open(partialPath, 'r');
    try {
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(partialPath, dest);
    const dir = await open(dirname(dest), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  } catch (error) {
    throw ioError(`cannot move the verified download into place at ${dest}`, error);
  }
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(`cannot remove ${path}`, error);
  }
}

function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function ioError(message: string, cause: unknown): OtaError {
  if (isDiskFull(cause)) return new OtaError('DISK_FULL', `${message}: ${(cause as Error).message}`, { cause });
  return new OtaError('IO_FAILED', `${message}: ${(cause as Error).message}`, { cause });
}

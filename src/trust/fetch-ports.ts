/**
 * Minimal implementations of the trust ports: global fetch for http(s) URLs and plain file reads
 * for file: URLs (a USB stick or an offline copy of a repository). The daemon uses src/net's
 * pooled client and resumable downloader (net-ports.ts); these serve tools, the local-folder
 * repository and tests. Both enforce the byte caps themselves: integrity never trusts the sender.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OtaError, isOtaError } from '../core/errors.js';
import { createProgressThrottle } from '../net/progress.js';
import type { DownloadRequest, DownloadResult, FetchOptions, MetadataFetcher, TargetDownloader } from './ports.js';

export function tooLargeError(url: string, maxBytes: number): OtaError {
  return new OtaError('TRUST_METADATA_TOO_LARGE', `${url} is larger than ${maxBytes} bytes; download stopped at the cap`, {
    details: { url, maxBytes, tooLarge: true },
  });
}

export function createFetchMetadataFetcher(): MetadataFetcher {
  return {
    async getBuffer(url, options) {
      if (url.startsWith('file:')) return readFileCapped(fileURLToPath(url), url, options);
      const signals = [options.signal, options.deadlineMs === undefined ? undefined : AbortSignal.timeout(options.deadlineMs)].filter(
        (s): s is AbortSignal => s !== undefined,
      );
      let response: Response;
      try {
        response = await fetch(url, { signal: signals.length > 0 ? AbortSignal.any(signals) : null, redirect: 'follow' });
      } catch (cause) {
        throw networkError(url, cause);
      }
      if (!response.ok || response.body === null) {
        await response.body?.cancel().catch(() => {});
        throw statusError(url, response.status);
      }
      const declared = Number(response.headers.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > options.maxBytes) {
        await response.body.cancel().catch(() => {});
        throw tooLargeError(url, options.maxBytes);
      }
      const chunks: Buffer[] = [];
      let total = 0;
      const reader = response.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          total += value.length;
          if (total > options.maxBytes) {
            await reader.cancel().catch(() => {});
            throw tooLargeError(url, options.maxBytes);
          }
          chunks.push(Buffer.from(value));
        }
      } catch (cause) {
        if (isOtaError(cause)) throw cause;
        throw networkError(url, cause);
      }
      return Buffer.concat(chunks);
    },
  };
}

async function readFileCapped(file: string, url: string, options: FetchOptions): Promise<Buffer> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new OtaError('HTTP_NOT_FOUND', `${file} does not exist`, { cause, details: { url, status: 404 } });
    }
    throw cause;
  }
  try {
    const buffer = Buffer.alloc(options.maxBytes + 1);
    let total = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, total, buffer.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > options.maxBytes) throw tooLargeError(url, options.maxBytes);
    }
    return buffer.subarray(0, total);
  } finally {
    await handle.close();
  }
}

/**
 * Streams a target into `dest + '.part'`, hashing as it writes and refusing a single byte past
 * the signed length; renames into place only when length and SHA-256 match. Not resumable:
 * the daemon uses src/net's downloader for that.
 */
export function createFetchDownloader(fetcher: { open(url: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> } = defaultOpener()): TargetDownloader {
  return {
    async download(request: DownloadRequest): Promise<DownloadResult> {
      const part = `${request.dest}.part`;
      const hash = createHash('sha256');
      let bytes = 0;
      // A measurement for the progress rate, never a deadline: monotonic time is right here.
      const progress = createProgressThrottle({ total: request.expectedLength, startMs: performance.now(), startBytes: 0 });
      const out = await fs.open(part, 'w', 0o644);
      try {
        for await (const chunk of await fetcher.open(request.url, request.signal)) {
          bytes += chunk.length;
          if (bytes > request.expectedLength) {
            throw new OtaError('TRUST_LENGTH_MISMATCH', `${request.url} sent more than its signed length of ${request.expectedLength} bytes; download stopped`, {
              details: { url: request.url, expectedLength: request.expectedLength },
            });
          }
          hash.update(chunk);
          await out.write(chunk);
          if (request.onProgress !== undefined) request.onProgress(progress.final(bytes, performance.now()));
        }
        if (bytes !== request.expectedLength) {
          throw new OtaError('TRUST_LENGTH_MISMATCH', `${request.url} ended after ${bytes} bytes, signed length is ${request.expectedLength}`, {
            details: { url: request.url, bytes, expectedLength: request.expectedLength },
          });
        }
        const sha256 = hash.digest('hex');
        if (sha256 !== request.expectedSha256) {
          throw new OtaError('TRUST_HASH_MISMATCH', `${request.url} has SHA-256 ${sha256}, signed value is ${request.expectedSha256}`, {
            details: { url: request.url, sha256, expectedSha256: request.expectedSha256 },
          });
        }
        await out.sync();
        await out.close();
        await fs.rename(part, request.dest);
        return { path: request.dest, bytes, sha256 };
      } catch (error) {
        await out.close().catch(() => {});
        await fs.rm(part, { force: true });
        throw error;
      }
    },
  };
}

function defaultOpener() {
  return {
    async open(url: string, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
      if (url.startsWith('file:')) {
        try {
          const file = fileURLToPath(url);
          await fs.access(file);
          return createReadStream(file, { highWaterMark: 1 << 20 });
        } catch (cause) {
          throw new OtaError('HTTP_NOT_FOUND', `${url} does not exist`, { cause, details: { url, status: 404 } });
        }
      }
      let response: Response;
      try {
        response = await fetch(url, { signal: signal ?? null });
      } catch (cause) {
        throw networkError(url, cause);
      }
      if (!response.ok || response.body === null) throw statusError(url, response.status);
      return response.body as unknown as AsyncIterable<Uint8Array>;
    },
  };
}

function statusError(url: string, status: number): OtaError {
  if (status === 404) return new OtaError('HTTP_NOT_FOUND', `GET ${url} answered 404`, { details: { url, status } });
  return new OtaError('HTTP_STATUS', `GET ${url} answered HTTP ${status}; expected 2xx`, { details: { url, status }, retryable: status >= 500 || status === 429 });
}

function networkError(url: string, cause: unknown): OtaError {
  if (cause instanceof Error && (cause.name === 'AbortError' || cause.name === 'TimeoutError')) {
    return new OtaError(cause.name === 'TimeoutError' ? 'NETWORK_TIMEOUT' : 'CANCELLED', `GET ${url}: ${cause.message}`, { cause });
  }
  const errno = (cause as { cause?: { code?: string } }).cause?.code;
  const code = errno === 'ECONNREFUSED' || errno === 'ENOTFOUND' || errno === 'EAI_AGAIN' ? 'NETWORK_OFFLINE' : 'NETWORK_RESET';
  return new OtaError(code, `GET ${url} failed: ${(cause as Error).message}${errno ? ` (${errno})` : ''}`, { cause, details: { url, errno } });
}

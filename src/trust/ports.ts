/**
 * What the TUF client needs from the network. The shapes match src/net (http-client getBuffer and
 * downloader download) so the pooled undici implementations plug in directly; fetch-ports.ts holds
 * small global-fetch stand-ins for tools and tests.
 */
import type { DownloadRequest, DownloadResult as NetDownloadResult } from '../net/download.js';

export interface FetchOptions {
  /** Stop reading and reject once the body passes this many bytes. */
  maxBytes: number;
  deadlineMs?: number;
  signal?: AbortSignal;
}

export interface MetadataFetcher {
  /**
   * GET a small document into memory. Rejects with an OtaError: HTTP_NOT_FOUND for 404 (and
   * details.status for any other status), and an error carrying details.maxBytes (or the code
   * TRUST_METADATA_TOO_LARGE) when the body is larger than maxBytes.
   */
  getBuffer(url: string, options: FetchOptions): Promise<Buffer>;
}

/** A target download: the one request type of src/net's downloader. */
export type { DownloadRequest } from '../net/download.js';

/** What the TUF client reads of a finished download. */
export type DownloadResult = Pick<NetDownloadResult, 'path' | 'bytes' | 'sha256'>;

export interface TargetDownloader {
  /**
   * Stream url into dest, hashing while writing, never writing past expectedLength, resuming a
   * partial file with HTTP Range. Resolves only when length and SHA-256 match.
   */
  download(request: DownloadRequest): Promise<DownloadResult>;
}

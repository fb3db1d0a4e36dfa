/** The trust ports on top of src/net: the pooled undici client and the resumable downloader. */
import type { HttpClient } from '../net/http-client.js';
import type { Downloader } from '../net/download.js';
import type { MetadataFetcher, TargetDownloader } from './ports.js';

export function metadataFetcherFromHttp(http: HttpClient, defaultDeadlineMs = 30_000): MetadataFetcher {
  return {
    async getBuffer(url, options) {
      const request: Parameters<HttpClient['getBuffer']>[1] = { maxBytes: options.maxBytes, deadlineMs: options.deadlineMs ?? defaultDeadlineMs };
      if (options.signal !== undefined) request.signal = options.signal;
      return (await http.getBuffer(url, request)).body;
    },
  };
}

/** src/net's Downloader already has the port's shape; this only states it. */
export function targetDownloaderFromNet(downloader: Downloader): TargetDownloader {
  return downloader;
}

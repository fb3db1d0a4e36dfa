/**
 * A repository on a local folder: a USB stick, an offline copy, or the publisher's own folder
 * (`ota-repo verify`). Same signed metadata, same TUF client, same checks: only the transport is
 * a file read instead of HTTP.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createFetchDownloader, createFetchMetadataFetcher } from './fetch-ports.js';
import { createTufRepository, type TufRepositoryOptions } from './tuf-repository.js';
import type { UpdateRepository } from './update-repository.js';

export type LocalFolderRepositoryOptions = Omit<TufRepositoryOptions, 'metadataBaseUrl' | 'targetBaseUrl' | 'fetcher' | 'downloader'>;

export function createLocalFolderRepository(dir: string, options: LocalFolderRepositoryOptions): UpdateRepository {
  const root = path.resolve(dir);
  return createTufRepository({
    ...options,
    metadataBaseUrl: pathToFileURL(path.join(root, 'metadata') + path.sep).toString(),
    targetBaseUrl: pathToFileURL(path.join(root, 'targets') + path.sep).toString(),
    fetcher: createFetchMetadataFetcher(),
    downloader: createFetchDownloader(),
  });
}

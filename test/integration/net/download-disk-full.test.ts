import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createDownloader } from '../../../src/net/download.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import type { HttpClient } from '../../../src/net/http-client.js';
import { createFaultyServer } from '../../support/faulty-server.js';
import type { FaultyServer } from '../../support/faulty-server.js';

/** A 256 KiB tmpfs: mounting needs root, so the test is skipped where that is not allowed. */
function tryMountTinyTmpfs(dir: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const content = randomBytes(1024 * 1024);
const sha256 = createHash('sha256').update(content).digest('hex');
let root: string;
let mounted = false;
let server: FaultyServer;
let http: HttpClient;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-full-'));
  mounted = tryMountTinyTmpfs(root);
  server = await createFaultyServer({ '/big': content });
  http = createHttpClient({ connectTimeoutMs: 1_000, headersTimeoutMs: 1_000, idleTimeoutMs: 1_000, userAgent: 't', logger: silentLogger });
});

afterAll(async () => {
  await http.close();
  await server.close();
  if (mounted) execFileSync('umount', [root]);
  await rm(root, { recursive: true, force: true });
});

describe('downloader on a full disk', () => {
  it('fails with DISK_FULL, removes the partial and does not retry', async (context) => {
    if (!mounted) context.skip();
    const downloader = createDownloader({
      http,
      clock: systemClock,
      logger: silentLogger,
      retry: { retries: 3, minDelayMs: 1, maxDelayMs: 2 },
      minThroughput: { bytesPerSec: 0, graceMs: 1_000 },
      deadlineMs: 10_000,
    });
    const dest = join(root, 'pkg');
    const error = await downloader.download({ url: server.url('/big'), dest, expectedLength: content.length, expectedSha256: sha256 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect((error as OtaError).code).toBe('DISK_FULL');
    expect(server.requests).toHaveLength(1);
    expect(existsSync(`${dest}.partial`)).toBe(false);
    expect(await readdir(root)).toEqual([]);
  });
});

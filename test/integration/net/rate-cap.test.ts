/**
 * The download rate cap on a real download: otad's downloader with `rateLimit` (what
 * network.maxRateBps wires, src/steps/repository-factory.ts) fetches from a loopback server that
 * sends as fast as it can. Asserted: the bytes and their hash, the token bucket's own accounting,
 * and a lower bound on the time the transfer took that follows from bytes and rate (the cap can
 * only make it slower; a slow machine only makes it longer). The precise rate over 60 s windows is
 * measured by `npm run bench ratecap`; its short version runs here for its arithmetic only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchRateCap, rateCapLines } from '../../../src/bench/rate-cap-bench.js';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createDownloader } from '../../../src/net/download.js';
import { createHttpClient } from '../../../src/net/http-client.js';
import { createRateLimiter } from '../../../src/net/rate-limit.js';

const SIZE = 768 * 1024;
const body = randomBytes(SIZE);
const sha256 = createHash('sha256').update(body).digest('hex');

describe('download rate cap on a real loopback download', () => {
  let server: http.Server;
  let url: string;
  let dir: string;
  const client = createHttpClient({ connectTimeoutMs: 5_000, headersTimeoutMs: 10_000, idleTimeoutMs: 10_000, userAgent: 'otad-test', logger: silentLogger });
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-ratecap-test-'));
    server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(SIZE) });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
  });
  afterAll(async () => {
    await client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers every byte, verified, and the bucket made it wait for the bytes beyond its burst', async () => {
    const rate = 256 * 1024;
    const limiter = createRateLimiter({ bytesPerSec: rate });
    const downloader = createDownloader({ http: client, clock: systemClock, logger: silentLogger, retry: { retries: 0 }, minThroughput: { bytesPerSec: 0, graceMs: 60_000 }, deadlineMs: 120_000, rateLimit: limiter });
    const result = await downloader.download({ url, dest: join(dir, 'capped'), expectedLength: SIZE, expectedSha256: sha256 });
    const end = performance.now();
    expect(result).toMatchObject({ bytes: SIZE, sha256, attempts: 1 });
    const stats = limiter.stats();
    expect(stats.bytes).toBe(SIZE);
    expect(stats.waitedMs).toBeGreaterThan(0);
    // A token bucket never lets more than burst + rate × elapsed through: the lower bound of the time taken.
    const minMs = ((SIZE - limiter.burstBytes) / rate) * 1000;
    expect(end - stats.startedAt!).toBeGreaterThanOrEqual(minMs * 0.9);
  }, 60_000);

  it('the bench, short: windows add up to the bytes the bucket passed', async () => {
    const r = await benchRateCap({ bytesPerSec: 512 * 1024, windowMs: 500, windows: 2, sampleMs: 20 });
    expect(r.verified).toBe(true);
    expect(r.limiter.bytes).toBe(r.bytes);
    expect(r.windows).toHaveLength(2);
    const inWindows = r.windows.reduce((a, w) => a + w.bytes, 0);
    expect(inWindows).toBeGreaterThan(0);
    expect(inWindows).toBeLessThanOrEqual(r.bytes);
    for (const w of r.windows) expect(w.deviationPercent).toBeCloseTo(((w.rate - r.bytesPerSec) / r.bytesPerSec) * 100, 6);
    const text = rateCapLines(r).join('\n');
    expect(text).toMatch(/rate cap +cap 512 KiB\/s, 2 window\(s\) of 1 s/);
    expect(text).toMatch(/worst window +[\d.]+ % +goal within ±10 %: (met|NOT met)/);
  }, 60_000);
});

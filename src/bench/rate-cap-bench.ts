/**
 * The download rate cap (`network.maxRateBps`, src/net/rate-limit.ts) measured: otad's downloader
 * with the cap fetches a file from a loopback server that sends as fast as it can, and the bytes
 * that arrived are sampled; the rate over each window after the first byte (default 60 s) is
 * compared with the cap. Goal: within ±10 % in every window. `npm run bench ratecap`; the
 * windows and the cap are options (`--rate-cap-windows=N`, default 2; the test runs a short
 * version and asserts only the byte accounting).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { createDownloader } from '../net/download.js';
import { createHttpClient } from '../net/http-client.js';
import { createRateLimiter, type RateLimiterStats } from '../net/rate-limit.js';

export interface RateCapBenchOptions {
  /** The cap, bytes per second. Default 1 MiB/s. */
  bytesPerSec?: number;
  /** Window length. Default 60 s. */
  windowMs?: number;
  /** Windows measured. Default 2. */
  windows?: number;
  /** Sampling interval. Default 100 ms. */
  sampleMs?: number;
}

export interface RateCapWindow {
  startMs: number;
  bytes: number;
  /** Bytes per second over the window. */
  rate: number;
  /** (rate - cap) / cap, in percent. */
  deviationPercent: number;
}

export interface RateCapBenchResult {
  bytesPerSec: number;
  windowMs: number;
  /** File size: the windows plus a tenth of a window, so the last one is full. */
  bytes: number;
  windows: RateCapWindow[];
  /** The largest |deviation| of any window, percent. */
  worstPercent: number;
  /** The downloaded file's SHA-256 matched. */
  verified: boolean;
  /** The token bucket's own accounting at the end. */
  limiter: RateLimiterStats;
  burstBytes: number;
}

/** Deterministic bytes for offset ranges, generated as they are sent (no file on the server side). */
const BLOCK = (() => {
  const b = Buffer.alloc(64 * 1024);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
})();

function sha256Of(bytes: number): string {
  const h = createHash('sha256');
  for (let off = 0; off < bytes; off += BLOCK.length) h.update(BLOCK.subarray(0, Math.min(BLOCK.length, bytes - off)));
  return h.digest('hex');
}

export async function benchRateCap(options: RateCapBenchOptions = {}): Promise<RateCapBenchResult> {
  const rate = options.bytesPerSec ?? 1024 * 1024;
  const windowMs = options.windowMs ?? 60_000;
  const windowCount = options.windows ?? 2;
  const sampleMs = options.sampleMs ?? 100;
  const bytes = Math.ceil((rate * windowMs * (windowCount + 0.1)) / 1000);
  const dir = await mkdtemp(join(tmpdir(), 'otad-ratecap-'));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-length': String(bytes), 'content-type': 'application/octet-stream' });
    let sent = 0;
    const pump = (): void => {
      while (sent < bytes) {
        const n = Math.min(BLOCK.length, bytes - sent);
        sent += n;
        if (!res.write(BLOCK.subarray(0, n))) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const http1 = createHttpClient({ connectTimeoutMs: 5_000, headersTimeoutMs: 30_000, idleTimeoutMs: 30_000, userAgent: 'otad-bench', logger: silentLogger });
  const limiter = createRateLimiter({ bytesPerSec: rate });
  const samples: Array<{ t: number; bytes: number }> = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/blob`;
    const downloader = createDownloader({
      http: http1,
      clock: systemClock,
      logger: silentLogger,
      retry: { retries: 0 },
      minThroughput: { bytesPerSec: 0, graceMs: 60_000 },
      deadlineMs: windowMs * (windowCount + 2) + 60_000,
      rateLimit: limiter,
    });
    timer = setInterval(() => {
      const s = limiter.stats();
      if (s.startedAt !== null) samples.push({ t: performance.now(), bytes: s.bytes });
    }, sampleMs);
    const result = await downloader.download({ url, dest: join(dir, 'blob'), expectedLength: bytes, expectedSha256: sha256Of(bytes) });
    clearInterval(timer);
    const stats = limiter.stats();
    const t0 = stats.startedAt!;
    const at = (t: number): number => {
      // Bytes passed at time t, from the nearest samples on either side (linear in between).
      let before = { t: t0, bytes: 0 };
      for (const s of samples) {
        if (s.t <= t) before = s;
        else {
          const f = (t - before.t) / (s.t - before.t);
          return before.bytes + f * (s.bytes - before.bytes);
        }
      }
      return before.bytes;
    };
    const windows: RateCapWindow[] = [];
    for (let k = 0; k < windowCount; k++) {
      const start = t0 + k * windowMs;
      const moved = at(start + windowMs) - at(start);
      const r = (moved * 1000) / windowMs;
      windows.push({ startMs: k * windowMs, bytes: Math.round(moved), rate: r, deviationPercent: ((r - rate) / rate) * 100 });
    }
    return {
      bytesPerSec: rate,
      windowMs,
      bytes,
      windows,
      worstPercent: Math.max(...windows.map((w) => Math.abs(w.deviationPercent))),
      verified: result.bytes === bytes,
      limiter: stats,
      burstBytes: limiter.burstBytes,
    };
  } finally {
    clearInterval(timer);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await http1.close();
    await rm(dir, { recursive: true, force: true });
  }
}

export function rateCapLines(r: RateCapBenchResult): string[] {
  const kib = (n: number): string => `${(n / 1024).toFixed(0)} KiB/s`;
  return [
    `${'rate cap'.padEnd(28)} cap ${kib(r.bytesPerSec)}, ${r.windows.length} window(s) of ${(r.windowMs / 1000).toFixed(0)} s, ${(r.bytes / 2 ** 20).toFixed(1)} MiB verified: ${r.verified}`,
    ...r.windows.map((w) => `${`  window at ${(w.startMs / 1000).toFixed(0)} s`.padEnd(28)} ${kib(w.rate)}  ${w.deviationPercent >= 0 ? '+' : ''}${w.deviationPercent.toFixed(2)} %`),
    `${'  worst window'.padEnd(28)} ${r.worstPercent.toFixed(2)} %   goal within ±10 %: ${r.worstPercent <= 10 ? 'met' : 'NOT met'}`,
  ];
}

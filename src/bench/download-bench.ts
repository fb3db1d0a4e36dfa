/**
 * Download benchmark: our verified downloader against `curl -s -o` on the same loopback URL.
 * Ours streams into SHA-256, fsyncs and renames; curl only writes, so the fair comparison is
 * ours vs curl + sha256sum, and both ratios are printed. Never run by the test suite (it moves
 * 256 MiB); run it with `npm run bench` or directly with tsx.
 */
import { execFile } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { createDownloader } from '../net/download.js';
import { createHttpClient } from '../net/http-client.js';

const run = promisify(execFile);

export interface BenchResult {
  name: string;
  bytes: number;
  /** Our downloader: transfer + streaming SHA-256 + fsync + rename. */
  oursMs: number;
  /** curl -s -o, transfer only; null when curl is not installed. */
  curlMs: number | null;
  /** sha256sum of curl's file; null when unavailable. */
  sha256sumMs: number | null;
  /** oursMs / curlMs. */
  ratioVsCurl: number | null;
  /** oursMs / (curlMs + sha256sumMs): the like-for-like comparison. */
  ratioVsCurlPlusHash: number | null;
  oursSha256: string;
  sha256sum: string | null;
  /** Our streaming hash equals sha256sum's and the hash of the generated file. */
  hashesMatch: boolean;
}

export interface BenchDownloadOptions {
  /** File size; default 256 MiB. */
  bytes?: number;
  /** Where the lines go; default console.log. */
  print?: (line: string) => void;
}

export async function benchDownload(options: BenchDownloadOptions = {}): Promise<BenchResult> {
  const bytes = options.bytes ?? 256 * 1024 * 1024;
  const print = options.print ?? ((line: string) => console.log(line));
  const dir = await mkdtemp(join(tmpdir(), 'otad-bench-'));
  const source = join(dir, 'source.bin');
  const server = http.createServer((req, res) => {
    if (req.url !== '/source.bin') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': String(bytes), 'content-type': 'application/octet-stream' });
    createReadStream(source, { highWaterMark: 1024 * 1024 }).pipe(res);
  });
  const client = createHttpClient({
    connectTimeoutMs: 5_000,
    headersTimeoutMs: 30_000,
    idleTimeoutMs: 30_000,
    userAgent: 'otad-bench',
    logger: silentLogger,
  });
  try {
    const expectedSha256 = await writeRandomFile(source, bytes);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/source.bin`;

    const downloader = createDownloader({
      http: client,
      clock: systemClock,
      logger: silentLogger,
      retry: { retries: 0 },
      minThroughput: { bytesPerSec: 0, graceMs: 60_000 },
      deadlineMs: 10 * 60_000,
    });
    const oursStart = performance.now();
    const ours = await downloader.download({ url, dest: join(dir, 'ours.bin'), expectedLength: bytes, expectedSha256 });
    const oursMs = performance.now() - oursStart;

    let curlMs: number | null = null;
    let sha256sumMs: number | null = null;
    let sha256sum: string | null = null;
    const curlOut = join(dir, 'curl.bin');
    try {
      const curlStart = performance.now();
      await run('curl', ['-s', '-o', curlOut, url]);
      curlMs = performance.now() - curlStart;
      if ((await stat(curlOut)).size !== bytes) throw new Error('curl wrote a file of the wrong size');
      const hashStart = performance.now();
      const { stdout } = await run('sha256sum', [curlOut]);
      sha256sumMs = performance.now() - hashStart;
      sha256sum = stdout.split(/\s+/)[0] ?? null;
    } catch (error) {
      print(`curl/sha256sum unavailable or failed: ${(error as Error).message}`);
    }

    const result: BenchResult = {
      name: 'download',
      bytes,
      oursMs: round(oursMs),
      curlMs: curlMs === null ? null : round(curlMs),
      sha256sumMs: sha256sumMs === null ? null : round(sha256sumMs),
      ratioVsCurl: curlMs === null ? null : round(oursMs / curlMs),
      ratioVsCurlPlusHash: curlMs === null || sha256sumMs === null ? null : round(oursMs / (curlMs + sha256sumMs)),
      oursSha256: ours.sha256,
      sha256sum,
      hashesMatch: ours.sha256 === expectedSha256 && (sha256sum === null || sha256sum === ours.sha256),
    };
    const mib = bytes / (1024 * 1024);
    print(`download bench: ${mib.toFixed(0)} MiB over loopback`);
    print(`  otad downloader (hash + fsync): ${result.oursMs} ms (${(mib / (oursMs / 1000)).toFixed(0)} MiB/s)`);
    if (result.curlMs !== null) print(`  curl -s -o:                     ${result.curlMs} ms; ratio ${result.ratioVsCurl}`);
    if (curlMs !== null && sha256sumMs !== null) print(`  curl + sha256sum:               ${round(curlMs + sha256sumMs)} ms; ratio ${result.ratioVsCurlPlusHash}`);
    print(`  sha256: ours ${result.oursSha256} / sha256sum ${result.sha256sum ?? 'n/a'} → ${result.hashesMatch ? 'match' : 'MISMATCH'}`);
    return result;
  } finally {
    await client.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes `bytes` of random data in 8 MiB blocks and returns its SHA-256. */
async function writeRandomFile(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  const block = Buffer.alloc(Math.min(bytes, 8 * 1024 * 1024));
  const file = await open(path, 'w');
  try {
    for (let written = 0; written < bytes; ) {
      const size = Math.min(block.length, bytes - written);
      const chunk = block.subarray(0, size);
      randomFillSync(chunk);
      hash.update(chunk);
      await file.write(chunk, 0, size);
      written += size;
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

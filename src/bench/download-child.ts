/**
 * One download by otad's real target downloader (createProductDownloader, as the stage step gets
 * it through the product's repository: streaming SHA-256 while writing, length check, fsync,
 * rename, fsync of the directory), in a process of its own so its CPU time and memory are its own.
 * Run by src/bench/download-bench.ts:
 *
 *   node dist/src/bench/download-child.js URL DEST LENGTH SHA256
 *
 * Prints one JSON line: wall and CPU time of the download() call, the RSS once the modules are
 * loaded (idle, read just before the download starts) and the peak RSS during the download
 * (VmHWM, reset just before the download starts), and the SHA-256 the downloader computed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { buildConfig } from '../config/load.js';
import { createHttpClient } from '../net/http-client.js';
import { createProductDownloader } from '../steps/repository-factory.js';

export interface ChildReport {
  wallMs: number;
  userMs: number;
  sysMs: number;
  idleRssKiB: number;
  peakRssKiB: number;
  /** Whether VmHWM could be reset before the download (else the peak covers the whole process). */
  peakReset: boolean;
  sha256: string;
  bytes: number;
}

function statusKiB(field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  if (match === null) throw new Error(`/proc/self/status has no ${field}`);
  return Number(match[1]);
}

async function main(): Promise<void> {
  const [url, dest, length, sha256] = process.argv.slice(2);
  if (url === undefined || dest === undefined || length === undefined || sha256 === undefined) {
    throw new Error('usage: download-child URL DEST LENGTH SHA256');
  }
  // Defaults of every server and network setting, as a robot with no overrides has them.
  const config = buildConfig({ server: { url: new URL('/', url).toString() }, products: [{ name: 'bench', installPath: '/opt/bench' }] });
  const product = config.products[0]!;
  const http = createHttpClient({
    connectTimeoutMs: config.server.connectTimeout,
    headersTimeoutMs: config.server.headersTimeout,
    idleTimeoutMs: config.server.idleTimeout,
    userAgent: 'otad',
    logger: silentLogger,
  });
  const downloader = createProductDownloader(product, config, http, { clock: systemClock, logger: silentLogger });
  let progressEvents = 0;

  const idleRssKiB = statusKiB('VmRSS');
  let peakReset = true;
  try {
    // 5: reset the peak resident set size (VmHWM) to the current RSS (proc(5), clear_refs).
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    peakReset = false;
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await downloader.download({
    url,
    dest,
    expectedLength: Number(length),
    expectedSha256: sha256,
    // The stage step always listens to progress (it feeds the daemon's events).
    onProgress: () => {
      progressEvents += 1;
    },
  });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const peakRssKiB = statusKiB('VmHWM');
  await http.close();
  const report: ChildReport = {
    wallMs,
    userMs: cpu.user / 1000,
    sysMs: cpu.system / 1000,
    idleRssKiB,
    peakRssKiB,
    peakReset,
    sha256: result.sha256,
    bytes: result.bytes,
  };
  process.stdout.write(`${JSON.stringify({ ...report, progressEvents })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`download child failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});

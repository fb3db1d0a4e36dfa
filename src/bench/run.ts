/**
 * `npm run bench`: times otad's hot paths against the standard tools in the same run and prints
 * the ratio (ours / baseline; below 1 is faster). Download + verify from a real nginx against
 * curl -o + openssl dgst -sha256 + sync -f, wall, CPU and the downloader's peak memory over idle, alternated
 * for several rounds (`--download-rounds=N`, default 5; src/bench/download-bench.ts), streaming hash
 * vs sha256sum, packaging vs tar -czf, safe extraction vs tar -xzf + sync -f (alternated), and
 * `otactl status` against `systemctl --version` (the start of a small system tool) with the peak RSS of each. Numbers vary on a shared machine; the ratio is what to compare.
 * Deltas (`delta`): bytes a robot downloads for a 1 % change and for a model change; staging after
 * the 1 % delta against full staging, and full staging against tar -xzf + sync -f, all three with
 * the stage step's own functions, alternated for several rounds (`--delta-rounds=N`, default 5),
 * medians compared and the spread printed (src/bench/delta-bench.ts); then the staging rows again on
 * a loop-mounted XFS with reflinks, where the unchanged files' copies share blocks, and on a
 * loop-mounted btrfs, where releases are subvolumes and a delta starts from a snapshot of the
 * installed release (src/bench/reflink-scratch.ts; root and xfsprogs / btrfs-progs, each skipped
 * with the reason otherwise).
 * Downtime (`downtime`): the demo product's update under a real otad, median split of several
 * updates (`--downtime-runs=N`, default 7) against a stop/start of the same process (src/bench/downtime-bench.ts).
 * The 3 AM window (`window`): the demo product's install in its slot with and without download ahead
 * (src/bench/window-bench.ts), on loopback and on a link shaped to 10 MiB/s.
 * The rate cap (`ratecap`): a capped download from a loopback server that sends as fast as it can, the
 * rate over each 60 s window against the cap, goal ±10 % (`--rate-cap-windows=N`, default 2; src/bench/rate-cap-bench.ts).
 * Compression (`zstd`): package size, build and unpack time of zstd against gzip on the same tree (src/bench/zstd-bench.ts).
 * `node dist/src/bench/run.js otactl` (or `download`, `hash`, `package`, `delta`, `zstd`, `downtime`, `window`, `ratecap`) runs only the parts named.
 */
import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchDownload, downloadLines } from './download-bench.js';
import { benchOtactlStatus } from './otactl-bench.js';
import { benchDeltas, median, type DeltaBench } from './delta-bench.js';
import { mountScratchFs } from './reflink-scratch.js';
import { benchDowntime, downtimeLines } from './downtime-bench.js';
import { benchInstallWindow } from './window-bench.js';
import { benchRateCap, rateCapLines } from './rate-cap-bench.js';
import { benchCompression } from './zstd-bench.js';
import { createPackage } from '../package/create.js';
import { hashFile } from '../core/files.js';
import { extractPackage } from '../package/extract.js';

const run = promisify(execFile);

async function time<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function baseline(cmd: string, args: string[]): Promise<number | null> {
  try {
    return (await time(() => run(cmd, args, { maxBuffer: 1 << 20 }))).ms;
  } catch {
    return null;
  }
}

/** The delta part's rows; `fs` names the filesystem in the staging rows when it is not the work folder's. */
function deltaLines(d: DeltaBench, fs: string): string[] {
  const lines: string[] = [];
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
  const share = (n: number, of: number) => `${((n * 100) / of).toFixed(3)} %`;
  lines.push(`${'wire: 1 % of files changed'.padEnd(28)} delta ${(d.smallDeltaBytes / 1024).toFixed(1)} KiB of a ${mib(d.packageBytes)} package = ${share(d.smallDeltaBytes, d.packageBytes)} (goal ≤ 5 %; ${d.changedFiles} of ${d.files} files)`);
  lines.push(
    `${'wire: the 64 MiB model changed'.padEnd(28)} download ${mib(d.modelChangeDownloadBytes)} = ${share(d.modelChangeDownloadBytes, d.modelChangePackageBytes)} of the package (goal ≤ 101 %; the delta would be ${mib(d.modelDeltaBytes)}, ${d.modelDeltaPublished ? 'published' : 'held back by the 70 % gate'})`,
  );
  // Medians of the alternated rounds; the spread is the lowest and highest of each, and of the ratio within a round.
  const spread = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
  const perRound = (a: number[], b: number[]) => a.map((x, i) => x / b[i]!);
  const n = d.rounds;
  lines.push(
    row(`staging after 1 % delta (med ${n}${fs})`, median(d.deltaStagingMs), 'full staging', median(d.fullStagingMs), `   (goal ≤ 0.30; round ratios ${spread(perRound(d.deltaStagingMs, d.fullStagingMs), 2)}; ours ${spread(d.deltaStagingMs)} ms)`),
  );
  const tarMed = d.tarSyncMs.length === n ? median(d.tarSyncMs) : null;
  lines.push(
    row(
      `full staging, stage (med ${n}${fs})`,
      median(d.fullStagingMs),
      'tar -xzf+sync',
      tarMed,
      `   (goal ≤ 1.50; round ratios ${tarMed === null ? 'n/a' : spread(perRound(d.fullStagingMs, d.tarSyncMs), 2)}; ours ${spread(d.fullStagingMs)} ms${tarMed === null ? '' : `, tar ${spread(d.tarSyncMs)} ms`})`,
    ),
  );
  return lines;
}

function row(name: string, oursMs: number, baseName: string, baseMs: number | null, extra = ''): string {
  const ratio = baseMs ? (oursMs / baseMs).toFixed(2) : 'n/a';
  return `${name.padEnd(28)} ours ${oursMs.toFixed(0).padStart(7)} ms   ${baseName.padEnd(14)} ${baseMs === null ? '   n/a' : baseMs.toFixed(0).padStart(7) + ' ms'}   ratio ${ratio}${extra}`;
}

/** A product-like tree: many small files and a few large ones (random, so gzip has real work). */
function makeTree(root: string, files: number, bigMiB: number): void {
  for (let i = 0; i < files; i++) {
    const dir = join(root, `lib/mod${i % 40}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `f${i}.js`), `export const v${i} = ${i};\n`.repeat(20 + (i % 50)));
  }
  mkdirSync(join(root, 'models'), { recursive: true });
  const big = Buffer.alloc(bigMiB << 20);
  randomFillSync(big);
  writeFileSync(join(root, 'models/weights.bin'), big);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const only = new Set(args.filter((a) => !a.startsWith('--')));
  const runsArg = args.find((a) => a.startsWith('--downtime-runs='));
  const downtimeRuns = runsArg === undefined ? 7 : Number(runsArg.slice('--downtime-runs='.length));
  if (!Number.isInteger(downtimeRuns) || downtimeRuns < 1) throw new Error(`--downtime-runs must be a whole number of at least 1, not ${runsArg}`);
  const capArg = args.find((a) => a.startsWith('--rate-cap-windows='));
  const capWindows = capArg === undefined ? 2 : Number(capArg.slice('--rate-cap-windows='.length));
  if (!Number.isInteger(capWindows) || capWindows < 1) throw new Error(`--rate-cap-windows must be a whole number of at least 1, not ${capArg}`);
  const deltaArg = args.find((a) => a.startsWith('--delta-rounds='));
  const deltaRounds = deltaArg === undefined ? 5 : Number(deltaArg.slice('--delta-rounds='.length));
  if (!Number.isInteger(deltaRounds) || deltaRounds < 1) throw new Error(`--delta-rounds must be a whole number of at least 1, not ${deltaArg}`);
  const downloadArg = args.find((a) => a.startsWith('--download-rounds='));
  const downloadRounds = downloadArg === undefined ? 5 : Number(downloadArg.slice('--download-rounds='.length));
  if (!Number.isInteger(downloadRounds) || downloadRounds < 1) throw new Error(`--download-rounds must be a whole number of at least 1, not ${downloadArg}`);
  const wanted = (part: string) => only.size === 0 || only.has(part);
  const work = mkdtempSync(join(tmpdir(), 'otad-bench-'));
  const lines: string[] = [];
  try {
    if (wanted('download')) lines.push(...downloadLines(await benchDownload({ rounds: downloadRounds })));

    if (wanted('hash')) {
      const blob = join(work, 'blob.bin');
      const buf = Buffer.alloc(256 << 20);
      randomFillSync(buf);
      writeFileSync(blob, buf);
      const ours = await time(() => hashFile(blob));
      lines.push(row('sha256 256 MiB', ours.ms, 'sha256sum', await baseline('sha256sum', [blob])));
    }

    if (wanted('package')) {
      const tree = join(work, 'tree');
      makeTree(tree, 4000, 64);
      const pkg = join(work, 'pkg.tar.gz');
      const created = await time(() => createPackage(tree, pkg, { level: 6 }));
      lines.push(row('package 4000 files + 64 MiB', created.ms, 'tar -czf', await baseline('tar', ['-czf', join(work, 'base.tar.gz'), '-C', tree, '.'])));

      // Ours and `tar -xzf` + `sync -f` alternated, three rounds, medians compared (a shared machine is noisy).
      const ours: number[] = [];
      const tars: number[] = [];
      for (let i = 0; i < 3; i++) {
        ours.push((await time(() => extractPackage(pkg, join(work, `extracted-${i}`)))).ms);
        const base = join(work, `base-extract-${i}`);
        mkdirSync(base);
        const t = await baseline('sh', ['-c', 'tar -xzf "$1" -C "$2" && sync -f "$2"', 'sh', pkg, base]);
        if (t !== null) tars.push(t);
      }
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      lines.push(row('safe extract, no index (med 3)', median(ours), 'tar -xzf+sync', tars.length === 3 ? median(tars) : null, '   (backups, schema 1.0; the staging goal is the delta part\'s row)'));
    }

    if (wanted('zstd')) {
      const c = await benchCompression(work, makeTree);
      const g = c.results.gzip;
      const z = c.results.zstd;
      const mib = (n: number) => `${(n / 2 ** 20).toFixed(2)} MiB`;
      const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)} ms`;
      lines.push(`${'package size zstd vs gzip'.padEnd(28)} zstd ${mib(z.bytes)}   gzip ${mib(g.bytes)}   ratio ${(z.bytes / g.bytes).toFixed(3)}   (4,000 small files + a 64 MiB model of random bytes)`);
      lines.push(row('package build zstd', z.buildMs, 'gzip', g.buildMs));
      lines.push(row(`unpack zstd (med ${c.rounds})`, median(z.unpackMs), 'gzip', median(g.unpackMs), `   (stage step's unpackPackage, alternated; zstd ${range(z.unpackMs)}, gzip ${range(g.unpackMs)})`));
    }

    if (wanted('delta')) {
      lines.push(...deltaLines(await benchDeltas(work, makeTree, deltaRounds), ''));
      // The same on a reflink filesystem, where the unchanged files' copies share blocks (XFS on a
      // loop device), and on btrfs, where the releases are subvolumes and the delta starts from a
      // snapshot. Each needs root, its mkfs and a free loop device; skipped with the reason otherwise.
      for (const [kind, label] of [['xfs', 'XFS'], ['btrfs', 'btrfs']] as const) {
        const scratch = await mountScratchFs(work, kind);
        if ('reason' in scratch) lines.push(`${`staging on ${label}`.padEnd(28)} skipped: ${scratch.reason}`);
        else {
          try {
            lines.push(...deltaLines(await benchDeltas(scratch.dir, makeTree, deltaRounds), `, ${label}`).filter((l) => l.startsWith('staging') || l.startsWith('full staging')));
          } finally {
            await scratch.unmount();
          }
        }
      }
    }

    if (wanted('otactl')) {
      const o = await benchOtactlStatus();
      const rss = (kib: number | null) => (kib === null ? 'n/a' : `${(kib / 1024).toFixed(0)} MiB`);
      lines.push(row(`otactl status (median of ${o.runs})`, o.oursMs, 'systemctl -v', o.baselineMs, `   peak rss ${rss(o.oursPeakRssKiB)} vs ${rss(o.baselinePeakRssKiB)}`));
      lines.push(row('  the same, against node -e ""', o.oursMs, 'node -e ""', o.nodeStartMs));
      if (o.oursCpuMs !== null && o.nodeStartCpuMs !== null) lines.push(row('  cpu time, against node -e ""', o.oursCpuMs, 'node -e ""', o.nodeStartCpuMs));
    }

    if (wanted('downtime')) lines.push(...downtimeLines(await benchDowntime({ runs: downtimeRuns })));
    if (wanted('window')) {
      // The 3 AM window of the demo product, with and without download ahead: on loopback, and
      // on a link shaped to 10 MiB/s (a good Wi-Fi link; a robot on LTE is slower still).
      for (const linkMiBps of [null, 10]) {
        const w = await benchInstallWindow({ modelMiB: 64, linkMiBps });
        const s = (ms: number | null) => `${((ms ?? 0) / 1000).toFixed(1)} s`;
        const link = linkMiBps === null ? 'loopback' : `${linkMiBps} MiB/s`;
        lines.push(
          row(`3 AM window, ahead (${link})`, w.ahead.ms ?? 0, 'not ahead', w.without.ms, `   staging ${s(w.without.stagingMs)} → ${s(w.ahead.stagingMs)}; staged ahead ${w.ahead.stagedAhead}; ${(w.downloadBytes / 1048576).toFixed(1)} MiB fetched during the day in ${s(w.aheadStagingMs)}; demo product + ${w.modelMiB} MiB model`),
        );
      }
    }
    if (wanted('ratecap')) lines.push(...rateCapLines(await benchRateCap({ windows: capWindows })));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(['otad benchmarks (ratio = ours / baseline)', ...lines, ''].join('\n'));
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${String(error)}\n`);
  process.exit(1);
});

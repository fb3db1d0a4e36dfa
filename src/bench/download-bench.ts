/**
 * Download benchmark, as issue 15 sets its goals: a real nginx on loopback serves a 256 MiB random
 * file; otad's target downloader (src/bench/download-child.ts: createProductDownloader with the
 * default settings, hashing while it writes, fsync, rename) runs in a child process of its own,
 * against `curl -s -o F URL && openssl dgst -sha256 F && sync -f F` from the same nginx. The two
 * alternate for several rounds, the one that goes first changing every round, and the medians are
 * compared:
 *
 * - wall: ours is the download() call inside the child (the daemon is already running when it
 *   downloads); the baseline is from the start of its shell to its exit, process starts included;
 * - CPU (user + sys): ours is the child's process.cpuUsage() across the download() call (every
 *   thread of the process); the baseline is what bash's `times` reports for the children it
 *   waited for (getrusage RUSAGE_CHILDREN, in milliseconds), the shell's own time added;
 * - memory: the child's peak RSS during the download (VmHWM, reset just before it starts) over its
 *   RSS once its modules are loaded, just before the download (idle).
 *
 * Never run by the test suite (it moves 256 MiB several times); run it with `npm run bench`.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ChildReport } from './download-child.js';
import { startBenchNginx } from './nginx.js';

const execFileP = promisify(execFile);

/** Goals of issue 15: wall ≤ 1.1×, CPU ≤ 1.5× the baseline; peak RSS ≤ idle + 16 MiB. */
export const DOWNLOAD_GOALS = { wallRatio: 1.1, cpuRatio: 1.5, peakOverIdleMiB: 16 } as const;

export interface DownloadRound {
  oursFirst: boolean;
  oursWallMs: number;
  oursCpuMs: number;
  oursUserMs: number;
  oursSysMs: number;
  /** Child's peak RSS during the download minus its idle RSS, MiB. */
  oursPeakOverIdleMiB: number;
  oursIdleMiB: number;
  oursPeakMiB: number;
  baseWallMs: number;
  baseCpuMs: number;
  baseUserMs: number;
  baseSysMs: number;
}

export interface DownloadBenchResult {
  bytes: number;
  rounds: DownloadRound[];
  wallMedianMs: { ours: number; base: number };
  cpuMedianMs: { ours: number; base: number };
  wallRatio: number;
  cpuRatio: number;
  /** The largest peak-over-idle of all rounds (the goal holds for every download). */
  peakOverIdleMiB: number;
  idleMiB: number;
  peakReset: boolean;
  hashesMatch: boolean;
  loadAverage: [number, number, number];
}

export interface BenchDownloadOptions {
  /** File size; default 256 MiB. */
  bytes?: number;
  /** Rounds of ours + baseline; default 5. */
  rounds?: number;
  /** Progress lines; default stderr. */
  print?: (line: string) => void;
}

export async function benchDownload(options: BenchDownloadOptions = {}): Promise<DownloadBenchResult> {
  const bytes = options.bytes ?? 256 * 1024 * 1024;
  const roundsWanted = options.rounds ?? 5;
  const print = options.print ?? ((line: string) => process.stderr.write(`${line}\n`));
  const dir = await mkdtemp(join(tmpdir(), 'otad-bench-download-'));
  const root = join(dir, 'www');
  const out = join(dir, 'out');
  try {
    await execFileP('mkdir', ['-p', root, out]);
    const expectedSha256 = await writeRandomFile(join(root, 'target.bin'), bytes);
    const nginx = await startBenchNginx(root, '/target.bin');
    const url = `${nginx.url}/target.bin`;
    const child = join(dirname(fileURLToPath(import.meta.url)), 'download-child.js');
    const rounds: DownloadRound[] = [];
    let hashesMatch = true;
    let peakReset = true;
    try {
      for (let i = 0; i < roundsWanted; i++) {
        const oursFirst = i % 2 === 0;
        let ours: ChildReport | null = null;
        let base: { wallMs: number; userMs: number; sysMs: number; sha256: string } | null = null;
        for (const who of oursFirst ? ['ours', 'base'] : ['base', 'ours']) {
          const dest = join(out, `${who}-${i}.bin`);
          if (who === 'ours') ours = await runOurs(child, url, dest, bytes, expectedSha256);
          else base = await runBaseline(url, dest);
          await rm(dest, { force: true });
        }
        const o = ours!;
        const b = base!;
        if (o.sha256 !== expectedSha256 || b.sha256 !== expectedSha256 || o.bytes !== bytes) hashesMatch = false;
        peakReset &&= o.peakReset;
        const round: DownloadRound = {
          oursFirst,
          oursWallMs: o.wallMs,
          oursCpuMs: o.userMs + o.sysMs,
          oursUserMs: o.userMs,
          oursSysMs: o.sysMs,
          oursPeakOverIdleMiB: (o.peakRssKiB - o.idleRssKiB) / 1024,
          oursIdleMiB: o.idleRssKiB / 1024,
          oursPeakMiB: o.peakRssKiB / 1024,
          baseWallMs: b.wallMs,
          baseCpuMs: b.userMs + b.sysMs,
          baseUserMs: b.userMs,
          baseSysMs: b.sysMs,
        };
        rounds.push(round);
        print(
          `  download round ${i + 1}/${roundsWanted} (${oursFirst ? 'ours first' : 'baseline first'}): ` +
            `ours ${round.oursWallMs.toFixed(0)} ms wall, ${round.oursCpuMs.toFixed(0)} ms cpu (user ${round.oursUserMs.toFixed(0)}, sys ${round.oursSysMs.toFixed(0)}), ` +
            `rss ${round.oursIdleMiB.toFixed(1)} → ${round.oursPeakMiB.toFixed(1)} MiB; ` +
            `baseline ${round.baseWallMs.toFixed(0)} ms wall, ${round.baseCpuMs.toFixed(0)} ms cpu (user ${round.baseUserMs.toFixed(0)}, sys ${round.baseSysMs.toFixed(0)})`,
        );
      }
    } finally {
      await nginx.stop();
    }
    const wallMedianMs = { ours: median(rounds.map((r) => r.oursWallMs)), base: median(rounds.map((r) => r.baseWallMs)) };
    const cpuMedianMs = { ours: median(rounds.map((r) => r.oursCpuMs)), base: median(rounds.map((r) => r.baseCpuMs)) };
    return {
      bytes,
      rounds,
      wallMedianMs,
      cpuMedianMs,
      wallRatio: wallMedianMs.ours / wallMedianMs.base,
      cpuRatio: cpuMedianMs.ours / cpuMedianMs.base,
      peakOverIdleMiB: Math.max(...rounds.map((r) => r.oursPeakOverIdleMiB)),
      idleMiB: median(rounds.map((r) => r.oursIdleMiB)),
      peakReset,
      hashesMatch,
      loadAverage: loadavg() as [number, number, number],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The lines `npm run bench` prints for the download part. */
export function downloadLines(d: DownloadBenchResult): string[] {
  const n = d.rounds.length;
  const verdict = (ok: boolean) => (ok ? 'PASS' : 'MISS');
  const spread = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
  const wallRatios = d.rounds.map((r) => r.oursWallMs / r.baseWallMs);
  const cpuRatios = d.rounds.map((r) => r.oursCpuMs / r.baseCpuMs);
  const label = (s: string) => s.padEnd(28);
  return [
    `${label(`download ${d.bytes >> 20} MiB, nginx (med ${n})`)} wall ours ${d.wallMedianMs.ours.toFixed(0)} ms, curl+openssl+sync ${d.wallMedianMs.base.toFixed(0)} ms: ratio ${d.wallRatio.toFixed(2)} (goal ≤ ${DOWNLOAD_GOALS.wallRatio.toFixed(2)}) ${verdict(d.wallRatio <= DOWNLOAD_GOALS.wallRatio)}` +
      `   round ratios ${spread(wallRatios, 2)}; ours ${spread(d.rounds.map((r) => r.oursWallMs))} ms, baseline ${spread(d.rounds.map((r) => r.baseWallMs))} ms`,
    `${label('  cpu (user + sys)')} ours ${d.cpuMedianMs.ours.toFixed(0)} ms, curl+openssl+sync ${d.cpuMedianMs.base.toFixed(0)} ms: ratio ${d.cpuRatio.toFixed(2)} (goal ≤ ${DOWNLOAD_GOALS.cpuRatio.toFixed(2)}) ${verdict(d.cpuRatio <= DOWNLOAD_GOALS.cpuRatio)}` +
      `   round ratios ${spread(cpuRatios, 2)}; ours ${spread(d.rounds.map((r) => r.oursCpuMs))} ms, baseline ${spread(d.rounds.map((r) => r.baseCpuMs))} ms`,
    `${label('  peak rss over idle')} ${d.peakOverIdleMiB.toFixed(1)} MiB (worst of ${n}; idle ${d.idleMiB.toFixed(1)} MiB; goal ≤ ${DOWNLOAD_GOALS.peakOverIdleMiB} MiB) ${verdict(d.peakOverIdleMiB <= DOWNLOAD_GOALS.peakOverIdleMiB)}` +
      `${d.peakReset ? '' : ' (VmHWM could not be reset: the peak covers the whole child)'}   sha256 ${d.hashesMatch ? 'matches' : 'MISMATCH'}; load average ${d.loadAverage.map((x) => x.toFixed(2)).join(' ')}`,
  ];
}

async function runOurs(child: string, url: string, dest: string, bytes: number, sha256: string): Promise<ChildReport> {
  const { stdout } = await execFileP(process.execPath, [child, url, dest, String(bytes), sha256], { maxBuffer: 1 << 20 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as ChildReport;
}

/** curl + openssl + sync under bash; `times` gives the children's CPU (and the shell's) in ms. */
async function runBaseline(url: string, dest: string): Promise<{ wallMs: number; userMs: number; sysMs: number; sha256: string }> {
  const script = 'set -e; curl -s -o "$1" "$2"; openssl dgst -sha256 "$1"; sync -f "$1"; times';
  const t0 = performance.now();
  const stdout = await new Promise<string>((resolve, reject) => {
    const p = spawn('bash', ['-c', script, 'bash', dest, url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (text += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`curl + openssl + sync failed (exit ${code}): ${err}`))));
  });
  const wallMs = performance.now() - t0;
  const sha256 = /= ([0-9a-f]{64})$/m.exec(stdout)?.[1];
  // `times`: the shell's user and sys on one line, its children's on the next ("0m0.123s 0m0.045s").
  const times = [...stdout.matchAll(/^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/gm)].map((m) => [Number(m[1]) * 60_000 + Number(m[2]) * 1000, Number(m[3]) * 60_000 + Number(m[4]) * 1000] as const);
  if (sha256 === undefined || times.length !== 2) throw new Error(`cannot read the output of curl + openssl + sync: ${stdout}`);
  return { wallMs, userMs: times[0]![0] + times[1]![0], sysMs: times[0]![1] + times[1]![1], sha256 };
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

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * `otactl status` latency: the built otactl asking a real, idle otad (the built daemon on a temp
 * state folder, API on a loopback port), against `systemctl --version` as the cost of starting a
 * small system tool, and `node -e ""` (the floor any Node.js command starts from). Runs alternate
 * so a busy machine slows all alike; medians are compared. Peak RSS comes from GNU time's %M
 * where /usr/bin/time exists.
 */
import { execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const GNU_TIME = '/usr/bin/time';

export interface OtactlBenchResult {
  runs: number;
  /** Median wall time of `otactl status` (spawn to exit), ms. */
  oursMs: number;
  /** Median wall time of `systemctl --version`; null when systemctl is missing. */
  baselineMs: number | null;
  /** Median wall time of `node -e ""`: what starting Node.js alone costs here. */
  nodeStartMs: number;
  oursPeakRssKiB: number | null;
  baselinePeakRssKiB: number | null;
  /** Median CPU time (user + system) of `otactl status` and of `node -e ""`: steadier than wall time on a busy machine. */
  oursCpuMs: number | null;
  nodeStartCpuMs: number | null;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

async function wallMs(cmd: string, args: string[]): Promise<number | null> {
  const t0 = performance.now();
  try {
    await run(cmd, args, { maxBuffer: 1 << 20 });
  } catch {
    return null;
  }
  return performance.now() - t0;
}

/** Peak RSS (KiB, the largest of `runs`) and median CPU ms of a command, from GNU time; nulls without it. */
async function resources(cmd: string, args: string[], runs = 5): Promise<{ peakRssKiB: number | null; cpuMs: number | null }> {
  if (!existsSync(GNU_TIME)) return { peakRssKiB: null, cpuMs: null };
  const rss: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    try {
      const { stderr } = await run(GNU_TIME, ['-f', 'otad-bench %M %U %S', cmd, ...args], { maxBuffer: 1 << 20 });
      const m = /otad-bench (\d+) ([\d.]+) ([\d.]+)/.exec(stderr);
      if (!m) continue;
      rss.push(Number(m[1]));
      cpu.push((Number(m[2]) + Number(m[3])) * 1000);
    } catch {
      // A failed run has no figures to give.
    }
  }
  return { peakRssKiB: rss.length ? Math.max(...rss) : null, cpuMs: cpu.length ? median(cpu) : null };
}

export async function benchOtactlStatus(opts: { runs?: number } = {}): Promise<OtactlBenchResult> {
  const runs = opts.runs ?? 21;
  const cli = fileURLToPath(new URL('../cli/', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'otad-bench-otactl-'));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir, { recursive: true });
  const tokensFile = join(dir, 'tokens.yaml');
  writeFileSync(tokensFile, 'tokens:\n  - name: bench\n    token: bench-0123456789abcdef-control\n    scope: control\n', { mode: 0o600 });
  chmodSync(tokensFile, 0o600);
  const configPath = join(dir, 'config.yaml');
  writeFileSync(
    configPath,
    // Block style, as the shipped examples are written: otactl reads it without loading the yaml
    // package (src/config/yaml-lite.ts); flow-style maps cost the ~20 ms of loading it.
    [
      'environment: test',
      'server:',
      '  url: http://127.0.0.1:9',
      '  checkIn: false',
      'paths:',
      `  stateDir: ${stateDir}`,
      `  trustedRoot: ${join(dir, 'root.json')}`,
      `  inhibitFile: ${join(dir, 'inhibit')}`,
      'logging:',
      '  level: warn',
      '  stdout: false',
      'api:',
      '  port: 0',
      `  tokensFile: ${tokensFile}`,
      'products:',
      '  - name: robot-ai',
      `    installPath: ${join(dir, 'opt/robot-ai')}`,
      '',
    ].join('\n'),
  );
  const otad = spawn(process.execPath, [join(cli, 'otad.js'), '--config', configPath], { stdio: 'ignore' });
  try {
    const apiFile = join(stateDir, 'api.json');
    const deadline = Date.now() + 30_000;
    while (!existsSync(apiFile) || !readFileSync(apiFile, 'utf8').includes('"url"')) {
      if (otad.exitCode !== null) throw new Error(`otad exited with ${otad.exitCode} before it listened`);
      if (Date.now() > deadline) throw new Error('otad did not write api.json within 30 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    const ours = [process.execPath, [join(cli, 'otactl.js'), '--config', configPath, 'status']] as const;
    const base = ['systemctl', ['--version']] as const;
    const bare = [process.execPath, ['-e', '']] as const;
    // A first run of each warms the page cache; it is not counted.
    if ((await wallMs(ours[0], [...ours[1]])) === null) throw new Error('otactl status failed against the bench daemon');
    await wallMs(base[0], [...base[1]]);
    const oursMs: number[] = [];
    const baseMs: number[] = [];
    const nodeMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      oursMs.push((await wallMs(ours[0], [...ours[1]])) as number);
      const b = await wallMs(base[0], [...base[1]]);
      if (b !== null) baseMs.push(b);
      nodeMs.push((await wallMs(bare[0], [...bare[1]])) as number);
    }
    const oursRes = await resources(ours[0], [...ours[1]]);
    const baseRes = await resources(base[0], [...base[1]]);
    const bareRes = await resources(bare[0], [...bare[1]]);
    return {
      runs,
      oursMs: median(oursMs),
      baselineMs: baseMs.length ? median(baseMs) : null,
      nodeStartMs: median(nodeMs),
      oursPeakRssKiB: oursRes.peakRssKiB,
      baselinePeakRssKiB: baseRes.peakRssKiB,
      oursCpuMs: oursRes.cpuMs,
      nodeStartCpuMs: bareRes.cpuMs,
    };
  } finally {
    otad.kill('SIGTERM');
    await new Promise((r) => (otad.exitCode !== null ? r(null) : otad.once('exit', r)));
    rmSync(dir, { recursive: true, force: true });
  }
}

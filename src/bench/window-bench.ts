/**
 * The 3 AM window with and without download ahead (`schedule.downloadAhead`), for the demo product
 * (the sample robot-ai of `npm run demo`, with a model file of `modelMiB` so the download is a
 * realistic share of the work). One real otad (real steps, in process) against the embedded
 * ota-server on loopback, optionally behind a proxy that shapes the link to `linkMiBps`:
 *  1. `downloadAhead: never`: 1.1.0 is scheduled; in the slot otad pre-checks, backs up,
 *     downloads, verifies, stages, switches, validates and commits;
 *  2. `downloadAhead: immediately`: 1.2.0 is scheduled, downloaded, verified and staged while otad
 *     waits; in the slot it verifies the staged tree again, backs up, switches, validates, commits.
 * The slot is reached by moving otad's wall clock to it and firing its deadlines (the monotonic
 * clock stays real, so every duration is measured, not computed). The window of each run is what
 * the run history records (Store.installWindow: pre-check to the end of the run).
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import YAML from 'yaml';
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { startOtad, type RunningOtad } from '../daemon/main.js';
import { writeSampleRelease } from '../demo/sample-app.js';
import { createPublisher } from '../repo/repository.js';
import { createServer as createOtaServer } from '../server/app.js';
import { createProcessServiceManager } from '../services/process-manager.js';
import { defaultStepProvider } from '../steps/provider.js';
import type { InstallWindow } from '../store/store.js';

export interface WindowBenchResult {
  modelMiB: number;
  linkMiBps: number | null;
  /** What the download ahead fetched for the second release (package or delta). */
  downloadBytes: number;
  without: InstallWindow;
  ahead: InstallWindow;
  /** How long the download ahead took during the day (staging ahead, ms). */
  aheadStagingMs: number;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** A loopback proxy whose answers are paced to `mibps` MiB/s (null: not shaped). */
async function shapedProxy(target: string, mibps: number | null): Promise<{ url: string; close(): Promise<void> }> {
  const upstream = new URL(target);
  const bytesPerMs = mibps === null ? null : (mibps * 1048576) / 1000;
  const server: Server = createServer((req, res) => {
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (bytesPerMs === null) {
        up.pipe(res);
        return;
      }
      const t0 = performance.now();
      let sent = 0;
      up.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        res.write(chunk);
        const ahead = sent / bytesPerMs - (performance.now() - t0);
        if (ahead > 1) {
          up.pause();
          setTimeout(() => up.resume(), ahead);
        }
      });
      up.on('end', () => res.end());
      up.on('error', () => res.destroy());
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function waitFor<T>(what: string, probe: () => T | null | undefined | false, timeoutMs = 600_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function benchInstallWindow(opts: { modelMiB?: number; linkMiBps?: number | null } = {}): Promise<WindowBenchResult> {
  const modelMiB = opts.modelMiB ?? 64;
  const linkMiBps = opts.linkMiBps ?? null;
  const root = mkdtempSync(join(tmpdir(), 'otad-window-bench-'));
  const paths = { repo: join(root, 'server/repo'), keys: join(root, 'server/keys'), build: join(root, 'build'), etc: join(root, 'etc'), state: join(root, 'state'), opt: join(root, 'opt') };
  for (const p of Object.values(paths)) mkdirSync(p, { recursive: true });
  const installPath = join(paths.opt, 'robot-ai');
  const appPort = await freePort();
  const command = [process.execPath, join(installPath, 'bin/robot-ai.mjs')];
  const units = createProcessServiceManager({ units: [{ name: 'robot-ai', command }], stateDir: join(paths.state, 'services', 'robot-ai'), logger: silentLogger });
  const release = (dir: string, version: string) => {
    writeSampleRelease(dir, { version, notes: `robot-ai ${version}` }, appPort);
    mkdirSync(join(dir, 'models'), { recursive: true });
    const model = Buffer.alloc(modelMiB << 20);
    randomFillSync(model);
    writeFileSync(join(dir, 'models/planner.bin'), model);
  };
  const publisher = createPublisher({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock });
  const { rootFile } = await publisher.init();
  const ota = createOtaServer({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock, logger: silentLogger, timestampRefresh: false });
  const { url } = await ota.start(0, '127.0.0.1');
  const proxy = await shapedProxy(url, linkMiBps);
  let offsetMs = 0;
  const clock: Clock = { now: () => Date.now() + offsetMs, monotonic: () => performance.now() };
  let running: RunningOtad | null = null;
  try {
    release(installPath, '1.0.0');
    await units.start('robot-ai');
    cpSync(rootFile, join(paths.etc, 'root.json'));
    const configPath = join(paths.etc, 'config.yaml');
    const writeConfig = (downloadAhead: string) => {
      // The install slot two hours from otad's clock: only the bench moves the clock there.
      const slot = new Date(clock.now() + 2 * 3600_000);
      writeFileSync(
        configPath,
        YAML.stringify({
          environment: 'test',
          server: { url: proxy.url, connectTimeout: '5s' },
          paths: { stateDir: paths.state, trustedRoot: join(paths.etc, 'root.json'), inhibitFile: join(root, 'run/inhibit') },
          logging: { level: 'warn', stdout: false },
          api: { enabled: false },
          decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
          products: [
            {
              name: 'robot-ai',
              type: 'robot-ai',
              installPath,
              services: [],
              processUnits: [{ name: 'robot-ai', command }],
              healthChecks: [{ kind: 'http', url: `http://127.0.0.1:${appPort}/health`, timeout: '2s' }],
              // The demo's probation is 3 s; a short one keeps the comparison about the download.
              probation: { window: '1s', interval: '200ms', failureThreshold: 3 },
              preservedPaths: ['config'],
              precheck: { minBatteryPercent: 0, retryInterval: '5s' },
              schedule: { installAt: `${String(slot.getHours()).padStart(2, '0')}:${String(slot.getMinutes()).padStart(2, '0')}`, window: '0s', downloadAhead },
            },
          ],
        }),
      );
    };

    const installAtSlot = async (version: string, downloadAhead: 'never' | 'immediately'): Promise<{ window: InstallWindow; aheadStagingMs: number; downloadBytes: number }> => {
      writeConfig(downloadAhead);
      const dir = join(paths.build, version);
      release(dir, version);
      await publisher.add({ product: 'robot-ai', version, sourceDir: dir, notes: `robot-ai ${version}` });
      await publisher.publish();
      rmSync(dir, { recursive: true, force: true });
      running = await startOtad({ configPath, clock, stepProvider: defaultStepProvider() });
      const daemon = running.daemon;
      const product = () => daemon.status().products[0]!;
      await daemon.dispatch({ product: 'robot-ai', type: 'CHECK_NOW', source: 'cli' });
      await waitFor(`the offer of ${version}`, () => product().state === 'awaitingChoice');
      await daemon.dispatch({ product: 'robot-ai', type: 'SCHEDULE_3AM', source: 'cli' });
      let aheadStagingMs = 0;
      let downloadBytes = 0;
      if (downloadAhead === 'immediately') {
        const t0 = performance.now();
        const a = await waitFor(`${version} staged ahead`, () => {
          const s = product().downloadAhead;
          if (s?.state === 'failed') throw new Error(`download ahead of ${version} failed: ${s.reason}`);
          return s?.state === 'staged' ? s : null;
        });
        aheadStagingMs = performance.now() - t0;
        downloadBytes = a.downloadBytes ?? 0;
      }
      const slot = product().deadlines.scheduledAt as number;
      offsetMs = Math.max(offsetMs, slot + 1000 - Date.now());
      daemon.onTimer();
      await waitFor(`the install of ${version} in the slot`, () => product().state === 'idle' && product().installedVersion === version);
      if (product().lastOutcome !== 'committed') throw new Error(`the install of ${version} ended ${product().lastOutcome}`);
      const run = daemon.history({ product: 'robot-ai', limit: 5 }).find((r) => r.toVersion === version && r.outcome === 'committed');
      const window = run?.window;
      if (!window || window.ms === null) throw new Error(`no install window recorded for ${version}`);
      await running.shutdown('bench step done');
      running = null;
      return { window, aheadStagingMs, downloadBytes };
    };

    const without = await installAtSlot('1.1.0', 'never');
    const ahead = await installAtSlot('1.2.0', 'immediately');
    return { modelMiB, linkMiBps, downloadBytes: ahead.downloadBytes, without: without.window, ahead: ahead.window, aheadStagingMs: Math.round(ahead.aheadStagingMs) };
  } finally {
    const r = running as RunningOtad | null;
    await r?.shutdown('bench finished').catch(() => {});
    await units.stop('robot-ai').catch(() => {});
    await proxy.close().catch(() => {});
    await ota.close().catch(() => {});
    rmSync(root, { recursive: true, force: true });
  }
}

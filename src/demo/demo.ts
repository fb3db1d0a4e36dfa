/**
 * `npm run demo`: a full update cycle on this machine, without root, in a sandbox folder.
 *
 * An operator publishes signed releases with the ota-repo library to an embedded ota-server on
 * loopback; otad (real steps, real interfaces) manages a demo "robot-ai" installed as a plain
 * folder. Acting as the robot's app over the REST API, the demo checks, chooses UPDATE_NOW, and
 * watches otad back up, download and verify, stage, switch, restart the service and commit 1.1.0.
 * Then a broken 1.2.0 fails its health checks and otad rolls back to 1.1.0 by itself, and marks
 * 1.2.0 bad so it is not offered again. Exit code 0 when everything happened as it should.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { systemClock } from '../core/clock.js';
import { silentLogger } from '../core/logger.js';
import { createPublisher } from '../repo/repository.js';
import { createServer as createOtaServer } from '../server/app.js';
import { startOtad, type RunningOtad } from '../daemon/main.js';
import { defaultStepProvider } from '../steps/provider.js';
import { defaultInterfaces } from '../api/interfaces.js';
import { ApiClient } from '../api/client.js';
import type { DaemonStatus } from '../daemon/control.js';
import { createProcessServiceManager } from '../services/process-manager.js';
import { writeSampleRelease } from './sample-app.js';

const keep = process.argv.includes('--keep');
const out = (line = '') => process.stdout.write(line + '\n');
const step = (title: string) => out(`\n== ${title}`);

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

async function waitFor<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function appHealth(port: number): Promise<{ ok: boolean; version: string } | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as { ok: boolean; version: string };
  } catch {
    return null;
  }
}

interface DemoDowntime {
  totalMs: number | null;
  stopMs: number;
  switchMs: number;
  startMs: number;
  probeMs: number;
  waitMs: number;
  otadMs: number | null;
  greenOn: 'new' | 'old' | null;
  note: string | null;
}

const msText = (ms: number): string => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`);

/** One line with the run's downtime and its split, as otad measured and saved it. */
function downtimeLine(d: DemoDowntime | null | undefined): string {
  if (!d) return 'no downtime recorded';
  if (d.totalMs === null || d.otadMs === null) return `downtime not measured: ${d.note ?? 'still open'}`;
  return (
    `downtime ${msText(d.totalMs)} until green on the ${d.greenOn === 'old' ? 'old' : 'new'} release: ` +
    `stop ${msText(d.stopMs)}, switch ${msText(d.switchMs)}, start ${msText(d.startMs)}, first green probe ${msText(d.probeMs)} ` +
    `(of which product start-up and probe interval ${msText(d.waitMs)}); otad's own share ${msText(d.otadMs)}`
  );
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`demo expectation failed: ${message}`);
  out(`   ✓ ${message}`);
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'otad-demo-'));
  const paths = {
    repo: join(root, 'server/repo'),
    keys: join(root, 'server/keys'),
    build: join(root, 'build'),
    etc: join(root, 'etc/ota'),
    state: join(root, 'var/lib/ota'),
    opt: join(root, 'opt'),
  };
  for (const p of Object.values(paths)) mkdirSync(p, { recursive: true });
  const appPort = await freePort();
  let running: RunningOtad | null = null;
  let server: { close(): Promise<void> } | null = null;
  const units = createProcessServiceManager({
    units: [{ name: 'robot-ai', command: [process.execPath, join(paths.opt, 'robot-ai/bin/robot-ai.mjs')] }],
    stateDir: join(paths.state, 'services', 'robot-ai'),
    logger: silentLogger,
  });

  try {
    out(`otad demo — sandbox ${root}`);

    step('The operator creates a signed repository and starts ota-server on loopback');
    const publisher = createPublisher({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock });
    const { rootFile } = await publisher.init();
    const ota = createOtaServer({ repoDir: paths.repo, keysDir: paths.keys, clock: systemClock, logger: silentLogger, timestampRefresh: false });
    const { url } = await ota.start(0, '127.0.0.1');
    server = ota;
    out(`   repository ${paths.repo}, served at ${url}`);

    step('The robot runs robot-ai 1.0.0, installed as a plain folder');
    writeSampleRelease(join(paths.opt, 'robot-ai'), { version: '1.0.0', notes: 'first release' }, appPort);
    await units.start('robot-ai');
    await waitFor('robot-ai 1.0.0 to answer', () => appHealth(appPort));
    out(`   http://127.0.0.1:${appPort}/health → ${JSON.stringify(await appHealth(appPort))}`);

    cpSync(rootFile, join(paths.etc, 'root.json'));
    const token = 'demo-control-token-0123456789abcdef';
    writeFileSync(join(paths.etc, 'tokens.yaml'), YAML.stringify({ tokens: [{ name: 'robot-ai-app', token, scope: 'control' }] }), { mode: 0o600 });
    const configPath = join(paths.etc, 'config.yaml');
    writeFileSync(
      configPath,
      YAML.stringify({
        environment: 'test',
        server: { url, connectTimeout: '5s' },
        paths: { stateDir: paths.state, trustedRoot: join(paths.etc, 'root.json'), inhibitFile: join(root, 'run/ota/inhibit') },
        logging: { level: 'info', file: join(root, 'otad.log'), stdout: false },
        api: { host: '127.0.0.1', port: 0, tokensFile: join(paths.etc, 'tokens.yaml') },
        decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
        products: [
          {
            name: 'robot-ai',
            type: 'robot-ai',
            installPath: join(paths.opt, 'robot-ai'),
            services: [],
            processUnits: [{ name: 'robot-ai', command: [process.execPath, join(paths.opt, 'robot-ai/bin/robot-ai.mjs')] }],
            healthChecks: [{ kind: 'http', url: `http://127.0.0.1:${appPort}/health`, timeout: '2s' }],
            probation: { window: '3s', interval: '500ms', failureThreshold: 2 },
            preservedPaths: ['config'],
            precheck: { minBatteryPercent: 0, retryInterval: '5s' },
          },
        ],
      }),
    );

    step('otad starts (real steps, REST and Socket.IO on loopback)');
    running = await startOtad({ configPath, stepProvider: defaultStepProvider(), startInterfaces: defaultInterfaces });
    const daemon = running.daemon;
    daemon.bus.subscribe('transition', (t) => {
      out(`   ${t.product}: ${t.from} → ${t.to}  (${t.cause})`);
    });
    let lastPct = -1;
    daemon.bus.subscribe('progress', (p) => {
      const pct = p.total ? Math.floor((100 * p.bytes) / p.total) : -1;
      if (pct >= 0 && pct !== lastPct && (pct === 100 || pct - lastPct >= 25)) {
        lastPct = pct;
        out(`   ${p.step}: ${pct}% of ${p.total} bytes`);
      }
    });
    const apiFile = YAML.parse(await import('node:fs').then((fs) => fs.readFileSync(join(paths.state, 'api.json'), 'utf8'))) as { url: string };
    const app = new ApiClient(apiFile.url, token);
    const status = async () => (await app.request<DaemonStatus>('GET', '/api/v1/status')).products[0]!;
    out(`   API at ${apiFile.url}; device ${daemon.deviceId}; robot-ai is ${(await status()).state}`);

    step('The operator publishes robot-ai 1.1.0');
    writeSampleRelease(join(paths.build, '1.1.0'), { version: '1.1.0', notes: 'Smoother path planning; battery estimate fixed.' }, appPort);
    await publisher.add({ product: 'robot-ai', version: '1.1.0', sourceDir: join(paths.build, '1.1.0'), notes: 'Smoother path planning; battery estimate fixed.' });
    await publisher.publish();

    step('The robot app asks for a check, reads the notes, and chooses UPDATE_NOW');
    await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    let s = await waitFor('the offer', async () => ((await status()).state === 'awaitingChoice' ? status() : null));
    out(`   offered ${s.offeredVersion}: "${s.releaseNotes}"; allowed now: ${s.allowedEvents.join(', ')}`);
    check(s.offeredVersion === '1.1.0', 'otad offers 1.1.0 and waits for a choice');
    // A deliberate mistake, to show how otad answers an event it does not know.
    out('   (on purpose, a wrong choice first: UPDATE_LATER is not one of the two choices)');
    let refusal: string | null = null;
    try {
      await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'UPDATE_LATER' });
    } catch (error) {
      refusal = (error as Error).message;
      out(`   UPDATE_LATER → ${refusal}`);
    }
    check(refusal !== null, 'otad refuses the wrong choice and still waits for one of the two');
    await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'UPDATE_NOW' });
    s = await waitFor('the update to finish', async () => {
      const st = await status();
      return st.state === 'idle' && st.lastOutcome ? st : null;
    });
    check(s.lastOutcome === 'committed' && s.installedVersion === '1.1.0', 'robot-ai 1.1.0 is committed');
    const h1 = await waitFor('robot-ai 1.1.0 to answer', async () => ((await appHealth(appPort))?.version === '1.1.0' ? appHealth(appPort) : null));
    check(h1.version === '1.1.0', `the service was restarted on the new release: /health → ${JSON.stringify(h1)}`);
    const d1 = (s as { lastDowntime?: DemoDowntime | null }).lastDowntime;
    out(`   ${downtimeLine(d1)}`);
    check(d1?.totalMs != null && d1.greenOn === 'new', 'otad measured the downtime of the update, from the first stop to the first green probe round');

    step('The operator publishes a broken 1.2.0: otad must roll back by itself');
    writeSampleRelease(join(paths.build, '1.2.0'), { version: '1.2.0', notes: 'Experimental planner.', broken: true }, appPort);
    await publisher.add({ product: 'robot-ai', version: '1.2.0', sourceDir: join(paths.build, '1.2.0'), notes: 'Experimental planner.' });
    await publisher.publish();
    await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    await waitFor('the offer of 1.2.0', async () => ((await status()).state === 'awaitingChoice' ? true : null));
    await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'UPDATE_NOW' });
    s = await waitFor('the run to end', async () => {
      const st = await status();
      return st.state === 'idle' && st.lastOutcome ? st : null;
    });
    check(s.lastOutcome === 'rolled-back' && s.installedVersion === '1.1.0', `1.2.0 was rolled back (${s.error?.code ?? 'no error'}): robot-ai is on 1.1.0`);
    const h2 = await waitFor('robot-ai 1.1.0 to answer again', async () => ((await appHealth(appPort))?.version === '1.1.0' ? appHealth(appPort) : null));
    check(h2.ok, `the service answers from 1.1.0 again: /health → ${JSON.stringify(h2)}`);
    const d2 = (s as { lastDowntime?: DemoDowntime | null }).lastDowntime;
    out(`   ${downtimeLine(d2)}`);
    check(d2?.totalMs != null && d2.greenOn === 'old', 'the rollback run counts its downtime until 1.1.0 is green again');

    step('The next check does not offer the release that was rolled back');
    await app.request('POST', '/api/v1/events', { product: 'robot-ai', type: 'CHECK_NOW' });
    s = await waitFor('the check', async () => {
      const st = await status();
      return st.state === 'idle' && st.lastOutcome ? st : null;
    });
    check(s.lastOutcome === 'up-to-date', '1.2.0 is marked bad and not offered again');

    step('History');
    const { runs } = await app.request<{ runs: Array<{ runId: string; kind: string; fromVersion: string | null; toVersion: string | null; outcome: string; downtime: DemoDowntime | null }> }>(
      'GET',
      '/api/v1/history?product=robot-ai',
    );
    for (const r of [...runs].reverse()) out(`   ${r.runId}  ${r.kind.padEnd(8)} ${String(r.fromVersion ?? '-').padEnd(6)} → ${String(r.toVersion ?? '-').padEnd(6)} ${r.outcome.padEnd(11)}${r.downtime?.totalMs != null ? ` downtime ${msText(r.downtime.totalMs)}` : ''}`);

    step('Downtime on the metrics endpoint (Prometheus text)');
    const metricsRes = await fetch(`${apiFile.url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    const metricsText = await metricsRes.text();
    const downtimeLines = metricsText.split('\n').filter((l) => /^otad_last_downtime_seconds\{|^otad_downtime_seconds_count\{[^}]*part="total"/.test(l));
    for (const l of downtimeLines) out(`   ${l}`);
    check(metricsRes.ok && downtimeLines.some((l) => l.startsWith('otad_last_downtime_seconds{') && l.includes('part="otad"')), 'the metrics carry the last downtime and its split');
    out('\nThe demo passed: a full update, an automatic rollback, and no bad release offered twice.');
  } finally {
    await units.stop('robot-ai').catch(() => {});
    await running?.shutdown('demo finished').catch(() => {});
    await server?.close().catch(() => {});
    if (keep) out(`sandbox kept at ${root}`);
    else rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`\ndemo failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);

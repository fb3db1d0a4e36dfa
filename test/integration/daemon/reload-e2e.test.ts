/**
 * SIGHUP on the REAL otad (dist/src/cli/otad.js, real steps): a signed repository served by a real
 * ota-server behind two counting HTTP servers on loopback, A and B. The robot starts on A; the
 * configuration is switched to B while a run waits for its choice. That run finishes against A
 * (a run keeps the steps it started with); the next run's metadata and package requests reach B,
 * and A sees none. The same reload changes the log level, the daily check time and a pre-check
 * threshold, and each is seen in effect.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { readSaved, waitUntil } from '../../support/otad-process.js';

/** A loopback server that forwards every request to `target` and remembers its path. */
async function countingServer(target: string): Promise<{ url: string; paths: string[]; close(): Promise<void> }> {
  const upstream = new URL(target);
  const paths: string[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    paths.push(req.url ?? '');
    const forward = httpRequest(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    paths,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Status = { products: Array<{ product: string; state: string; runId: string | null; lastOutcome: string | null; installedVersion: string | null; nextCheckAt: number | null; preCheckReasons: Array<{ code: string }> }> };

describe.skipIf(process.env.OTA_SKIP_CRASH === '1')('reloading the configuration of a running otad (SIGHUP)', () => {
  let world: CrashWorld | null = null;
  const servers: Array<{ close(): Promise<void> }> = [];
  afterAll(async () => {
    for (const s of servers) await s.close();
    await world?.close();
  });

  it('sends the next run to the new server while the run in flight finishes on the old one, and applies level, schedule and pre-check thresholds', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    world = await createCrashWorld({ seed: 994234580, bigFileBytes: 64 * 1024 });
    const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as {
      server: { url: string };
      logging: { level: string };
      products: Array<Record<string, unknown> & { decision: Record<string, unknown>; schedule: Record<string, unknown>; precheck: Record<string, unknown> }>;
    };
    const a = await countingServer(doc.server.url);
    const b = await countingServer(doc.server.url);
    servers.push(a, b);
    const product = doc.products[0]!;
    // The run waits in awaitingChoice until the test chooses.
    product.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
    const checkAt = product.schedule.checkAt as string;
    const writeConfig = () => writeFileSync(world!.sandbox.configPath, YAML.stringify(doc));
    doc.server.url = a.url;
    writeConfig();

    const first = await world.publishNext();
    const daemon: RunningDaemon = await world.startOtad();
    const db = world.sandbox.dbPath;
    const status = async () => (await daemon.api.request<Status>('GET', '/api/v1/status')).products.find((p) => p.product === PRODUCT)!;
    const dispatch = (type: string) => daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type });
    const waitState = (state: string, runId: string) =>
      waitUntil(() => {
        const s = readSaved(db);
        return s?.state === state && s.runId === runId ? s : null;
      }, { timeoutMs: 60_000, intervalMs: 20, what: `run ${runId} to reach ${state}` });
    const log = () => readFileSync(world!.sandbox.logPath, 'utf8');
    const targets = (paths: string[]) => paths.filter((p) => p.includes('/targets/'));
    // Check-ins are not part of a run: they follow the server at once (asserted at the end).
    const runRequests = (paths: string[]) => paths.filter((p) => !p.startsWith('/api/v1/checkin'));

    // Run 1 checks against A and waits for a choice.
    const run1 = (await dispatch('CHECK_NOW')).runId;
    await waitState('awaitingChoice', run1);
    expect(a.paths.some((p) => p.includes('timestamp.json'))).toBe(true);
    expect(b.paths).toEqual([]);
    const nextCheckBefore = (await status()).nextCheckAt;

    // One reload: server B, debug logging, a daily check one hour later.
    doc.server.url = b.url;
    doc.logging.level = 'debug';
    const [h, m] = checkAt.split(':').map(Number) as [number, number];
    product.schedule = { ...product.schedule, checkAt: `${String((h + 1) % 24).padStart(2, '0')}:${String(m).padStart(2, '0')}` };
    writeConfig();
    daemon.proc.child.kill('SIGHUP');
    const line = await waitUntil(() => log().split('\n').find((l) => l.includes('"message":"configuration reloaded"')), { what: 'the reload line' });
    const report = JSON.parse(line) as { changed: string[]; applied: string[]; needsRestart: string[] };
    expect([...report.changed].sort()).toEqual(['logging.level', `products.${PRODUCT}.schedule.checkAt`, 'server.url']);
    expect(report.applied).toEqual(report.changed);
    expect(report.needsRestart).toEqual([]);
    const audit = await waitUntil(() => log().split('\n').find((l) => l.includes('"message":"audit: configuration reloaded"')), { what: 'the reload audit event' });
    expect(JSON.parse(audit)).toMatchObject({ message: 'audit: configuration reloaded', changed: report.changed, applied: report.applied, needsRestart: [] });
    // The schedule and the log level are in effect at once.
    expect((await status()).nextCheckAt).toBe(nextCheckBefore! + 3600_000);

    // Run 1 finishes as it started: its package comes from A, and B hears nothing.
    const aBeforeChoice = a.paths.length;
    await dispatch('UPDATE_NOW');
    const done1 = await waitState('idle', run1);
    expect(done1.context.lastOutcome).toBe('committed');
    expect(done1.context.installedVersion).toBe(first.version);
    expect(targets(a.paths.slice(aBeforeChoice)).some((p) => p.endsWith('.tar.gz'))).toBe(true);
    expect(runRequests(b.paths)).toEqual([]);

    // Run 2 is the next run: every request reaches B, none reaches A.
    const second = await world.publishNext();
    const aAfterRun1 = a.paths.length;
    const run2 = (await dispatch('CHECK_NOW')).runId;
    await waitState('awaitingChoice', run2);
    await dispatch('UPDATE_NOW');
    const done2 = await waitState('idle', run2);
    expect(done2.context.lastOutcome).toBe('committed');
    expect(done2.context.installedVersion).toBe(second.version);
    expect(a.paths.slice(aAfterRun1)).toEqual([]);
    expect(b.paths.some((p) => p.includes('timestamp.json'))).toBe(true);
    expect(targets(b.paths).some((p) => p.endsWith('.tar.gz'))).toBe(true);
    // The check-ins moved with the reload: the one at start went to A, those after runs to B.
    expect(a.paths.filter((p) => p.startsWith('/api/v1/checkin')).length).toBeGreaterThan(0);
    await waitUntil(() => b.paths.filter((p) => p.startsWith('/api/v1/checkin')).length >= 2, { what: 'the check-ins of both runs to reach B' });
    // Debug lines are written now (the level was info at start).
    expect(log().split('\n').some((l) => l.includes('"level":"debug"'))).toBe(true);

    // A pre-check threshold: the next run's pre-check asks for more free disk than there is.
    product.precheck = { ...product.precheck, minFreeBytes: 1e15 };
    writeConfig();
    daemon.proc.child.kill('SIGHUP');
    await waitUntil(() => log().split('\n').filter((l) => l.includes('"message":"configuration reloaded"')).length === 2, { what: 'the second reload' });
    await world.publishNext();
    const run3 = (await dispatch('CHECK_NOW')).runId;
    await waitState('awaitingChoice', run3);
    await dispatch('UPDATE_NOW');
    await waitState('preCheckWaiting', run3);
    expect((await status()).preCheckReasons.map((r) => r.code)).toContain('DISK_SPACE_LOW');
    await daemon.proc.kill('SIGTERM');
  }, 180_000);
});

/**
 * Rehearsal on the REAL otad (dist/src/cli/otad.js, real steps) against a real ota-server on
 * loopback, through the real otactl, REST and D-Bus (a private dbus-daemon): the check, pre-check,
 * download and staging run for real into a scratch folder. The whole install root (the install,
 * the releases, the staging place, every mode and mtime) hashes the same before and after, the
 * product's service keeps its pid, the machine gets no run, the scratch folder is gone, and every
 * field of the report is there and true: the download is the signed package's length, the
 * services are the product's, and the downtime says "no history" until a committed run exists,
 * then is predicted from that run's apply step.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import YAML from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import type { RehearsalReport } from '../../../src/daemon/rehearsal.js';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { REPO_ROOT, query, readSaved, waitUntil } from '../../support/otad-process.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from '../api/private-bus.js';

const run = promisify(execFile);
const OTACTL = join(REPO_ROOT, 'dist/src/cli/otactl.js');
const BUS_NAME = 'io.otad.Daemon1';

/** Every entry under `root`: path, type, mode, size, mtime, and the content's or link's hash. */
function hashTree(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const kind = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
      const content = kind === 'file' ? createHash('sha256').update(readFileSync(p)).digest('hex') : kind === 'link' ? readlinkSync(p) : '';
      out.set(p.slice(root.length), `${kind} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${content}`);
      if (kind === 'dir') walk(p);
    }
  };
  walk(root);
  return out;
}

function servicePid(world: CrashWorld): number {
  const rec = JSON.parse(readFileSync(join(world.sandbox.stateDir, 'services', PRODUCT, `${PRODUCT}.pid`), 'utf8')) as { pid: number };
  expect(existsSync(`/proc/${rec.pid}`)).toBe(true);
  return rec.pid;
}

describe.skipIf(process.env.OTA_SKIP_CRASH === '1')('rehearsal (real otad, real server, otactl, REST and D-Bus)', () => {
  let world: CrashWorld | null = null;
  let bus: PrivateBus | null = null;
  let peer: dbus.MessageBus | null = null;
  let busDir: string | null = null;
  afterAll(async () => {
    peer?.disconnect();
    await world?.close(process.env.OTA_TEST_KEEP === '1');
    await bus?.stop();
    if (busDir) rmSync(busDir, { recursive: true, force: true });
  });

  it('rehearses for real and changes nothing under the install path; the downtime comes from history once there is one', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    world = await createCrashWorld({ seed: 8801, bigFileBytes: 1024 * 1024, brokenEvery: 1000 });
    const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as Record<string, unknown> & { products: Array<Record<string, unknown>> };
    // The robot's app answers nothing: no run starts unless the test asks for one.
    doc.products[0]!.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
    if (hasDbusDaemon) {
      busDir = mkdtempSync(join(tmpdir(), 'otad-rehearse-bus-'));
      bus = await startPrivateBus(busDir);
      doc.dbus = { enabled: true, bus: bus.address, name: BUS_NAME };
    }
    writeFileSync(world.sandbox.configPath, YAML.stringify(doc));
    // Its pre-apply hook holds the install in apply for a few seconds (to ask for a rehearsal then).
    const first = await world.publishNext({ preApplyHook: '#!/bin/sh\nsleep 4\n' });
    const d: RunningDaemon = await world.startOtad();
    const tokens = join(world.root, 'etc/tokens.yaml');
    const otactl = async (...args: string[]) => {
      const r = await run(process.execPath, [OTACTL, '--url', d.url, '--token-file', tokens, ...args], { cwd: REPO_ROOT, timeout: 120_000 }).catch((e: { stdout: string; stderr: string; code: number }) => e);
      return { stdout: r.stdout, stderr: r.stderr, code: (r as { code?: number }).code ?? 0 };
    };
    const root = world.sandbox.installRoot;

    // 1. No history yet: the downtime is "no history", not a number.
    const tree0 = hashTree(root);
    const pid0 = servicePid(world);
    const r1 = await otactl('--json', 'rehearse', PRODUCT);
    expect(r1.code, r1.stderr).toBe(0);
    const report = JSON.parse(r1.stdout) as RehearsalReport;
    expect(hashTree(root)).toEqual(tree0);
    expect(servicePid(world)).toBe(pid0);
    expect(existsSync(report.scratchDir)).toBe(false);
    expect(readSaved(world.sandbox.dbPath)?.state).toBe('idle');
    expect(query(world.sandbox.dbPath, 'SELECT run_id FROM runs')).toEqual([]);

    const pkg = readdirSync(join(world.root, 'server/repo/targets'), { recursive: true }).map(String).find((f) => f.endsWith('.tar.gz') && f.includes(first.version))!;
    const pkgBytes = lstatSync(join(world.root, 'server/repo/targets', pkg)).size;
    expect(report).toMatchObject({
      product: PRODUCT,
      installedVersion: '1.0.0',
      available: true,
      version: first.version,
      stoppedAt: null,
      error: null,
      download: { bytes: pkgBytes, what: 'package' },
      services: { manager: 'process', units: [PRODUCT], wouldRestart: [PRODUCT] },
      preCheck: { ok: true },
      downtime: { predictedMs: null, downtimeRecords: 'no history', applyStep: null },
    });
    expect(report.downtime.basis).toMatch(/^no history/);
    expect(report.staged).toMatchObject({ via: 'package', indexVerified: true });
    expect(report.staged!.entries).toBeGreaterThan(3);
    expect(report.staged!.bytes).toBeGreaterThanOrEqual(1024 * 1024);
    expect(report.disk!.totalBytes).toBe(report.disk!.downloadBytes + report.disk!.stagedBytes + report.disk!.backupBytes + report.disk!.minFreeBytes);
    expect(report.disk!.downloadBytes).toBe(pkgBytes);
    expect(report.disk!.backupBytes).toBeGreaterThan(0);
    const conditions = report.preCheck!.verdicts.map((v) => `${v.condition}:${v.verdict}`);
    expect(conditions).toEqual(expect.arrayContaining(['disk space:pass', 'network:pass', 'power:pass', 'inhibitors:pass', 'fleet gate:not-asked', 'maintenance window:not-asked']));
    const audit = query<{ message: string }>(world.sandbox.dbPath, "SELECT message FROM audit WHERE kind = 'rehearsal' ORDER BY id");
    expect(audit.map((a) => a.message)).toEqual([expect.stringMatching(/^rehearsal of robot-ai started \(rest/), expect.stringContaining(`${first.version}, ${pkgBytes} bytes to download`)]);

    // 2. The text otactl prints says the same.
    const text = await otactl('rehearse');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`would install: ${first.version}`);
    expect(text.stdout).toContain(`download: ${(pkgBytes / 1048576).toFixed(1)} MiB (${pkgBytes} bytes), package`);
    expect(text.stdout).toContain(`services that would restart (process): ${PRODUCT}`);
    expect(text.stdout).toContain('predicted downtime: no history');
    expect(hashTree(root)).toEqual(tree0);
    expect(servicePid(world)).toBe(pid0);

    // 3. D-Bus: Manager1.Rehearse with named, typed results (from dbus-next and gdbus).
    if (bus !== null) {
      peer = dbus.sessionBus({ busAddress: bus.address });
      const manager = (await peer.getProxyObject(BUS_NAME, '/io/otad/Daemon1')).getInterface('io.otad.Manager1');
      const reply = (await manager.Rehearse!(PRODUCT)) as unknown[];
      const [version, available, stoppedAt, errorCode, downloadBytes, diskBytes, wouldRestart, precheckOk, verdicts, predicted, basis] = reply as [string, boolean, string, string, bigint, bigint, string[], boolean, Array<[string, string, string]>, bigint, string];
      expect({ version, available, stoppedAt, errorCode, wouldRestart, precheckOk }).toEqual({ version: first.version, available: true, stoppedAt: '', errorCode: '', wouldRestart: [PRODUCT], precheckOk: true });
      expect(downloadBytes).toBe(BigInt(pkgBytes));
      expect(diskBytes).toBe(BigInt(report.disk!.totalBytes));
      expect(verdicts.map((v) => v[0])).toEqual(report.preCheck!.verdicts.map((v) => v.condition));
      expect(predicted).toBe(-1n);
      expect(basis).toMatch(/^no history/);
      if (hasTool('gdbus')) {
        const g = await run('gdbus', ['call', '--address', bus.address, '--dest', BUS_NAME, '--object-path', '/io/otad/Daemon1', '--method', 'io.otad.Manager1.Rehearse', PRODUCT]);
        expect(g.stdout).toContain(`'${first.version}', true, '', '', uint64 ${pkgBytes}`);
        expect(g.stdout).toContain("'no history");
      }
      expect(hashTree(root)).toEqual(tree0);
      expect(servicePid(world)).toBe(pid0);
    }

    // 4. Refused while a run executes (a pre-apply hook holds the run in apply for a while).
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'awaitingChoice', { timeoutMs: 60_000, what: 'the offer' });
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'UPDATE_NOW' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'apply', { timeoutMs: 60_000, intervalMs: 5, what: 'the install to reach apply' });
    const busy = await d.api.request('POST', `/api/v1/products/${PRODUCT}/rehearse`).catch((e: unknown) => e);
    expect(busy).toMatchObject({ status: 409, code: 'REHEARSAL_BUSY' });
    expect((busy as Error).message).toMatch(/robot-ai is in state (apply|validate)/);
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.context.lastOutcome === 'committed', { timeoutMs: 120_000, what: `${first.version} to commit` });

    // 5. With a committed run in the history, the downtime is predicted from its apply step.
    const second = await world.publishNext();
    const tree1 = hashTree(root);
    const pid1 = servicePid(world);
    const r2 = await otactl('--json', 'rehearse');
    expect(r2.code, r2.stderr).toBe(0);
    const again = JSON.parse(r2.stdout) as RehearsalReport;
    expect(hashTree(root)).toEqual(tree1);
    expect(servicePid(world)).toBe(pid1);
    expect(again).toMatchObject({ installedVersion: first.version, version: second.version, available: true, error: null });
    expect(again.downtime.applyStep).toMatchObject({ runs: 1 });
    const applyMs = query<{ fromAt: number; toAt: number }>(
      world.sandbox.dbPath,
      "SELECT a.at AS fromAt, b.at AS toAt FROM transitions a JOIN transitions b ON a.run_id = b.run_id AND b.from_state = 'apply' AND b.to_state != 'apply' WHERE a.to_state = 'apply' AND a.from_state != 'apply'",
    )[0]!;
    expect(again.downtime.predictedMs).toBe(applyMs.toAt - applyMs.fromAt);
    expect(again.downtime.basis).toContain('predicted from the apply step of the last 1 committed run');
    expect(again.downtime.wholeRun).toMatchObject({ runs: 1 });
  }, 300_000);

  it('stops when an update run starts meanwhile (REHEARSAL_INTERRUPTED), removes its scratch folder, and the run goes on', async () => {
    await world?.close();
    // A large model: the rehearsal's download and staging take long enough to be overtaken.
    world = await createCrashWorld({ seed: 8802, bigFileBytes: 64 * 1024 * 1024, brokenEvery: 1000 });
    const doc = YAML.parse(readFileSync(world.sandbox.configPath, 'utf8')) as Record<string, unknown> & { products: Array<Record<string, unknown>> };
    doc.products[0]!.decision = { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' };
    writeFileSync(world.sandbox.configPath, YAML.stringify(doc));
    const release = await world.publishNext();
    const d = await world.startOtad();
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.state === 'awaitingChoice', { timeoutMs: 60_000, what: 'the offer' });
    // A rehearsal is allowed while the offer waits for a choice.
    const pending = d.api.request<RehearsalReport>('POST', `/api/v1/products/${PRODUCT}/rehearse`);
    await waitUntil(() => readFileSync(world!.sandbox.logPath, 'utf8').includes('rehearsal started'), { timeoutMs: 60_000, intervalMs: 5, what: 'the rehearsal to start' });
    await d.api.request('POST', '/api/v1/events', { product: PRODUCT, type: 'UPDATE_NOW' });
    const report = await pending;
    expect(report.error).toMatchObject({ code: 'REHEARSAL_INTERRUPTED' });
    expect(report.error!.message).toContain('robot-ai entered preCheck');
    expect(report.stoppedAt).not.toBeNull();
    expect(existsSync(report.scratchDir)).toBe(false);
    await waitUntil(() => readSaved(world!.sandbox.dbPath)?.context.lastOutcome === 'committed', { timeoutMs: 180_000, what: `${release.version} to commit` });
    expect((await world.inspectInstall()).matches.map((r) => r.version)).toEqual([release.version]);
  }, 300_000);
});

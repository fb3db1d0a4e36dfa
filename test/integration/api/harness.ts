/**
 * An in-process otad for interface tests: a real Daemon on a temp state folder with the fake steps,
 * a tokens file (mode 0600) with a read and a control token, and the real interfaces on 127.0.0.1
 * port 0.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { buildConfig, type Config } from '../../../src/config/load.js';
import { ManualClock, type Clock } from '../../../src/core/clock.js';
import { createLogging, type Logging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { startInterfaces, type StartedInterfaces } from '../../../src/api/interfaces.js';
import { fakeStepProvider, type FakeStepsSpec } from '../../support/fake-steps.js';

export const CONTROL_TOKEN = 'ctl-0123456789abcdef-control';
export const READ_TOKEN = 'read-0123456789abcdef-read';

export interface Harness {
  dir: string;
  config: Config;
  daemon: Daemon;
  logging: Logging;
  clock: ManualClock;
  interfaces: StartedInterfaces;
  url: string;
  tokensFile: string;
  close(): Promise<void>;
}

export function writeTokensFile(dir: string): string {
  const file = join(dir, 'tokens.yaml');
  writeFileSync(
    file,
    YAML.stringify({
      tokens: [
        { name: 'robot-ai', token: CONTROL_TOKEN, scope: 'control' },
        { name: 'dashboard', token: READ_TOKEN, scope: 'read' },
      ],
    }),
    { mode: 0o600 },
  );
  chmodSync(file, 0o600);
  return file;
}

export function makeConfig(dir: string, extra: Record<string, unknown> = {}, products = ['robot-ai']): Config {
  const tokensFile = writeTokensFile(dir);
  const raw: Record<string, unknown> = {
    environment: 'test',
    paths: { stateDir: join(dir, 'state'), trustedRoot: join(dir, 'root.json'), inhibitFile: join(dir, 'inhibit') },
    logging: { level: 'debug' },
    // These tests send many refused requests on purpose; the throttle has its own test (security/auth-flood).
    api: { port: 0, tokensFile, authFailures: { max: 100_000 }, ...(extra.api as object | undefined) },
    products: products.map((name) => ({ name, installPath: join(dir, 'opt', name) })),
  };
  for (const [k, v] of Object.entries(extra)) if (k !== 'api') raw[k] = v;
  return buildConfig(raw);
}

export async function startHarness(opts: { fake?: FakeStepsSpec; extra?: Record<string, unknown>; products?: string[]; clock?: ManualClock; interfaces?: boolean } = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'otad-api-'));
  const config = makeConfig(dir, opts.extra, opts.products);
  const logging = createLogging({ level: 'debug', stdout: false, file: join(dir, 'otad.log'), auditFile: join(dir, 'audit.log') });
  const clock = opts.clock ?? new ManualClock('2026-03-02T10:00:00Z');
  const daemon = new Daemon({ config, logging, clock: clock as Clock, deviceId: 'robot-0001', stepProvider: fakeStepProvider(opts.fake ?? {}), uncleanStart: false });
  await daemon.start();
  let interfaces: StartedInterfaces = { interfaces: [], api: null };
  if (opts.interfaces !== false) interfaces = await startInterfaces(daemon, config, logging, clock);
  return {
    dir,
    config,
    daemon,
    logging,
    clock,
    interfaces,
    url: interfaces.api?.url ?? '',
    tokensFile: config.api.tokensFile,
    async close() {
      for (const i of interfaces.interfaces) await i.close();
      await daemon.stop(0);
      await logging.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function waitFor<T>(probe: () => T | null | undefined | false, what = 'a condition', timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

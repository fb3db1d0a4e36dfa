/**
 * A real otad process with the API on 127.0.0.1 port 0, for tests that go through the network and
 * the process boundary: the test-only wiring with fake steps, or the real `otad` entry point.
 */
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { spawnOtad, type OtadProcess, type Sandbox } from '../../support/otad-process.js';
import { writeTokensFile, waitFor } from './harness.js';

export interface RealOtad {
  sandbox: Sandbox;
  proc: OtadProcess;
  url: string;
  tokensFile: string;
  stop(): Promise<void>;
}

export function makeApiSandbox(extra: Record<string, unknown> = {}): Sandbox & { tokensFile: string } {
  const dir = mkdtempSync(join(tmpdir(), 'otad-real-'));
  const stateDir = join(dir, 'state');
  const installRoot = join(dir, 'opt');
  mkdirSync(installRoot, { recursive: true });
  const tokensFile = writeTokensFile(dir);
  const config = {
    environment: 'test',
    paths: { stateDir, trustedRoot: join(dir, 'root.json'), inhibitFile: join(dir, 'inhibit') },
    logging: { level: 'info' },
    api: { port: 0, tokensFile, ...(extra.api as object | undefined) },
    products: [{ name: 'robot-ai', installPath: join(installRoot, 'robot-ai') }],
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== 'api')),
  };
  const configPath = join(dir, 'config.yaml');
  writeFileSync(configPath, YAML.stringify(config));
  return { dir, stateDir, configPath, dbPath: join(stateDir, 'otad.db'), logPath: join(dir, 'otad.log'), installRoot, tokensFile };
}

export async function startRealOtad(opts: { fake?: Record<string, unknown>; entry?: 'fake' | 'source'; extra?: Record<string, unknown> } = {}): Promise<RealOtad> {
  const sandbox = makeApiSandbox(opts.extra);
  const proc = spawnOtad(sandbox, { entry: opts.entry ?? 'fake', ...(opts.fake ? { fake: opts.fake } : {}), env: { OTA_TEST_INTERFACES: '1' } });
  const apiFile = join(sandbox.stateDir, 'api.json');
  try {
    await waitFor(() => existsSync(apiFile) || !proc.alive(), 'otad to write api.json', 30_000);
  } catch (error) {
    await proc.kill();
    throw error;
  }
  if (!proc.alive()) throw new Error(`otad exited early:\n${readFileSync(sandbox.logPath, 'utf8')}`);
  const { url } = JSON.parse(readFileSync(apiFile, 'utf8')) as { url: string };
  return {
    sandbox,
    proc,
    url,
    tokensFile: sandbox.tokensFile,
    async stop() {
      await proc.kill('SIGTERM');
      rmSync(sandbox.dir, { recursive: true, force: true });
    },
  };
}

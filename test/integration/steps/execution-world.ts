/**
 * A small robot in a temp folder for the apply/validate/commit/rollback tests: a product whose
 * release runs a tiny real HTTP service (node, one process group, pid file) under the process
 * service manager, hooks as shell scripts in `.ota/hooks/`, a real backup manager and a real
 * SQLite store. Each call of `ports()` builds fresh adapters over the same disk, the way a
 * restarted daemon would.
 */
import * as fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ApplyOutput, Offer, StageOutput } from '../../../machines/types.js';
import { createBackupManager } from '../../../src/backup/backup-manager.js';
import { productSchema, type ProductConfig } from '../../../src/config/schema.js';
import { systemClock } from '../../../src/core/clock.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import type { HookName } from '../../../src/hooks/run-hook.js';
import { createApplyJournal } from '../../../src/release/journal.js';
import { createReleaseStore, type ReleaseStore } from '../../../src/release/layout.js';
import { Store } from '../../../src/store/store.js';
import { journalDirFor, type ExecutionPorts } from '../../../src/steps/ports.js';
import { serviceChooser, type ServiceChoiceOptions } from '../../../src/services/choice.js';

export const PRODUCT = 'robot-ai';
export const UNIT = 'robot-ai.service';

/** The service every release ships: answers its version on loopback; BROKEN → 500, HANG → silence. */
const SERVER = `import http from 'node:http';
import fs from 'node:fs';
const version = fs.readFileSync('VERSION', 'utf8').trim();
const mode = fs.existsSync('BROKEN') ? 'broken' : fs.existsSync('HANG') ? 'hang' : 'ok';
http.createServer((req, res) => {
  if (mode === 'hang') return;
  res.statusCode = mode === 'ok' ? 200 : 500;
  res.end(JSON.stringify({ version, cwd: process.cwd() }));
}).listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

export interface ReleaseOptions {
  hooks?: Partial<Record<HookName, string>>;
  broken?: boolean;
  hang?: boolean;
}

export interface World {
  root: string;
  port: number;
  installPath: string;
  releasesDir: string;
  stateDir: string;
  backupDir: string;
  logger: MemoryLogger;
  db: Store;
  product: ProductConfig;
  ports(overrides?: Partial<ExecutionPorts>, serviceOptions?: Partial<ServiceChoiceOptions>): ExecutionPorts;
  releases(): ReleaseStore;
  /** Writes a release tree (VERSION, server, config, hooks) at `dir`. */
  writeRelease(dir: string, version: string, options?: ReleaseOptions): Promise<void>;
  /** A staged tree for `version`, in a per-run staging folder, with a fake package beside it. */
  stage(version: string, runId: string, options?: ReleaseOptions): Promise<StageOutput>;
  /** A plain (pre-otad) install of `version` at installPath, its service running. */
  plainInstall(version: string): Promise<void>;
  fetchVersion(): Promise<string | null>;
  journal(): ReturnType<typeof createApplyJournal>;
  close(): Promise<void>;
}

export function offer(version: string): Offer {
  return {
    product: PRODUCT,
    version,
    channel: 'stable',
    releasedAt: 0,
    notes: '',
    manifest: { name: `${PRODUCT}/${version}.json`, length: 1, sha256: '0'.repeat(64) },
    package: { name: `${PRODUCT}/${PRODUCT}-${version}.tar.gz`, length: 1, sha256: '0'.repeat(64) },
  };
}

export function applied(from: string | null, version: string, releasesDir: string): ApplyOutput {
  return { fromRelease: from, toRelease: path.join(releasesDir, version), version };
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function createWorld(productOverrides: Record<string, unknown> = {}): Promise<World> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-steps-'));
  const port = await freePort();
  const installPath = path.join(root, 'opt', PRODUCT);
  const releasesDir = path.join(root, 'opt', '.otad', PRODUCT, 'releases');
  const stateDir = path.join(root, 'state');
  const backupDir = path.join(stateDir, 'backups');
  await fs.mkdir(stateDir, { recursive: true });
  const logger = new MemoryLogger();
  const db = Store.open(path.join(stateDir, 'otad.db'));
  const product = productSchema.parse({
    name: PRODUCT,
    installPath,
    releasesDir,
    processUnits: [{ name: UNIT, command: [process.execPath, 'server.mjs'], cwd: installPath, env: { PORT: String(port) } }],
    healthChecks: [
      { kind: 'http', url: `http://127.0.0.1:${port}/health`, timeout: '2s' },
      { kind: 'version', file: 'VERSION' },
    ],
    // Real processes on a shared machine: a short window, a patient threshold for start-up.
    probation: { window: 200, interval: 50, failureThreshold: 60 },
    preservedPaths: ['config'],
    hooks: { timeout: '20s' },
    ...productOverrides,
  });

  const writeRelease = async (dir: string, version: string, options: ReleaseOptions = {}): Promise<void> => {
    await fs.mkdir(path.join(dir, 'config'), { recursive: true });
    await fs.writeFile(path.join(dir, 'VERSION'), `${version}\n`);
    await fs.writeFile(path.join(dir, 'server.mjs'), SERVER);
    await fs.writeFile(path.join(dir, 'config', 'robot.yaml'), `shipped-by: ${version}\n`);
    if (options.broken === true) await fs.writeFile(path.join(dir, 'BROKEN'), '');
    if (options.hang === true) await fs.writeFile(path.join(dir, 'HANG'), '');
    for (const [name, script] of Object.entries(options.hooks ?? {})) {
      await fs.mkdir(path.join(dir, '.ota', 'hooks'), { recursive: true });
      await fs.writeFile(path.join(dir, '.ota', 'hooks', name), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    }
  };

  const world: World = {
    root,
    port,
    installPath,
    releasesDir,
    stateDir,
    backupDir,
    logger,
    db,
    product,
    ports(overrides = {}, serviceOptions = {}) {
      const p = (overrides.product as ProductConfig | undefined) ?? product;
      return {
        product: p,
        journalDir: journalDirFor(stateDir),
        backupDir,
        simulation: false,
        clock: systemClock,
        logger,
        services: serviceChooser(p, { stateDir, logger, stopTimeoutMs: 5000, ...serviceOptions }),
        backups: createBackupManager({ clock: systemClock, logger, deviceId: 'robot-1' }),
        store: db,
        hookKillGraceMs: 200,
        ...overrides,
      };
    },
    releases: () => createReleaseStore({ product: PRODUCT, installPath, releasesDir, logger }),
    writeRelease,
    async stage(version, runId, options) {
      const dir = path.join(root, 'opt', '.staging', `run-${runId}`);
      await writeRelease(path.join(dir, 'tree'), version, options);
      await fs.writeFile(path.join(dir, 'package.tar.gz'), 'not really a package');
      return { releaseDir: path.join(dir, 'tree'), packagePath: path.join(dir, 'package.tar.gz') };
    },
    async plainInstall(version) {
      await writeRelease(installPath, version);
      const services = await world.ports().services();
      await services.manager.start(UNIT);
      // A service still booting while the install is adopted could resolve its script through
      // the path being moved; on a robot the service has long been running by then.
      if ((await waitForVersion(world)) !== version) throw new Error(`the ${version} service did not come up`);
    },
    async fetchVersion() {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`);
        return ((await res.json()) as { version: string }).version;
      } catch {
        return null;
      }
    },
    journal: () => createApplyJournal({ dir: journalDirFor(stateDir), product: PRODUCT, clock: systemClock, logger }),
    async close() {
      // Only the process manager's unit: never ask a real systemd on the host to stop anything.
      if (product.processUnits.length > 0) {
        const services = await world.ports().services().catch(() => null);
        if (services?.kind === 'process') await services.manager.stop(UNIT).catch(() => {});
      }
      db.close();
      if (process.env.OTA_TEST_KEEP_WORLD === undefined) await fs.rm(root, { recursive: true, force: true });
    },
  };
  return world;
}

/** Poll until the service answers (it is a real process; it takes a moment to listen). */
export async function waitForVersion(world: World, attempts = 200): Promise<string | null> {
  for (let i = 0; i < attempts; i += 1) {
    const v = await world.fetchVersion();
    if (v !== null) return v;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return null;
}

export function logText(logger: MemoryLogger): string {
  return logger.lines.map((l) => `${l.level} ${l.message}`).join('\n');
}

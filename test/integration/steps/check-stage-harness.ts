/**
 * A robot sandbox for the check and stage steps: a real signed repository behind a real ota-server
 * (test/support/tuf-repo.ts), packages built from directories with src/package, and one product
 * whose TUF client comes from createRepositoryForProduct, exactly as the daemon builds it.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { buildConfig, type Config } from '../../../src/config/load.js';
import type { ProductConfig } from '../../../src/config/schema.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { CheckOutput, Offer } from '../../../machines/types.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import type { ProgressMessage } from '../../../src/daemon/event-bus.js';
import type { NetworkSnapshot } from '../../../src/net/network-monitor.js';
import { createPackage } from '../../../src/package/create.js';
import type { ReleaseInput } from '../../../src/repo/repository.js';
import { createCheckStep, type CheckPorts } from '../../../src/steps/check.js';
import { createRepositoryForProduct, type ProductRepository, type RepositoryFactoryDeps } from '../../../src/steps/repository-factory.js';
import { createStageStep, type StagePorts } from '../../../src/steps/stage.js';
import { RecordingAudit, type TestRepo } from '../../support/tuf-repo.js';

export const onlineNetwork = {
  async snapshot(): Promise<NetworkSnapshot> {
    return { online: true, interfaces: [], defaultGateway: '192.0.2.1', latencyMs: 1, serverReachable: true, recentThroughputBps: null, checkedAt: Date.now() };
  },
  async waitForNetwork(): Promise<NetworkSnapshot> {
    return onlineNetwork.snapshot();
  },
};

/** Writes `files` (relative path → content) under dir. */
export async function writeTree(dir: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [rel, content] of Object.entries(files)) {
    const file = path.join(dir, rel);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content);
  }
}

/** relative path → sha256 of every regular file under dir. */
export async function treeHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const entry of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) await walk(childRel);
      else if (entry.isFile()) out[childRel] = createHash('sha256').update(await fs.readFile(path.join(dir, childRel))).digest('hex');
    }
  }
  await walk('');
  return out;
}

export { exists } from '../../../src/core/files.js';

/** The offer a check makes to a robot on `installed` (fails the test when there is none). */
export async function offerFor(robot: Sandbox, installed: string): Promise<Offer> {
  const out: CheckOutput = await robot.check({ product: 'robot-ai', runId: 'run-1', installedVersion: installed }, new AbortController().signal);
  if (!out.available) throw new Error('expected an offer');
  return out.offer;
}

/** Changes a file's first byte: same size, other bytes, so only its hash can tell. */
export async function editSameSize(file: string): Promise<void> {
  const text = await fs.readFile(file, 'utf8');
  await fs.writeFile(file, `${text.startsWith('X') ? 'Y' : 'X'}${text.slice(1)}`);
}

/** Publish a release built from a directory of files, or from a ready package file. */
export async function publishRelease(
  repo: TestRepo,
  version: string,
  source: { files: Record<string, string | Buffer> } | { packageFile: string },
  extra: Partial<ReleaseInput> = {},
): Promise<{ packageFile: string }> {
  let packageFile: string;
  if ('files' in source) {
    const src = path.join(repo.dir, `src-${version}`);
    await writeTree(src, source.files);
    packageFile = path.join(repo.dir, `robot-ai-${version}.tar.gz`);
    await createPackage(src, packageFile);
  } else {
    packageFile = source.packageFile;
  }
  await repo.publisher.add({ product: 'robot-ai', version, packageFile, notes: `release ${version}`, ...extra });
  await repo.publisher.publish();
  return { packageFile };
}

export interface Sandbox {
  dir: string;
  config: Config;
  product: ProductConfig;
  repository: ProductRepository;
  logger: MemoryLogger;
  audit: RecordingAudit;
  progress: ProgressMessage[];
  clock: ManualClock;
  check: ReturnType<typeof createCheckStep>;
  stage: ReturnType<typeof createStageStep>;
  stagingRoot: string;
  close(): Promise<void>;
}

export interface SandboxOptions {
  /** Repository base URL (default: the test repo's ota-server). */
  url: string;
  /** Golden trusted root to install (default: the repo's 1.root.json). */
  repoDir: string;
  dir: string;
  deviceId?: string;
  product?: Record<string, unknown>;
  server?: Record<string, unknown>;
  paths?: Record<string, unknown>;
  deps?: Partial<RepositoryFactoryDeps>;
  stage?: Partial<StagePorts>;
  check?: Partial<CheckPorts>;
}

/** One robot: state, cache and install folders under `dir`, steps wired as the daemon wires them. */
export async function createSandbox(options: SandboxOptions): Promise<Sandbox> {
  const { dir } = options;
  const trustedRoot = path.join(dir, 'etc', 'root.json');
  await fs.mkdir(path.dirname(trustedRoot), { recursive: true });
  await fs.copyFile(path.join(options.repoDir, 'metadata', '1.root.json'), trustedRoot);
  await fs.chmod(trustedRoot, 0o444);
  const config = buildConfig({
    server: { url: options.url, retries: 0, ...(options.server ?? {}) },
    paths: { stateDir: path.join(dir, 'state'), trustedRoot, ...(options.paths ?? {}) },
    products: [{ name: 'robot-ai', installPath: path.join(dir, 'opt', 'robot-ai'), ...(options.product ?? {}) }],
  });
  const product = config.products[0]!;
  const logger = new MemoryLogger();
  const audit = new RecordingAudit();
  const clock = new ManualClock(Date.now());
  const repository = createRepositoryForProduct(product, config, { clock, logger, audit, retry: { minDelayMs: 1, maxDelayMs: 5, jitter: false }, ...(options.deps ?? {}) });
  const progress: ProgressMessage[] = [];
  const check = createCheckStep({
    product,
    config,
    deviceId: options.deviceId ?? 'robot-0001',
    repository,
    network: onlineNetwork,
    isBad: () => false,
    clock,
    logger,
    audit,
    retry: { minDelayMs: 1, maxDelayMs: 5, jitter: false },
    ...(options.check ?? {}),
  });
  const stage = createStageStep({
    product,
    config,
    repository,
    clock,
    logger,
    audit,
    progress: (m) => progress.push({ ...m, product: product.name }),
    ...(options.stage ?? {}),
  });
  return {
    dir,
    config,
    product,
    repository,
    logger,
    audit,
    progress,
    clock,
    check,
    stage,
    stagingRoot: path.join(path.dirname(product.releasesDir!), 'staging', 'robot-ai'),
    close: () => repository.close(),
  };
}

/** A tmpfs of `size` at dir, or false where mounting is not allowed (not root). */
export function tryMountTmpfs(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

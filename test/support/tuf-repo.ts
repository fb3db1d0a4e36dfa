/**
 * A real signed repository served by a real ota-server on loopback, and robots (TUF clients) that
 * talk to it through src/net. Attack helpers rewrite or re-sign files in the served folder, the way
 * a compromised mirror would.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Metadata, MetadataKind } from '@tufjs/models';
import type { Root, Snapshot, Targets, Timestamp } from '@tufjs/models';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import type { AuditEvent, AuditSink } from '../../src/core/logger.js';
import { MemoryLogger, silentLogger } from '../../src/core/logger.js';
import { createDownloader } from '../../src/net/download.js';
import { createHttpClient, type HttpClient } from '../../src/net/http-client.js';
import { generateSigningKey, loadRoleKeys, signerFor, type RoleName, type SigningKey } from '../../src/repo/keys.js';
import { createPublisher, type InitOptions, type Publisher } from '../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../src/server/app.js';
import { metadataFetcherFromHttp, targetDownloaderFromNet } from '../../src/trust/net-ports.js';
import { createTufRepository, type TrustLimits } from '../../src/trust/tuf-repository.js';
import type { UpdateRepository } from '../../src/trust/update-repository.js';
import type { TargetDownloader } from '../../src/trust/ports.js';

export type AnyMetadata = Metadata<Root | Targets | Snapshot | Timestamp>;
type Json = Parameters<typeof Metadata.fromJSON>[1];

export async function makeTempDir(prefix = 'otad-tuf-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * A small real package: a tar.gz holding one file, `payload.bin`, whose bytes depend on the label.
 * Built synchronously (one ustar header by hand) so tests can make one inline; it passes the
 * package scan publishers and robots run.
 */
export function fakePackage(label: string, size = 4096): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) body[i] = (i * 31 + label.length) % 251;
  body.write(label, 0);
  const header = Buffer.alloc(512);
  const octal = (n: number, width: number) => `${n.toString(8).padStart(width - 1, '0')}\0`;
  header.write('payload.bin', 0);
  header.write(octal(0o644, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(size, 12), 124);
  header.write(octal(1_700_000_000, 12), 136);
  header.fill(' ', 148, 156);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padding = Buffer.alloc((512 - (size % 512)) % 512);
  return gzipSync(Buffer.concat([header, body, padding, Buffer.alloc(1024)]));
}

export class RecordingAudit implements AuditSink {
  readonly events: AuditEvent[] = [];
  audit(event: AuditEvent): void {
    this.events.push(event);
  }
}

export interface TestRepo {
  dir: string;
  repoDir: string;
  keysDir: string;
  publisher: Publisher;
  server: OtaServer;
  url: string;
  publisherClock: ManualClock;
  /** Stage and publish one release of a product from bytes. */
  release(product: string, version: string, extra?: { notes?: string; channel?: string; minFromVersion?: string; bytes?: Buffer }): Promise<{ packageName: string; bytes: Buffer }>;
  metadataPath(name: string): string;
  readMetadata<T extends AnyMetadata>(name: string): Promise<T>;
  writeMetadata(name: string, md: AnyMetadata | Buffer | string): Promise<void>;
  keys(role: RoleName): Promise<SigningKey[]>;
  /** Path on disk of a published target (consistent-snapshot name). */
  targetFile(name: string): Promise<string>;
  robot(options?: RobotOptions): Promise<Robot>;
  close(): Promise<void>;
}

export interface RobotOptions {
  clock?: Clock;
  limits?: Partial<TrustLimits>;
  /** Reuse the metadata cache of an earlier robot (the same device after a reboot). */
  metadataDir?: string;
  /** Wraps the real target downloader (to make it misbehave). */
  wrapDownloader?: (real: TargetDownloader) => TargetDownloader;
}

export interface Robot {
  repo: UpdateRepository;
  metadataDir: string;
  goldenRootPath: string;
  downloadDir: string;
  logger: MemoryLogger;
  audit: RecordingAudit;
  http: HttpClient;
}

export async function createTestRepo(init: InitOptions = {}): Promise<TestRepo> {
  const dir = await makeTempDir();
  const repoDir = path.join(dir, 'repo');
  const keysDir = path.join(dir, 'keys');
  const publisherClock = new ManualClock(Date.now());
  const publisher = createPublisher({ repoDir, keysDir, clock: publisherClock });
  await publisher.init(init);
  const tokenFile = path.join(dir, 'token');
  await fs.writeFile(tokenFile, 'test-token-0123456789abcdef\n', { mode: 0o600 });
  const server = createServer({ repoDir, keysDir, clock: publisherClock, logger: silentLogger, tokenFile, timestampRefresh: false });
  const { url } = await server.start(0, '127.0.0.1');
  const https: HttpClient[] = [];

  const repo: TestRepo = {
    dir,
    repoDir,
    keysDir,
    publisher,
    server,
    url,
    publisherClock,
    async release(product, version, extra = {}) {
      const bytes = extra.bytes ?? fakePackage(`${product}-${version}`);
      const file = path.join(dir, `${product}-${version}.tar.gz`);
      await fs.writeFile(file, bytes);
      await publisher.add({
        product,
        version,
        packageFile: file,
        notes: extra.notes ?? `release ${version}`,
        ...(extra.channel !== undefined ? { channel: extra.channel } : {}),
        ...(extra.minFromVersion !== undefined ? { minFromVersion: extra.minFromVersion } : {}),
      });
      await publisher.publish();
      return { packageName: `${product}/${product}-${version}.tar.gz`, bytes };
    },
    metadataPath: (name) => path.join(repoDir, 'metadata', name),
    async readMetadata<T extends AnyMetadata>(name: string) {
      const json = JSON.parse(await fs.readFile(path.join(repoDir, 'metadata', name), 'utf8')) as Json & { signed: { _type: MetadataKind } };
      return Metadata.fromJSON(json.signed._type as MetadataKind.Root, json) as unknown as T;
    },
    async writeMetadata(name, md) {
      const body = typeof md === 'string' || Buffer.isBuffer(md) ? md : `${JSON.stringify(md.toJSON(), null, 2)}\n`;
      await fs.writeFile(path.join(repoDir, 'metadata', name), body);
    },
    keys: (role) => loadRoleKeys(keysDir, role),
    async targetFile(name) {
      const targets = await publisher.listTargets();
      const t = targets.find((x) => x.name === name);
      if (t === undefined) throw new Error(`no target ${name}`);
      const { dir: d, base } = path.posix.parse(name);
      return path.join(repoDir, 'targets', d, `${t.sha256}.${base}`);
    },
    async robot(options = {}) {
      const robotDir = await fs.mkdtemp(path.join(dir, 'robot-'));
      const metadataDir = options.metadataDir ?? path.join(robotDir, 'metadata');
      const goldenRootPath = path.join(robotDir, 'golden-root.json');
      await fs.copyFile(path.join(repoDir, 'metadata', '1.root.json'), goldenRootPath);
      await fs.chmod(goldenRootPath, 0o444);
      const downloadDir = path.join(robotDir, 'downloads');
      await fs.mkdir(downloadDir);
      const logger = new MemoryLogger();
      const audit = new RecordingAudit();
      const clock = options.clock ?? new ManualClock(Date.now());
      const http = createHttpClient({ connectTimeoutMs: 5_000, headersTimeoutMs: 5_000, idleTimeoutMs: 5_000, userAgent: 'otad-test', logger: silentLogger });
      https.push(http);
      const downloader = createDownloader({
        http,
        clock,
        logger: silentLogger,
        retry: { retries: 0 },
        minThroughput: { bytesPerSec: 0, graceMs: 60_000 },
        deadlineMs: 30_000,
      });
      const updateRepo = createTufRepository({
        metadataDir,
        metadataBaseUrl: `${url}/metadata/`,
        targetBaseUrl: `${url}/targets/`,
        trustedRootPath: goldenRootPath,
        fetcher: metadataFetcherFromHttp(http),
        downloader: (options.wrapDownloader ?? ((real: TargetDownloader) => real))(targetDownloaderFromNet(downloader)),
        clock,
        logger,
        audit,
        ...(options.limits !== undefined ? { limits: options.limits } : {}),
      });
      return { repo: updateRepo, metadataDir, goldenRootPath, downloadDir, logger, audit, http };
    },
    async close() {
      await server.close();
      await Promise.all(https.map((h) => h.close()));
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
  return repo;
}

/** Sign metadata with exactly these keys (replacing existing signatures). */
export function signWith(md: AnyMetadata, keys: SigningKey[]): AnyMetadata {
  md.signatures = {};
  for (const key of keys) md.sign(signerFor(key), true);
  return md;
}

/** Rebuild a metadata object with changed signed fields (version, expires, …). */
export function withSigned<T extends AnyMetadata>(md: T, changes: Record<string, unknown>): T {
  const json = md.toJSON() as { signed: Record<string, unknown> };
  const next = { ...json, signed: { ...json.signed, ...changes } } as unknown as Json & { signed: { _type: MetadataKind } };
  return Metadata.fromJSON(next.signed._type as MetadataKind.Root, next) as unknown as T;
}

export function foreignKey(role: RoleName): SigningKey {
  return generateSigningKey(role);
}

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** What a robot does on a check: detect the newest release, download its package, verify it. */
export async function detectAndDownload(robot: Robot, product: string): Promise<string> {
  const release = await robot.repo.latestRelease(product);
  if (release === null) throw new Error(`no release of ${product}`);
  const pkg = release.manifest.package;
  const dest = path.join(robot.downloadDir, path.posix.basename(pkg.target));
  const ref = { name: pkg.target, length: pkg.length, sha256: pkg.sha256 };
  await robot.repo.downloadTarget(ref, dest);
  await robot.repo.verifyFile(ref, dest);
  return dest;
}

export async function listDir(dir: string): Promise<string[]> {
  return (await fs.readdir(dir)).sort();
}

export { MetadataKind };

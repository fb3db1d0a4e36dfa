/**
 * Signed manifest requirements against a real repository on a real ota-server: a release built
 * for another architecture or OS, or one with a requirement this otad cannot check, is passed over
 * before anything is downloaded; a signed but malformed newest manifest is reported and no longer
 * hides an older valid release; tampered manifest bytes still stop the check.
 */
import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { ManualClock } from '../../../src/core/clock.js';
import type { AuditEvent } from '../../../src/core/logger.js';
import { detectPlatform, normalizeArch, parseOsRelease, unmetRequirements, type Platform } from '../../../src/manifest/requirements.js';
import type { NetworkSnapshot } from '../../../src/net/network-monitor.js';
import { createCheckStep, createFileReleaseCache } from '../../../src/steps/check.js';
import { diskNeeds } from '../../../src/steps/pre-check.js';
import { createTestRepo, fakePackage, type Robot, type TestRepo } from '../../support/tuf-repo.js';

const AMD64_UBUNTU: Platform = { arch: 'amd64', os: 'ubuntu-24.04', osId: 'ubuntu' };
const online: NetworkSnapshot = { online: true, interfaces: [], defaultGateway: '192.0.2.1', latencyMs: 1, serverReachable: true, recentThroughputBps: null, checkedAt: 0 };

describe('signed manifest requirements', () => {
  let repo: TestRepo;
  beforeEach(async () => {
    repo = await createTestRepo();
  });
  afterEach(async () => {
    await repo.close();
  });

  async function add(version: string, requirements?: Record<string, unknown>): Promise<void> {
    const file = path.join(repo.dir, `robot-ai-${version}.tar.gz`);
    await fs.writeFile(file, fakePackage(`robot-ai-${version}`));
    await repo.publisher.add({ product: 'robot-ai', version, packageFile: file, notes: `release ${version}`, ...(requirements ? { requirements: requirements as never } : {}) });
  }

  /** A manifest target that is signed and intact but not a valid manifest, as a careless publisher could sign one. */
  async function publishMalformedManifest(version: string, text: string): Promise<void> {
    await repo.publisher.stageTarget(`robot-ai/robot-ai-${version}.manifest.json`, { bytes: Buffer.from(text) }, { kind: 'manifest', product: 'robot-ai', version, channel: 'stable' } as never);
    await repo.publisher.publish();
  }

  function checkStep(robot: Robot, platform: Platform) {
    const config = buildConfig({
      server: { url: repo.url },
      paths: { stateDir: path.join(repo.dir, 'state') },
      products: [{ name: 'robot-ai', installPath: path.join(repo.dir, 'opt/robot-ai') }],
    });
    const audits: AuditEvent[] = [];
    const step = createCheckStep({
      product: config.products[0]!,
      config,
      deviceId: 'robot-1',
      repository: robot.repo,
      network: { snapshot: async () => online, waitForNetwork: async () => online },
      isBad: () => false,
      clock: new ManualClock(Date.parse('2026-03-01T12:00:00Z')),
      logger: robot.logger,
      audit: { audit: (e) => audits.push(e) },
      platform,
    });
    return { step, audits, config };
  }

  it('offers the newest release this robot can run: another architecture, another OS and an unknown requirement are passed over, and nothing of theirs is downloaded', async () => {
    await add('1.0.0');
    await add('1.1.0', { arch: ['amd64', 'arm64'], os: ['ubuntu'] });
    await add('1.2.0', { arch: ['arm64'] });
    await add('1.3.0', { os: ['ubuntu-99.04'] });
    await add('1.4.0', { gpuMemoryBytes: 8_000_000_000 });
    await repo.publisher.publish();
    const robot = await repo.robot();
    const { step, config } = checkStep(robot, AMD64_UBUNTU);

    const out = await step({ product: 'robot-ai', runId: 'r1', installedVersion: '1.0.0' } as never, new AbortController().signal);
    expect(out.available).toBe(true);
    expect(out.available && out.offer.version).toBe('1.1.0');

    const passed = robot.logger.lines.filter((e) => e.message.includes('passed over'));
    expect(passed.map((e) => e.fields?.version)).toEqual(['1.4.0', '1.3.0', '1.2.0']);
    expect(passed.every((e) => e.fields?.code === 'RELEASE_REQUIREMENTS_UNMET')).toBe(true);
    expect(passed[0]!.message).toMatch(/"gpuMemoryBytes", which this version of otad cannot check/);
    expect(passed[1]!.message).toMatch(/runs on ubuntu-99\.04; this robot runs ubuntu-24\.04/);
    expect(passed[2]!.message).toMatch(/is built for arm64; this robot is amd64/);
    // Only the manifests were read: no package of a passed-over release left the server.
    expect(await fs.readdir(robot.downloadDir)).toEqual([]);
    // The release cache holds what was offered, and is what the status endpoint reads.
    expect((await createFileReleaseCache(config.paths.cacheDir).read('robot-ai'))?.manifest.version).toBe('1.1.0');
  });

  it('answers "nothing for this robot" when every release is built for another architecture', async () => {
    await add('2.0.0', { arch: ['arm64'] });
    await repo.publisher.publish();
    const robot = await repo.robot();
    const { step } = checkStep(robot, AMD64_UBUNTU);
    const out = await step({ product: 'robot-ai', runId: 'r1', installedVersion: '1.0.0' } as never, new AbortController().signal);
    expect(out.available).toBe(false);
    expect(robot.logger.lines.some((e) => e.message === 'no release of this product on its channel fits this robot')).toBe(true);
  });

  it('reports a signed but malformed newest manifest and offers the newest valid release below it', async () => {
    await add('1.0.0');
    await add('1.1.0');
    await publishMalformedManifest('1.2.0', '{"schema":"1.0","product":"robot-ai","version":"1.2.0"}');
    const robot = await repo.robot();
    const { step, audits } = checkStep(robot, AMD64_UBUNTU);
    const out = await step({ product: 'robot-ai', runId: 'r1', installedVersion: '1.0.0' } as never, new AbortController().signal);
    expect(out.available && out.offer.version).toBe('1.1.0');
    const warn = robot.logger.lines.find((e) => e.level === 'warn' && e.message.startsWith('release 1.2.0 passed over'));
    expect(warn?.fields?.code).toBe('MANIFEST_INVALID');
    expect(audits.some((a) => a.kind === 'trust-failure' && a.message.includes('release 1.2.0 passed over'))).toBe(true);
  });

  it('still fails the check when the only newer manifest is malformed, rather than saying "up to date"', async () => {
    await publishMalformedManifest('1.2.0', '{"schema":"1.0"}');
    const robot = await repo.robot();
    const { step } = checkStep(robot, AMD64_UBUNTU);
    await expect(step({ product: 'robot-ai', runId: 'r1', installedVersion: '1.0.0' } as never, new AbortController().signal)).rejects.toMatchObject({ code: 'MANIFEST_INVALID' });
  });

  it('does not skip past tampered manifest bytes to an older release', async () => {
    await add('1.0.0');
    await add('1.1.0');
    await repo.publisher.publish();
    const file = await repo.targetFile('robot-ai/robot-ai-1.1.0.manifest.json');
    const original = readFileSync(file);
    await fs.writeFile(file, Buffer.from(original.toString('utf8').replace('release 1.1.0', 'release 1.1.1')));
    const robot = await repo.robot();
    const { step } = checkStep(robot, AMD64_UBUNTU);
    await expect(step({ product: 'robot-ai', runId: 'r1', installedVersion: '0.9.0' } as never, new AbortController().signal)).rejects.toMatchObject({ code: 'TRUST_HASH_MISMATCH' });
  });
});

describe('the platform a robot reports', () => {
  it('is this machine: Debian architecture names and <ID>-<VERSION_ID> from os-release', () => {
    const p = detectPlatform();
    expect(p.arch).toBe(normalizeArch(process.arch));
    expect(['amd64', 'arm64', 'armhf', 'i386', 'riscv64', 'ppc64el', 's390x']).toContain(p.arch);
    const os = parseOsRelease(readFileSync('/etc/os-release', 'utf8'));
    expect(p.os).toBe(os.versionId ? `${os.id}-${os.versionId}` : os.id);
  });

  it('names architectures the way publishers write them, whatever the kernel calls them', () => {
    expect(['x64', 'x86_64', 'amd64'].map(normalizeArch)).toEqual(['amd64', 'amd64', 'amd64']);
    expect(['aarch64', 'arm64'].map(normalizeArch)).toEqual(['arm64', 'arm64']);
    expect(unmetRequirements({ arch: ['aarch64'] }, { arch: 'arm64', os: null, osId: null })).toEqual([]);
    expect(parseOsRelease('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="24.04"\n')).toEqual({ id: 'ubuntu', versionId: '24.04' });
  });

  it('asks the disk pre-check for the signed minFreeBytes where staging happens when it exceeds the estimate', () => {
    const fsInfo = { id: 'fs1', freeBytes: 10 };
    const place = (dir: string) => ({ dir, fs: fsInfo });
    const m = { places: { cache: place('/c'), staging: place('/s'), releases: place('/r'), backups: place('/b') }, backupSourceBytes: 0 } as never;
    const needs = [...diskNeeds(m, 1000, 50_000).values()][0]!.needs;
    expect(needs).toContainEqual({ what: "the release's signed requirements.minFreeBytes", bytes: 50_000 });
    expect(needs.some((n) => n.what === 'extraction')).toBe(false);
    const plain = [...diskNeeds(m, 1000, 0).values()][0]!.needs;
    expect(plain).toContainEqual({ what: 'extraction', bytes: 3000 });
  });
});

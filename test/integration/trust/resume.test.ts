/**
 * A connection cut in the middle of a TUF target: the stage step resumes from the partial file
 * with an HTTP Range request instead of starting over. Proven by the bytes the server actually
 * handed to the socket: the total over all attempts equals the package length (not 1.x times it).
 * The repository folder published by src/repo is served by the fault-injecting loopback server.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Offer } from '../../../machines/types.js';
import { createFaultyServer, type FaultyServer } from '../../support/faulty-server.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';
import { createSandbox, exists, publishRelease, treeHashes, type Sandbox } from '../steps/check-stage-harness.js';

const CUT_AT = 256 * 1024;

/** Every file of the repository folder, keyed by the URL path a static server would use. */
async function servedFiles(repoDir: string): Promise<Record<string, Buffer>> {
  const files: Record<string, Buffer> = {};
  for (const top of ['metadata', 'targets']) {
    const walk = async (rel: string): Promise<void> => {
      for (const entry of await fs.readdir(path.join(repoDir, rel), { withFileTypes: true })) {
        const child = `${rel}/${entry.name}`;
        if (entry.isDirectory()) await walk(child);
        else files[`/${child}`] = await fs.readFile(path.join(repoDir, child));
      }
    };
    await walk(top);
  }
  return files;
}

describe('resuming a TUF target download through the stage step', () => {
  let repo: TestRepo;
  let server: FaultyServer;
  let offer: Offer;
  let packageUrlPath: string;
  const robots: Sandbox[] = [];

  async function robot(name = 'robot', retries = 0): Promise<Sandbox> {
    const r = await createSandbox({ url: server.url(''), repoDir: repo.repoDir, dir: path.join(repo.dir, name), server: { retries } });
    robots.push(r);
    return r;
  }

  beforeEach(async () => {
    repo = await createTestRepo();
    // Random bytes do not compress: the package is about 1 MiB on the wire.
    await publishRelease(repo, '1.1.0', { files: { VERSION: '1.1.0\n', 'model.bin': randomBytes(1024 * 1024) } });
    server = await createFaultyServer(await servedFiles(repo.repoDir));
    const first = await robot('probe');
    const out = await first.check({ product: 'robot-ai', runId: 'run-1', installedVersion: '1.0.0' }, new AbortController().signal);
    if (!out.available) throw new Error('expected an offer');
    offer = out.offer;
    packageUrlPath = new URL(path.posix.relative('/', (await repo.targetFile(offer.package.name)).slice(repo.repoDir.length)), server.url('/')).pathname;
  });

  afterEach(async () => {
    for (const r of robots.splice(0)) await r.close();
    await server.close();
    await repo.close();
  });

  const packageRequests = () => server.requests.filter((r) => r.path === packageUrlPath);

  it('keeps the partial after a reset, and the next stage run (after a restart) asks only for the rest', async () => {
    const before = await robot('robot');
    await before.check({ product: 'robot-ai', runId: 'run-1', installedVersion: '1.0.0' }, new AbortController().signal);
    server.setFaults({ resetAfterBytes: CUT_AT, resetMode: 'close', onlyPath: packageUrlPath });
    await expect(before.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal)).rejects.toMatchObject({ code: 'NETWORK_RESET' });
    await server.settled();
    const partials = (await fs.readdir(path.join(before.config.paths.cacheDir, 'robot-ai', 'packages'))).filter((f) => f.endsWith('.partial'));
    expect(partials).toHaveLength(1);
    const kept = (await fs.stat(path.join(before.config.paths.cacheDir, 'robot-ai', 'packages', partials[0]!))).size;
    expect(kept).toBe(CUT_AT);
    expect(await exists(path.join(before.stagingRoot, 'run-1'))).toBe(false);

    // The daemon restarts: a new repository object over the same state and cache folders.
    server.setFaults({});
    const after = await robot('robot');
    const out = await after.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal);
    await server.settled();

    const requests = packageRequests();
    expect(requests.map((r) => r.range)).toEqual([null, `bytes=${kept}-`]);
    expect(requests[1]?.status).toBe(206);
    expect(server.bytesSent(packageUrlPath)).toBe(offer.package.length);
    await after.repository.verifyFile(offer.package, out.packagePath);
    expect(Object.keys(await treeHashes(out.releaseDir)).sort()).toEqual(['VERSION', 'model.bin']);
  });

  it('resumes within one stage run when retries are allowed, after a TCP reset', async () => {
    const r = await robot('robot', 2);
    await r.repository.refresh();
    server.setFaults({ resetAfterBytes: CUT_AT, resetMode: 'rst', onlyPath: packageUrlPath });
    const out = await r.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal);
    await server.settled();
    const requests = packageRequests();
    expect(requests).toHaveLength(2);
    expect(requests[0]?.cut).toBe(true);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(requests[1]?.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    // Whatever a reset lost in flight is asked for again; nothing already on disk is sent twice.
    expect(server.bytesSent(packageUrlPath) - requests[0]!.bytesSent + resumedAt).toBe(offer.package.length);
    expect(server.bytesSent(packageUrlPath)).toBeLessThan(offer.package.length + CUT_AT);
    await r.repository.verifyFile(offer.package, out.packagePath);
    const last = r.progress.filter((p) => p.step === 'download').at(-1);
    expect(last).toMatchObject({ bytes: offer.package.length, total: offer.package.length });
  });

  it('the check step retries a 503 on metadata and still finds the release', async () => {
    const r = await robot('robot', 2);
    server.setFaults({ statusesFirst: [503, 500] });
    const out = await r.check({ product: 'robot-ai', runId: 'run-1', installedVersion: '1.0.0' }, new AbortController().signal);
    expect(out).toMatchObject({ available: true, offer: { version: '1.1.0' } });
    expect(server.requests.filter((x) => x.status !== null && x.status >= 500)).toHaveLength(2);
  });

  it('retries a 503 and then downloads the whole target once', async () => {
    const r = await robot('robot', 2);
    await r.repository.refresh();
    server.setFaults({ statusesFirst: [503], onlyPath: packageUrlPath });
    const out = await r.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal);
    await server.settled();
    expect(packageRequests().map((x) => x.status)).toEqual([503, 200]);
    expect(server.bytesSent(packageUrlPath)).toBe(offer.package.length);
    await r.repository.verifyFile(offer.package, out.packagePath);
  });
});

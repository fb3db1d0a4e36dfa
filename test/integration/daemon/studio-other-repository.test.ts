/**
 * The publisher studio publishes into a repository other than its server's own: ota-server (the
 * studio, with its own "test" repository) writes the release into the "staging" repository's
 * folder, signed with the staging delegation key it holds for robot-ai; Debian's nginx serves that
 * folder as plain static files (ota-server where nginx is not installed); the REAL daemon
 * (dist/src/cli/otad.js), trusting staging's root, finds, installs and commits the release. The
 * studio's own repository is unchanged.
 */
import { existsSync, promises as fs } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import { BUILT_OTAD, PRODUCT, createCrashWorld, type CrashWorld } from '../../support/crash-harness.js';
import { NGINX, startNginx, type Nginx } from '../../support/nginx.js';
import { readSaved, waitUntil } from '../../support/otad-process.js';
import { RecordingAudit } from '../../support/tuf-repo.js';

const TOKEN = 'studio-other-repository-token-0123456789';

async function listing(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of (await fs.readdir(dir, { recursive: true })) as string[]) {
    const file = join(dir, rel);
    if ((await fs.stat(file)).isFile()) out[relative(dir, file)] = (await fs.readFile(file)).toString('base64');
  }
  return out;
}

describe('the studio publishes to a configured repository other than its own', () => {
  let world: CrashWorld | undefined;
  let studio: OtaServer | undefined;
  afterAll(async () => {
    await studio?.close();
    await world?.close(false);
  });

  it('otad pointed at the second repository finds, installs and commits the release; the first is unchanged', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    // The world's repository is "staging": served to otad by its own ota-server, delegated robot-ai to a studio key.
    // A longer probation than the harness's default: the restarted service may take seconds to listen on a loaded machine.
    let nginx: Nginx | undefined;
    const withNginx = existsSync(NGINX);
    if (!withNginx) console.warn(`${NGINX} is missing (apt-get install -y nginx-light): staging is served by ota-server instead`);
    world = await createCrashWorld({
      seed: 4141,
      bigFileBytes: 64 * 1024,
      brokenEvery: 1000,
      delegated: true,
      probation: { window: '8s', interval: '250ms', failureThreshold: 16 },
      ...(withNginx ? { serve: async (root: string) => (nginx = await startNginx(root)) } : {}),
    });
    const w = world;
    // The studio's server and its own repository ("test").
    const testRepo = join(w.root, 'studio/test-repo');
    const testKeys = join(w.root, 'studio/test-keys');
    await createPublisher({ repoDir: testRepo, keysDir: testKeys, clock: systemClock }).init();
    await fs.writeFile(join(w.root, 'studio/token'), `${TOKEN}\n`, { mode: 0o600 });
    const audit = new RecordingAudit();
    studio = createServer({
      repoDir: testRepo,
      keysDir: testKeys,
      clock: systemClock,
      logger: silentLogger,
      audit,
      tokenFile: join(w.root, 'studio/token'),
      database: join(w.root, 'studio/fleet.db'),
      sourceRoots: [{ name: 'builds', dir: join(w.root, 'build') }],
      studioRepositories: [
        { name: 'test', url: 'http://127.0.0.1:9/metadata/', trustedRoot: join(testRepo, 'metadata/1.root.json'), local: true },
        { name: 'staging', url: `${w.serverUrl}/metadata/`, trustedRoot: w.trustedRoot, path: w.repoDir, keys: w.studioKeysDir! },
      ],
      timestampRefresh: false,
      prune: false,
      rolloutTick: false,
    });
    const studioUrl = (await studio.start(0, '127.0.0.1')).url;
    const call = async (method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${studioUrl}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      return { status: res.status, body: await res.json() };
    };
    const testBefore = await listing(testRepo);

    // The connection test of staging verifies its metadata from its trusted root.
    const connection = await call('POST', '/api/v1/studio/repositories/staging/test');
    expect(connection.body.ok, JSON.stringify(connection.body)).toBe(true);

    const { release } = await w.buildNext();
    const draft = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: release.version });
    expect(draft.status, JSON.stringify(draft.body)).toBe(201);
    const review = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { type: 'robot-ai', product: PRODUCT, channel: 'stable', version: release.version, repository: 'staging' });
    expect(review.body.ok, JSON.stringify(review.body)).toBe(true);
    const published = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/publish`, {
      packageSha256: review.body.packageTarget.sha256,
      manifestSha256: review.body.manifestTarget.sha256,
      repository: 'staging',
    });
    expect(published.status, JSON.stringify(published.body)).toBe(201);
    expect(published.body).toMatchObject({ repository: 'staging', role: 'product-robot-ai', version: release.version });
    expect(audit.events.find((e) => e.kind === 'studio-publish')?.details).toMatchObject({ repository: 'staging', role: 'product-robot-ai' });
    expect(await listing(testRepo)).toEqual(testBefore);

    const daemon = await w.startOtad().catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n--- otad log tail ---\n${w.logTail(30)}`);
    });
    const { runId } = await daemon.api.request<{ runId: string }>('POST', '/api/v1/events', { product: PRODUCT, type: 'CHECK_NOW' });
    const settled = await waitUntil(() => {
      const s = readSaved(w.sandbox.dbPath);
      return s?.state === 'idle' && s.runId === runId && s.context.lastOutcome !== null ? s : null;
    }, { timeoutMs: 120_000, intervalMs: 100, what: `run ${runId} to settle` }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}\n--- otad log tail ---\n${w.logTail(30)}`);
    });
    expect(settled.context.lastOutcome, w.logTail(40)).toBe('committed');
    const installed = await w.inspectInstall();
    expect(installed.matches.map((m) => m.version), installed.diff.join('\n')).toEqual([release.version]);
    expect(await listing(testRepo)).toEqual(testBefore);
    if (nginx !== undefined) {
      // otad fetched the release's package from the folder the studio wrote, through nginx.
      const log = await fs.readFile(nginx.accessLog, 'utf8');
      expect(log).toMatch(new RegExp(`^/targets/robot-ai/${published.body.packageTarget.sha256}\\.robot-ai-${release.version.replace(/\./g, '\\.')}\\.tar\\.gz 20[06] `, 'm'));
    }
    await daemon.proc.kill('SIGTERM');
  }, 300_000);
});

/**
 * A repository is static files: the folder ota-server serves must work unchanged behind a plain
 * web server. Debian's nginx (nginx-light, installed by .ci/run) serves the very folder the test's
 * ota-server serves, on loopback, and a robot goes through the same happy path: refresh, detect,
 * download, verify, stage. Skipped with a message where nginx is not installed.
 */
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer } from '../../../machines/types.js';
import { packageCachePath } from '../../../src/steps/stage.js';
import { NGINX, startNginx, type Nginx } from '../../support/nginx.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';
import { createSandbox, publishRelease, treeHashes, type Sandbox } from '../steps/check-stage-harness.js';

const MISSING = `nginx is not installed at ${NGINX} (CI installs it with: apt-get install -y nginx-light); skipping the static-server proof`;

describe('the same repository folder served by nginx', () => {
  const installed = existsSync(NGINX);
  let repo: TestRepo;
  let nginx: Nginx;
  let viaNginx: Sandbox;
  let viaServer: Sandbox;

  beforeAll(async () => {
    if (!installed) return;
    repo = await createTestRepo();
    await publishRelease(repo, '1.0.0', { files: { VERSION: '1.0.0\n' } });
    await publishRelease(repo, '1.1.0', { files: { VERSION: '1.1.0\n', 'bin/robot-ai': '#!/bin/sh\n', 'lib/data.bin': Buffer.alloc(200_000, 3) } }, { notes: 'served statically' });
    nginx = await startNginx(repo.repoDir);
    viaNginx = await createSandbox({ url: nginx.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'robot-nginx') });
    viaServer = await createSandbox({ url: repo.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'robot-server') });
  });

  afterAll(async () => {
    if (!installed) return;
    await viaNginx?.close();
    await viaServer?.close();
    await nginx?.stop();
    await repo?.close();
  });

  async function offerVia(robot: Sandbox): Promise<Offer> {
    const out = await robot.check({ product: 'robot-ai', runId: 'run-1', installedVersion: '1.0.0' }, new AbortController().signal);
    if (!out.available) throw new Error('expected an offer');
    return out.offer;
  }

  it('refreshes, detects, downloads, verifies and stages exactly what ota-server gives', async (context) => {
    if (!installed) return context.skip(MISSING);
    const offer = await offerVia(viaNginx);
    expect(offer).toMatchObject({ version: '1.1.0', notes: 'served statically' });
    expect(offer).toEqual(await offerVia(viaServer));

    const staged = await viaNginx.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal);
    await viaNginx.repository.verifyFile(offer.package, staged.packagePath);
    const reference = await viaServer.stage({ product: 'robot-ai', runId: 'run-1', offer }, new AbortController().signal);
    expect(await treeHashes(staged.releaseDir)).toEqual(await treeHashes(reference.releaseDir));

    const log = await fs.readFile(nginx.accessLog, 'utf8');
    expect(log).toMatch(/\/metadata\/timestamp\.json 200/);
    expect(log).toMatch(/\/targets\/robot-ai\/[0-9a-f]{64}\.robot-ai-1\.1\.0\.tar\.gz 200/);
  });

  it('serves timestamp.json with no-store, like ota-server', async (context) => {
    if (!installed) return context.skip(MISSING);
    const res = await fetch(`${nginx.url}/metadata/timestamp.json`);
    expect(res.headers.get('cache-control')).toBe('no-store');
    await res.arrayBuffer();
  });

  it('answers a resumed download with 206 and only the missing bytes', async (context) => {
    if (!installed) return context.skip(MISSING);
    const robot = await createSandbox({ url: nginx.url, repoDir: repo.repoDir, dir: path.join(repo.dir, 'robot-resume') });
    try {
      const offer = await offerVia(robot);
      // What an interrupted download leaves: the first part of the package as the partial file.
      const full = await fs.readFile(await repo.targetFile(offer.package.name));
      const dest = packageCachePath(robot.config.paths.cacheDir, 'robot-ai', offer.package);
      const kept = Math.floor(full.length / 3);
      await fs.mkdir(path.dirname(dest), { recursive: true });
      await fs.writeFile(`${dest}.partial`, full.subarray(0, kept));
      const staged = await robot.stage({ product: 'robot-ai', runId: 'run-2', offer }, new AbortController().signal);
      await robot.repository.verifyFile(offer.package, staged.packagePath);
      const line = (await fs.readFile(nginx.accessLog, 'utf8'))
        .split('\n')
        .filter((l) => l.includes('.robot-ai-1.1.0.tar.gz') && l.includes(`"bytes=${kept}-"`));
      expect(line).toHaveLength(1);
      expect(line[0]).toContain(` 206 "bytes=${kept}-" ${full.length - kept}`);
    } finally {
      await robot.close();
    }
  });
});

/**
 * A repository is static files: the folder ota-server serves must work unchanged behind a plain
 * web server. Debian's nginx (nginx-light, installed by .ci/run) serves the very folder the test's
 * ota-server serves, on loopback, and a robot goes through the same happy path: refresh, detect,
 * download, verify, stage. Skipped with a message where nginx is not installed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer } from '../../../machines/types.js';
import { packageCachePath } from '../../../src/steps/stage.js';
import { createTestRepo, makeTempDir, type TestRepo } from '../../support/tuf-repo.js';
import { createSandbox, publishRelease, treeHashes, type Sandbox } from '../steps/check-stage-harness.js';

const NGINX = '/usr/sbin/nginx';
const MISSING = `nginx is not installed at ${NGINX} (CI installs it with: apt-get install -y nginx-light); skipping the static-server proof`;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Nginx {
  url: string;
  accessLog: string;
  stop(): Promise<void>;
}

/** nginx in the foreground with its prefix, pid, temp paths and logs in a temp dir. */
async function startNginx(root: string): Promise<Nginx> {
  const prefix = await makeTempDir('otad-nginx-');
  const port = await freePort();
  const accessLog = path.join(prefix, 'access.log');
  const conf = path.join(prefix, 'nginx.conf');
  const temp = (name: string) => `${name}_temp_path ${path.join(prefix, name)};`;
  await fs.writeFile(
    conf,
    `# Workers must read the test's private temp folders (0700, owned by the test user).
user ${process.getuid?.() === 0 ? 'root' : 'nobody'};
worker_processes 1;
pid ${path.join(prefix, 'nginx.pid')};
error_log ${path.join(prefix, 'error.log')} warn;
events { worker_connections 64; }
http {
  ${temp('client_body')} ${temp('proxy')} ${temp('fastcgi')} ${temp('uwsgi')} ${temp('scgi')}
  types { application/json json; application/gzip gz; }
  default_type application/octet-stream;
  log_format otad '$request_uri $status "$http_range" $body_bytes_sent';
  access_log ${accessLog} otad;
  sendfile on;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    # The same cache rules as ota-server: the files that change in place are never cached.
    location ~ ^/metadata/(timestamp|root)\\.json$ { add_header Cache-Control "no-store" always; }
    location /metadata/ { add_header Cache-Control "public, max-age=31536000, immutable" always; }
    location /targets/ { add_header Cache-Control "public, max-age=31536000, immutable" always; }
    location / { return 404; }
  }
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', prefix, '-e', path.join(prefix, 'error.log'), '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null) throw new Error(`nginx exited with ${child.exitCode}: ${stderr}`);
    const ok = await fetch(`${url}/metadata/1.root.json`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (i > 200) throw new Error(`nginx did not answer on ${url}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url,
    accessLog,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
      await fs.rm(prefix, { recursive: true, force: true });
    },
  };
}

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

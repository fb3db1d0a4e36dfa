/**
 * Debian's nginx serving a repository folder as plain static files on loopback, in the foreground
 * with its prefix, pid, temp paths and logs in a temp dir (the static-server proof of
 * test/integration/trust/nginx.test.ts, and a repository the studio writes into).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { makeTempDir } from './tuf-repo.js';

export const NGINX = '/usr/sbin/nginx';

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

export interface Nginx {
  url: string;
  accessLog: string;
  stop(): Promise<void>;
}

/** nginx in the foreground with its prefix, pid, temp paths and logs in a temp dir. */
export async function startNginx(root: string): Promise<Nginx> {
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


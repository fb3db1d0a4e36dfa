/**
 * Targets from a mirror with a flat layout (repository.mirrorUrl), on the REAL otad (real steps,
 * REST) against a real ota-server on loopback behind a counting proxy (createCrashWorld). The
 * mirror is a loopback server shaped like GitHub release assets: `GET /<owner>/<repo>/releases/
 * download/<tag>/<asset>` answers 302 to a second loopback server, the "storage host", which
 * serves the bytes. The assets are what `ota-repo mirror-assets` wrote (run as the CLI). Covered:
 *  - the release is downloaded from the mirror through the redirect, held to the signed length and
 *    hash, and installed; the server's targets/ is not asked for a package or delta;
 *  - a mirror serving wrong bytes: the download fails its hash check, otad says so (log and the
 *    `mirror-fallback` audit event) and downloads the target from the server instead; the installed
 *    tree is the signed one.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, createReadStream } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { BUILT_OTAD, createCrashWorld, PRODUCT, type CrashWorld, type RunningDaemon } from '../../support/crash-harness.js';
import { REPO_ROOT, query } from '../../support/otad-process.js';

const exec = promisify(execFile);
const OWNER_REPO = 'acme/robot-ai';
const TAG = 'ota';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await Promise.resolve(c()).catch(() => {});
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** A loopback proxy in front of the ota-server that remembers every path asked for. */
async function countingProxy(target: string): Promise<{ url: string; paths: string[] }> {
  const upstream = new URL(target);
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    const forward = httpRequest({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  return { url: await listen(server), paths };
}

/** The storage host: serves the files of `dir` under /blobs/<name>, with single ranges as a CDN does. */
async function storageHost(dir: string): Promise<{ url: string; served: string[] }> {
  const served: string[] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.replace(/^\/blobs\//, ''));
    const file = join(dir, name);
    if (name.includes('/') || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    served.push(name);
    const size = statSync(file).size;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    if (range && start >= size) {
      res.writeHead(416, { 'content-range': `bytes */${size}` }).end();
      return;
    }
    res.writeHead(range ? 206 : 200, {
      'content-type': 'application/octet-stream',
      'content-length': String(size - start),
      'accept-ranges': 'bytes',
      ...(range ? { 'content-range': `bytes ${start}-${size - 1}/${size}` } : {}),
    });
    createReadStream(file, { start }).pipe(res);
  });
  return { url: await listen(server), served };
}

/** The release-assets host: /<owner>/<repo>/releases/download/<tag>/<asset> → 302 to the storage host. */
async function releaseAssetsHost(storageUrl: string): Promise<{ url: string; asked: string[] }> {
  const asked: string[] = [];
  const prefix = `/${OWNER_REPO}/releases/download/${TAG}/`;
  const server = createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    if (!p.startsWith(prefix)) {
      res.writeHead(404).end('Not Found');
      return;
    }
    const asset = p.slice(prefix.length);
    asked.push(decodeURIComponent(asset));
    res.writeHead(302, { location: `${storageUrl}/blobs/${asset}?X-Amz-Signature=0123abcd&response-content-disposition=attachment` }).end();
  });
  return { url: await listen(server), asked };
}

const dispatch = (d: RunningDaemon, type: string) => d.api.request<{ runId: string | null }>('POST', '/api/v1/events', { product: PRODUCT, type });

async function update(w: CrashWorld, d: RunningDaemon): Promise<string> {
  const { runId } = await dispatch(d, 'CHECK_NOW');
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = (await d.api.request<{ products: Array<{ product: string; state: string; runId: string | null; lastOutcome: string | null }> }>('GET', '/api/v1/status')).products.find((p) => p.product === PRODUCT)!;
    if (s.state === 'idle' && s.runId === runId && s.lastOutcome !== null) {
      expect(s.lastOutcome, w.logTail()).toBe('committed');
      return runId!;
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} did not settle\n${w.logTail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function mirrorAssets(w: CrashWorld, out: string): Promise<{ assets: Array<{ target: string; asset: string; length: number; sha256: string }>; commands: string[]; text: string }> {
  const cli = join(REPO_ROOT, 'dist/src/cli/ota-repo.js');
  const args = ['--repo', join(w.root, 'server/repo'), 'mirror-assets', '--out', out, '--product', PRODUCT, '--github', OWNER_REPO, '--tag', TAG];
  const json = JSON.parse((await exec(process.execPath, [cli, '--json', ...args])).stdout) as { assets: Array<{ target: string; asset: string; length: number; sha256: string }>; commands: string[] };
  const text = (await exec(process.execPath, [cli, ...args])).stdout;
  return { ...json, text };
}

describe('targets from a flat mirror (GitHub release assets layout)', () => {
  it('downloads through the mirror and its redirect to the storage host, and falls back to the server, saying so, when the mirror serves wrong bytes', async () => {
    expect(existsSync(BUILT_OTAD), `${BUILT_OTAD} is missing: run \`npm run build\` first`).toBe(true);
    const w = await createCrashWorld({ seed: 7401, brokenEvery: 1000, bigFileBytes: 256 * 1024 });
    closers.push(() => w.close(process.env.OTA_TEST_KEEP === '1'));
    const assetsDir = join(w.root, 'mirror-assets');
    mkdirSync(assetsDir);
    const storage = await storageHost(assetsDir);
    const assetsHost = await releaseAssetsHost(storage.url);
    const doc = YAML.parse(readFileSync(w.sandbox.configPath, 'utf8')) as { server: { url: string }; products: Array<Record<string, unknown>> };
    const proxy = await countingProxy(doc.server.url);
    doc.server.url = proxy.url;
    doc.products[0]!.repository = { mirrorUrl: `${assetsHost.url}/${OWNER_REPO}/releases/download/${TAG}/` };
    writeFileSync(w.sandbox.configPath, YAML.stringify(doc));

    // ota-repo names the assets (flat: the target's base name) and prints the upload commands.
    const r1 = await w.publishNext();
    const first = await mirrorAssets(w, assetsDir);
    const pkg1 = `${PRODUCT}-${r1.version}.tar.gz`;
    expect(first.assets.map((a) => a.asset)).toContain(pkg1);
    expect(first.assets.find((a) => a.asset === pkg1)).toMatchObject({ target: `${PRODUCT}/${pkg1}` });
    expect(first.assets.some((a) => a.asset.endsWith('.manifest.json'))).toBe(false);
    for (const a of first.assets) expect(statSync(join(assetsDir, a.asset)).size).toBe(a.length);
    expect(readdirSync(assetsDir).sort()).toEqual(first.assets.map((a) => a.asset).sort());
    expect(first.commands.at(-1)).toContain(`gh release upload ${TAG} --repo ${OWNER_REPO} --clobber`);
    expect(first.commands.at(-1)).toContain(join(assetsDir, pkg1));
    expect(first.text).toContain(`repository.mirrorUrl: https://github.com/${OWNER_REPO}/releases/download/${TAG}/`);

    const d = await w.startOtad();
    closers.push(() => d.proc.kill('SIGTERM'));
    const run1 = await update(w, d);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r1.version]);
    expect(assetsHost.asked).toContain(pkg1);
    expect(storage.served).toContain(pkg1);
    // Only metadata and the manifest came from the server: no package, no delta.
    expect(proxy.paths.filter((p) => p.includes('/targets/') && p.endsWith('.tar.gz'))).toEqual([]);
    expect(query(w.sandbox.dbPath, "SELECT kind FROM audit WHERE kind = 'mirror-fallback'")).toEqual([]);
    expect(readFileSync(w.sandbox.logPath, 'utf8')).toContain('"target downloaded from the mirror"');

    // The next release's assets on the mirror are wrong (same length, one byte changed).
    const r2 = await w.publishNext();
    const second = await mirrorAssets(w, assetsDir);
    const wrong = second.assets.filter((a) => a.asset.includes(`${r2.version}.`) || a.asset.includes(`-to-${r2.version}`));
    expect(wrong.length).toBeGreaterThan(0);
    for (const a of wrong) {
      const file = join(assetsDir, a.asset);
      const bytes = readFileSync(file);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
      writeFileSync(file, bytes);
    }
    const before = proxy.paths.length;
    const run2 = await update(w, d);
    expect(run2).not.toBe(run1);
    expect((await w.inspectInstall()).matches.map((m) => m.version)).toEqual([r2.version]);
    const fallbacks = query<{ message: string; details: string }>(w.sandbox.dbPath, "SELECT message, details FROM audit WHERE kind = 'mirror-fallback'");
    expect(fallbacks.length).toBeGreaterThan(0);
    for (const f of fallbacks) {
      expect(f.message).toContain('TRUST_HASH_MISMATCH');
      expect(f.message).toContain('downloading it from the server instead');
      expect(wrong.map((a) => a.target)).toContain((JSON.parse(f.details) as { target: string }).target);
    }
    const fetchedFromServer = proxy.paths.slice(before).filter((p) => p.includes('/targets/') && p.endsWith('.tar.gz'));
    expect(fetchedFromServer.length).toBe(fallbacks.filter((f) => f.message.includes('.tar.gz')).length);
    expect(readFileSync(w.sandbox.logPath, 'utf8')).toMatch(/mirror http:\/\/127\.0\.0\.1:\d+\/acme\/robot-ai\/releases\/download\/ota\/[^ ]+ did not give robot-ai\/[^ ]+: TRUST_HASH_MISMATCH/);
  }, 300_000);
});

/**
 * The publisher studio's tools on a real ota-server over HTTP on 127.0.0.1: the product-type
 * template editor (schema errors per key and line, versions kept as files, diffs, a conflicting
 * save refused), resumable uploads (a piece resumed from what the server has, a real disk filling
 * up on a small tmpfs), the repositories' connection test (the robot's TUF client: good, bad
 * signature, expired, unreachable) and dependencies on siblings checked at review.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock, type Clock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { parseManifest } from '../../../src/manifest/schema.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import type { StudioRepository } from '../../../src/server/studio/repositories.js';
import { randomish, writeTarGz } from '../../support/tar-fixtures.js';
import { makeTempDir, RecordingAudit } from '../../support/tuf-repo.js';

const TOKEN = 'studio-tools-token-0123456789';
const DAY = 86_400_000;

let dir: string;
let server: OtaServer;
let url: string;
let audit: RecordingAudit;
const extra: OtaServer[] = [];

async function call(method: string, route: string, body?: unknown, raw?: Buffer): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(raw !== undefined ? { 'content-type': 'application/octet-stream' } : body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : JSON.parse(text) };
}

async function startServer(repoDir: string, options: { repositories?: StudioRepository[]; productTypesDir?: string } = {}): Promise<string> {
  audit = new RecordingAudit();
  server = createServer({
    repoDir,
    keysDir: path.join(dir, 'keys'),
    clock: systemClock,
    logger: silentLogger,
    audit,
    tokenFile: path.join(dir, 'token'),
    database: path.join(dir, 'fleet.db'),
    sourceRoots: [{ name: 'builds', dir: path.join(dir, 'sources') }],
    timestampRefresh: false,
    prune: false,
    rolloutTick: false,
    ...(options.repositories !== undefined ? { studioRepositories: options.repositories } : {}),
    ...(options.productTypesDir !== undefined ? { productTypesDir: options.productTypesDir } : {}),
  });
  url = (await server.start(0, '127.0.0.1')).url;
  return url;
}

async function sourceTree(name: string, files: Record<string, string>): Promise<string> {
  const root = path.join(dir, 'sources', name);
  for (const [rel, text] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
  }
  return root;
}

beforeEach(async () => {
  dir = await makeTempDir('otad-studio-tools-');
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
});
afterEach(async () => {
  await server?.close();
  for (const s of extra.splice(0)) await s.close();
  try {
    execFileSync('umount', [path.join(dir, 'small')], { stdio: 'ignore' });
  } catch {
    // Not mounted.
  }
  await fs.rm(dir, { recursive: true, force: true });
});

describe('template editor API', () => {
  it('lists, validates with key and line, saves versions as files with diffs, and refuses a stale save', async () => {
    const types = path.join(dir, 'types');
    await fs.mkdir(types);
    const v1 = 'versionFile: VERSION\nchannel: stable\nservices:\n  - app.service\n';
    await fs.writeFile(path.join(types, 'app.yaml'), v1);
    await fs.mkdir(path.join(dir, 'repo'));
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    await startServer(path.join(dir, 'repo'), { productTypesDir: types });

    expect((await call('GET', '/api/v1/studio/templates')).body).toEqual({ templates: [{ name: 'app', version: 1 }] });
    const first = await call('GET', '/api/v1/studio/templates/app');
    expect(first.body).toMatchObject({ name: 'app', version: 1, current: 1, text: v1, problems: [], diffFromPrevious: null });

    // Schema errors come back with the key and its line.
    const bad = 'versionFile: VERSION\nchannel: Not A Channel\nprobation:\n  window: soon\nservics:\n  - x\ninstallPath: /opt/x\n';
    const checked = await call('POST', '/api/v1/studio/templates/app/check', { text: bad });
    const byField = Object.fromEntries(checked.body.problems.map((p: any) => [p.field, p]));
    expect(byField.channel.line).toBe(2);
    expect(byField['probation.window'].line).toBe(4);
    expect(byField.servics).toMatchObject({ line: 5 });
    expect(byField.servics.message).toMatch(/did you mean services/);
    expect(byField.installPath.message).toMatch(/each robot's product entry/);
    const refused = await call('PUT', '/api/v1/studio/templates/app', { text: bad, baseVersion: 1 });
    expect(refused.status).toBe(422);
    expect(await fs.readFile(path.join(types, 'app.yaml'), 'utf8')).toBe(v1);
    expect((await call('POST', '/api/v1/studio/templates/app/check', { text: 'a: [1' })).body.problems[0].message).toMatch(/not valid YAML/);

    // A good save: version 2, the original kept as version 1, the diff between them.
    const v2 = 'versionFile: VERSION\nchannel: beta\nservices:\n  - app.service\n  - app-worker.service\n';
    const saved = await call('PUT', '/api/v1/studio/templates/app', { text: v2, baseVersion: 1 });
    expect(saved.status).toBe(200);
    expect(saved.body).toMatchObject({ ok: true, version: 2 });
    expect(saved.body.diff).toEqual([
      { kind: 'same', text: 'versionFile: VERSION' },
      { kind: 'remove', text: 'channel: stable' },
      { kind: 'add', text: 'channel: beta' },
      { kind: 'same', text: 'services:' },
      { kind: 'same', text: '  - app.service' },
      { kind: 'add', text: '  - app-worker.service' },
    ]);
    expect(await fs.readFile(path.join(types, 'app.yaml'), 'utf8')).toBe(v2);
    expect(await fs.readFile(path.join(types, '.history', 'app', 'v1.yaml'), 'utf8')).toBe(v1);
    expect(await fs.readFile(path.join(types, '.history', 'app', 'v2.yaml'), 'utf8')).toBe(v2);
    expect(audit.events.some((e) => e.kind === 'studio-template-saved')).toBe(true);

    const got = await call('GET', '/api/v1/studio/templates/app');
    expect(got.body).toMatchObject({ version: 2, current: 2 });
    expect(got.body.versions.map((v: any) => v.version)).toEqual([1, 2]);
    expect(got.body.diffFromPrevious.filter((l: any) => l.kind !== 'same')).toHaveLength(3);
    expect((await call('GET', '/api/v1/studio/templates/app?version=1')).body).toMatchObject({ version: 1, current: 2, text: v1, diffFromPrevious: null });
    expect((await call('GET', '/api/v1/studio/templates/app?version=7')).status).toBe(404);

    // A save based on version 1 after version 2 exists: refused, nothing written.
    const stale = await call('PUT', '/api/v1/studio/templates/app', { text: v1, baseVersion: 1 });
    expect(stale.status).toBe(409);
    expect(stale.body.error.code).toBe('TEMPLATE_CHANGED');
    expect(await fs.readFile(path.join(types, 'app.yaml'), 'utf8')).toBe(v2);

    // The studio's release step reads the saved version (its channel now beta).
    const context = await call('GET', '/api/v1/studio/context');
    expect(context.body.productTypes.find((t: any) => t.name === 'app').channel).toBe('beta');
  });
});

describe('resumable uploads API', () => {
  it('resumes a piece from the bytes the server kept after a broken connection, then scans the package', async () => {
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    await startServer(path.join(dir, 'repo'));
    const file = path.join(dir, 'big.tar.gz');
    await writeTarGz(file, [{ name: 'VERSION', content: '2.0.0\n' }, { name: 'data.bin', content: randomish(3 * 1024 * 1024, 7) }]);
    const bytes = await fs.readFile(file);
    const started = await call('POST', '/api/v1/studio/uploads', { name: 'big.tar.gz', size: bytes.length });
    expect(started.status).toBe(201);
    const id = started.body.id;

    // The first piece's connection is cut after 1 MiB of its body: a raw socket, destroyed.
    const net = await import('node:net');
    const { port } = new URL(url);
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(`PUT /api/v1/studio/uploads/${id}?offset=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${bytes.length}\r\n\r\n`);
        socket.write(bytes.subarray(0, 1024 * 1024), () => setTimeout(() => { socket.destroy(); resolve(); }, 300));
      });
      socket.on('error', reject);
    });
    const status = await call('GET', `/api/v1/studio/uploads/${id}`);
    expect(status.body.received).toBeGreaterThan(0);
    expect(status.body.received).toBeLessThanOrEqual(1024 * 1024);
    const have = status.body.received as number;

    // From the wrong offset: refused with the right one.
    const wrong = await call('PUT', `/api/v1/studio/uploads/${id}?offset=0`, undefined, bytes.subarray(0, 10));
    expect(wrong.status).toBe(409);
    expect(wrong.body.error.code).toBe('UPLOAD_OFFSET_MISMATCH');
    expect((await call('POST', `/api/v1/studio/uploads/${id}/finish`)).body.error.code).toBe('UPLOAD_OFFSET_MISMATCH');

    const rest = await call('PUT', `/api/v1/studio/uploads/${id}?offset=${have}`, undefined, bytes.subarray(have));
    expect(rest.body.received).toBe(bytes.length);
    const draft = await call('POST', `/api/v1/studio/uploads/${id}/finish`);
    expect(draft.status).toBe(201);
    expect(draft.body.scan.ok).toBe(true);
    expect(draft.body.package.length).toBe(bytes.length);
    // The upload became the draft: nothing left in the upload folder.
    expect(await fs.readdir(path.join(dir, 'repo', '.studio-uploads'))).toEqual([]);
    expect((await call('GET', `/api/v1/studio/uploads/${id}`)).status).toBe(404);
  });

  it('answers DISK_FULL (507) before an upload that does not fit and mid-upload when the disk fills, and resumes once there is room', async (ctx) => {
    const small = path.join(dir, 'small');
    await fs.mkdir(small);
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', small], { stdio: 'pipe' });
    } catch (error) {
      console.warn(`disk-full upload test skipped: mounting a 6 MiB tmpfs failed (${(error as Error).message.split('\n')[0]}); it needs root`);
      ctx.skip();
      return;
    }
    const repoDir = path.join(small, 'repo');
    await createPublisher({ repoDir, keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    await startServer(repoDir);

    const tooBig = await call('POST', '/api/v1/studio/uploads', { name: 'huge.tar.gz', size: 50 * 1024 * 1024 });
    expect(tooBig.status).toBe(507);
    expect(tooBig.body.error.code).toBe('DISK_FULL');
    expect(tooBig.body.error.message).toMatch(/free in its repository folder, and huge\.tar\.gz needs 50\.0 MiB/);

    const file = path.join(dir, 'pkg.tar.gz');
    await writeTarGz(file, [{ name: 'VERSION', content: '2.0.0\n' }, { name: 'data.bin', content: randomish(3 * 1024 * 1024, 3) }]);
    const bytes = await fs.readFile(file);
    const started = await call('POST', '/api/v1/studio/uploads', { name: 'pkg.tar.gz', size: bytes.length });
    expect(started.status).toBe(201);
    // Something else fills the disk meanwhile.
    const filler = path.join(small, 'filler');
    await fs.writeFile(filler, Buffer.alloc(4 * 1024 * 1024));
    const full = await call('PUT', `/api/v1/studio/uploads/${started.body.id}?offset=0`, undefined, bytes);
    expect(full.status).toBe(507);
    expect(full.body.error.code).toBe('DISK_FULL');
    expect(full.body.error.message).toMatch(/full after \d+ of \d+ bytes of pkg\.tar\.gz: free space on the server, then resume/);
    // The server still answers; after room is made the upload continues where it stopped.
    await fs.rm(filler);
    const have = (await call('GET', `/api/v1/studio/uploads/${started.body.id}`)).body.received as number;
    expect(have).toBeLessThan(bytes.length);
    expect((await call('PUT', `/api/v1/studio/uploads/${started.body.id}?offset=${have}`, undefined, bytes.subarray(have))).body.received).toBe(bytes.length);
    const draft = await call('POST', `/api/v1/studio/uploads/${started.body.id}/finish`);
    expect(draft.body.scan.ok).toBe(true);
    expect(draft.body.package.sha256).toBe((await import('node:crypto')).createHash('sha256').update(bytes).digest('hex'));
  });
});

describe('repository connection test API', () => {
  async function repoServer(name: string, clock: Clock, expiryMs?: Record<string, number>): Promise<{ url: string; root: string }> {
    const repoDir = path.join(dir, name, 'repo');
    const publisher = createPublisher({ repoDir, keysDir: path.join(dir, name, 'keys'), clock });
    await publisher.init(expiryMs !== undefined ? { expiryMs } : {});
    const old = await sourceTree(`${name}-1.0.0`, { VERSION: '1.0.0\n' });
    await publisher.add({ product: 'robot-ai', version: '1.0.0', sourceDir: old });
    await publisher.publish();
    const s = createServer({ repoDir, keysDir: path.join(dir, name, 'keys'), clock, logger: silentLogger, database: path.join(dir, name, 'fleet.db'), timestampRefresh: false, prune: false, rolloutTick: false });
    extra.push(s);
    return { url: `${(await s.start(0, '127.0.0.1')).url}/metadata/`, root: path.join(repoDir, 'metadata', '1.root.json') };
  }

  it('verifies each repository with the TUF client from its trusted root and names what is wrong', async () => {
    const staging = await repoServer('staging', systemClock, { targets: 10 * DAY });
    const other = await repoServer('other', systemClock);
    const past: Clock = { now: () => Date.now() - 3 * DAY, monotonic: () => systemClock.monotonic() };
    const stale = await repoServer('stale', past);
    await fs.mkdir(path.join(dir, 'repo'), { recursive: true });
    await createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock }).init();
    await startServer(path.join(dir, 'repo'), {
      repositories: [
        { name: 'staging', url: staging.url, trustedRoot: staging.root },
        // Another repository's root for staging's URL: its metadata is not signed by those keys.
        { name: 'production', url: staging.url, trustedRoot: other.root },
        { name: 'stale', url: stale.url, trustedRoot: stale.root },
        { name: 'test', url: 'http://127.0.0.1:9/metadata/', trustedRoot: staging.root },
      ],
    });
    const list = await call('GET', '/api/v1/studio/repositories');
    expect(list.body.repositories.map((r: any) => r.name)).toEqual(['staging', 'production', 'stale', 'test']);
    expect(list.body.warnDays).toMatchObject({ root: 30, targets: 14, snapshot: 2 });

    const good = (await call('POST', '/api/v1/studio/repositories/staging/test')).body;
    expect(good.ok).toBe(true);
    expect(good.roles.map((r: any) => r.role)).toEqual(['root', 'timestamp', 'snapshot', 'targets']);
    for (const r of good.roles) expect(Date.parse(r.expires)).toBeGreaterThan(Date.now());
    expect(good.targets).toBeGreaterThan(0);
    // targets expires in 10 days, under the 14-day threshold: flagged; root (365 days) is not.
    expect(good.roles.find((r: any) => r.role === 'targets').warning).toMatch(/^targets expires in (9|10) days/);
    expect(good.roles.find((r: any) => r.role === 'root').warning).toBeNull();
    expect(good.warnings).toHaveLength(1);

    const badSig = (await call('POST', '/api/v1/studio/repositories/production/test')).body;
    expect(badSig).toMatchObject({ ok: false, problem: 'bad-signature' });
    expect(badSig.error.code).toBe('TRUST_SIGNATURE');

    const expired = (await call('POST', '/api/v1/studio/repositories/stale/test')).body;
    expect(expired).toMatchObject({ ok: false, problem: 'expired' });
    expect(expired.error.code).toBe('TRUST_EXPIRED');

    const down = (await call('POST', '/api/v1/studio/repositories/test/test')).body;
    expect(down).toMatchObject({ ok: false, problem: 'unreachable' });
    expect((await call('POST', '/api/v1/studio/repositories/nope/test')).status).toBe(404);
  });
});

describe('dependencies at review', () => {
  it('refuses an unknown sibling and an unsatisfiable range, and signs a satisfiable one into the manifest', async () => {
    const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
    await publisher.init();
    for (const v of ['1.3.0', '1.4.2']) {
      await publisher.add({ product: 'robot-ai-sibling', version: v, sourceDir: await sourceTree(`sib-${v}`, { VERSION: `${v}\n` }) });
    }
    await publisher.publish();
    await startServer(path.join(dir, 'repo'));
    await sourceTree('robot-ai-2.0.0', { VERSION: '2.0.0\n', 'bin/run': '#!/bin/sh\n' });
    const draft = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-2.0.0' });
    const base = { type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '2.0.0' };

    const refused = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { ...base, dependencies: { 'robot-ai-sibling': '^2.0.0', 'robot-ai-arm': '^1.0.0', 'robot-ai-x': 'not a range' } });
    expect(refused.body.ok).toBe(false);
    expect(refused.body.fieldErrors['dependencies.robot-ai-sibling']).toBe('no published version of robot-ai-sibling satisfies ^2.0.0 (published: 1.4.2, 1.3.0)');
    expect(refused.body.fieldErrors['dependencies.robot-ai-arm']).toBe('no product robot-ai-arm is published in this repository');
    expect(refused.body.fieldErrors['dependencies.robot-ai-x']).toMatch(/semver range/);

    const ok = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { ...base, dependencies: { 'robot-ai-sibling': '>=1.4.0 <2.0.0' } });
    expect(ok.body.ok).toBe(true);
    expect(ok.body.manifest.dependencies).toEqual({ 'robot-ai-sibling': '>=1.4.0 <2.0.0' });
    expect(parseManifest(ok.body.manifestText).dependencies).toEqual({ 'robot-ai-sibling': '>=1.4.0 <2.0.0' });
  });
});

// The disk-full test needs mount(8); say so rather than pass silently when it is missing.
if (!existsSync('/usr/bin/mount') && !existsSync('/bin/mount')) console.warn('mount(8) is missing: the disk-full upload test will skip');

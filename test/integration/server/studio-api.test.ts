/**
 * The publisher studio's REST API against a real ota-server on loopback: folders under a source
 * root, the robot's package scan on a hostile and a good tree, field-by-field release validation,
 * the reviewed checksums enforced at publish, and the robot's TUF client over HTTP finding the
 * release with exactly the reviewed bytes.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPackage } from '../../../src/package/create.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import { createFetchDownloader, createFetchMetadataFetcher } from '../../../src/trust/fetch-ports.js';
import { createTufRepository } from '../../../src/trust/tuf-repository.js';
import { writeTarGz } from '../../support/tar-fixtures.js';
import { makeTempDir, RecordingAudit } from '../../support/tuf-repo.js';

const TOKEN = 'studio-token-0123456789abcdef';
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

describe('publisher studio API', () => {
  let dir: string;
  let server: OtaServer;
  let url: string;
  let audit: RecordingAudit;
  const repoDir = () => path.join(dir, 'repo');

  async function call(method: string, route: string, body?: unknown, token: string | null = TOKEN): Promise<{ status: number; body: any }> {
    const res = await fetch(`${url}${route}`, {
      method,
      headers: { ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: await res.json() };
  }

  async function tree(name: string, files: Record<string, string>): Promise<string> {
    const root = path.join(dir, 'sources', name);
    for (const [rel, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
      await fs.writeFile(path.join(root, rel), text);
    }
    return root;
  }

  beforeEach(async () => {
    dir = await makeTempDir('otad-studio-api-');
    const publisher = createPublisher({ repoDir: repoDir(), keysDir: path.join(dir, 'keys'), clock: systemClock });
    await publisher.init();
    // An earlier release on stable, published the ota-repo way.
    const old = await tree('robot-ai-1.2.0', { VERSION: '1.2.0\n', 'bin/run': '#!/bin/sh\n' });
    await publisher.add({ product: 'robot-ai', version: '1.2.0', sourceDir: old, check: { versionFile: 'VERSION' } });
    await publisher.publish();
    await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
    audit = new RecordingAudit();
    server = createServer({
      repoDir: repoDir(),
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
    });
    url = (await server.start(0, '127.0.0.1')).url;
  });

  afterEach(async () => {
    await server?.close();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('answers 401 on every endpoint without the upload token or with a wrong one, and logs the refusal', async () => {
    for (const [method, route] of [
      ['GET', '/api/v1/studio/context'],
      ['GET', '/api/v1/studio/folders?root=builds'],
      ['POST', '/api/v1/studio/drafts'],
      ['POST', '/api/v1/studio/drafts/x/publish'],
    ] as const) {
      expect((await call(method, route, undefined, null)).status, route).toBe(401);
      const wrong = await call(method, route, undefined, 'not-the-token-at-all');
      expect(wrong.status, route).toBe(401);
      expect(wrong.body.error.code).toBe('API_UNAUTHORIZED');
    }
    expect(audit.events.filter((e) => e.kind === 'api-auth-failure').length).toBe(8);
  });

  it('lists the folders of a source root and refuses a path or a link that leads outside it', async () => {
    await tree('robot-ai-1.3.0', { VERSION: '1.3.0\n' });
    await fs.symlink('/etc', path.join(dir, 'sources', 'escape'));
    const top = await call('GET', '/api/v1/studio/folders?root=builds&path=');
    expect(top.status).toBe(200);
    expect(top.body.folders).toEqual(['robot-ai-1.2.0', 'robot-ai-1.3.0']);
    expect((await call('GET', '/api/v1/studio/folders?root=builds&path=..')).body.error.code).toBe('API_INVALID_REQUEST');
    const viaLink = await call('GET', '/api/v1/studio/folders?root=builds&path=escape');
    expect(viaLink.status).toBe(400);
    expect(viaLink.body.error.message).toContain('outside source root builds');
    expect((await call('GET', '/api/v1/studio/folders?root=nope')).body.error.message).toContain('configured: builds');
  });

  it('shows the package scan refusing a hostile tree, with the whole tree and the offending entry, and keeps nothing', async () => {
    const root = await tree('hostile', { VERSION: '1.3.0\n', 'bin/run': 'x' });
    await fs.symlink('/etc/shadow', path.join(root, 'bin', 'shadow'));
    const res = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'hostile' });
    expect(res.status).toBe(200);
    expect(res.body.package).toBeNull();
    expect(res.body.scan.ok).toBe(false);
    expect(res.body.scan.error.code).toBe('PACKAGE_UNSAFE_LINK');
    expect(res.body.scan.error.details.entry).toBe('bin/shadow');
    expect(res.body.scan.tree.map((e: { path: string }) => e.path)).toEqual(['VERSION', 'bin', 'bin/run', 'bin/shadow']);
    expect(await fs.readdir(path.join(repoDir(), '.studio-drafts'))).toEqual([]);
  });

  it('scans an uploaded archive as a robot would: a hostile one and a non-gzip body are refused and kept nowhere, a good one becomes a draft', async () => {
    const upload = async (body: Buffer, name: string) => {
      const res = await fetch(`${url}/api/v1/studio/drafts/archive?name=${encodeURIComponent(name)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/gzip' },
        body,
      });
      return { status: res.status, body: (await res.json()) as any };
    };
    const hostile = await writeTarGz(path.join(dir, 'hostile.tar.gz'), [{ name: 'VERSION', content: '1.3.0\n' }, { name: '../../etc/cron.d/x', content: '* * * * * root sh\n' }]);
    const refused = await upload(await fs.readFile(hostile), 'hostile.tar.gz');
    expect(refused.status).toBe(200);
    expect(refused.body.scan.error.code).toBe('PACKAGE_UNSAFE_PATH');
    expect(refused.body.source).toEqual({ root: '(uploaded archive)', path: 'hostile.tar.gz' });
    expect((await upload(Buffer.from('not a package'), 'x.tar.gz')).body.scan.error.code).toBe('PACKAGE_CORRUPT');
    expect(await fs.readdir(path.join(repoDir(), '.studio-drafts'))).toEqual([]);

    const good = await writeTarGz(path.join(dir, 'good.tar.gz'), [{ name: 'VERSION', content: '1.3.0\n' }, { name: 'bin', type: 'directory' }, { name: 'bin/run', content: 'x', mode: 0o755 }]);
    const accepted = await upload(await fs.readFile(good), 'robot-ai-1.3.0.tar.gz');
    expect(accepted.status).toBe(201);
    expect(accepted.body.package.sha256).toBe(sha256(await fs.readFile(good)));
    expect(accepted.body.scan.files.map((f: { path: string }) => f.path)).toEqual(['VERSION', 'bin', 'bin/run']);
    const review = await call('POST', `/api/v1/studio/drafts/${accepted.body.id}/review`, { type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '1.3.0' });
    expect(review.body.ok).toBe(true);
  });

  it('takes an uploaded zstd package as it is: a draft that says zstd, reviewed and published as .tar.zst, downloaded and verified by the robot', async () => {
    const src = await tree('zstd-1.3.0', { VERSION: '1.3.0\n', 'bin/run': '#!/bin/sh\necho run\n' });
    const file = path.join(dir, 'robot-ai-1.3.0.tar.zst');
    await createPackage(src, file, { compression: 'zstd' });
    const bytes = await fs.readFile(file);
    expect(bytes.subarray(0, 4).toString('hex')).toBe('28b52ffd');
    const res = await fetch(`${url}/api/v1/studio/drafts/archive?name=robot-ai-1.3.0.tar.zst`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/zstd' },
      body: bytes,
    });
    expect(res.status).toBe(201);
    const draft = (await res.json()) as any;
    expect(draft.package).toEqual({ length: bytes.length, sha256: sha256(bytes), compression: 'zstd' });
    const review = await call('POST', `/api/v1/studio/drafts/${draft.id}/review`, { type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '1.3.0' });
    expect(review.body.ok).toBe(true);
    expect(review.body.packageTarget.name).toBe('robot-ai/robot-ai-1.3.0.tar.zst');
    expect(review.body.manifest.package.target).toBe('robot-ai/robot-ai-1.3.0.tar.zst');
    const published = await call('POST', `/api/v1/studio/drafts/${draft.id}/publish`, { packageSha256: review.body.packageTarget.sha256, manifestSha256: review.body.manifestTarget.sha256 });
    expect(published.status).toBe(201);
    const robot = createTufRepository({
      metadataDir: path.join(dir, 'robot', 'metadata'),
      metadataBaseUrl: `${url}/metadata`,
      trustedRootPath: path.join(repoDir(), 'metadata', '1.root.json'),
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock: systemClock,
      logger: silentLogger,
    });
    const latest = (await robot.latestRelease('robot-ai'))!;
    expect(latest.manifest.package.target).toBe('robot-ai/robot-ai-1.3.0.tar.zst');
    const dest = path.join(dir, 'robot', 'pkg');
    await robot.downloadTarget({ name: latest.manifest.package.target, length: latest.manifest.package.length, sha256: latest.manifest.package.sha256 }, dest);
    expect((await fs.readFile(dest)).equals(bytes)).toBe(true);
    // A body that is neither gzip nor zstd: refused by the scan, nothing kept (the published draft is gone too).
    const neither = await fetch(`${url}/api/v1/studio/drafts/archive?name=x.tar.zst`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/zstd' }, body: Buffer.from('28b5 not zstd') });
    const refused = (await neither.json()) as any;
    expect(refused.scan.error.code).toBe('PACKAGE_CORRUPT');
    expect(refused.scan.error.message).toContain('neither gzip nor zstd');
    expect(await fs.readdir(path.join(repoDir(), '.studio-drafts'))).toEqual([]);
  });

  it('packs folders with the compression asked for, else as ota-repo.json says; the review holds a product with its own setting to it, as ota-repo would', async () => {
    await tree('robot-ai-1.3.0', { VERSION: '1.3.0\n', 'bin/run': '#!/bin/sh\necho run\n' });
    const head = async (id: string) => {
      const [file] = await fs.readdir(path.join(repoDir(), '.studio-drafts', id));
      return (await fs.readFile(path.join(repoDir(), '.studio-drafts', id, file!))).subarray(0, 4).toString('hex');
    };
    // No setting: gzip, and the context says why.
    expect((await call('GET', '/api/v1/studio/context')).body.compression).toEqual({ compression: 'gzip', setting: null });
    const plain = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.3.0' });
    expect(plain.body.package.compression).toBe('gzip');
    expect(await head(plain.body.id)).toMatch(/^1f8b/);
    const zstd = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.3.0', compression: 'zstd' });
    expect(zstd.status).toBe(201);
    expect(zstd.body.package.compression).toBe('zstd');
    expect(await head(zstd.body.id)).toBe('28b52ffd');
    const bad = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.3.0', compression: 'xz' });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'API_INVALID_REQUEST', message: expect.stringContaining('"xz": expected "gzip" or "zstd"') });

    // The repository's default, and robot-ai's own setting.
    await fs.writeFile(path.join(repoDir(), 'ota-repo.json'), JSON.stringify({ compression: 'zstd', products: { 'robot-ai': { compression: 'gzip' } } }));
    expect((await call('GET', '/api/v1/studio/context')).body.compression).toEqual({ compression: 'zstd', setting: 'compression' });
    const byDefault = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.3.0' });
    expect(byDefault.body.package.compression).toBe('zstd');
    const fields = { type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '1.3.0' };
    const refused = await call('POST', `/api/v1/studio/drafts/${byDefault.body.id}/review`, fields);
    expect(refused.body.ok).toBe(false);
    expect(refused.body.fieldErrors.compression).toBe('the repository packs robot-ai with gzip (ota-repo.json products.robot-ai.compression); this package was packed with zstd: choose gzip in step 1 and build the package again');
    // Publish needs a review that passed: nothing was signed.
    expect((await call('POST', `/api/v1/studio/drafts/${byDefault.body.id}/publish`, { packageSha256: byDefault.body.package.sha256, manifestSha256: '0'.repeat(64) })).status).toBe(400);
    const ok = await call('POST', `/api/v1/studio/drafts/${plain.body.id}/review`, fields);
    expect(ok.body.ok).toBe(true);
    expect(ok.body.packageTarget.name).toBe('robot-ai/robot-ai-1.3.0.tar.gz');
    // An uploaded package is published as it is, as ota-repo publishes a ready package.
    const file = path.join(dir, 'up.tar.zst');
    await createPackage(path.join(dir, 'sources', 'robot-ai-1.3.0'), file, { compression: 'zstd' });
    const res = await fetch(`${url}/api/v1/studio/drafts/archive?name=up.tar.zst`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/zstd' }, body: await fs.readFile(file) });
    const uploaded = (await res.json()) as any;
    expect(uploaded.packed).toBe(false);
    expect((await call('POST', `/api/v1/studio/drafts/${uploaded.id}/review`, fields)).body.ok).toBe(true);
  });

  it('validates every field against the schema, the channel and the version file, then publishes exactly the reviewed bytes for the robot', async () => {
    await tree('robot-ai-1.3.0', { VERSION: '1.3.0\n', 'bin/run': '#!/bin/sh\necho run\n', 'config/robot.yaml': 'speed: 1\n' });
    const draft = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.3.0' });
    expect(draft.status).toBe(201);
    expect(draft.body.scan).toMatchObject({ ok: true, entries: 5 });
    expect(draft.body.scan.totalBytes).toBe('1.3.0\n'.length + '#!/bin/sh\necho run\n'.length + 'speed: 1\n'.length);
    const id = draft.body.id as string;
    const [packageFile] = await fs.readdir(path.join(repoDir(), '.studio-drafts', id));
    expect(sha256(await fs.readFile(path.join(repoDir(), '.studio-drafts', id, packageFile!)))).toBe(draft.body.package.sha256);

    const proposals = await call('GET', '/api/v1/studio/versions?product=robot-ai&channel=stable');
    expect(proposals.body).toEqual({ latest: '1.2.0', patch: '1.2.1', minor: '1.3.0', major: '2.0.0' });

    const base = { type: 'robot-ai', product: 'robot-ai', channel: 'stable', notes: '# 1.3.0\n\n- faster', requirements: { arch: 'amd64, arm64', minFreeBytes: '4096' } };
    const review = (fields: Record<string, unknown>) => call('POST', `/api/v1/studio/drafts/${id}/review`, { ...base, ...fields });
    expect((await review({ version: '1.3' })).body.fieldErrors.version).toContain('expected a semantic version');
    expect((await review({ version: '1.2.0' })).body.fieldErrors.version).toContain('already published');
    expect((await review({ version: '1.1.9' })).body.fieldErrors.version).toContain('greater than 1.2.0');
    expect((await review({ version: '1.4.0' })).body.fieldErrors.version).toContain('says 1.3.0');
    const several = await review({ version: '1.3.0', channel: 'Stable!', rolloutPercent: '150', requirements: { minFreeBytes: '-1' } });
    expect(Object.keys(several.body.fieldErrors).sort()).toEqual(['channel', 'requirements.minFreeBytes', 'rolloutPercent']);
    expect((await review({ version: '1.3.0', type: 'no-such-type' })).body.fieldErrors.type).toContain('known: robot-ai, robot-ai-sibling');

    const ok = await review({ version: '1.3.0' });
    expect(ok.body.ok).toBe(true);
    expect(ok.body.fileVersion).toBe('1.3.0');
    expect(ok.body.manifest).toMatchObject({ product: 'robot-ai', version: '1.3.0', requirements: { arch: ['amd64', 'arm64'], minFreeBytes: 4096 } });
    expect(ok.body.manifestTarget.sha256).toBe(sha256(ok.body.manifestText));
    // The manifest as add() signs it: with the release's tree index (and any delta that passes the gate).
    expect(ok.body.manifest.index).toMatchObject({ target: 'robot-ai/robot-ai-1.3.0.index.json', entries: 5 });
    expect(ok.body.manifestTarget.length).toBe(Buffer.byteLength(ok.body.manifestText));
    expect(ok.body.packageTarget).toEqual({ name: 'robot-ai/robot-ai-1.3.0.tar.gz', length: draft.body.package.length, sha256: draft.body.package.sha256 });
    expect(ok.body.notes.join(' ')).toContain('under config/, a preserved path of robot-ai');
    expect(ok.body.signing.find((s: { role: string }) => s.role === 'targets')).toMatchObject({ held: true, threshold: 1 });

    const wrong = await call('POST', `/api/v1/studio/drafts/${id}/publish`, { packageSha256: ok.body.packageTarget.sha256, manifestSha256: '0'.repeat(64) });
    expect(wrong.status).toBe(409);
    expect(wrong.body.error.code).toBe('PUBLISH_CONTENT_CHANGED');

    const published = await call('POST', `/api/v1/studio/drafts/${id}/publish`, { packageSha256: ok.body.packageTarget.sha256, manifestSha256: ok.body.manifestTarget.sha256 });
    expect(published.status).toBe(201);
    expect(published.body).toMatchObject({ product: 'robot-ai', version: '1.3.0', manifestTarget: ok.body.manifestTarget, packageTarget: ok.body.packageTarget });
    expect(audit.events.find((e) => e.kind === 'studio-publish')).toMatchObject({ product: 'robot-ai', message: expect.stringContaining('robot-ai 1.3.0') });
    expect((await call('POST', `/api/v1/studio/drafts/${id}/review`, { ...base, version: '1.3.1' })).status).toBe(404);

    // The robot's TUF client, over HTTP from the server's trusted root onwards.
    const robot = createTufRepository({
      metadataDir: path.join(dir, 'robot', 'metadata'),
      metadataBaseUrl: `${url}/metadata`,
      trustedRootPath: path.join(repoDir(), 'metadata', '1.root.json'),
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock: systemClock,
      logger: silentLogger,
    });
    const latest = (await robot.latestRelease('robot-ai'))!;
    expect(latest.manifest).toEqual(ok.body.manifest);
    const dest = path.join(dir, 'robot', 'pkg.tar.gz');
    await robot.downloadTarget({ name: latest.manifest.package.target, length: latest.manifest.package.length, sha256: latest.manifest.package.sha256 }, dest);
    expect(sha256(await fs.readFile(dest))).toBe(ok.body.packageTarget.sha256);
    expect((await call('GET', '/api/v1/studio/versions?product=robot-ai&channel=stable')).body.latest).toBe('1.3.0');
  });
  it('holding only a delegated key (no top-level targets key), publishes within its delegation and refuses another product with nothing written', async () => {
    // Offline: ota-repo delegate writes the role's key into the studio's keys folder, which also
    // holds the snapshot and timestamp keys, and no root or top-level targets key.
    const studioKeys = path.join(dir, 'studio-keys');
    await fs.mkdir(studioKeys, { mode: 0o700 });
    for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(dir, 'keys', role), path.join(studioKeys, role), { recursive: true });
    const offline = createPublisher({ repoDir: repoDir(), keysDir: path.join(dir, 'keys'), clock: systemClock });
    const delegation = await offline.delegate({ product: 'robot-ai', keyOut: studioKeys });
    await server.close();
    server = createServer({
      repoDir: repoDir(),
      keysDir: studioKeys,
      clock: systemClock,
      logger: silentLogger,
      audit,
      tokenFile: path.join(dir, 'token'),
      database: path.join(dir, 'fleet.db'),
      sourceRoots: [{ name: 'builds', dir: path.join(dir, 'sources') }],
      timestampRefresh: false,
      prune: false,
      rolloutTick: false,
    });
    url = (await server.start(0, '127.0.0.1')).url;

    const reviewed = async (folder: string, fields: Record<string, unknown>) => {
      const draft = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: folder });
      expect(draft.status).toBe(201);
      const ok = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { type: 'robot-ai', channel: 'stable', ...fields });
      expect(ok.body.ok).toBe(true);
      return { id: draft.body.id as string, ok: ok.body };
    };
    await tree('vacuum-1.0.0', { VERSION: '1.0.0\n', 'bin/run': '#!/bin/sh\n' });
    const vacuum = await reviewed('vacuum-1.0.0', { product: 'vacuum', version: '1.0.0' });
    const snapshotOf = async () => (await fs.readdir(path.join(repoDir(), 'metadata'))).concat(await fs.readdir(path.join(repoDir(), 'targets'), { recursive: true }) as string[]).sort();
    const before = await snapshotOf();
    const refused = await call('POST', `/api/v1/studio/drafts/${vacuum.id}/publish`, { packageSha256: vacuum.ok.packageTarget.sha256, manifestSha256: vacuum.ok.manifestTarget.sha256 });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('PUBLISH_OUTSIDE_DELEGATION');
    expect(refused.body.error.message).toContain('product-robot-ai (robot-ai/*)');
    expect(await snapshotOf()).toEqual(before);
    await expect(fs.access(path.join(repoDir(), 'staged.json'))).rejects.toMatchObject({ code: 'ENOENT' });

    await tree('robot-ai-1.3.0', { VERSION: '1.3.0\n', 'bin/run': '#!/bin/sh\necho run\n' });
    const good = await reviewed('robot-ai-1.3.0', { product: 'robot-ai', version: '1.3.0' });
    expect(good.ok.signing.find((s: { role: string }) => s.role === 'targets')).toMatchObject({ held: false });
    expect(good.ok.signing.find((s: { role: string }) => s.role === 'product-robot-ai')).toMatchObject({ held: true, paths: ['robot-ai/*'], keyids: [delegation.keyid] });
    const published = await call('POST', `/api/v1/studio/drafts/${good.id}/publish`, { packageSha256: good.ok.packageTarget.sha256, manifestSha256: good.ok.manifestTarget.sha256 });
    expect(published.status).toBe(201);
    expect(published.body.publish.published).toContain('2.product-robot-ai.json');

    const robot = createTufRepository({
      metadataDir: path.join(dir, 'robot', 'metadata'),
      metadataBaseUrl: `${url}/metadata`,
      trustedRootPath: path.join(repoDir(), 'metadata', '1.root.json'),
      fetcher: createFetchMetadataFetcher(),
      downloader: createFetchDownloader(),
      clock: systemClock,
      logger: silentLogger,
    });
    // 1.2.0 was signed by the top-level targets role, 1.3.0 through the delegation: the newest wins.
    const latest = (await robot.latestRelease('robot-ai'))!;
    expect(latest.manifest).toEqual(good.ok.manifest);
    const dest = path.join(dir, 'robot', 'pkg.tar.gz');
    await robot.downloadTarget({ name: latest.manifest.package.target, length: latest.manifest.package.length, sha256: latest.manifest.package.sha256 }, dest);
    expect(sha256(await fs.readFile(dest))).toBe(good.ok.packageTarget.sha256);
    expect(await robot.latestRelease('vacuum')).toBeNull();
  });

  it('publishes into another configured repository with the delegation key the studio holds for it, audited with the repository; refuses one it only tests, a product it holds no delegation for there, and a switch after review', async () => {
    // staging: its own root and offline keys; the studio holds robot-ai's delegated key for it and its online keys.
    const stagingDir = path.join(dir, 'staging');
    const stagingOffline = createPublisher({ repoDir: stagingDir, keysDir: path.join(dir, 'staging-offline-keys'), clock: systemClock });
    await stagingOffline.init();
    const stagingKeys = path.join(dir, 'staging-studio-keys');
    await fs.mkdir(stagingKeys, { mode: 0o700 });
    for (const role of ['snapshot', 'timestamp']) await fs.cp(path.join(dir, 'staging-offline-keys', role), path.join(stagingKeys, role), { recursive: true });
    const delegation = await stagingOffline.delegate({ product: 'robot-ai', keyOut: stagingKeys });
    await server.close();
    server = createServer({
      repoDir: repoDir(),
      keysDir: path.join(dir, 'keys'),
      clock: systemClock,
      logger: silentLogger,
      audit,
      tokenFile: path.join(dir, 'token'),
      database: path.join(dir, 'fleet.db'),
      sourceRoots: [{ name: 'builds', dir: path.join(dir, 'sources') }],
      studioRepositories: [
        { name: 'test', url: 'http://127.0.0.1:9/metadata/', trustedRoot: path.join(repoDir(), 'metadata', '1.root.json'), local: true },
        { name: 'staging', url: 'http://127.0.0.1:9/staging/metadata/', trustedRoot: path.join(stagingDir, 'metadata', '1.root.json'), path: stagingDir, keys: stagingKeys },
        { name: 'production', url: 'http://127.0.0.1:9/production/metadata/', trustedRoot: path.join(stagingDir, 'metadata', '1.root.json') },
      ],
      timestampRefresh: false,
      prune: false,
      rolloutTick: false,
    });
    url = (await server.start(0, '127.0.0.1')).url;
    const listing = async (root: string) => (await fs.readdir(path.join(root, 'metadata'))).concat((await fs.readdir(path.join(root, 'targets'), { recursive: true })) as string[]).sort();
    const ownBefore = await listing(repoDir());
    const ownTimestamp = await fs.readFile(path.join(repoDir(), 'metadata', 'timestamp.json'));

    const repos = await call('GET', '/api/v1/studio/repositories');
    expect(repos.body.repositories.map((r: { name: string; writable: boolean }) => [r.name, r.writable])).toEqual([['test', true], ['staging', true], ['production', false]]);
    // Versions come from the repository chosen: staging has no robot-ai yet, this server's has 1.2.0.
    expect((await call('GET', '/api/v1/studio/versions?product=robot-ai&channel=stable&repository=staging')).body.latest).toBeNull();
    expect((await call('GET', '/api/v1/studio/versions?product=robot-ai&channel=stable&repository=test')).body.latest).toBe('1.2.0');

    await tree('robot-ai-1.0.0', { VERSION: '1.0.0\n', 'bin/run': '#!/bin/sh\n' });
    const draft = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'robot-ai-1.0.0' });
    const fields = { type: 'robot-ai', product: 'robot-ai', channel: 'stable', version: '1.0.0' };
    // 1.0.0 is below this server's 1.2.0, and new in staging.
    expect((await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, fields)).body.fieldErrors.version).toContain('1.2.0');
    expect((await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { ...fields, repository: 'production' })).body.error.code).toBe('PUBLISH_REPOSITORY_NOT_WRITABLE');
    expect((await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { ...fields, repository: 'nowhere' })).status).toBe(404);
    const review = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/review`, { ...fields, repository: 'staging' });
    expect(review.body.ok, JSON.stringify(review.body)).toBe(true);
    expect(review.body.repository).toBe('staging');
    expect(review.body.signing.find((r: { role: string }) => r.role === 'product-robot-ai')).toMatchObject({ held: true, keyids: [delegation.keyid] });
    expect(review.body.signing.find((r: { role: string }) => r.role === 'targets')).toMatchObject({ held: false });
    const shown = { packageSha256: review.body.packageTarget.sha256, manifestSha256: review.body.manifestTarget.sha256 };
    const switched = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/publish`, { ...shown, repository: 'test' });
    expect(switched.status).toBe(409);
    expect(switched.body.error.code).toBe('PUBLISH_CONTENT_CHANGED');

    // A product the studio holds no staging delegation for: refused, nothing written anywhere.
    await tree('vacuum-1.0.0', { VERSION: '1.0.0\n', 'bin/run': '#!/bin/sh\n' });
    const vacuum = await call('POST', '/api/v1/studio/drafts', { root: 'builds', path: 'vacuum-1.0.0' });
    const vacuumReview = await call('POST', `/api/v1/studio/drafts/${vacuum.body.id}/review`, { ...fields, product: 'vacuum', repository: 'staging' });
    expect(vacuumReview.body.ok).toBe(true);
    const stagingBefore = await listing(stagingDir);
    const refused = await call('POST', `/api/v1/studio/drafts/${vacuum.body.id}/publish`, { packageSha256: vacuumReview.body.packageTarget.sha256, manifestSha256: vacuumReview.body.manifestTarget.sha256, repository: 'staging' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('PUBLISH_OUTSIDE_DELEGATION');
    expect(await listing(stagingDir)).toEqual(stagingBefore);

    const published = await call('POST', `/api/v1/studio/drafts/${draft.body.id}/publish`, { ...shown, repository: 'staging' });
    expect(published.status, JSON.stringify(published.body)).toBe(201);
    expect(published.body).toMatchObject({ product: 'robot-ai', version: '1.0.0', repository: 'staging', role: 'product-robot-ai' });
    expect(published.body.publish.published).toContain('2.product-robot-ai.json');
    expect(await fs.readdir(path.join(stagingDir, 'metadata'))).toContain('2.product-robot-ai.json');
    expect((await stagingOffline.listTargets()).map((t) => t.name).sort()).toEqual(['robot-ai/robot-ai-1.0.0.index.json', 'robot-ai/robot-ai-1.0.0.manifest.json', 'robot-ai/robot-ai-1.0.0.tar.gz']);
    // This server's own repository is untouched.
    expect(await listing(repoDir())).toEqual(ownBefore);
    expect(await fs.readFile(path.join(repoDir(), 'metadata', 'timestamp.json'))).toEqual(ownTimestamp);
    const event = audit.events.find((e) => e.kind === 'studio-publish');
    expect(event?.message).toBe('published robot-ai 1.0.0 (channel stable) from the publisher studio to repository staging, signed by product-robot-ai');
    expect(event?.details).toMatchObject({ repository: 'staging', role: 'product-robot-ai', manifest: { sha256: shown.manifestSha256 } });
  }, 60_000);
});

import { promises as fs } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import request from 'supertest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPackage } from '../../../src/package/create.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer, type Timer } from '../../../src/server/app.js';
import { newDeviceKey, postCheckin, report, tableCounts } from '../../support/fleet-db.js';
import { fakePackage, makeTempDir, RecordingAudit } from '../../support/tuf-repo.js';
import { writeTarGz } from '../../support/tar-fixtures.js';

const TOKEN = 'upload-token-abcdef0123456789';

class ManualTimer implements Timer {
  fn: (() => void) | null = null;
  intervalMs = 0;
  setInterval(fn: () => void, ms: number): unknown {
    this.fn = fn;
    this.intervalMs = ms;
    return 1;
  }
  clearInterval(): void {
    this.fn = null;
  }
}

describe('ota-server', () => {
  let dir: string;
  let server: OtaServer;
  let clock: ManualClock;
  let audit: RecordingAudit;
  let timer: ManualTimer;

  beforeEach(async () => {
    dir = await makeTempDir('otad-server-');
    clock = new ManualClock(Date.now());
    const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock });
    await publisher.init();
    await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
    audit = new RecordingAudit();
    timer = new ManualTimer();
    server = createServer({
      repoDir: path.join(dir, 'repo'),
      keysDir: path.join(dir, 'keys'),
      clock,
      logger: silentLogger,
      audit,
      tokenFile: path.join(dir, 'token'),
      maxUploadBytes: 64 * 1024,
      timestampRefresh: { intervalMs: 60_000, refreshWithinMs: 6 * 3_600_000, timer },
    });
  });
  afterEach(async () => {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  const upload = (query: string, body: Buffer, token: string | null = TOKEN) => {
    const req = request(server.app).post(`/api/v1/upload?${query}`).set('Content-Type', 'application/gzip');
    if (token !== null) req.set('Authorization', `Bearer ${token}`);
    return req.send(body);
  };

  it('serves metadata with an ETag, answers 304 to If-None-Match, and never lets timestamp.json be cached', async () => {
    const first = await request(server.app).get('/metadata/timestamp.json').expect(200);
    expect(first.headers['cache-control']).toBe('no-store');
    expect(first.headers.etag).toBeTruthy();
    await request(server.app).get('/metadata/timestamp.json').set('If-None-Match', first.headers.etag!).expect(304);
    const root = await request(server.app).get('/metadata/1.root.json').expect(200);
    expect(root.headers['cache-control']).toContain('immutable');
    await request(server.app).get('/metadata/2.root.json').expect(404);
  });

  it('serves byte ranges of targets so downloads can resume', async () => {
    const pkg = fakePackage('range', 20_000);
    const res = await upload('product=robot-ai&version=1.0.0', pkg).expect(201);
    const sha = res.body.packageTarget.sha256 as string;
    const part = await request(server.app)
      .get(`/targets/robot-ai/${sha}.robot-ai-1.0.0.tar.gz`)
      .set('Range', 'bytes=100-199')
      .buffer(true)
      .parse((r, cb) => {
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => cb(null, Buffer.concat(chunks)));
      })
      .expect(206);
    expect(part.headers['content-range']).toBe(`bytes 100-199/${pkg.length}`);
    expect(Buffer.compare(part.body as Buffer, pkg.subarray(100, 200))).toBe(0);
  });

  it('publishes an upload through the publisher library: a new signed release is listed', async () => {
    const res = await upload('product=robot-ai&version=1.2.0&notes=' + encodeURIComponent('line one\nline two'), fakePackage('x')).expect(201);
    expect(res.body.publish.targetsVersion).toBe(2);
    const targets = await server.publisher.listTargets();
    expect(targets.map((t) => t.name).sort()).toEqual(['robot-ai/robot-ai-1.2.0.index.json', 'robot-ai/robot-ai-1.2.0.manifest.json', 'robot-ai/robot-ai-1.2.0.tar.gz']);
    expect(audit.events.some((e) => e.kind === 'upload')).toBe(true);
  });

  it('scans an upload as a robot would before signing it: a hostile package and a disagreeing version file are refused with 400 and nothing is published', async () => {
    const hostile = path.join(dir, 'hostile.tar.gz');
    await writeTarGz(hostile, [{ name: '../../etc/evil', content: 'x' }]);
    const refused = await upload('product=robot-ai&version=1.0.0', await fs.readFile(hostile)).expect(400);
    expect(refused.body.error.code).toBe('PACKAGE_UNSAFE_PATH');
    const versioned = path.join(dir, 'versioned.tar.gz');
    await writeTarGz(versioned, [{ name: 'VERSION', content: '1.0.0\n' }]);
    const mismatch = await upload('product=robot-ai&version=1.1.0&versionFile=VERSION', await fs.readFile(versioned)).expect(400);
    expect(mismatch.body.error.code).toBe('RELEASE_VERSION_MISMATCH');
    expect(await server.publisher.listTargets()).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'repo', '.uploads'))).toEqual([]);
    const ok = await upload('product=robot-ai&version=1.0.0&versionFile=VERSION', await fs.readFile(versioned)).expect(201);
    expect(ok.body.version).toBe('1.0.0');
  });

  it('refuses an upload without a token or with a wrong one (401), and audits it', async () => {
    await upload('product=robot-ai&version=1.0.0', fakePackage('x'), null).expect(401);
    await upload('product=robot-ai&version=1.0.0', fakePackage('x'), 'wrong-token-wrong-token').expect(401);
    expect(audit.events.filter((e) => e.kind === 'api-auth-failure')).toHaveLength(2);
    expect(await server.publisher.listTargets()).toEqual([]);
  });

  it('refuses an upload larger than the limit with 413 and keeps nothing', async () => {
    await upload('product=robot-ai&version=1.0.0', Buffer.alloc(100 * 1024, 0x1f)).expect(413);
    expect(await server.publisher.listTargets()).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'repo', '.uploads')).catch(() => [])).toEqual([]);
  });

  it('stops a chunked upload (no Content-Length) at the limit with 413 and removes the partial file', async () => {
    const { port } = await server.start(0, '127.0.0.1');
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/api/v1/upload?product=robot-ai&version=1.0.0', headers: { Authorization: `Bearer ${TOKEN}`, 'Transfer-Encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      const chunk = Buffer.alloc(16 * 1024, 0x1f);
      let sent = 0;
      const pump = () => {
        while (sent < 20) {
          sent += 1;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    expect(status).toBe(413);
    expect(await server.publisher.listTargets()).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'repo', '.uploads'))).toEqual([]);
  });

  it('rejects a body that is not gzip, an invalid version and a duplicate release with clear errors', async () => {
    const notGzip = await upload('product=robot-ai&version=1.0.0', Buffer.from('hello')).expect(400);
    expect(notGzip.body.error.code).toBe('API_INVALID_REQUEST');
    const badVersion = await upload('product=robot-ai&version=1.0', fakePackage('x')).expect(400);
    expect(badVersion.body.error.message).toContain('field version');
    await upload('product=robot-ai&version=1.0.0', fakePackage('x')).expect(201);
    const dup = await upload('product=robot-ai&version=1.0.0', fakePackage('y')).expect(409);
    expect(dup.body.error.message).toContain('already exists');
    expect(notGzip.body.error.message).toContain('neither gzip nor zstd');
    expect(await fs.readdir(path.join(dir, 'repo', '.uploads'))).toEqual([]);
  });

  it('publishes an uploaded zstd package under a .tar.zst target, the same bytes', async () => {
    const src = path.join(dir, 'zsrc');
    await fs.mkdir(src, { recursive: true });
    await fs.writeFile(path.join(src, 'VERSION'), '1.0.0\n');
    const file = path.join(dir, 'p.tar.zst');
    await createPackage(src, file, { compression: 'zstd' });
    const bytes = await fs.readFile(file);
    await upload('product=robot-ai&version=1.0.0', bytes).expect(201);
    const targets = await server.publisher.listTargets();
    const pkg = targets.find((t) => t.name.startsWith('robot-ai/robot-ai-1.0.0.tar'));
    expect(pkg?.name).toBe('robot-ai/robot-ai-1.0.0.tar.zst');
    expect(pkg?.length).toBe(bytes.length);
    expect(await fs.readdir(path.join(dir, 'repo', '.uploads'))).toEqual([]);
  });

  it('records signed device check-ins in the fleet database (<repo>/fleet.db) and shows them in the fleet view (token required)', async () => {
    const { url } = await server.start(0, '127.0.0.1');
    const key = newDeviceKey();
    await postCheckin({ url, key, body: report('robot-7', { version: '1.0.0' }), now: clock.now() }).then((r) => expect(r.status).toBe(202));
    clock.advance(60_000);
    await postCheckin({ url, key, body: report('robot-7', { version: '1.1.0', state: 'validate' }), now: clock.now() }).then((r) => expect(r.status).toBe(202));
    await postCheckin({ url, key: newDeviceKey(), body: report('robot-9', { version: null }), now: clock.now() }).then((r) => expect(r.status).toBe(202));
    await request(server.app).get('/api/v1/devices').expect(401);
    const res = await request(server.app).get('/api/v1/devices').set('Authorization', `Bearer ${TOKEN}`).expect(200);
    expect(res.body.devices).toHaveLength(2);
    expect(res.body.devices[0]).toMatchObject({ id: 'robot-7', status: 'pending', checkins: 2, products: [{ product: 'robot-ai', version: '1.1.0', state: 'validate' }] });
    expect(res.body.devices[0].lastSeen - res.body.devices[0].firstSeen).toBe(60_000);
    expect((await tableCounts(path.join(dir, 'repo', 'fleet.db'))).devices).toBe(2);
  });

  it('refuses an unsigned check-in (the old format) with 401 DEVICE_AUTH_REQUIRED, and malformed and oversized ones', async () => {
    const unsigned = await request(server.app).post('/api/v1/checkin').send({ deviceId: 'robot-7', product: 'robot-ai', version: '0.0.1-pwned', state: 'failed' }).expect(401);
    expect(unsigned.body.error.code).toBe('DEVICE_AUTH_REQUIRED');
    const { url } = await server.start(0, '127.0.0.1');
    const bad = await postCheckin({ url, key: newDeviceKey(), body: report('robot-7', { product: '../etc' }), now: clock.now() });
    expect(bad).toMatchObject({ status: 400, body: { error: { code: 'API_INVALID_REQUEST', message: expect.stringContaining('product') } } });
    await request(server.app).post('/api/v1/checkin').set('Content-Type', 'application/json').send(JSON.stringify({ pad: 'x'.repeat(20_000) })).expect(413);
  });

  it('re-signs the timestamp on the timer only when it is close to expiry', async () => {
    await server.start(0, '127.0.0.1');
    expect(timer.intervalMs).toBe(60_000);
    const before = (await server.publisher.loadState()).timestamp.signed.version;
    timer.fn!();
    await server.tick();
    expect((await server.publisher.loadState()).timestamp.signed.version).toBe(before);
    clock.advance(20 * 3_600_000);
    await server.tick();
    const after = (await server.publisher.loadState()).timestamp.signed;
    expect(after.version).toBe(before + 1);
    expect(Date.parse(after.expires)).toBeGreaterThan(clock.now() + 23 * 3_600_000);
  });
});

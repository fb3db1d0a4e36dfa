/**
 * Folder uploads of the publisher studio on a real ota-server over HTTP on 127.0.0.1: a declared
 * folder is assembled into its own build folder, given the stated modes, packed and scanned; every
 * unsafe declaration (`..`, absolute paths, backslashes, duplicates, a file that is also a folder,
 * too many files, too many bytes) is refused with its stable code before anything is written; a
 * body that does not match its declared size is refused; finishing before every file arrived says
 * what is missing; a hostile tree the scan refuses leaves nothing behind.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { createServer, type OtaServer } from '../../../src/server/app.js';
import { DEFAULT_MAX_FOLDER_FILES } from '../../../src/server/studio/folder-uploads.js';
import { makeTempDir } from '../../support/tuf-repo.js';

const TOKEN = 'studio-folder-token-0123456789';

let dir: string;
let server: OtaServer;
let url: string;

async function call(method: string, route: string, body?: unknown, raw?: Buffer): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${route}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(raw !== undefined ? { 'content-type': 'application/octet-stream' } : body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : JSON.parse(text) };
}

/** Every path under a folder (files and folders), relative and sorted. */
async function everything(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true }).catch(() => [])) {
      const rel = prefix ? `${prefix}/${e.name}` : e.name;
      out.push(rel);
      if (e.isDirectory()) await walk(path.join(d, e.name), rel);
    }
  };
  await walk(root, '');
  return out.sort();
}

async function upload(files: Record<string, string>): Promise<any> {
  const list = Object.entries(files).map(([p, text]) => ({ path: p, size: Buffer.byteLength(text) }));
  const started = await call('POST', '/api/v1/studio/folder-uploads', { name: 'release', files: list });
  expect(started.status, JSON.stringify(started.body)).toBe(201);
  for (const [i, [, text]] of Object.entries(files).entries()) {
    const put = await call('PUT', `/api/v1/studio/folder-uploads/${started.body.id}/files/${i}`, undefined, Buffer.from(text));
    expect(put.status, JSON.stringify(put.body)).toBe(200);
  }
  return call('POST', `/api/v1/studio/folder-uploads/${started.body.id}/finish`, {});
}

beforeEach(async () => {
  dir = await makeTempDir('otad-studio-folder-');
  await fs.writeFile(path.join(dir, 'token'), `${TOKEN}\n`);
  const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock });
  await publisher.init();
  server = createServer({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: systemClock, logger: silentLogger, tokenFile: path.join(dir, 'token'), database: path.join(dir, 'fleet.db'), maxUploadBytes: 64 * 1024, timestampRefresh: false, prune: false, rolloutTick: false });
  url = (await server.start(0, '127.0.0.1')).url;
});
afterEach(async () => {
  await server?.close();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('studio folder uploads', () => {
  it('assembles the declared files into a package with the stated modes, and removes the build folder', async () => {
    const draft = await upload({ VERSION: '1.3.0\n', 'bin/robot-ai': 'exec planner\n', 'lib/x.sh': '#!/bin/sh\n', 'lib/elf': '\x7fELF....', 'lib/data.txt': 'data\n' });
    expect(draft.status).toBe(201);
    expect(draft.body.source).toEqual({ root: '(uploaded folder)', path: 'release' });
    expect(draft.body.scan.ok).toBe(true);
    const modes = Object.fromEntries(draft.body.scan.files.map((f: { path: string; mode: number }) => [f.path, (f.mode & 0o7777).toString(8)]));
    expect(modes).toEqual({ VERSION: '644', bin: '755', 'bin/robot-ai': '755', lib: '755', 'lib/x.sh': '755', 'lib/elf': '755', 'lib/data.txt': '644' });
    expect(draft.body.modes.executables).toEqual(['bin/robot-ai', 'lib/elf', 'lib/x.sh']);
    expect(draft.body.modes.rule).toContain('the browser does not send file modes');
    expect(await everything(path.join(dir, 'repo', '.studio-folders'))).toEqual([]);
  });

  it('refuses unsafe declarations with stable codes before writing anything', async () => {
    const repoBefore = await everything(path.join(dir, 'repo'));
    const parentBefore = await everything(dir);
    const cases: Array<[unknown, number, string]> = [
      [[{ path: '../escape', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'ok', size: 1 }, { path: 'a/../../escape', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: '/etc/cron.d/x', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'C:/x', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a\\..\\b', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a//b', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: './a', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a\0b', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a', size: 1 }, { path: 'a', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a', size: 1 }, { path: 'a/b', size: 1 }], 400, 'UPLOAD_PATH_UNSAFE'],
      [[{ path: 'a', size: -1 }], 400, 'API_INVALID_REQUEST'],
      [[], 400, 'API_INVALID_REQUEST'],
      [[{ path: 'big', size: 40 * 1024 }, { path: 'bigger', size: 40 * 1024 }], 413, 'API_TOO_LARGE'],
      [Array.from({ length: DEFAULT_MAX_FOLDER_FILES + 1 }, (_, i) => ({ path: `f/${i}`, size: 0 })), 413, 'UPLOAD_TOO_MANY_FILES'],
    ];
    for (const [files, status, code] of cases) {
      const r = await call('POST', '/api/v1/studio/folder-uploads', { name: 'release', files });
      expect([r.status, r.body.error?.code], JSON.stringify(files).slice(0, 80)).toEqual([status, code]);
    }
    expect(await everything(path.join(dir, 'repo'))).toEqual(repoBefore);
    expect(await everything(dir)).toEqual(parentBefore);
  });

  it('refuses a body of another size than declared, says which files are missing, and a cancelled upload leaves nothing', async () => {
    const started = await call('POST', '/api/v1/studio/folder-uploads', { name: 'release', files: [{ path: 'VERSION', size: 6 }, { path: 'bin/run', size: 3 }] });
    const id = started.body.id;
    const long = await call('PUT', `/api/v1/studio/folder-uploads/${id}/files/0`, undefined, Buffer.from('1.3.0\nmore'));
    expect([long.status, long.body.error.code]).toEqual([400, 'API_INVALID_REQUEST']);
    const short = await call('PUT', `/api/v1/studio/folder-uploads/${id}/files/0`, undefined, Buffer.from('1.3'));
    expect(short.body.error.message).toContain('declared as 6 bytes; 3 arrived');
    const outOfRange = await call('PUT', `/api/v1/studio/folder-uploads/${id}/files/2`, undefined, Buffer.from('x'));
    expect(outOfRange.status).toBe(400);
    expect((await call('PUT', `/api/v1/studio/folder-uploads/${id}/files/0`, undefined, Buffer.from('1.3.0\n'))).body.received).toBe(1);
    const early = await call('POST', `/api/v1/studio/folder-uploads/${id}/finish`, {});
    expect([early.status, early.body.error.code]).toEqual([409, 'UPLOAD_OFFSET_MISMATCH']);
    expect(early.body.error.message).toContain('missing 1 of its 2 files (first bin/run)');
    expect(await everything(path.join(dir, 'repo', '.studio-folders', id, 'tree'))).toEqual(['VERSION']);
    expect((await call('DELETE', `/api/v1/studio/folder-uploads/${id}`)).status).toBe(204);
    expect(await everything(path.join(dir, 'repo', '.studio-folders'))).toEqual([]);
  });

  it('reports a tree the robot scan refuses with the folder listing, and keeps nothing', async () => {
    // A file name with a control character: the browser can send it, robots refuse it.
    const draft = await upload({ VERSION: '1.3.0\n', 'bad\u0007name': 'x' });
    expect(draft.status).toBe(200);
    expect(draft.body.scan.ok).toBe(false);
    expect(draft.body.scan.error.code).toMatch(/^PACKAGE_/);
    expect(draft.body.scan.tree.map((e: { path: string }) => e.path)).toContain('bad\u0007name');
    expect(await everything(path.join(dir, 'repo', '.studio-folders'))).toEqual([]);
    expect(await everything(path.join(dir, 'repo', '.studio-drafts'))).toEqual([]);
  });
});

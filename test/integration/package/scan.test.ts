import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanPackage } from '../../../src/package/scan.js';
import { benignEntries, HOSTILE_CASES, writeTarGz } from '../../support/tar-fixtures.js';
import { rejection } from '../../support/assertions.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-scan-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('scanPackage', () => {
  it('lists every entry of a benign package with normalised paths, sizes, modes and types', async () => {
    const file = await writeTarGz(join(root, 'benign.tar.gz'), [{ name: './', type: 'directory' }, ...benignEntries()]);
    const scan = await scanPackage(file);
    expect(scan.entries).toBe(7);
    expect(scan.totalBytes).toBe(21 + 4096 + 6);
    expect(scan.files.map((f) => f.path)).toEqual(['bin', 'bin/robot-ai', 'lib', 'lib/model.bin', 'lib/current-model', 'VERSION']);
    expect(scan.files[1]).toEqual({ path: 'bin/robot-ai', size: 21, mode: 0o755, type: 'file' });
    expect(scan.files[4]).toEqual({ path: 'lib/current-model', size: 0, mode: 0o644, type: 'symlink', linkname: 'model.bin' });
    expect(scan.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes nothing while scanning', async () => {
    const dir = await mkdtemp(join(root, 'quiet-'));
    const file = await writeTarGz(join(dir, 'p.tar.gz'), benignEntries());
    await scanPackage(file);
    expect(await readdir(dir)).toEqual(['p.tar.gz']);
  });

  for (const c of HOSTILE_CASES) {
    it(`rejects ${c.title} with ${c.code}`, async () => {
      const dir = await mkdtemp(join(root, 'case-'));
      const file = await c.build(dir);
      const error = await rejection(scanPackage(file, c.limits));
      expect(error.code).toBe(c.code);
      expect(await readdir(dir)).toEqual([file.slice(dir.length + 1)]);
    });
  }

  it('stops inflating a gzip bomb at the cap instead of reading it all', async () => {
    const bomb = HOSTILE_CASES.find((c) => c.title.startsWith('gzip of raw zeros'));
    const file = await bomb!.build(await mkdtemp(join(root, 'bomb-')));
    const error = await rejection(scanPackage(file, bomb!.limits));
    expect(error.code).toBe('PACKAGE_TOO_LARGE');
    // 32 MiB of zeros behind it; the cap for these limits is about 1 MiB + 10 * 2 KiB + 1 MiB.
    expect(error.details?.inflatedBytes as number).toBeLessThan(4 * 1024 * 1024);
  });

  it('reports a missing file as IO_FAILED', async () => {
    const error = await rejection(scanPackage(join(root, 'nope.tar.gz')));
    expect(error.code).toBe('IO_FAILED');
  });

  it('stops with CANCELLED when the signal aborts', async () => {
    const file = await writeTarGz(join(root, 'cancel.tar.gz'), benignEntries());
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(scanPackage(file, undefined, controller.signal));
    expect(error.code).toBe('CANCELLED');
  });
});

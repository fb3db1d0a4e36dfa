import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackupManager, type BackupManager } from '../../../src/backup/backup-manager.js';
import { ManualClock } from '../../../src/core/clock.js';
import { MemoryLogger } from '../../../src/core/logger.js';
import { hashTree } from '../../../src/package/create.js';
import { isRoot, listAll, mountTmpfs, randomish, writeTree } from '../../support/tar-fixtures.js';
import { rejection } from '../../support/assertions.js';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'otad-backup-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const START = '2026-03-04T05:06:07Z';

async function product(dir: string): Promise<{ release: string; current: string; config: string; data: string }> {
  const release = await writeTree(join(dir, 'releases/2.0.0'), {
    'bin/robot-ai': { mode: 0o755, content: '#!/bin/sh\necho 2.0.0\n' },
    'lib/model.bin': randomish(50_000),
    'lib/latest': { symlink: 'model.bin' },
  });
  const current = join(dir, 'current');
  await symlink(release, current);
  const config = await writeTree(join(dir, 'etc'), { 'robot.yaml': 'speed: 2\n' });
  const data = await writeTree(join(dir, 'var'), { 'maps/home.pgm': randomish(10_000, 3), 'empty': { dir: true } });
  return { release, current, config, data };
}

function manager(clock: ManualClock, extra: Partial<Parameters<typeof createBackupManager>[0]> = {}): { m: BackupManager; log: MemoryLogger } {
  const log = new MemoryLogger();
  return { m: createBackupManager({ clock, logger: log, deviceId: 'robot-42', ...extra }), log };
}

function sources(p: Awaited<ReturnType<typeof product>>) {
  return [
    { path: p.current, as: 'release' },
    { path: p.config, as: 'data/etc' },
    { path: p.data, as: 'data/var' },
  ];
}

describe('backup manager', () => {
  it('names the backup by product, version, UTC time and device, and records a sha256sum-compatible checksum', async () => {
    const dir = await mkdtemp(join(root, 'name-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const backupDir = join(dir, 'backups');
    const result = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir });
    expect(result.path).toBe(join(backupDir, 'robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz'));
    expect(result.bytes).toBe((await stat(result.path)).size);
    expect(await readFile(`${result.path}.sha256`, 'utf8')).toBe(`${result.sha256}  robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz\n`);
    expect(execFileSync('sha256sum', ['-c', 'robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz.sha256'], { cwd: backupDir }).toString()).toContain(': OK');
    expect(await listAll(backupDir)).toEqual(['robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz', 'robot-ai_2.0.0_20260304T050607Z_robot-42.tar.gz.sha256']);
  });

  it('restores a backup into a fresh directory with the same release and data (hashTree equal)', async () => {
    const dir = await mkdtemp(join(root, 'restore-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const { path } = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir: join(dir, 'backups') });
    const dest = join(dir, 'restored');
    await m.restore(path, dest);
    expect(await hashTree(join(dest, 'release'))).toEqual(await hashTree(p.release));
    expect(await hashTree(join(dest, 'data/etc'))).toEqual(await hashTree(p.config));
    expect(await hashTree(join(dest, 'data/var'))).toEqual(await hashTree(p.data));
    expect((await stat(join(dest, 'release/bin/robot-ai'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(dest, 'data/var/empty'))).isDirectory()).toBe(true);
  });

  it('can be restored by hand with plain tar after sha256sum -c', async () => {
    const dir = await mkdtemp(join(root, 'manual-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const backupDir = join(dir, 'backups');
    const { path } = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir });
    const dest = join(dir, 'by-hand');
    execFileSync('mkdir', [dest]);
    execFileSync('tar', ['-xzf', path, '-C', dest, '--no-same-owner', '--no-overwrite-dir']);
    expect(await hashTree(join(dest, 'release'))).toEqual(await hashTree(p.release));
  });

  it('catches a flipped byte when verifying', async () => {
    const dir = await mkdtemp(join(root, 'flip-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const { path } = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir: join(dir, 'backups') });
    await expect(m.verify(path)).resolves.toMatchObject({ path });
    await flipByte(path, 200);
    const error = await rejection(m.verify(path));
    expect(error.code).toBe('BACKUP_CORRUPT');
    expect(error.message).toContain('does not match its checksum');
  });

  it('refuses to restore a corrupt backup and creates no destination', async () => {
    const dir = await mkdtemp(join(root, 'corrupt-restore-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const { path } = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir: join(dir, 'backups') });
    await flipByte(path, 100);
    const error = await rejection(m.restore(path, join(dir, 'dest')));
    expect(error.code).toBe('BACKUP_CORRUPT');
    expect(existsSync(join(dir, 'dest'))).toBe(false);
  });

  it('treats a backup without its checksum file as corrupt', async () => {
    const dir = await mkdtemp(join(root, 'nosum-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const { path } = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir: join(dir, 'backups') });
    await rm(`${path}.sha256`);
    expect((await rejection(m.verify(path))).code).toBe('BACKUP_CORRUPT');
  });

  it('returns the existing backup when called again for the same run, without rewriting it', async () => {
    const dir = await mkdtemp(join(root, 'again-'));
    const p = await product(dir);
    const clock = new ManualClock(START);
    const { m, log } = manager(clock);
    const backupDir = join(dir, 'backups');
    const first = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir });
    const name = first.path.slice(backupDir.length + 1);
    const before = await stat(first.path);
    clock.advance(60_000);
    const second = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir, name });
    expect(second).toEqual(first);
    expect((await stat(first.path)).ino).toBe(before.ino);
    expect(log.lines.some((l) => l.message.includes('reusing'))).toBe(true);
    expect(await listAll(backupDir)).toHaveLength(2);
  });

  it('writes the backup again when the one left by an interrupted run is damaged', async () => {
    const dir = await mkdtemp(join(root, 'redo-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const backupDir = join(dir, 'backups');
    const first = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir });
    await flipByte(first.path, 300);
    const name = first.path.slice(backupDir.length + 1);
    const again = await m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir, name });
    await expect(m.verify(again.path)).resolves.toMatchObject({ sha256: again.sha256 });
  });

  it('keeps the latest two backups of a product and leaves other products alone', async () => {
    const dir = await mkdtemp(join(root, 'prune-'));
    const p = await product(dir);
    const clock = new ManualClock(START);
    const { m } = manager(clock);
    const backupDir = join(dir, 'backups');
    const made: string[] = [];
    for (const version of ['1.0.0', '1.1.0', '2.0.0']) {
      made.push((await m.create({ product: 'robot-ai', version, sources: sources(p), backupDir })).path);
      clock.advance(3_600_000);
    }
    const other = await m.create({ product: 'nav', version: '0.1.0', sources: [{ path: p.config, as: 'data/etc' }], backupDir });
    await writeFile(join(backupDir, 'notes.txt'), 'not a backup');

    const removed = await m.prune('robot-ai', backupDir);
    expect(removed).toEqual([made[0]]);
    expect((await m.list('robot-ai', backupDir)).map((b) => b.version)).toEqual(['2.0.0', '1.1.0']);
    expect(existsSync(`${made[0]}.sha256`)).toBe(false);
    expect(existsSync(other.path)).toBe(true);
    expect(existsSync(join(backupDir, 'notes.txt'))).toBe(true);
  });

  it('lists backups newest first with their parsed fields', async () => {
    const dir = await mkdtemp(join(root, 'list-'));
    const p = await product(dir);
    const clock = new ManualClock(START);
    const { m } = manager(clock);
    const backupDir = join(dir, 'backups');
    await m.create({ product: 'robot-ai', version: '1.0.0', sources: sources(p), backupDir });
    clock.advance(1000);
    await m.create({ product: 'robot-ai', version: '1.0.1', sources: sources(p), backupDir });
    const list = await m.list('robot-ai', backupDir);
    expect(list.map((b) => [b.version, b.createdAt, b.deviceId])).toEqual([
      ['1.0.1', Date.parse(START) + 1000, 'robot-42'],
      ['1.0.0', Date.parse(START), 'robot-42'],
    ]);
    expect(await m.list('robot-ai', join(dir, 'missing'))).toEqual([]);
  });

  it('skips preserved paths that do not exist', async () => {
    const dir = await mkdtemp(join(root, 'missing-src-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const dest = join(dir, 'dest');
    const { path } = await m.create({
      product: 'robot-ai',
      version: '2.0.0',
      sources: [{ path: p.current, as: 'release' }, { path: join(dir, 'no-such'), as: 'data/none' }],
      backupDir: join(dir, 'backups'),
    });
    await m.restore(path, dest);
    expect(await listAll(dest)).not.toContain('data');
  });

  it('backs up a preserved path that is a single file', async () => {
    const dir = await mkdtemp(join(root, 'single-file-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START));
    const { path } = await m.create({
      product: 'robot-ai',
      version: '2.0.0',
      sources: [{ path: p.current, as: 'release' }, { path: join(p.config, 'robot.yaml'), as: 'data/robot.yaml' }],
      backupDir: join(dir, 'backups'),
    });
    const dest = join(dir, 'dest');
    await m.restore(path, dest);
    expect(await readFile(join(dest, 'data/robot.yaml'), 'utf8')).toBe('speed: 2\n');
  });

  it('refuses before writing with DISK_FULL when the sources and a margin do not fit', async () => {
    const dir = await mkdtemp(join(root, 'room-'));
    const p = await product(dir);
    const { m } = manager(new ManualClock(START), { freeBytes: async () => 100_000 });
    const backupDir = join(dir, 'backups');
    const error = await rejection(m.create({ product: 'robot-ai', version: '2.0.0', sources: sources(p), backupDir }));
    expect(error.code).toBe('DISK_FULL');
    expect(error.message).toMatch(/needs about \d+ bytes .* only 100000 are free/);
    expect(await listAll(backupDir)).toEqual([]);
  });
});

describe.skipIf(!isRoot)('backup on a full disk (tmpfs, root only)', () => {
  let mnt: string;
  let unmount: () => Promise<void>;
  beforeAll(async () => {
    mnt = join(root, 'tmpfs');
    unmount = await mountTmpfs(mnt, '2m');
  });
  afterAll(async () => {
    await unmount();
  });

  it('refuses a tree larger than the disk with DISK_FULL before writing (real statfs)', async () => {
    const src = await writeTree(join(root, 'big-src'), { a: randomish(1024 * 1024, 5), b: randomish(1024 * 1024, 6), c: randomish(1024 * 1024, 7) });
    const { m } = manager(new ManualClock(START));
    const error = await rejection(m.create({ product: 'robot-ai', version: '2.0.0', sources: [{ path: src, as: 'release' }], backupDir: mnt }));
    expect(error.code).toBe('DISK_FULL');
    expect(await listAll(mnt)).toEqual([]);
  });

  it('fails with DISK_FULL and leaves no partial file when the estimate fits but the write does not', async () => {
    const { statfs } = await import('node:fs/promises');
    const s = await statfs(mnt);
    const free = s.bavail * s.bsize;
    // Incompressible data just under the free space: the tar headers and gzip framing tip it over.
    const parts = 16;
    const spec: Record<string, Buffer> = {};
    for (let i = 0; i < parts; i += 1) spec[`f${i}`] = randomish(Math.floor((free - 2048) / parts), 100 + i);
    const src = await writeTree(join(root, 'tight-src'), spec);
    const { m } = manager(new ManualClock(START), { marginBytes: 0 });
    const error = await rejection(m.create({ product: 'robot-ai', version: '2.0.0', sources: [{ path: src, as: 'release' }], backupDir: mnt, level: 1 }));
    expect(error.code).toBe('DISK_FULL');
    expect(error.message).toContain('the disk is full'); // the write hit ENOSPC, not the estimate
    expect(await listAll(mnt)).toEqual([]);
  });
});

if (!isRoot) {
  describe('backup on a full disk', () => {
    it.skip('needs root to mount a tmpfs: run the suite as root to exercise DISK_FULL', () => {});
  });
}

async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    const buf = Buffer.alloc(1);
    await handle.read(buf, 0, 1, offset);
    buf[0] = (buf[0] as number) ^ 0x01;
    await handle.write(buf, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

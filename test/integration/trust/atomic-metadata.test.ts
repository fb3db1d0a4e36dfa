import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomicSync } from '../../../src/trust/atomic-metadata.js';
import { createTestRepo, type TestRepo } from '../../support/tuf-repo.js';

describe('trusted metadata is replaced atomically', () => {
  let repo: TestRepo;
  beforeEach(async () => {
    repo = await createTestRepo();
  });
  afterEach(async () => {
    await repo.close();
  });

  it('each refresh renames new metadata over the old file (a new inode, 0600, no temporary left)', async () => {
    await repo.release('robot-ai', '1.0.0');
    const robot = await repo.robot();
    await robot.repo.refresh();
    const file = path.join(robot.metadataDir, 'timestamp.json');
    const before = await fs.stat(file);
    const oldBytes = await fs.readFile(file, 'utf8');
    await repo.release('robot-ai', '1.1.0');
    await robot.repo.refresh();
    const after = await fs.stat(file);
    // An in-place write keeps the inode; only a rename over the file gives a new one, so a power cut
    // during the write leaves the old complete file under the name.
    expect(after.ino).not.toBe(before.ino);
    expect(await fs.readFile(file, 'utf8')).not.toBe(oldBytes);
    expect(after.mode & 0o777).toBe(0o600);
    expect((await fs.readdir(robot.metadataDir)).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect((await robot.repo.latestRelease('robot-ai'))?.manifest.version).toBe('1.1.0');
  });

  it('a failed write leaves the old file whole and no temporary file', async () => {
    const dir = await fs.mkdtemp(path.join(repo.dir, 'atomic-'));
    const file = path.join(dir, 'timestamp.json');
    writeFileAtomicSync(file, Buffer.from('old'));
    // A folder where the file should be makes the rename fail after the data was written.
    const blocked = path.join(dir, 'blocked.json');
    await fs.mkdir(blocked);
    await fs.writeFile(path.join(blocked, 'x'), 'x');
    expect(() => writeFileAtomicSync(blocked, Buffer.from('new'))).toThrow();
    expect(await fs.readFile(file, 'utf8')).toBe('old');
    expect((await fs.readdir(dir)).sort()).toEqual(['blocked.json', 'timestamp.json']);
  });
});

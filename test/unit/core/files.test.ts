import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HASH_READ_BYTES, hashFile, hashInto } from '../../../src/core/files.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('hashFile and hashInto', () => {
  let dir: string;
  const content = Buffer.alloc(2 * HASH_READ_BYTES + 777);
  for (let i = 0; i < content.length; i++) content[i] = (i * 31) & 0xff;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'otad-files-'));
    await writeFile(join(dir, 'big'), content);
    await writeFile(join(dir, 'empty'), Buffer.alloc(0));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('hashes a file longer than its read buffer, byte for byte', async () => {
    expect(await hashFile(join(dir, 'big'))).toEqual({ sha256: sha(content), length: content.length });
  });

  it('hashes an empty file', async () => {
    expect(await hashFile(join(dir, 'empty'))).toEqual({ sha256: sha(Buffer.alloc(0)), length: 0 });
  });

  it('with a limit equal to the length, reads and hashes all of it', async () => {
    const hash = createHash('sha256');
    expect(await hashInto(join(dir, 'big'), hash, content.length)).toBe(content.length);
    expect(hash.digest('hex')).toBe(sha(content));
  });

  it('with a smaller limit, stops once the file is known to be longer and hashes only the limit', async () => {
    const hash = createHash('sha256');
    const limit = HASH_READ_BYTES + 5;
    const read = await hashInto(join(dir, 'big'), hash, limit);
    expect(read).toBeGreaterThan(limit);
    expect(read).toBeLessThan(content.length);
    expect(hash.digest('hex')).toBe(sha(content.subarray(0, limit)));
  });

  it('with a larger limit, reports the shorter length', async () => {
    const hash = createHash('sha256');
    expect(await hashInto(join(dir, 'big'), hash, content.length + 1)).toBe(content.length);
  });

  it('fails with ENOENT for a missing file', async () => {
    await expect(hashFile(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { readGoldenRoot } from '../../../src/trust/trusted-root.js';

let dir: string;
let rootFile: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'otad-golden-root-'));
  const publisher = createPublisher({ repoDir: join(dir, 'repo'), keysDir: join(dir, 'keys'), clock: new ManualClock(Date.now()) });
  await publisher.init();
  rootFile = join(dir, 'root.json');
  copyFileSync(join(dir, 'repo', 'metadata', '1.root.json'), rootFile);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function codeOf(file: string): Promise<string> {
  try {
    await readGoldenRoot(file);
  } catch (error) {
    expect(error).toBeInstanceOf(OtaError);
    return (error as OtaError).code;
  }
  return 'ok';
}

describe('the golden trusted root', () => {
  it('reads a root signed by the publisher', async () => {
    const { root } = await readGoldenRoot(rootFile);
    expect(root.signed.version).toBe(1);
  });

  it('is TRUST_ROOT_MISSING when there is no file, naming the path', async () => {
    const missing = join(dir, 'nowhere', 'root.json');
    expect(await codeOf(missing)).toBe('TRUST_ROOT_MISSING');
    await expect(readGoldenRoot(missing)).rejects.toThrow(`golden trusted root ${missing} does not exist`);
  });

  it('is TRUST_ROOT_CORRUPT when the file is not JSON, not a root, or not signed by its own keys', async () => {
    const garbage = join(dir, 'garbage.json');
    writeFileSync(garbage, 'not json at all');
    expect(await codeOf(garbage)).toBe('TRUST_ROOT_CORRUPT');

    const empty = join(dir, 'empty.json');
    writeFileSync(empty, '{}');
    expect(await codeOf(empty)).toBe('TRUST_ROOT_CORRUPT');

    const unsigned = join(dir, 'unsigned.json');
    const doc = JSON.parse(readFileSync(rootFile, 'utf8')) as { signatures: unknown[] };
    writeFileSync(unsigned, JSON.stringify({ ...doc, signatures: [] }));
    expect(await codeOf(unsigned)).toBe('TRUST_ROOT_CORRUPT');
  });
});

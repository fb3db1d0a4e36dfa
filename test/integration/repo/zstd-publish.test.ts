import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { createPublisher } from '../../../src/repo/repository.js';
import { extractPackage } from '../../../src/package/extract.js';
import { makeTempDir } from '../../support/tuf-repo.js';

describe('publishing zstd packages and deltas', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir !== undefined) await fs.rm(dir, { recursive: true, force: true });
  });

  it('builds .tar.zst packages and deltas from a folder; gzip stays the default; a bad setting is refused', async () => {
    dir = await makeTempDir('otad-zstd-');
    const publisher = createPublisher({ repoDir: path.join(dir, 'repo'), keysDir: path.join(dir, 'keys'), clock: new ManualClock('2026-03-01T00:00:00Z') });
    await publisher.init();
    const src = path.join(dir, 'src');
    await fs.mkdir(src);
    for (let i = 0; i < 50; i += 1) await fs.writeFile(path.join(src, `f${i}.txt`), `file ${i} `.repeat(500));
    const gz = await publisher.add({ product: 'p', version: '1.0.0', sourceDir: src });
    expect(gz.packageTarget.name).toBe('p/p-1.0.0.tar.gz');
    await publisher.publish();
    await fs.writeFile(path.join(src, 'f1.txt'), 'changed');
    const z = await publisher.add({ product: 'p', version: '1.1.0', sourceDir: src, compression: 'zstd' });
    expect(z.packageTarget.name).toBe('p/p-1.1.0.tar.zst');
    expect(z.deltas[0]?.target?.name).toBe('p/p-1.0.0-to-1.1.0.delta.tar.zst');
    const stored = path.join(dir, 'repo', 'targets', 'p', `${z.packageTarget.sha256}.p-1.1.0.tar.zst`);
    expect((await fs.readFile(stored)).subarray(0, 4).toString('hex')).toBe('28b52ffd');
    await extractPackage(stored, path.join(dir, 'out'));
    expect(await fs.readFile(path.join(dir, 'out', 'f1.txt'), 'utf8')).toBe('changed');
    // A ready gzip package with zstd asked for is refused, not renamed.
    await fs.copyFile(path.join(dir, 'repo', 'targets', 'p', `${gz.packageTarget.sha256}.p-1.0.0.tar.gz`), path.join(dir, 'ready.tar.zst'));
    await expect(publisher.add({ product: 'p', version: '1.2.0', packageFile: path.join(dir, 'ready.tar.zst'), compression: 'zstd' })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    const named = await publisher.add({ product: 'p', version: '1.2.0', packageFile: path.join(dir, 'ready.tar.zst') });
    expect(named.packageTarget.name).toBe('p/p-1.2.0.tar.gz');
    const settings = path.join(dir, 'repo', 'ota-repo.json');
    await fs.writeFile(settings, JSON.stringify({ ...JSON.parse(await fs.readFile(settings, 'utf8')), compression: 'xz' }));
    await expect(publisher.add({ product: 'p', version: '1.3.0', sourceDir: src })).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

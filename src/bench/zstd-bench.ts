/**
 * The compression rows of `npm run bench` (`zstd`): the benchmark tree (4,000 small files and one
 * 64 MiB model of random bytes) packaged with gzip (level 6, the default) and with zstd (level 3),
 * each package's size, build time and full unpack time, the unpack done by the stage step's own
 * function (unpackPackage without an index: scan, then the safe extraction and its sync), the two
 * alternated for `rounds` rounds with the order rotating; medians and the range are reported.
 * Random bytes do not compress, so the model is the same size in both: the difference is in the
 * small files and in the time spent decompressing the model.
 */
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { createPackage } from '../package/create.js';
import type { PackageCompression } from '../package/compression.js';
import { unpackPackage } from '../steps/stage.js';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface CompressionBench {
  rounds: number;
  results: Record<PackageCompression, { bytes: number; buildMs: number; unpackMs: number[] }>;
}

export async function benchCompression(work: string, makeTree: (root: string, files: number, bigMiB: number) => void, rounds = 3): Promise<CompressionBench> {
  const src = join(work, 'zstd-src');
  makeTree(src, 4000, 64);
  const kinds: PackageCompression[] = ['gzip', 'zstd'];
  const results = {} as CompressionBench['results'];
  const files = {} as Record<PackageCompression, { path: string; sha256: string; length: number }>;
  for (const compression of kinds) {
    const path = join(work, `bench.${compression === 'gzip' ? 'tar.gz' : 'tar.zst'}`);
    const t0 = performance.now();
    await createPackage(src, path, { compression });
    const buildMs = performance.now() - t0;
    const bytes = await readFile(path);
    files[compression] = { path, sha256: createHash('sha256').update(bytes).digest('hex'), length: bytes.length };
    results[compression] = { bytes: bytes.length, buildMs, unpackMs: [] };
  }
  const staging = join(work, 'zstd-staging');
  const signal = new AbortController().signal;
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < kinds.length; k++) {
      const compression = kinds[(round + k) % kinds.length]!;
      const f = files[compression];
      const releaseDir = join(staging, `${compression}-${round}`);
      const t0 = performance.now();
      await unpackPackage({
        packagePath: f.path,
        releaseDir,
        stagingRoot: staging,
        target: { name: `bench/${f.path}`, sha256: f.sha256 },
        index: null,
        space: { version: '1.0.0', reserveBytes: 0, minFreeBytes: 0 },
        signal,
      });
      results[compression].unpackMs.push(performance.now() - t0);
      rmSync(releaseDir, { recursive: true, force: true });
    }
  }
  rmSync(src, { recursive: true, force: true });
  return { rounds, results };
}

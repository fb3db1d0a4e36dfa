/**
 * The delta rows of `npm run bench`, on the benchmark tree (4,000 small files + one 64 MiB model):
 * releases published with the real publisher (tree index, size-gated deltas), then staged with
 * the stage step's own functions (src/steps/stage.ts: unpackPackage, assembleFromDelta), minus
 * the download.
 *
 * - bytes a robot downloads for a release that changes 1 % of the files (the delta target) and
 *   for one that changes the model (the gate holds the delta back: the full package);
 * - staging after the 1 % delta (the delta written by the package rules, the tree assembled from
 *   the installed release with COPYFILE_FICLONE, every file verified against the signed index)
 *   against full staging (one pass: package rules, index and hashes while writing, then the walk
 *   against the index and one sync) and full staging against `tar -xzf` + `sync -f`. The three
 *   run alternated in the same process, `rounds` times (the order rotating each round), and the
 *   medians are compared; the spread of each and of the per-round ratios is reported too.
 */
import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../core/clock.js';
import { removeTree } from '../package/durable-fs.js';
import { parseIndex } from '../package/tree-index.js';
import { createPublisher, type AddResult } from '../repo/repository.js';
import { assembleFromDelta, unpackPackage } from '../steps/stage.js';

const run = promisify(execFile);

export interface DeltaBench {
  files: number;
  changedFiles: number;
  packageBytes: number;
  /** 1 % change: the delta a robot on the previous release downloads. */
  smallDeltaBytes: number;
  /** Model change: what a robot downloads (the full package when the gate held the delta back). */
  modelChangeDownloadBytes: number;
  modelChangePackageBytes: number;
  modelDeltaBytes: number;
  modelDeltaPublished: boolean;
  rounds: number;
  /** Per round, in ms. */
  deltaStagingMs: number[];
  fullStagingMs: number[];
  /** Empty when tar or sync -f cannot run here. */
  tarSyncMs: number[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function benchDeltas(work: string, makeTree: (root: string, files: number, bigMiB: number) => void, rounds = 5): Promise<DeltaBench> {
  const files = 4000;
  const src = join(work, 'delta-src');
  makeTree(src, files, 64);
  writeFileSync(join(src, 'VERSION'), '1.0.0\n');
  const publisher = createPublisher({ repoDir: join(work, 'delta-repo'), keysDir: join(work, 'delta-keys'), clock: systemClock });
  await publisher.init();
  const targetPath = (name: string, sha256: string): string => {
    const [product, base] = name.split('/') as [string, string];
    return join(publisher.targetsDir, product, `${sha256}.${base}`);
  };
  const add = async (version: string, fromLast?: number): Promise<AddResult> => {
    writeFileSync(join(src, 'VERSION'), `${version}\n`);
    const added = await publisher.add({ product: 'bench', version, sourceDir: src, ...(fromLast !== undefined ? { deltas: { fromLast } } : {}) });
    await publisher.publish();
    return added;
  };
  const v1 = await add('1.0.0');
  // 1 %: 40 of the 4,000 small files get new content.
  const changedFiles = files / 100;
  for (let i = 0; i < changedFiles; i++) {
    const file = join(src, `lib/mod${(i * 97) % 40}`, `f${i * 97}.js`);
    writeFileSync(file, `${readFileSync(file, 'utf8')}// changed in 1.1.0\n`);
  }
  const v2 = await add('1.1.0');
  const small = v2.deltas.find((d) => d.fromVersion === '1.0.0' && d.published);
  if (small?.target === undefined) throw new Error('the 1 % delta was not published');
  // The model changes: a delta would carry all of it.
  const model = Buffer.alloc(64 << 20);
  randomFillSync(model);
  writeFileSync(join(src, 'models/weights.bin'), model);
  const v3 = await add('1.2.0', 1);
  const modelDelta = v3.deltas.find((d) => d.fromVersion === '1.1.0');
  if (modelDelta === undefined) throw new Error('no delta outcome for the model change');

  // The robot: 1.0.0 installed, staging 1.1.0.
  // Staged as otad stages a release (on btrfs, a subvolume: the delta then starts from a snapshot).
  const staging = join(work, 'delta-staging');
  mkdirSync(staging);
  const signal = new AbortController().signal;
  const space = { version: '1.1.0', reserveBytes: 0, minFreeBytes: 0 };
  const installed = join(work, 'delta-installed');
  const index1 = parseIndex(await readFile(targetPath(v1.indexTarget!.name, v1.indexTarget!.sha256)), 'bench 1.0.0');
  await unpackPackage({ packagePath: targetPath(v1.packageTarget.name, v1.packageTarget.sha256), releaseDir: installed, stagingRoot: work, target: v1.packageTarget, index: index1, space, signal });
  const index = parseIndex(await readFile(targetPath(v2.indexTarget!.name, v2.indexTarget!.sha256)), 'bench 1.1.0');
  const deltaFile = targetPath(small.target.name, small.target.sha256);
  const fullFile = targetPath(v2.packageTarget.name, v2.packageTarget.sha256);

  const syncFs = (dir: string) => run('sync', ['-f', dir]).catch(() => {});
  const deltaStagingMs: number[] = [];
  const fullStagingMs: number[] = [];
  const tarSyncMs: number[] = [];
  let tarWorks = true;
  const contestants: Array<(round: number) => Promise<void>> = [
    async (round) => {
      const releaseDir = join(staging, `delta-${round}`);
      deltaStagingMs.push(
        await time(() =>
          assembleFromDelta({
            deltaPath: deltaFile,
            releaseDir,
            stagingRoot: staging,
            target: small.target!,
            index,
            currentDir: installed,
            ids: { product: 'bench', fromVersion: '1.0.0', toVersion: '1.1.0' },
            space,
            signal,
          }),
        ),
      );
      await removeTree(releaseDir);
    },
    async (round) => {
      const releaseDir = join(staging, `full-${round}`);
      fullStagingMs.push(await time(() => unpackPackage({ packagePath: fullFile, releaseDir, stagingRoot: staging, target: v2.packageTarget, index, space, signal })));
      await removeTree(releaseDir);
    },
    async (round) => {
      if (!tarWorks) return;
      const base = join(work, `delta-tar-${round}`);
      mkdirSync(base);
      try {
        tarSyncMs.push(await time(() => run('sh', ['-c', 'tar -xzf "$1" -C "$2" && sync -f "$2"', 'sh', fullFile, base])));
      } catch {
        tarWorks = false;
      }
      await removeTree(base);
    },
  ];
  for (let round = 0; round < rounds; round++) {
    for (let k = 0; k < contestants.length; k++) {
      await contestants[(round + k) % contestants.length]!(round);
      // The removal's own writeback is not charged to whoever runs next.
      await syncFs(work);
    }
  }
  await removeTree(installed);
  if (!tarWorks) tarSyncMs.length = 0;

  return {
    files,
    changedFiles,
    packageBytes: v2.packageTarget.length,
    smallDeltaBytes: small.target.length,
    modelChangeDownloadBytes: modelDelta.published && modelDelta.target !== undefined ? modelDelta.target.length : v3.packageTarget.length,
    modelChangePackageBytes: v3.packageTarget.length,
    modelDeltaBytes: modelDelta.bytes,
    modelDeltaPublished: modelDelta.published,
    rounds,
    deltaStagingMs,
    fullStagingMs,
    tarSyncMs,
  };
}

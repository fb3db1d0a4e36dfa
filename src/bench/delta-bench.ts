/**
 * The delta rows of `npm run bench`, on the benchmark tree (4,000 small files + one 64 MiB model):
 * releases published with the real publisher (tree index, size-gated deltas), then staged with
 * the same functions the stage step runs, minus the download.
 *
 * - bytes a robot downloads for a release that changes 1 % of the files (the delta target) and
 *   for one that changes the model (the gate holds the delta back: the full package);
 * - staging after the 1 % delta (scan + extract the delta, assemble from the installed release with
 *   COPYFILE_FICLONE, verify every file against the signed index) against full staging (scan +
 *   safe extraction + the same verification) and against `tar -xzf` + `sync -f`.
 */
import { execFile } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../core/clock.js';
import { extractPackage, extractScanned } from '../package/extract.js';
import { scanPackage } from '../package/scan.js';
import { assembleRelease, DELTA_FILES, parseIndex, verifyTree } from '../package/tree-index.js';
import { createPublisher, type AddResult } from '../repo/repository.js';

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
  deltaStagingMs: number;
  fullStagingMs: number;
  tarSyncMs: number | null;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export async function benchDeltas(work: string, makeTree: (root: string, files: number, bigMiB: number) => void): Promise<DeltaBench> {
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
  const installed = join(work, 'delta-installed');
  await extractPackage(targetPath(v1.packageTarget.name, v1.packageTarget.sha256), installed);
  const index = parseIndex(await readFile(targetPath(v2.indexTarget!.name, v2.indexTarget!.sha256)), 'bench 1.1.0');
  const deltaFile = targetPath(small.target.name, small.target.sha256);
  const fullFile = targetPath(v2.packageTarget.name, v2.packageTarget.sha256);

  const deltaDir = join(work, 'delta-extracted');
  const assembled = join(work, 'delta-assembled');
  const deltaStagingMs = await time(async () => {
    const scan = await scanPackage(deltaFile);
    await extractScanned(deltaFile, deltaDir, scan);
    await assembleRelease({ index, currentDir: installed, deltaFilesDir: join(deltaDir, DELTA_FILES), destDir: assembled });
  });
  const full = join(work, 'delta-full');
  const fullStagingMs = await time(async () => {
    const scan = await scanPackage(fullFile);
    await extractScanned(fullFile, full, scan);
    await verifyTree(full, index, undefined, new Set(), 'none');
  });
  const base = join(work, 'delta-tar');
  mkdirSync(base);
  let tarSyncMs: number | null = null;
  try {
    tarSyncMs = await time(() => run('sh', ['-c', `tar -xzf "$1" -C "$2" && sync -f "$2"`, 'sh', fullFile, base]));
  } catch {
    tarSyncMs = null;
  }
  await Promise.all([deltaDir, assembled, full, base, installed].map((d) => rm(d, { recursive: true, force: true })));

  return {
    files,
    changedFiles,
    packageBytes: v2.packageTarget.length,
    smallDeltaBytes: small.target.length,
    modelChangeDownloadBytes: modelDelta.published && modelDelta.target !== undefined ? modelDelta.target.length : v3.packageTarget.length,
    modelChangePackageBytes: v3.packageTarget.length,
    modelDeltaBytes: modelDelta.bytes,
    modelDeltaPublished: modelDelta.published,
    deltaStagingMs,
    fullStagingMs,
    tarSyncMs,
  };
}

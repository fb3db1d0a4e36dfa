/**
 * The on-disk release layout of one product (docs/on-disk-layout.md):
 *
 *   <installPath>                 -> symlink to <releasesDir>/<version>   (what services run from)
 *   <releasesDir>/<version>/      one complete release per directory
 *   <releasesDir>/.adopt.json     intent record while a plain install is being adopted
 *   <releasesDir>/.trash-*        a release being deleted (renamed first, so it never looks live)
 *
 * Invariant: at every instant <installPath> resolves to one complete release. Releases are only
 * made visible by rename(2) (importStaged) and only made live by renaming a fresh symlink over the
 * old one (switchTo). Everything a crash can leave behind is recognisable and finished or cleaned
 * up by the next call, decided from what is on disk.
 */
import { exists } from '../core/files.js';
import * as fs from 'node:fs/promises';
import path from 'node:path';
import semver from 'semver';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { preservePaths, type PreserveResult } from './preserve.js';
import {
  assertSameFilesystem,
  atomicSymlink,
  fsyncDir,
  fsyncTree,
  isErrno,
  randomSuffix,
  removeStaleTempLinks,
} from './switch.js';

export interface ReleaseRef {
  version: string;
  /** Absolute path of the release directory: `<releasesDir>/<version>`. */
  dir: string;
}

export interface ReleaseListing extends ReleaseRef {
  current: boolean;
}

/** What is at `installPath` right now. */
export type InstallState =
  | { kind: 'missing' }
  /** A real directory: an install from before otad, to be adopted. */
  | { kind: 'plain-directory' }
  | ({ kind: 'release-link' } & ReleaseRef)
  /** A symlink that does not point at an existing release in releasesDir. */
  | { kind: 'foreign-link'; target: string }
  /** A regular file or anything else: never touched. */
  | { kind: 'other' };

/** Named points inside multi-step operations; tests throw from them to simulate a crash. */
export type ReleaseCheckpoint =
  | 'adopt:intent-written'
  | 'adopt:moved'
  | 'adopt:temp-link'
  | 'adopt:linked'
  | 'switch:temp-link'
  | 'import:synced';

export interface ReleaseStoreOptions {
  product: string;
  /** The path services and operators use, e.g. /opt/robot-ai. Becomes (or is) a symlink. */
  installPath: string;
  /** Where releases live, e.g. /opt/.otad/robot-ai/releases. Same filesystem as installPath. */
  releasesDir: string;
  logger: Logger;
  /** Test seam: called at each checkpoint; a throw there behaves like a crash at that instant. */
  checkpoint?: (name: ReleaseCheckpoint) => void | Promise<void>;
}

export interface ImportOptions {
  /** fsync every file of the staged tree before it becomes a release (default true). */
  fsync?: boolean;
}

export interface AdoptResult extends ReleaseRef {
  /** false when installPath already was a release link (nothing to do). */
  adopted: boolean;
}

export interface ReleaseStore {
  readonly product: string;
  readonly installPath: string;
  readonly releasesDir: string;
  releaseDir(version: string): string;
  inspect(): Promise<InstallState>;
  current(): Promise<ReleaseRef | null>;
  list(): Promise<ReleaseListing[]>;
  has(version: string): Promise<boolean>;
  adopt(version: string): Promise<AdoptResult>;
  /** Finish an interrupted adoption and remove switch left-overs; safe to call at every start. */
  recover(): Promise<{ adopted: AdoptResult | null; removedTempLinks: string[] }>;
  switchTo(version: string): Promise<ReleaseRef>;
  importStaged(stagedDir: string, version: string, options?: ImportOptions): Promise<ReleaseRef>;
  preserve(paths: readonly string[], fromDir: string, toDir: string): Promise<PreserveResult>;
  remove(version: string): Promise<boolean>;
  prune(keep: readonly string[]): Promise<string[]>;
}

const ADOPT_INTENT = '.adopt.json';
const TRASH_PREFIX = '.trash-';
const VERSION_NAME = /^[0-9A-Za-z][0-9A-Za-z._+-]{0,127}$/;

/**
 * Where releases live when the product definition does not say: beside the install path, on the
 * same filesystem by construction. /opt/robot-ai → /opt/.otad/robot-ai/releases.
 */
export function defaultReleasesDir(installPath: string, product: string): string {
  return path.join(path.dirname(path.resolve(installPath)), '.otad', product, 'releases');
}

/**
 * Where a product's runs are staged: `<dirname(releasesDir)>/staging/<product>`, a sibling of the
 * releases folder and hence on its filesystem, so that importing a staged tree is a rename(2).
 * This is the only staging place: the disk pre-check measures it and --check-config checks it.
 */
export function stagingRootFor(product: { name: string; installPath: string; releasesDir?: string | undefined }): string {
  const releasesDir = product.releasesDir ?? defaultReleasesDir(product.installPath, product.name);
  return path.join(path.dirname(path.resolve(releasesDir)), 'staging', product.name);
}

/** A version names a directory: it must be a single safe path component. */
export function assertReleaseName(version: string): void {
  if (!VERSION_NAME.test(version) || version.includes('..')) {
    throw new OtaError('APPLY_FAILED', `release version "${version}" is not usable as a directory name (letters, digits, ".", "_", "+", "-"; no "..")`, {
      details: { version },
    });
  }
}

/** Newest last: semver order where both are semver, name order otherwise. */
export function compareReleaseNames(a: string, b: string): number {
  const va = semver.valid(a);
  const vb = semver.valid(b);
  if (va !== null && vb !== null) return semver.compare(va, vb);
  if (va !== null) return 1;
  if (vb !== null) return -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function createReleaseStore(options: ReleaseStoreOptions): ReleaseStore {
  const installPath = path.resolve(options.installPath);
  const releasesDir = path.resolve(options.releasesDir);
  const log = options.logger.child({ product: options.product, component: 'release-store' });
  const checkpoint = async (name: ReleaseCheckpoint): Promise<void> => {
    await options.checkpoint?.(name);
  };
  const intentPath = path.join(releasesDir, ADOPT_INTENT);
  let layoutChecked = false;

  if (installPath === releasesDir || releasesDir.startsWith(`${installPath}${path.sep}`)) {
    throw new OtaError('CONFIG_INVALID', `releasesDir ${releasesDir} must not be inside installPath ${installPath}`, {
      details: { installPath, releasesDir },
    });
  }

  const releaseDir = (version: string): string => {
    assertReleaseName(version);
    return path.join(releasesDir, version);
  };

  async function ensureLayout(): Promise<void> {
    if (layoutChecked) return;
    await fs.mkdir(releasesDir, { recursive: true, mode: 0o755 });
    await fs.mkdir(path.dirname(installPath), { recursive: true });
    await assertSameFilesystem(path.dirname(installPath), releasesDir, `product ${options.product}`);
    layoutChecked = true;
  }

  async function isDirectory(p: string): Promise<boolean> {
    const stat = await fs.lstat(p).catch(() => null);
    return stat?.isDirectory() ?? false;
  }

  async function inspect(): Promise<InstallState> {
    const stat = await fs.lstat(installPath).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT')) return null;
      throw error;
    });
    if (stat === null) return { kind: 'missing' };
    if (stat.isDirectory()) return { kind: 'plain-directory' };
    if (!stat.isSymbolicLink()) return { kind: 'other' };
    const target = await fs.readlink(installPath);
    const resolved = path.resolve(path.dirname(installPath), target);
    const version = path.basename(resolved);
    if (path.dirname(resolved) === releasesDir && VERSION_NAME.test(version) && (await isDirectory(resolved))) {
      return { kind: 'release-link', version, dir: resolved };
    }
    return { kind: 'foreign-link', target };
  }

  async function current(): Promise<ReleaseRef | null> {
    const state = await inspect();
    return state.kind === 'release-link' ? { version: state.version, dir: state.dir } : null;
  }

  async function list(): Promise<ReleaseListing[]> {
    const live = await current();
    const entries = await fs.readdir(releasesDir, { withFileTypes: true }).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    });
    return entries
      .filter((e) => e.isDirectory() && !e.name.startsWith('.') && VERSION_NAME.test(e.name))
      .map((e) => e.name)
      .sort(compareReleaseNames)
      .map((version) => ({ version, dir: path.join(releasesDir, version), current: live?.version === version }));
  }

  async function readIntent(): Promise<string | null> {
    try {
      const parsed = JSON.parse(await fs.readFile(intentPath, 'utf8')) as { version?: unknown };
      return typeof parsed.version === 'string' ? parsed.version : null;
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return null;
      // A torn intent can only come from a crash before its rename, i.e. before anything moved.
      log.warn('adoption intent unreadable; ignored', { file: intentPath, error: String(error) });
      return null;
    }
  }

  async function writeIntent(version: string): Promise<void> {
    const temp = `${intentPath}.${randomSuffix()}`;
    const handle = await fs.open(temp, 'w', 0o644);
    try {
      await handle.writeFile(JSON.stringify({ schema: 1, product: options.product, version, installPath }));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, intentPath);
    await fsyncDir(releasesDir);
  }

  async function clearIntent(): Promise<void> {
    await fs.rm(intentPath, { force: true });
    await fsyncDir(releasesDir);
  }

  /**
   * Adoption, step by step, with what a crash after each step leaves on disk:
   *   1. intent written    → plain dir + intent: resume from step 2
   *   2. dir renamed       → installPath missing + release dir + intent: resume at step 3
   *   3. link renamed in   → release link + intent: remove the intent
   * The intent carries the version because after step 2 nothing at installPath tells it.
   */
  async function adopt(requested: string): Promise<AdoptResult> {
    assertReleaseName(requested);
    await ensureLayout();
    await removeStaleTempLinks(installPath);
    const intent = await readIntent();
    let version = requested;
    if (intent !== null && intent !== requested) {
      log.warn('an interrupted adoption is finished under the version it started with', { intent, requested });
      version = intent;
    }
    assertReleaseName(version);
    const target = path.join(releasesDir, version);
    const state = await inspect();

    if (state.kind === 'release-link') {
      if (intent !== null) await clearIntent();
      return { version: state.version, dir: state.dir, adopted: false };
    }
    if (state.kind === 'plain-directory') {
      if (await exists(target)) {
        throw new OtaError('APPLY_FAILED', `cannot adopt ${installPath} as ${version}: ${target} already exists`, {
          details: { installPath, target, version },
        });
      }
      if (intent === null) await writeIntent(version);
      await checkpoint('adopt:intent-written');
      log.info('adopting existing install', { installPath, version, target });
      await fs.rename(installPath, target);
      await fsyncDir(releasesDir);
      await fsyncDir(path.dirname(installPath));
      await checkpoint('adopt:moved');
    } else if (state.kind === 'missing') {
      if (intent === null || !(await isDirectory(target))) {
        throw new OtaError('APPLY_FAILED', `nothing to adopt: ${installPath} does not exist and no interrupted adoption is recorded for ${version}`, {
          details: { installPath, version },
        });
      }
      log.info('resuming interrupted adoption', { installPath, version });
    } else {
      throw new OtaError('APPLY_FAILED', `cannot adopt ${installPath}: it is ${state.kind === 'foreign-link' ? `a symlink to ${state.target}, outside ${releasesDir}` : 'not a directory'}`, {
        details: { installPath, state },
      });
    }
    await atomicSymlink(target, installPath, () => checkpoint('adopt:temp-link'));
    await checkpoint('adopt:linked');
    await clearIntent();
    log.info('install adopted', { installPath, version, dir: target });
    return { version, dir: target, adopted: true };
  }

  async function recover(): Promise<{ adopted: AdoptResult | null; removedTempLinks: string[] }> {
    await ensureLayout();
    const removedTempLinks = await removeStaleTempLinks(installPath);
    if (removedTempLinks.length > 0) log.warn('removed switch left-overs', { removed: removedTempLinks });
    const intent = await readIntent();
    const adopted = intent === null ? null : await adopt(intent);
    return { adopted, removedTempLinks };
  }

  async function switchTo(version: string): Promise<ReleaseRef> {
    const dir = releaseDir(version);
    await ensureLayout();
    if (!(await isDirectory(dir))) {
      throw new OtaError('APPLY_FAILED', `cannot switch ${installPath} to ${version}: release directory ${dir} does not exist`, {
        details: { installPath, version, dir },
      });
    }
    const before = await inspect();
    if (before.kind === 'plain-directory' || before.kind === 'other') {
      throw new OtaError('APPLY_FAILED', `cannot switch ${installPath}: it is a ${before.kind}, not a release link; adopt it first`, {
        details: { installPath, state: before.kind },
      });
    }
    if (before.kind === 'release-link' && before.version === version) return { version, dir };
    if (before.kind === 'foreign-link') log.warn('replacing a link that pointed at no release', { installPath, target: before.target });
    await atomicSymlink(dir, installPath, () => checkpoint('switch:temp-link'));
    log.info('switched release', { installPath, from: before.kind === 'release-link' ? before.version : null, to: version });
    return { version, dir };
  }

  async function importStaged(stagedDir: string, version: string, importOptions: ImportOptions = {}): Promise<ReleaseRef> {
    const dir = releaseDir(version);
    await ensureLayout();
    const staged = path.resolve(stagedDir);
    const stagedStat = await fs.lstat(staged).catch(() => null);
    const targetExists = await exists(dir);
    if (stagedStat === null) {
      // Second run after a crash past the rename: the release is already in place.
      if (targetExists) return { version, dir };
      throw new OtaError('APPLY_FAILED', `cannot import ${version}: staged tree ${staged} does not exist`, {
        details: { stagedDir: staged, version },
      });
    }
    if (!stagedStat.isDirectory()) {
      throw new OtaError('APPLY_FAILED', `cannot import ${version}: ${staged} is not a directory`, { details: { stagedDir: staged } });
    }
    // The parent: the staged tree itself may be a btrfs subvolume, which has an st_dev of its own.
    await assertSameFilesystem(path.dirname(staged), releasesDir, `importing ${version}`);
    if (targetExists) {
      if ((await current())?.version === version) {
        throw new OtaError('APPLY_FAILED', `cannot import ${version}: it is the live release and is never replaced in place`, {
          details: { version, dir },
        });
      }
      log.warn('replacing a non-live release of the same version', { version, dir });
      await trash(version);
    }
    if (importOptions.fsync !== false) await fsyncTree(staged);
    await checkpoint('import:synced');
    await fs.rename(staged, dir);
    await fsyncDir(releasesDir);
    await fsyncDir(path.dirname(staged));
    log.info('release imported', { version, dir });
    return { version, dir };
  }

  /** Rename out of sight first (one atomic step), then delete: a half-deleted tree is never a release. */
  async function trash(version: string): Promise<void> {
    const dir = path.join(releasesDir, version);
    const trashDir = path.join(releasesDir, `${TRASH_PREFIX}${version}-${randomSuffix()}`);
    await fs.rename(dir, trashDir);
    await fsyncDir(releasesDir);
    await fs.rm(trashDir, { recursive: true, force: true });
  }

  async function emptyTrash(): Promise<void> {
    const names = await fs.readdir(releasesDir).catch(() => [] as string[]);
    for (const name of names) {
      if (name.startsWith(TRASH_PREFIX)) await fs.rm(path.join(releasesDir, name), { recursive: true, force: true });
    }
  }

  async function remove(version: string): Promise<boolean> {
    const dir = releaseDir(version);
    if ((await current())?.version === version) {
      throw new OtaError('APPLY_FAILED', `refusing to remove ${version}: it is the live release of ${options.product}`, {
        details: { version, dir },
      });
    }
    if (!(await exists(dir))) return false;
    await trash(version);
    log.info('release removed', { version });
    return true;
  }

  async function prune(keep: readonly string[]): Promise<string[]> {
    await ensureLayout();
    await emptyTrash();
    const removed: string[] = [];
    for (const release of await list()) {
      if (release.current || keep.includes(release.version)) continue;
      await trash(release.version);
      removed.push(release.version);
    }
    if (removed.length > 0) log.info('pruned releases', { removed, kept: keep });
    return removed;
  }

  return {
    product: options.product,
    installPath,
    releasesDir,
    releaseDir,
    inspect,
    current,
    list,
    has: async (version) => isDirectory(releaseDir(version)),
    adopt,
    recover,
    switchTo,
    importStaged,
    preserve: (paths, fromDir, toDir) => preservePaths(paths, fromDir, toDir, log),
    remove,
    prune,
  };
}


/**
 * The publisher side of the TUF repository, on @tufjs/models. One library, used by the `ota-repo`
 * CLI and by `ota-server`'s upload endpoint, so both publish exactly the same way.
 *
 * Layout of a repository folder:
 *   metadata/  1.root.json … N.root.json, root.json (copy of the newest), N.targets.json,
 *              N.snapshot.json, timestamp.json (consistent snapshots: every version stays addressable),
 *              N.product-<product>.json for each delegated targets role (delegate(): one per product,
 *              whose key the publisher studio holds while the top-level targets key stays offline)
 *   targets/   <product>/<sha256>.<name> (consistent-snapshot target names)
 *   ota-repo.json  public settings (expiry periods); staged.json  targets added but not yet signed
 * Invariant: timestamp.json is written last, so a reader following it always finds every file it names.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Key, Metadata, MetadataKind, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp } from '@tufjs/models';
// Not re-exported by the package index; the classes tuf-js itself builds delegations from.
import { Delegations } from '@tufjs/models/dist/delegations.js';
import { DelegatedRole } from '@tufjs/models/dist/role.js';
import type { Clock } from '../core/clock.js';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { CHANNEL_RE, MANIFEST_SCHEMA_VERSION, PRODUCT_RE, parseManifest, serializeManifest, type Manifest } from '../manifest/schema.js';
import { createPackage, type CreateResult } from '../package/create.js';
import { archiveExtension, DEFAULT_COMPRESSION, parseCompression, requireCompression, type PackageCompression } from '../package/compression.js';
import { checkReleasePackage, type ReleaseCheck } from './release-check.js';
import semver from 'semver';
import { indexPackage, parseIndex, serializeIndex, writeDelta, type TreeIndex } from '../package/tree-index.js';
import { exists, hashFile } from '../core/files.js';
import { atomicWriteFile } from '../core/atomic-file.js';
import {
  generateSigningKey,
  loadDelegatedKeys,
  loadRoleKeys,
  retireDelegatedKey,
  saveDelegatedKey,
  retireKey,
  ROLES,
  saveKey,
  signerFor,
  tufKey,
  type RoleName,
  type SigningKey,
} from './keys.js';

const DAY = 86_400_000;
/** The JSON object type @tufjs/models parses (its utils types are not exported). */
type Json = Parameters<typeof Root.fromJSON>[0];
type RoleJson = { keyids: string[]; threshold: number };
export const DEFAULT_EXPIRY_MS: Record<RoleName, number> = { root: 365 * DAY, targets: 90 * DAY, snapshot: 7 * DAY, timestamp: 1 * DAY };
export const SPEC_VERSION = '1.0.31';
/** Written into every signed role: lets robots notice a clock that runs behind signed data. */
export const ISSUED_FIELD = 'x-otad-issued';
/**
 * Written by the top-level targets role into each delegation it makes: the latest `expires` the
 * delegated role may sign. otad refuses a delegated role that claims a later one; clients that do
 * not know the field ignore it (the TUF specification lets metadata carry fields it does not define).
 */
export const DELEGATION_EXPIRES_FIELD = 'x-otad-expires';
export const DEFAULT_DELEGATION_EXPIRY_MS = 90 * DAY;

/**
 * The delegated targets role that may sign a product's targets (`<product>/*`), or, with a channel,
 * only that channel's (`<product>/<channel>/*`). `~` is in neither a product nor a channel name and
 * needs no escaping in a URL, so every (product, channel) has its own role file name.
 */
export function delegatedRoleName(product: string, channel?: string): string {
  return channel === undefined ? `product-${product}` : `product-${product}~${channel}`;
}

/** The paths a product's (or a product and channel's) delegation covers. */
export function delegatedPaths(product: string, channel?: string): string[] {
  return [channel === undefined ? `${product}/*` : `${product}/${channel}/*`];
}

/** Most keys one delegation may list (ota-repo delegate --keys). */
export const MAX_DELEGATION_KEYS = 16;

export interface RepoSettings {
  expiryMs: Record<RoleName, number>;
  deltas?: Partial<DeltaSettings>;
  /**
   * ota-repo.json `compression`: what packages ota-repo builds from a folder, and every delta, are
   * compressed with, unless the release asks (gzip when unset: every otad reads gzip).
   */
  compression?: PackageCompression;
  /** ota-repo.json `products.<name>.compression`: the same, for one product (before `compression`). */
  products?: Record<string, { compression?: PackageCompression }>;
}

export interface PublisherOptions {
  repoDir: string;
  keysDir: string;
  clock: Clock;
  logger?: Logger;
}

export interface InitOptions {
  /** Signatures required per role (default 1 each). */
  thresholds?: Partial<Record<RoleName, number>>;
  /** Keys generated per role (default: the role's threshold). */
  keyCounts?: Partial<Record<RoleName, number>>;
  expiryMs?: Partial<Record<RoleName, number>>;
}

export interface ReleaseInput {
  product: string;
  version: string;
  channel?: string;
  notes?: string;
  /** A ready package, .tar.gz or .tar.zst (told apart by its first bytes) … */
  packageFile?: string;
  /** … or a directory to package (needs src/package/create.ts). */
  sourceDir?: string;
  /**
   * How a package built from sourceDir, and every delta, is compressed (default: the product's
   * setting in ota-repo.json, else the repository's, else gzip). A ready package keeps its own
   * compression; with a ready package this must match it, and its deltas follow it.
   */
  compression?: PackageCompression;
  minFromVersion?: string;
  requirements?: Manifest['requirements'];
  rolloutPercent?: number;
  /** The siblings' versions this release needs (manifest `dependencies`: product → semver range). */
  dependencies?: Record<string, string>;
  maxDeferralHours?: number;
  installBy?: string;
  /** Check the package as a robot would before anything is stored (ota-repo add always does). */
  check?: ReleaseCheck;
  /** Deltas from earlier published releases (defaults: the repository's settings, else 3 and 0.7). */
  deltas?: Partial<DeltaSettings>;
  /** The manifest's releasedAt (epoch ms; default now): fixed by a caller that showed the manifest before signing it. */
  releasedAt?: number;
  /**
   * What the caller showed the publisher (from preview()): when given, add() refuses
   * (PUBLISH_CONTENT_CHANGED) unless the package and the manifest it would store have exactly these
   * SHA-256s, so what is signed is what was reviewed. The manifest names the tree index and the
   * deltas, so a release published in between (a new delta base) also counts as a change.
   */
  expect?: { packageSha256: string; manifestSha256: string };
}

export interface DeltaSettings {
  /** Deltas from this many of the newest published releases of the same product and channel (0: none). */
  fromLast: number;
  /** A delta is published only when smaller than this share of the full package (0 < share ≤ 1). */
  maxShare: number;
}

export const DEFAULT_DELTA_SETTINGS: DeltaSettings = { fromLast: 3, maxShare: 0.7 };

export interface DeltaOutcome {
  fromVersion: string;
  /** The delta's size, published or not. */
  bytes: number;
  /** The gate: maxShare × the full package length. */
  limitBytes: number;
  published: boolean;
  /** Published deltas only. */
  target?: TargetInfo;
  files: number;
  removed: number;
}

export interface TargetInfo {
  name: string;
  length: number;
  sha256: string;
}

export interface AddResult {
  manifest: Manifest;
  manifestTarget: TargetInfo;
  packageTarget: TargetInfo;
  /** null only for a library caller's unchecked bytes that are not a package (no index, no deltas). */
  indexTarget: TargetInfo | null;
  /** One per earlier release considered, published or held back by the size gate. */
  deltas: DeltaOutcome[];
  /** Packaged from a folder: entries whose group or other write bit was cleared (robots refuse them). */
  clearedWriteBits: string[];
}

export interface PublishResult {
  targetsVersion: number;
  snapshotVersion: number;
  timestampVersion: number;
  published: string[];
}

export interface RotateKeyOptions {
  role: RoleName;
  /** Add this key (default: a freshly generated one is saved to the keys folder). */
  newKey?: SigningKey;
  /** Key ids taken out of the role (default: every key the role had before). */
  removeKeyIds?: string[];
  threshold?: number;
}

export interface RotateKeyResult {
  rootVersion: number;
  role: RoleName;
  addedKeyId: string;
  removedKeyIds: string[];
  publish: PublishResult;
}

export interface RepoState {
  root: Metadata<Root>;
  targets: Metadata<Targets>;
  snapshot: Metadata<Snapshot>;
  timestamp: Metadata<Timestamp>;
  /** Each delegated targets role's current metadata, by role name (the order of targets' delegations). */
  delegated: Record<string, Metadata<Targets>>;
}

export interface DelegateOptions {
  product: string;
  /** Delegate only this channel of the product (paths `<product>/<channel>/*`, role `product-<product>~<channel>`). */
  channel?: string;
  /** Keys the delegation lists (default: the threshold), each made fresh and saved under keyOut. */
  keyCount?: number;
  /** Signatures of those keys a version of the role needs (default 1). */
  threshold?: number;
  /** How long the delegation lasts (default 90 days): the latest expiry its role may sign. */
  expiresInMs?: number;
  /** The keys folder the delegated role's new private key is saved to (default: this publisher's). */
  keyOut?: string;
}

export interface DelegateResult {
  role: string;
  product: string;
  channel: string | null;
  paths: string[];
  /** The first of keyids (kept for callers that know one key). */
  keyid: string;
  keyFile: string;
  keyids: string[];
  keyFiles: string[];
  threshold: number;
  expires: string;
  /** Key ids the delegation no longer trusts (a rotation); empty for a new delegation. */
  replacedKeyIds: string[];
  /** Targets the delegated role signed before and signs again under the new key. */
  carriedTargets: number;
  publish: PublishResult;
}

export interface UndelegateOptions {
  product: string;
  channel?: string;
  /** The keys folder whose copies of the role's keys are retired (default: this publisher's). */
  keyOut?: string;
}

export interface UndelegateResult {
  role: string;
  paths: string[];
  removedKeyIds: string[];
  /** Key files of the role moved to `<keyOut>/retired/`. */
  retiredKeyFiles: number;
  /** Targets the role signed, which robots no longer find. */
  droppedTargets: number;
  publish: PublishResult;
}

/** A delegation as the studio and `ota-repo delegations` show it. */
export interface DelegationInfo {
  role: string;
  keyids: string[];
  threshold: number;
  terminating: boolean;
  paths: string[];
  /** The latest expiry the delegation allows (DELEGATION_EXPIRES_FIELD), null when it sets none. */
  limit: string | null;
  /** The delegated role's metadata: version and expiry. */
  version: number;
  expires: string;
  targets: number;
}

export interface CustomTargetInfo {
  kind: 'manifest' | 'package' | 'index' | 'delta';
  product: string;
  version: string;
  channel?: string;
  /** Deltas: the release they apply to. */
  fromVersion?: string;
}

export type Publisher = ReturnType<typeof createPublisher>;

export function createPublisher(options: PublisherOptions) {
  const { repoDir, keysDir, clock } = options;
  const log = options.logger ?? silentLogger;
  const metadataDir = path.join(repoDir, 'metadata');
  const targetsDir = path.join(repoDir, 'targets');
  const settingsFile = path.join(repoDir, 'ota-repo.json');
  const stagedFile = path.join(repoDir, 'staged.json');

  function expires(role: RoleName, settings: RepoSettings): string {
    return new Date(clock.now() + settings.expiryMs[role]).toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  function issued(): Record<string, string> {
    return { [ISSUED_FIELD]: new Date(clock.now()).toISOString() };
  }

  async function readSettings(): Promise<RepoSettings> {
    if (!(await exists(path.join(metadataDir, 'root.json'), { follow: true }))) {
      throw new OtaError('CONFIG_NOT_FOUND', `no repository at ${repoDir}: metadata/root.json is missing (run ota-repo init first)`);
    }
    let raw: Partial<RepoSettings>;
    try {
      raw = JSON.parse(await fs.readFile(settingsFile, 'utf8')) as Partial<RepoSettings>;
    } catch {
      return { expiryMs: { ...DEFAULT_EXPIRY_MS } };
    }
    // A compression setting that is neither gzip nor zstd is refused, not ignored: the publisher asked for something.
    const compression = raw.compression === undefined ? undefined : parseCompression(raw.compression, `${settingsFile} compression`);
    const products: Record<string, { compression?: PackageCompression }> = {};
    for (const [name, p] of Object.entries(raw.products ?? {})) {
      if (p?.compression !== undefined) products[name] = { compression: parseCompression(p.compression, `${settingsFile} products.${name}.compression`) };
    }
    return {
      expiryMs: { ...DEFAULT_EXPIRY_MS, ...(raw.expiryMs ?? {}) },
      ...(raw.deltas !== undefined ? { deltas: raw.deltas } : {}),
      ...(compression !== undefined ? { compression } : {}),
      ...(Object.keys(products).length > 0 ? { products } : {}),
    };
  }

  async function readJson(file: string): Promise<Json> {
    try {
      return JSON.parse(await fs.readFile(file, 'utf8')) as Json;
    } catch (cause) {
      throw new OtaError('TRUST_METADATA_INVALID', `repository file ${file} is missing or not JSON: ${(cause as Error).message}`, { cause });
    }
  }

  async function loadState(): Promise<RepoState> {
    if (!(await exists(path.join(metadataDir, 'root.json'), { follow: true }))) {
      throw new OtaError('CONFIG_NOT_FOUND', `no repository at ${repoDir}: metadata/root.json is missing (run ota-repo init first)`);
    }
    const root = Metadata.fromJSON(MetadataKind.Root, await readJson(path.join(metadataDir, 'root.json')));
    const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, await readJson(path.join(metadataDir, 'timestamp.json')));
    const snapshot = Metadata.fromJSON(
      MetadataKind.Snapshot,
      await readJson(path.join(metadataDir, `${timestamp.signed.snapshotMeta.version}.snapshot.json`)),
    );
    const targetsMeta = snapshot.signed.meta['targets.json'];
    if (targetsMeta === undefined) throw new OtaError('TRUST_METADATA_INVALID', `snapshot ${snapshot.signed.version} does not list targets.json`);
    const targets = Metadata.fromJSON(MetadataKind.Targets, await readJson(path.join(metadataDir, `${targetsMeta.version}.targets.json`)));
    const delegated: Record<string, Metadata<Targets>> = {};
    for (const name of Object.keys(targets.signed.delegations?.roles ?? {})) {
      const meta = snapshot.signed.meta[`${name}.json`];
      if (meta === undefined) throw new OtaError('TRUST_METADATA_INVALID', `snapshot ${snapshot.signed.version} does not list ${name}.json, a role targets delegates to`);
      delegated[name] = Metadata.fromJSON(MetadataKind.Targets, await readJson(path.join(metadataDir, `${meta.version}.${name}.json`)));
    }
    return { root, targets, snapshot, timestamp, delegated };
  }

  /**
   * Every target the repository signs, as a TUF client resolves them: the top-level targets first,
   * then each delegated role in order, each only for the paths it is delegated (an entry outside
   * them is what a client ignores, so it is left out here too).
   */
  function allTargets(state: RepoState): Record<string, TargetFile> {
    const out: Record<string, TargetFile> = { ...state.targets.signed.targets };
    for (const [name, role] of Object.entries(state.targets.signed.delegations?.roles ?? {})) {
      for (const [p, t] of Object.entries(state.delegated[name]?.signed.targets ?? {})) {
        if (out[p] === undefined && role.isDelegatedPath(p)) out[p] = t;
      }
    }
    return out;
  }

  /** Sign a delegated role with every key of it at hand; refuse below its threshold. */
  async function signDelegated(md: Metadata<Targets>, name: string, delegator: Targets, extraKeys: SigningKey[] = []): Promise<void> {
    const role = delegator.delegations?.roles?.[name];
    if (role === undefined) throw new OtaError('CONFIG_INVALID', `targets delegates to no role ${name}: create it with ota-repo delegate`);
    const available = [...(await loadDelegatedKeys(keysDir, name)), ...extraKeys].filter((k) => role.keyIDs.includes(k.keyid));
    const unique = [...new Map(available.map((k) => [k.keyid, k])).values()];
    if (unique.length < role.threshold) {
      throw new OtaError('CONFIG_INVALID', `cannot sign delegated role ${name}: ${unique.length} of its keys are in ${path.join(keysDir, 'delegated', name)}, threshold is ${role.threshold}`, {
        details: { role: name, available: unique.length, threshold: role.threshold },
      });
    }
    md.signatures = {};
    for (const key of unique) md.sign(signerFor(key), true);
  }

  /** Sign with every locally available key of the role; refuse when that cannot reach the threshold. */
  async function signRole<T extends Root | Targets | Snapshot | Timestamp>(
    md: Metadata<T>,
    role: RoleName,
    root: Root,
    extraKeys: SigningKey[] = [],
  ): Promise<void> {
    const roleDef = root.roles[role];
    if (roleDef === undefined) throw new OtaError('TRUST_METADATA_INVALID', `root has no ${role} role`);
    const available = [...(await loadRoleKeys(keysDir, role)), ...extraKeys].filter((k) => roleDef.keyIDs.includes(k.keyid));
    const unique = [...new Map(available.map((k) => [k.keyid, k])).values()];
    if (unique.length < roleDef.threshold) {
      throw new OtaError(
        'CONFIG_INVALID',
        `cannot sign ${role}: ${unique.length} of its keys are in ${path.join(keysDir, role)}, threshold is ${roleDef.threshold} (bring the offline ${role} keys)`,
        { details: { role, available: unique.length, threshold: roleDef.threshold } },
      );
    }
    md.signatures = {};
    for (const key of unique) md.sign(signerFor(key), true);
  }

  async function writeMetadata(name: string, md: Metadata<Root | Targets | Snapshot | Timestamp>): Promise<Buffer> {
    const bytes = Buffer.from(`${JSON.stringify(md.toJSON(), null, 2)}\n`);
    await atomicWriteFile(path.join(metadataDir, name), bytes);
    return bytes;
  }

  function metaFileFor(version: number, bytes: Buffer): MetaFile {
    return new MetaFile({ version, length: bytes.length, hashes: { sha256: createHash('sha256').update(bytes).digest('hex') } });
  }

  async function readStaged(): Promise<Record<string, { length: number; sha256: string; custom: CustomTargetInfo }>> {
    try {
      return JSON.parse(await fs.readFile(stagedFile, 'utf8')) as Record<string, { length: number; sha256: string; custom: CustomTargetInfo }>;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw error;
    }
  }

  type StoreTarget = (name: string, source: { file?: string; bytes?: Buffer }) => Promise<TargetInfo>;

  /** Only what storeTarget would return: the name, length and SHA-256, nothing written (preview()). */
  async function describeTarget(name: string, source: { file?: string; bytes?: Buffer }): Promise<TargetInfo> {
    const { sha256, length } = source.bytes !== undefined ? hashBytes(source.bytes) : await hashFile(source.file!);
    return { name, length, sha256 };
  }

  /** Store a file as a consistent-snapshot target: `targets/<dir>/<sha256>.<base>`. */
  async function storeTarget(name: string, source: { file?: string; bytes?: Buffer }): Promise<TargetInfo> {
    const { sha256, length } = source.bytes !== undefined ? hashBytes(source.bytes) : await hashFile(source.file!);
    const { dir, base } = path.posix.parse(name);
    const destDir = path.join(targetsDir, ...dir.split('/').filter(Boolean));
    await fs.mkdir(destDir, { recursive: true });
    const dest = path.join(destDir, `${sha256}.${base}`);
    if (!(await exists(dest, { follow: true }))) {
      if (source.bytes !== undefined) await atomicWriteFile(dest, source.bytes);
      else {
        const tmp = `${dest}.tmp`;
        await fs.copyFile(source.file!, tmp);
        const h = await fs.open(tmp, 'r+');
        await h.sync();
        await h.close();
        await fs.rename(tmp, dest);
      }
    }
    return { name, length, sha256 };
  }

  async function signAndWriteTail(
    state: RepoState,
    settings: RepoSettings,
    newTargets: Metadata<Targets> | null,
    newDelegated: Array<{ name: string; md: Metadata<Targets>; extraKeys?: SigningKey[] }> = [],
  ): Promise<PublishResult> {
    const root = state.root.signed;
    const published: string[] = [];
    let targetsVersion = state.targets.signed.version;
    const snapshotMeta: Record<string, MetaFile> = { ...state.snapshot.signed.meta };
    // Sign everything before writing anything: a missing key leaves the repository as it was.
    if (newTargets !== null) await signRole(newTargets, 'targets', root);
    const delegator = (newTargets ?? state.targets).signed;
    for (const d of newDelegated) await signDelegated(d.md, d.name, delegator, d.extraKeys);
    if (newTargets !== null) {
      targetsVersion = newTargets.signed.version;
      const bytes = await writeMetadata(`${targetsVersion}.targets.json`, newTargets);
      snapshotMeta['targets.json'] = metaFileFor(targetsVersion, bytes);
      published.push(`${targetsVersion}.targets.json`);
    }
    for (const d of newDelegated) {
      const file = `${d.md.signed.version}.${d.name}.json`;
      const bytes = await writeMetadata(file, d.md);
      snapshotMeta[`${d.name}.json`] = metaFileFor(d.md.signed.version, bytes);
      published.push(file);
    }
    const snapshot = new Metadata(
      new Snapshot({
        version: state.snapshot.signed.version + 1,
        specVersion: SPEC_VERSION,
        expires: expires('snapshot', settings),
        meta: snapshotMeta,
        unrecognizedFields: issued(),
      }),
    );
    await signRole(snapshot, 'snapshot', root);
    const snapshotBytes = await writeMetadata(`${snapshot.signed.version}.snapshot.json`, snapshot);
    published.push(`${snapshot.signed.version}.snapshot.json`);
    const timestamp = new Metadata(
      new Timestamp({
        version: state.timestamp.signed.version + 1,
        specVersion: SPEC_VERSION,
        expires: expires('timestamp', settings),
        snapshotMeta: metaFileFor(snapshot.signed.version, snapshotBytes),
        unrecognizedFields: issued(),
      }),
    );
    await signRole(timestamp, 'timestamp', root);
    await writeMetadata('timestamp.json', timestamp);
    published.push('timestamp.json');
    return { targetsVersion, snapshotVersion: snapshot.signed.version, timestampVersion: timestamp.signed.version, published };
  }

  /**
   * The folder of a release's targets: `<product>/<channel>` when the repository delegates that
   * channel of the product to a role of its own (ota-repo delegate --channel), so that role's paths
   * cover them; `<product>` otherwise (the product's delegation, or the top-level targets role).
   */
  function releaseDirFor(state: RepoState, product: string, channel: string): string {
    const probe = `${product}/${channel}/${product}.otad-listing`;
    return Object.values(state.targets.signed.delegations?.roles ?? {}).some((r) => r.isDelegatedPath(probe)) ? `${product}/${channel}` : product;
  }

  /** The manifest target of a release, signed or staged, in whichever folder it was published (a version exists once per product). */
  function findManifest(state: RepoState, staged: Awaited<ReturnType<typeof readStaged>>, product: string, version: string): { name: string; length: number; sha256: string; custom: CustomTargetInfo | undefined } | undefined {
    const isIt = (custom: Partial<CustomTargetInfo> | undefined) => custom?.kind === 'manifest' && custom.product === product && custom.version === version;
    for (const [name, info] of Object.entries(staged)) if (isIt(info.custom)) return { name, length: info.length, sha256: info.sha256, custom: info.custom };
    for (const t of Object.values(allTargets(state))) {
      const custom = (t.custom as { otad?: CustomTargetInfo }).otad;
      const sha256 = t.hashes['sha256'];
      if (isIt(custom) && sha256 !== undefined) return { name: t.path, length: t.length, sha256, custom };
    }
    const legacy = `${product}/${product}-${version}.manifest.json`;
    const t = allTargets(state)[legacy] ?? undefined;
    if (t !== undefined && t.hashes['sha256'] !== undefined) return { name: legacy, length: t.length, sha256: t.hashes['sha256'], custom: (t.custom as { otad?: CustomTargetInfo }).otad };
    if (staged[legacy] !== undefined) return { name: legacy, ...staged[legacy] };
    return undefined;
  }

  function targetFile(name: string, sha256: string): string {
    const { dir, base } = path.posix.parse(name);
    return path.join(targetsDir, ...dir.split('/').filter(Boolean), `${sha256}.${base}`);
  }

  /** The tree index of a published release: its signed index target, or (releases published before indexes) its package read again. */
  async function publishedIndex(manifest: Manifest): Promise<TreeIndex> {
    if (manifest.index !== undefined) {
      return parseIndex(await fs.readFile(targetFile(manifest.index.target, manifest.index.sha256)), manifest.index.target, { product: manifest.product, version: manifest.version });
    }
    return indexPackage(targetFile(manifest.package.target, manifest.package.sha256), { product: manifest.product, version: manifest.version });
  }

  /**
   * A release as add() would stage it: the package, its tree index, the deltas from earlier
   * releases and the manifest naming them all. 'store' writes the targets and the staged list;
   * 'preview' only computes them (the same bytes, so the same SHA-256s) and writes nothing.
   */
  async function composeRelease(input: ReleaseInput, mode: 'store' | 'preview'): Promise<AddResult> {
    await readSettings();
    const store: StoreTarget = mode === 'store' ? storeTarget : describeTarget;
    // Validate the release fields before touching the repository (package fields are placeholders here).
    const draft = buildManifest(input, { target: `${input.product}/${input.product}-${input.version}.tar.gz`, length: 1, sha256: '0'.repeat(64) }, input.releasedAt ?? clock.now());
    const settings = await readSettings();
    const state = await loadState();
    const staged = await readStaged();
    const dir = releaseDirFor(state, input.product, draft.channel);
    const asked = input.compression ?? settings.products?.[input.product]?.compression ?? settings.compression;
    if (input.compression !== undefined) parseCompression(input.compression, 'compression');
    const manifestName = `${dir}/${input.product}-${input.version}.manifest.json`;
    if (findManifest(state, staged, input.product, input.version) !== undefined) {
      throw new OtaError('CONFIG_INVALID', `release ${input.product} ${input.version} already exists in ${repoDir}: publish a new version instead`);
    }
    let packageFile = input.packageFile;
    let tmpDir: string | undefined;
    let clearedWriteBits: string[] = [];
    if (packageFile === undefined) {
      if (input.sourceDir === undefined) throw new OtaError('CONFIG_INVALID', 'add needs a package file (tar.gz) or a source directory');
      tmpDir = await fs.mkdtemp(path.join(repoDir, '.pack-'));
      packageFile = path.join(tmpDir, `package${archiveExtension(asked ?? DEFAULT_COMPRESSION)}`);
      try {
        clearedWriteBits = (await packDirectory(input.sourceDir, packageFile, asked ?? DEFAULT_COMPRESSION)).clearedWriteBits;
      } catch (error) {
        // A refused or failed packing leaves no scratch folder in the repository.
        await fs.rm(tmpDir, { recursive: true, force: true }).catch(() => {});
        throw error;
      }
    }
    try {
      const stat = await fs.stat(packageFile).catch(() => null);
      if (stat === null || !stat.isFile()) throw new OtaError('CONFIG_INVALID', `package ${packageFile} is not a readable file`);
      if (stat.size === 0) throw new OtaError('CONFIG_INVALID', `package ${packageFile} is empty`);
      // The name follows the bytes (gzip 1f 8b or zstd 28 b5 2f fd), never the file's own name.
      const compression = await requireCompression(packageFile).catch((error: unknown) => {
        throw toOtaError(error, 'PACKAGE_CORRUPT', `reading package ${packageFile}`);
      });
      if (input.compression !== undefined && input.packageFile !== undefined && input.compression !== compression) {
        throw new OtaError('CONFIG_INVALID', `package ${packageFile} is ${compression}-compressed, but ${input.compression} was asked for: a ready package is published as it is (package the folder instead, or leave the compression out)`, {
          details: { package: compression, asked: input.compression },
        });
      }
      const packageName = `${dir}/${input.product}-${input.version}${archiveExtension(compression)}`;
      if (input.check !== undefined) await checkReleasePackage(packageFile, input.version, input.check);
      const deltaSettings = resolveDeltaSettings({ ...(settings.deltas ?? {}), ...(input.deltas ?? {}) });
      const packageTarget = await store(packageName, { file: packageFile });
      const channel = draft.channel;
      const ids = { product: input.product, version: input.version };
      // The complete tree of the release, signed through the manifest: what a robot's staged tree must equal.
      let index: TreeIndex | null = null;
      try {
        index = await indexPackage(packageFile, ids);
      } catch (error) {
        // ota-repo checks the package first (input.check), so it always indexes; a library caller
        // that skipped the check with bytes that are not a package publishes a schema-1.0 release.
        if (input.check !== undefined) throw toOtaError(error, 'PACKAGE_CORRUPT', `indexing package ${packageFile}`);
        log.warn('package could not be indexed: published without a tree index or deltas', { error: (error as Error).message });
      }
      const indexName = `${dir}/${input.product}-${input.version}.index.json`;
      let indexTarget: TargetInfo | null = null;
      if (index !== null) {
        indexTarget = await store(indexName, { bytes: Buffer.from(serializeIndex(index)) });
        staged[indexName] = { length: indexTarget.length, sha256: indexTarget.sha256, custom: { kind: 'index', product: input.product, version: input.version, channel } };
      }
      const deltas = index === null ? [] : await makeDeltas(state, dir, input.product, channel, input.version, packageFile, packageTarget.length, index, deltaSettings, tmpDir ?? repoDir, store, compression);
      for (const d of deltas) {
        if (d.target === undefined) continue;
        staged[d.target.name] = { length: d.target.length, sha256: d.target.sha256, custom: { kind: 'delta', product: input.product, version: input.version, channel, fromVersion: d.fromVersion } };
      }
      const published = deltas.filter((d) => d.target !== undefined);
      const manifest: Manifest = {
        ...draft,
        package: { target: packageName, length: packageTarget.length, sha256: packageTarget.sha256 },
        ...(index !== null && indexTarget !== null ? { index: { target: indexName, length: indexTarget.length, sha256: indexTarget.sha256, entries: index.entries.length, bytes: index.bytes } } : {}),
        ...(published.length > 0 ? { deltas: published.map((d) => ({ fromVersion: d.fromVersion, target: d.target!.name, length: d.target!.length, sha256: d.target!.sha256 })) } : {}),
      };
      const manifestBytes = Buffer.from(serializeManifest(manifest));
      if (mode === 'preview') {
        return { manifest, manifestTarget: await describeTarget(manifestName, { bytes: manifestBytes }), packageTarget, indexTarget, deltas, clearedWriteBits };
      }
      if (input.expect !== undefined && (packageTarget.sha256 !== input.expect.packageSha256 || hashBytes(manifestBytes).sha256 !== input.expect.manifestSha256)) {
        // The package file changed between the preview add() compared and storing it.
        throw new OtaError('PUBLISH_CONTENT_CHANGED', `release ${input.product} ${input.version}: the package changed while it was being stored; nothing was signed`);
      }
      const manifestTarget = await storeTarget(manifestName, { bytes: manifestBytes });
      staged[packageName] = { length: packageTarget.length, sha256: packageTarget.sha256, custom: { kind: 'package', product: input.product, version: input.version, channel: manifest.channel } };
      staged[manifestName] = {
        length: manifestTarget.length,
        sha256: manifestTarget.sha256,
        custom: { kind: 'manifest', product: input.product, version: input.version, channel: manifest.channel },
      };
      await atomicWriteFile(stagedFile, `${JSON.stringify(staged, null, 2)}\n`);
      log.info('release staged', { product: input.product, version: input.version, package: packageTarget, deltas: deltas.map((d) => ({ from: d.fromVersion, bytes: d.bytes, published: d.published })) });
      return { manifest, manifestTarget, packageTarget, indexTarget, deltas, clearedWriteBits };
    } finally {
      if (tmpDir !== undefined) await fs.rm(tmpDir, { recursive: true, force: true });
    }
  }

  /**
   * Deltas to `version` from the newest `fromLast` published releases of the same product and
   * channel below it. Each is written, measured, and stored as a target only when it passes the gate.
   */
  async function makeDeltas(
    state: RepoState,
    dir: string,
    product: string,
    channel: string,
    version: string,
    packageFile: string,
    packageLength: number,
    index: TreeIndex,
    settings: DeltaSettings,
    workDir: string,
    store: StoreTarget,
    compression: PackageCompression,
  ): Promise<DeltaOutcome[]> {
    if (settings.fromLast === 0) return [];
    const earlier = Object.values(allTargets(state))
      .map((t) => ({ t, custom: ((t.custom as { otad?: Partial<CustomTargetInfo> }).otad ?? {}) }))
      .filter(({ custom }) => custom.kind === 'manifest' && custom.product === product && (custom.channel ?? 'stable') === channel)
      .filter(({ custom }) => semver.valid(custom.version ?? '') !== null && semver.lt(custom.version!, version))
      .sort((a, b) => semver.rcompare(a.custom.version!, b.custom.version!))
      .slice(0, settings.fromLast);
    const limitBytes = Math.floor(packageLength * settings.maxShare);
    const outcomes: DeltaOutcome[] = [];
    for (const { t, custom } of earlier) {
      const fromVersion = custom.version!;
      let old: Manifest;
      try {
        old = parseManifest(await fs.readFile(targetFile(t.path, t.hashes['sha256'] ?? '')), t.path);
      } catch (error) {
        log.warn('no delta from a release whose manifest cannot be read', { fromVersion, error: (error as Error).message });
        continue;
      }
      let prev: TreeIndex;
      try {
        prev = await publishedIndex(old);
      } catch (error) {
        log.warn('no delta from a release whose tree cannot be indexed', { fromVersion, error: (error as Error).message });
        continue;
      }
      const ext = archiveExtension(compression);
      const tmp = path.join(workDir, `.delta-${fromVersion}-${process.pid}-${Date.now()}${ext}`);
      try {
        const meta = await writeDelta(packageFile, prev, index, tmp, undefined, compression);
        const bytes = (await fs.stat(tmp)).size;
        const outcome: DeltaOutcome = { fromVersion, bytes, limitBytes, published: bytes < limitBytes, files: meta.files, removed: meta.removed.length };
        if (outcome.published) {
          outcome.target = await store(`${dir}/${product}-${fromVersion}-to-${version}.delta${ext}`, { file: tmp });
        } else {
          log.info('delta held back by the size gate', { fromVersion, bytes, limitBytes });
        }
        outcomes.push(outcome);
      } finally {
        await fs.rm(tmp, { force: true });
      }
    }
    return outcomes;
  }

  return {
    repoDir,
    keysDir,
    metadataDir,
    targetsDir,
    loadState,

    /** Create keys and version 1 of every role. Refuses to touch an existing repository. */
    async init(init: InitOptions = {}): Promise<{ keys: Record<RoleName, string[]>; rootFile: string }> {
      if (await exists(path.join(metadataDir, 'root.json'), { follow: true })) {
        throw new OtaError('CONFIG_INVALID', `repository ${repoDir} is already initialised (metadata/root.json exists)`);
      }
      const settings: RepoSettings = { expiryMs: { ...DEFAULT_EXPIRY_MS, ...(init.expiryMs ?? {}) } };
      for (const role of ROLES) {
        const period = settings.expiryMs[role];
        if (!Number.isFinite(period) || period <= 0) throw new OtaError('CONFIG_INVALID', `expiry for ${role} is ${period} ms, expected a positive duration`);
      }
      await fs.mkdir(metadataDir, { recursive: true });
      await fs.mkdir(targetsDir, { recursive: true });
      await fs.mkdir(keysDir, { recursive: true, mode: 0o700 });
      const keyIds = {} as Record<RoleName, string[]>;
      const roles: Record<string, RoleJson> = {};
      const keys: Record<string, Json> = {};
      for (const role of ROLES) {
        const threshold = init.thresholds?.[role] ?? 1;
        const count = init.keyCounts?.[role] ?? threshold;
        if (!Number.isInteger(threshold) || threshold < 1) throw new OtaError('CONFIG_INVALID', `threshold for ${role} is ${threshold}, expected a whole number ≥ 1`);
        if (count < threshold) throw new OtaError('CONFIG_INVALID', `${role}: ${count} keys cannot meet threshold ${threshold}`);
        keyIds[role] = [];
        for (let i = 0; i < count; i += 1) {
          const key = generateSigningKey(role);
          await saveKey(keysDir, key);
          keys[key.keyid] = tufKey(key).toJSON();
          keyIds[role].push(key.keyid);
        }
        roles[role] = { keyids: keyIds[role], threshold };
      }
      const rootSigned = rootFromParts(1, expires('root', settings), keys, roles, issued());
      const rootMd = new Metadata(rootSigned);
      await signRole(rootMd, 'root', rootSigned);
      await atomicWriteFile(settingsFile, `${JSON.stringify(settings, null, 2)}\n`);
      await writeMetadata('1.root.json', rootMd);
      await writeMetadata('root.json', rootMd);
      const emptyTargets = new Metadata(new Targets({ version: 1, specVersion: SPEC_VERSION, expires: expires('targets', settings), unrecognizedFields: issued() }));
      // Versions 0 so the first tail writes version 1 of snapshot and timestamp.
      const state: RepoState = {
        root: rootMd,
        targets: new Metadata(new Targets({ version: 0, specVersion: SPEC_VERSION, expires: expires('targets', settings) })),
        snapshot: new Metadata(new Snapshot({ version: 0, specVersion: SPEC_VERSION, expires: expires('snapshot', settings), meta: {} })),
        timestamp: new Metadata(new Timestamp({ version: 0, specVersion: SPEC_VERSION, expires: expires('timestamp', settings), snapshotMeta: new MetaFile({ version: 1 }) })),
        delegated: {},
      };
      await signAndWriteTail(state, settings, emptyTargets);
      log.info('repository initialised', { repoDir, keys: keyIds });
      return { keys: keyIds, rootFile: path.join(metadataDir, '1.root.json') };
    },

    /**
     * Stage a release: store the package and its manifest as targets under `<product>/`.
     * Nothing is visible to robots until publish() signs it.
     */
    async add(input: ReleaseInput): Promise<AddResult> {
      if (input.expect !== undefined) {
        const seen = await composeRelease({ ...input, expect: undefined }, 'preview');
        if (seen.packageTarget.sha256 !== input.expect.packageSha256 || seen.manifestTarget.sha256 !== input.expect.manifestSha256) {
          throw new OtaError('PUBLISH_CONTENT_CHANGED', `release ${input.product} ${input.version}: the package or manifest differs from the reviewed one; nothing was stored or signed`, {
            details: { expected: input.expect, found: { packageSha256: seen.packageTarget.sha256, manifestSha256: seen.manifestTarget.sha256 } },
          });
        }
      }
      return composeRelease(input, 'store');
    },

    /**
     * What add() would stage for this input, computed and not stored: the manifest (its exact
     * bytes' SHA-256 in manifestTarget), the package, the tree index and the deltas. A caller that
     * shows this to a publisher passes its SHA-256s back to add() as `expect`.
     */
    async preview(input: ReleaseInput): Promise<AddResult> {
      return composeRelease({ ...input, expect: undefined }, 'preview');
    },

    /**
     * Change a published release's rollout percentage: a new manifest (same package) is staged in
     * place of the old one. Lowering it halts the release for robots that have not started it;
     * raising it widens it. Nothing is visible until publish().
     */
    async setRollout(input: { product: string; version: string; percent: number }): Promise<{ manifest: Manifest; manifestTarget: TargetInfo }> {
      await readSettings();
      if (!Number.isFinite(input.percent) || input.percent < 0 || input.percent > 100) {
        throw new OtaError('CONFIG_INVALID', `rollout percentage is ${input.percent}: expected a number from 0 to 100`);
      }
      const state = await loadState();
      const staged = await readStaged();
      const current = findManifest(state, staged, input.product, input.version);
      const manifestName = current?.name ?? `${input.product}/${input.product}-${input.version}.manifest.json`;
      if (current === undefined || current.custom === undefined) {
        throw new OtaError('CONFIG_INVALID', `release ${input.product} ${input.version} is not in ${repoDir}: add it first`);
      }
      const { dir, base } = path.posix.parse(manifestName);
      const file = path.join(targetsDir, ...dir.split('/').filter(Boolean), `${current.sha256}.${base}`);
      const manifest = parseManifest(await fs.readFile(file), `release ${input.product} ${input.version}`);
      const next: Manifest = { ...manifest, rolloutPercent: input.percent };
      const manifestTarget = await storeTarget(manifestName, { bytes: Buffer.from(serializeManifest(next)) });
      staged[manifestName] = { length: manifestTarget.length, sha256: manifestTarget.sha256, custom: current.custom };
      await atomicWriteFile(stagedFile, `${JSON.stringify(staged, null, 2)}\n`);
      log.info('rollout changed', { product: input.product, version: input.version, from: manifest.rolloutPercent ?? 100, to: input.percent });
      return { manifest: next, manifestTarget };
    },

    /**
     * Stage one arbitrary target with otad's custom fields (releases use add()). The publisher signs
     * what it is given: the robot checks that a manifest agrees with its listing.
     */
    async stageTarget(name: string, source: { file?: string; bytes?: Buffer }, custom: CustomTargetInfo): Promise<TargetInfo> {
      await readSettings();
      const staged = await readStaged();
      const info = await storeTarget(name, source);
      staged[name] = { length: info.length, sha256: info.sha256, custom };
      await atomicWriteFile(stagedFile, `${JSON.stringify(staged, null, 2)}\n`);
      return info;
    },

    /**
     * Sign staged targets (if any), then a new snapshot and timestamp. With `role`, the staged
     * targets go into that delegated targets role, signed by its key alone (the top-level targets
     * key is not needed); every staged target must be inside the role's delegated paths
     * (PUBLISH_OUTSIDE_DELEGATION otherwise) and the delegation must not have expired
     * (PUBLISH_DELEGATION_EXPIRED). Either refusal signs nothing and keeps the staged list.
     */
    async publish(opts: { resignTargets?: boolean; role?: string } = {}): Promise<PublishResult> {
      const settings = await readSettings();
      const state = await loadState();
      const staged = await readStaged();
      if (opts.role !== undefined) {
        const name = opts.role;
        const role = state.targets.signed.delegations?.roles?.[name];
        const current = state.delegated[name];
        if (role === undefined || current === undefined) {
          // Never made, or removed (ota-repo undelegate): robots do not follow it, so nothing is signed into it.
          throw new OtaError('PUBLISH_OUTSIDE_DELEGATION', `the repository delegates to no role ${name} (never made, or removed): nothing was signed. Create it offline with ota-repo delegate`, {
            details: { role: name, delegated: false },
          });
        }
        const outside = Object.keys(staged).filter((t) => !role.isDelegatedPath(t));
        if (outside.length > 0) {
          throw new OtaError('PUBLISH_OUTSIDE_DELEGATION', `delegated role ${name} may sign only ${(role.paths ?? []).join(', ')}; ${outside.join(', ')} ${outside.length === 1 ? 'is' : 'are'} outside it. Nothing was signed`, {
            details: { role: name, paths: role.paths ?? [], outside },
          });
        }
        const limit = delegationLimit(role);
        if (limit !== null && Date.parse(limit) <= clock.now()) {
          throw new OtaError('PUBLISH_DELEGATION_EXPIRED', `the delegation to ${name} expired at ${limit}: renew it offline with ota-repo delegate --product …. Nothing was signed`, { details: { role: name, expires: limit } });
        }
        const roleTargets = new Targets({
          version: current.signed.version + 1,
          specVersion: SPEC_VERSION,
          // Never later than the delegation allows: otad refuses a delegated role that claims more.
          expires: limit ?? expires('targets', settings),
          targets: { ...current.signed.targets },
          unrecognizedFields: issued(),
        });
        for (const [p, info] of Object.entries(staged)) {
          roleTargets.addTarget(new TargetFile({ path: p, length: info.length, hashes: { sha256: info.sha256 }, unrecognizedFields: { custom: { otad: { ...info.custom } } } }));
        }
        const result = await signAndWriteTail(state, settings, null, [{ name, md: new Metadata(roleTargets) }]);
        await fs.rm(stagedFile, { force: true });
        log.info('repository published through a delegated role', { role: name, ...result });
        return result;
      }
      let newTargets: Metadata<Targets> | null = null;
      if (Object.keys(staged).length > 0 || opts.resignTargets === true) {
        const targets = new Targets({
          version: state.targets.signed.version + 1,
          specVersion: SPEC_VERSION,
          expires: expires('targets', settings),
          targets: { ...state.targets.signed.targets },
          ...(state.targets.signed.delegations !== undefined ? { delegations: state.targets.signed.delegations } : {}),
          unrecognizedFields: issued(),
        });
        for (const [name, info] of Object.entries(staged)) {
          targets.addTarget(
            new TargetFile({ path: name, length: info.length, hashes: { sha256: info.sha256 }, unrecognizedFields: { custom: { otad: { ...info.custom } } } }),
          );
        }
        newTargets = new Metadata(targets);
      }
      const result = await signAndWriteTail(state, settings, newTargets);
      await fs.rm(stagedFile, { force: true });
      log.info('repository published', { ...result });
      return result;
    },

    /**
     * Create, or rotate and renew, the delegated targets role of a product, or of one channel of a
     * product (offline: it signs a new top-level targets version, so it needs the top-level targets
     * key). `keyCount` new ed25519 keys (default: the threshold, default 1) are made and saved under
     * `<keyOut>/delegated/<role>/`; the delegation trusts those keys only, with `threshold`
     * signatures required, for the paths `<product>/*` (or `<product>/<channel>/*`), terminating,
     * until `expiresInMs` from now. A rotation replaces every old key (retired when in `keyOut`)
     * and signs the role's current targets again with the new keys, so robots see no gap.
     */
    async delegate(opts: DelegateOptions): Promise<DelegateResult> {
      const settings = await readSettings();
      if (typeof opts.product !== 'string' || !PRODUCT_RE.test(opts.product)) {
        throw new OtaError('CONFIG_INVALID', `product ${JSON.stringify(opts.product)}: expected a lower-case product name ([a-z0-9._-], at most 64 characters)`);
      }
      if (opts.channel !== undefined && (typeof opts.channel !== 'string' || !CHANNEL_RE.test(opts.channel))) {
        throw new OtaError('CONFIG_INVALID', `channel ${JSON.stringify(opts.channel)}: expected a channel name such as stable or beta ([a-z][a-z0-9-], at most 32 characters)`);
      }
      const period = opts.expiresInMs ?? DEFAULT_DELEGATION_EXPIRY_MS;
      if (!Number.isFinite(period) || period <= 0) throw new OtaError('CONFIG_INVALID', `delegation expiry is ${period} ms: expected a positive duration`);
      const threshold = opts.threshold ?? 1;
      const keyCount = opts.keyCount ?? threshold;
      if (!Number.isInteger(threshold) || threshold < 1) throw new OtaError('CONFIG_INVALID', `delegation threshold is ${String(threshold)}: expected a whole number ≥ 1`);
      if (!Number.isInteger(keyCount) || keyCount < threshold || keyCount > MAX_DELEGATION_KEYS) {
        throw new OtaError('CONFIG_INVALID', `${String(keyCount)} delegation keys for threshold ${threshold}: expected a whole number of keys from the threshold to ${MAX_DELEGATION_KEYS}`);
      }
      const state = await loadState();
      const name = delegatedRoleName(opts.product, opts.channel);
      const paths = delegatedPaths(opts.product, opts.channel);
      const expiresAt = new Date(clock.now() + period).toISOString().replace(/\.\d{3}Z$/, 'Z');
      const newKeys = Array.from({ length: keyCount }, () => generateSigningKey('targets'));
      const before = state.targets.signed.delegations;
      const old = before?.roles?.[name];
      const roles: Record<string, DelegatedRole> = {};
      const fresh = new DelegatedRole({ name, keyIDs: newKeys.map((k) => k.keyid), threshold, terminating: true, paths, unrecognizedFields: { [DELEGATION_EXPIRES_FIELD]: expiresAt } });
      for (const [n, r] of Object.entries(before?.roles ?? {})) roles[n] = n === name ? fresh : r;
      roles[name] ??= fresh;
      const keys: Record<string, Key> = { ...(before?.keys ?? {}), ...Object.fromEntries(newKeys.map((k) => [k.keyid, tufKey(k)])) };
      const used = new Set(Object.values(roles).flatMap((r) => r.keyIDs));
      for (const id of Object.keys(keys)) if (!used.has(id)) delete keys[id];
      const newTargets = new Metadata(
        new Targets({
          version: state.targets.signed.version + 1,
          specVersion: SPEC_VERSION,
          expires: expires('targets', settings),
          targets: { ...state.targets.signed.targets },
          delegations: new Delegations({ keys, roles, ...(before?.unrecognizedFields !== undefined ? { unrecognizedFields: before.unrecognizedFields } : {}) }),
          unrecognizedFields: issued(),
        }),
      );
      const current = state.delegated[name];
      const carried = Object.fromEntries(Object.entries(current?.signed.targets ?? {}).filter(([p]) => fresh.isDelegatedPath(p)));
      // A role removed earlier is still listed in the snapshot (TUF 5.5.5: a client refuses a
      // snapshot that drops a targets file or lowers its version), so a new one continues its numbering.
      const listed = state.snapshot.signed.meta[`${name}.json`]?.version ?? 0;
      const roleMd = new Metadata(
        new Targets({ version: Math.max(current?.signed.version ?? 0, listed) + 1, specVersion: SPEC_VERSION, expires: expiresAt, targets: carried, unrecognizedFields: issued() }),
      );
      const keyOut = opts.keyOut ?? keysDir;
      // The keys are saved before anything names them, and removed again when signing fails.
      const keyFiles: string[] = [];
      let publish: PublishResult;
      try {
        for (const k of newKeys) keyFiles.push(await saveDelegatedKey(keyOut, name, k));
        publish = await signAndWriteTail(state, settings, newTargets, [{ name, md: roleMd, extraKeys: newKeys }]);
      } catch (error) {
        for (const f of keyFiles) await fs.rm(f, { force: true });
        throw error;
      }
      const newIds = new Set(newKeys.map((k) => k.keyid));
      const replacedKeyIds = (old?.keyIDs ?? []).filter((id) => !newIds.has(id));
      for (const id of replacedKeyIds) await retireDelegatedKey(keyOut, name, id);
      log.info(old === undefined ? 'delegation created' : 'delegation rotated', { role: name, keyids: [...newIds], threshold, expires: expiresAt, replaced: replacedKeyIds });
      return {
        role: name,
        product: opts.product,
        channel: opts.channel ?? null,
        paths,
        keyid: newKeys[0]!.keyid,
        keyFile: keyFiles[0]!,
        keyids: newKeys.map((k) => k.keyid),
        keyFiles,
        threshold,
        expires: expiresAt,
        replacedKeyIds,
        carriedTargets: Object.keys(carried).length,
        publish,
      };
    },

    /**
     * Remove the delegation of a product (or of one channel of it): a new top-level targets version
     * without the role and its keys (offline: needs the top-level targets key). Robots stop following
     * the role at their next refresh, so the targets it signed are no longer found, whatever its
     * key-holder signs afterwards. The role's last metadata stays listed in the snapshot, as TUF
     * requires of every targets file a snapshot once listed. Its keys in `keyOut` are retired.
     */
    async undelegate(opts: UndelegateOptions): Promise<UndelegateResult> {
      const settings = await readSettings();
      const state = await loadState();
      const name = delegatedRoleName(opts.product, opts.channel);
      const before = state.targets.signed.delegations;
      const old = before?.roles?.[name];
      if (before === undefined || old === undefined) {
        const existing = Object.keys(before?.roles ?? {});
        throw new OtaError('CONFIG_INVALID', `the repository delegates to no role ${name}${existing.length > 0 ? ` (its delegations: ${existing.join(', ')})` : ' (it has no delegations)'}: nothing was changed`, {
          details: { role: name, delegations: existing },
        });
      }
      const roles: Record<string, DelegatedRole> = {};
      for (const [n, r] of Object.entries(before.roles ?? {})) if (n !== name) roles[n] = r;
      const used = new Set(Object.values(roles).flatMap((r) => r.keyIDs));
      const keys: Record<string, Key> = Object.fromEntries(Object.entries(before.keys).filter(([id]) => used.has(id)));
      const newTargets = new Metadata(
        new Targets({
          version: state.targets.signed.version + 1,
          specVersion: SPEC_VERSION,
          expires: expires('targets', settings),
          targets: { ...state.targets.signed.targets },
          ...(Object.keys(roles).length > 0 ? { delegations: new Delegations({ keys, roles, ...(before.unrecognizedFields !== undefined ? { unrecognizedFields: before.unrecognizedFields } : {}) }) } : {}),
          unrecognizedFields: issued(),
        }),
      );
      const publish = await signAndWriteTail(state, settings, newTargets);
      const keyOut = opts.keyOut ?? keysDir;
      let retired = 0;
      for (const id of old.keyIDs) if (await retireDelegatedKey(keyOut, name, id)) retired += 1;
      const droppedTargets = Object.keys(state.delegated[name]?.signed.targets ?? {}).length;
      log.info('delegation removed', { role: name, keyids: old.keyIDs, droppedTargets });
      return { role: name, paths: [...(old.paths ?? [])], removedKeyIds: [...old.keyIDs], retiredKeyFiles: retired, droppedTargets, publish };
    },

    /** The delegations of the top-level targets role, in their order, with their roles' metadata. */
    async delegations(): Promise<DelegationInfo[]> {
      const state = await loadState();
      return Object.entries(state.targets.signed.delegations?.roles ?? {}).map(([name, role]) => ({
        role: name,
        keyids: [...role.keyIDs],
        threshold: role.threshold,
        terminating: role.terminating,
        paths: [...(role.paths ?? [])],
        limit: delegationLimit(role),
        version: state.delegated[name]?.signed.version ?? 0,
        expires: state.delegated[name]?.signed.expires ?? '',
        targets: Object.keys(state.delegated[name]?.signed.targets ?? {}).length,
      }));
    },

    /**
     * Which role would sign a release of `product` (on `channel`) on this machine, checked before
     * anything is stored. The role that covers the release's targets is the channel's delegation
     * when the repository has one (its targets then go under `<product>/<channel>/`), else the
     * product's. That role signs when a threshold of its keys is here (refused with
     * PUBLISH_DELEGATION_EXPIRED once the delegation has expired); otherwise the top-level targets
     * role when its keys are here; otherwise PUBLISH_OUTSIDE_DELEGATION naming what is missing and
     * the delegations this machine can sign.
     */
    /**
     * How `ota-repo add` packs a folder of `product` (or of any product, without one): the
     * ota-repo.json setting that decides it (`products.<name>.compression`, then `compression`),
     * else the default (setting null). A ready package is published as it is, whatever this says.
     */
    async packCompression(product?: string): Promise<{ compression: PackageCompression; setting: string | null }> {
      const settings = await readSettings();
      const own = product === undefined ? undefined : settings.products?.[product]?.compression;
      if (own !== undefined) return { compression: own, setting: `products.${product}.compression` };
      if (settings.compression !== undefined) return { compression: settings.compression, setting: 'compression' };
      return { compression: DEFAULT_COMPRESSION, setting: null };
    },

    async signingRoleFor(product: string, channel?: string): Promise<{ role: string | undefined }> {
      const state = await loadState();
      const delegated = state.targets.signed.delegations?.roles ?? {};
      const channelName = channel === undefined ? undefined : delegatedRoleName(product, channel);
      const name = channelName !== undefined && delegated[channelName] !== undefined ? channelName : delegatedRoleName(product);
      const role = delegated[name];
      const heldRole = role === undefined ? 0 : (await loadDelegatedKeys(keysDir, name)).filter((k) => role.keyIDs.includes(k.keyid)).length;
      if (role !== undefined && heldRole >= role.threshold) {
        const limit = delegationLimit(role);
        if (limit !== null && Date.parse(limit) <= clock.now()) {
          const renew = `ota-repo delegate --product ${product}${name === channelName ? ` --channel ${channel}` : ''}`;
          throw new OtaError('PUBLISH_DELEGATION_EXPIRED', `the delegation to ${name} expired at ${limit}: renew it offline with ${renew}. Nothing was stored or signed`, {
            details: { role: name, expires: limit },
          });
        }
        return { role: name };
      }
      const top = state.root.signed.roles['targets'];
      const heldTop = (await loadRoleKeys(keysDir, 'targets')).filter((k) => top?.keyIDs.includes(k.keyid)).length;
      if (top !== undefined && heldTop >= top.threshold) return { role: undefined };
      const mine: string[] = [];
      for (const [n, r] of Object.entries(delegated)) {
        const held = (await loadDelegatedKeys(keysDir, n)).filter((k) => r.keyIDs.includes(k.keyid)).length;
        if (held >= r.threshold) mine.push(`${n} (${(r.paths ?? []).join(', ')})`);
      }
      const what = role === undefined
        ? `the repository delegates ${product}${channel !== undefined ? ` (channel ${channel})` : ''} to no role`
        : `it holds ${heldRole} of the keys of ${name} (${(role.paths ?? []).join(', ')}), whose threshold is ${role.threshold}`;
      throw new OtaError(
        'PUBLISH_OUTSIDE_DELEGATION',
        `this publisher may not sign releases of ${product}${channel !== undefined ? ` on channel ${channel}` : ''}: ${what}, and it does not hold the top-level targets key` +
          (mine.length > 0 ? `; it may publish only through ${mine.join(', ')}` : '') +
          '. Nothing was stored or signed',
        { details: { product, ...(channel !== undefined ? { channel } : {}), role: name, delegated: role !== undefined, heldKeys: heldRole, threshold: role?.threshold ?? null, delegations: mine } },
      );
    },

    /** Re-sign the timestamp with a fresh expiry (the online key's daily job). */
    async refreshTimestamp(opts: { onlyIfExpiringWithinMs?: number } = {}): Promise<{ version: number; expires: string; refreshed: boolean }> {
      const settings = await readSettings();
      const state = await loadState();
      const current = state.timestamp.signed;
      if (opts.onlyIfExpiringWithinMs !== undefined && Date.parse(current.expires) - clock.now() > opts.onlyIfExpiringWithinMs) {
        return { version: current.version, expires: current.expires, refreshed: false };
      }
      const timestamp = new Metadata(
        new Timestamp({
          version: current.version + 1,
          specVersion: SPEC_VERSION,
          expires: expires('timestamp', settings),
          snapshotMeta: current.snapshotMeta,
          unrecognizedFields: issued(),
        }),
      );
      await signRole(timestamp, 'timestamp', state.root.signed);
      await writeMetadata('timestamp.json', timestamp);
      return { version: timestamp.signed.version, expires: timestamp.signed.expires, refreshed: true };
    },

    /**
     * Replace keys of a role in a new root version. Per TUF the new root is signed by a threshold of
     * the old root keys and of the new root keys, so robots can walk the chain 1 → 2 → … N.
     */
    async rotateKey(opts: RotateKeyOptions): Promise<RotateKeyResult> {
      const settings = await readSettings();
      const state = await loadState();
      const oldRoot = state.root.signed;
      const oldRole = oldRoot.roles[opts.role];
      if (oldRole === undefined) throw new OtaError('TRUST_METADATA_INVALID', `root has no ${opts.role} role`);
      const newKey = opts.newKey ?? generateSigningKey(opts.role);
      if (newKey.role !== opts.role) throw new OtaError('CONFIG_INVALID', `key ${newKey.keyid} is a ${newKey.role} key, expected a ${opts.role} key`);
      const removeIds = opts.removeKeyIds ?? oldRole.keyIDs;
      for (const id of removeIds) {
        if (!oldRole.keyIDs.includes(id)) throw new OtaError('CONFIG_INVALID', `key ${id} is not a ${opts.role} key of root version ${oldRoot.version}`);
      }
      const keyIDs = [...oldRole.keyIDs.filter((id) => !removeIds.includes(id)), newKey.keyid];
      const threshold = opts.threshold ?? Math.min(oldRole.threshold, keyIDs.length);
      if (threshold < 1 || threshold > keyIDs.length) {
        throw new OtaError('CONFIG_INVALID', `threshold ${threshold} for ${opts.role} is impossible with ${keyIDs.length} keys`);
      }
      const roles: Record<string, RoleJson> = {};
      for (const [name, role] of Object.entries(oldRoot.roles)) roles[name] = { keyids: [...role.keyIDs], threshold: role.threshold };
      roles[opts.role] = { keyids: keyIDs, threshold };
      const keys: Record<string, Json> = {};
      for (const [id, key] of Object.entries(oldRoot.keys)) keys[id] = key.toJSON();
      keys[newKey.keyid] = tufKey(newKey).toJSON();
      // Drop keys no role uses any more.
      const used = new Set(Object.values(roles).flatMap((r) => r.keyids));
      for (const id of Object.keys(keys)) if (!used.has(id)) delete keys[id];
      const newRoot = rootFromParts(oldRoot.version + 1, expires('root', settings), keys, roles, issued());
      const rootMd = new Metadata(newRoot);
      const oldRootKeys = (await loadRoleKeys(keysDir, 'root')).filter((k) => oldRoot.roles.root!.keyIDs.includes(k.keyid));
      if (oldRootKeys.length < oldRoot.roles.root!.threshold) {
        throw new OtaError('CONFIG_INVALID', `cannot sign root ${newRoot.version}: ${oldRootKeys.length} of the current root keys are in ${path.join(keysDir, 'root')}, threshold is ${oldRoot.roles.root!.threshold}`);
      }
      const newRootKeys = opts.role === 'root' ? [newKey] : [];
      const signers = [...new Map([...oldRootKeys, ...newRootKeys, ...(await loadRoleKeys(keysDir, 'root'))].map((k) => [k.keyid, k])).values()];
      const newRootRole = newRoot.roles.root!;
      if (signers.filter((k) => newRootRole.keyIDs.includes(k.keyid)).length < newRootRole.threshold) {
        throw new OtaError('CONFIG_INVALID', `cannot sign root ${newRoot.version}: not enough keys of the new root role`);
      }
      for (const key of signers) {
        if (oldRoot.roles.root!.keyIDs.includes(key.keyid) || newRootRole.keyIDs.includes(key.keyid)) rootMd.sign(signerFor(key), true);
      }
      if (opts.newKey === undefined || !(await exists(path.join(keysDir, opts.role, `${newKey.keyid}.json`), { follow: true }))) await saveKey(keysDir, newKey);
      await writeMetadata(`${newRoot.version}.root.json`, rootMd);
      await writeMetadata('root.json', rootMd);
      for (const id of removeIds) {
        const old = (await loadRoleKeys(keysDir, opts.role)).find((k) => k.keyid === id);
        if (old !== undefined) await retireKey(keysDir, old);
      }
      // Re-sign what the changed role signs so robots see signatures by the new key at once.
      const publish = await signAndWriteTail({ ...state, root: rootMd }, settings, opts.role === 'targets' ? resignedTargets(state, settings) : null);
      log.info('key rotated', { role: opts.role, rootVersion: newRoot.version, added: newKey.keyid, removed: removeIds });
      return { rootVersion: newRoot.version, role: opts.role, addedKeyId: newKey.keyid, removedKeyIds: removeIds, publish };
    },

    /** Targets signed in the current targets role, with their otad custom fields. */
    async listTargets(): Promise<Array<TargetInfo & { custom: Partial<CustomTargetInfo> }>> {
      const state = await loadState();
      return Object.values(allTargets(state)).map((t) => ({
        name: t.path,
        length: t.length,
        sha256: t.hashes.sha256 ?? '',
        custom: ((t.custom as { otad?: Partial<CustomTargetInfo> }).otad ?? {}),
      }));
    },
  };

  function resignedTargets(state: RepoState, settings: RepoSettings): Metadata<Targets> {
    return new Metadata(
      new Targets({
        version: state.targets.signed.version + 1,
        specVersion: SPEC_VERSION,
        expires: expires('targets', settings),
        targets: { ...state.targets.signed.targets },
        ...(state.targets.signed.delegations !== undefined ? { delegations: state.targets.signed.delegations } : {}),
        unrecognizedFields: issued(),
      }),
    );
  }
}

/** The latest expiry a delegation lets its role sign (DELEGATION_EXPIRES_FIELD), or null. */
export function delegationLimit(role: DelegatedRole): string | null {
  const v = role.unrecognizedFields?.[DELEGATION_EXPIRES_FIELD];
  return typeof v === 'string' && Number.isFinite(Date.parse(v)) ? v : null;
}

/** The manifest for a release; throws MANIFEST_INVALID naming the field when an input is wrong. */
export function buildManifest(input: ReleaseInput, pkg: { target: string; length: number; sha256: string }, now: number): Manifest {
  const raw: Record<string, unknown> = {
    schema: MANIFEST_SCHEMA_VERSION,
    product: input.product,
    version: input.version,
    channel: input.channel ?? 'stable',
    releasedAt: new Date(now).toISOString(),
    notes: input.notes ?? '',
    package: pkg,
  };
  if (input.minFromVersion !== undefined) raw.minFromVersion = input.minFromVersion;
  if (input.requirements !== undefined) raw.requirements = input.requirements;
  if (input.rolloutPercent !== undefined) raw.rolloutPercent = input.rolloutPercent;
  if (input.dependencies !== undefined && Object.keys(input.dependencies).length > 0) raw.dependencies = input.dependencies;
  if (input.maxDeferralHours !== undefined) raw.maxDeferralHours = input.maxDeferralHours;
  if (input.installBy !== undefined) raw.installBy = input.installBy;
  return parseManifest(raw, `release ${input.product} ${input.version}`);
}

function rootFromParts(version: number, expiresAt: string, keys: Record<string, Json>, roles: Record<string, RoleJson>, extra: Record<string, string>): Root {
  return Root.fromJSON({
    spec_version: SPEC_VERSION,
    version,
    expires: expiresAt,
    consistent_snapshot: true,
    keys,
    roles,
    ...extra,
  } as Json);
}

/** Checks and completes delta settings; throws CONFIG_INVALID naming the bad value. */
export function resolveDeltaSettings(partial: Partial<DeltaSettings>): DeltaSettings {
  const out = { ...DEFAULT_DELTA_SETTINGS, ...partial };
  if (!Number.isInteger(out.fromLast) || out.fromLast < 0 || out.fromLast > 32) {
    throw new OtaError('CONFIG_INVALID', `delta fromLast is ${String(out.fromLast)}: expected a whole number from 0 to 32`);
  }
  if (!Number.isFinite(out.maxShare) || out.maxShare <= 0 || out.maxShare > 1) {
    throw new OtaError('CONFIG_INVALID', `delta maxShare is ${String(out.maxShare)}: expected a share above 0 and at most 1 (0.7 for 70 %)`);
  }
  return out;
}

function hashBytes(bytes: Buffer): { sha256: string; length: number } {
  return { sha256: createHash('sha256').update(bytes).digest('hex'), length: bytes.length };
}

/** Package a directory with the project's reproducible packer (fixed mtimes and order: same tree, same bytes). */
async function packDirectory(sourceDir: string, destFile: string, compression: PackageCompression): Promise<CreateResult> {
  const stat = await fs.stat(sourceDir).catch(() => null);
  if (stat === null || !stat.isDirectory()) throw new OtaError('CONFIG_INVALID', `source ${sourceDir} is not a directory`);
  return createPackage(sourceDir, destFile, { compression });
}

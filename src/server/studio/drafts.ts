/**
 * The publisher studio's workflow on the server: a draft is a package built from a folder under a
 * source root and scanned as a robot would scan it; a review turns the publisher's fields into the
 * exact manifest bytes that will be signed (their SHA-256 shown before anything is signed); publish
 * stores and signs precisely those bytes through the publisher library ota-repo uses.
 * Packing, scanning, manifest validation, the version-file check and signing are the project's own
 * (src/package, src/manifest, src/repo): nothing here re-implements them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../../core/clock.js';
import { OtaError, isOtaError, toErrorData, type ErrorData } from '../../core/errors.js';
import { evaluateDependencies } from '../../manifest/dependencies.js';
import { serializeManifest, type Manifest } from '../../manifest/schema.js';
import { archiveExtension, parseCompression, requireCompression, type PackageCompression } from '../../package/compression.js';
import { createPackage } from '../../package/create.js';
import { scanPackage, type PackageScanFile } from '../../package/scan.js';
import { listProductTypeNames, readProductType, type ProductTypeTemplate } from '../../products/product-types.js';
import { checkReleasePackage } from '../../repo/release-check.js';
import { buildManifest, type Publisher, type PublishResult, type ReleaseInput, type TargetInfo } from '../../repo/repository.js';
import type { FolderModes } from './folder-uploads.js';
import { listSubfolders, listTree, resolveFolder, type FolderEntry, type SourceRoot } from './source-roots.js';
import { latestOnChannel, proposeVersions, versionProblem, type PublishedRelease, type VersionProposals } from './version-rules.js';

/** Drafts kept at once; the oldest is dropped (with its package file) beyond this. */
export const MAX_DRAFTS = 16;

export interface StudioOptions {
  publisher: Publisher;
  sourceRoots: readonly SourceRoot[];
  productTypesDir: string;
  /** Where draft packages are built: inside the repository folder, so publish copies within one filesystem. */
  draftsDir: string;
  clock: Clock;
  /** The server's publish lock: publishing and timestamp signing never interleave. */
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
  /**
   * The configured repositories (ota-server --studio-config): the one marked local is this
   * server's own (`publisher`); each with a folder and keys gets a publisher of its own and can be
   * published to; the others are only tested.
   */
  repositories?: ReadonlyArray<{ name: string; local?: boolean; publisher?: Publisher }>;
}

/** Where a release is reviewed and published: a repository and the keys the studio holds for it. */
interface Destination {
  /** The configured name; null for the server's own repository when the configuration does not name it. */
  name: string | null;
  publisher: Publisher;
  exclusive: <T>(fn: () => Promise<T>) => Promise<T>;
}

export type ScanVerdict =
  | { ok: true; entries: number; totalBytes: number; files: PackageScanFile[] }
  | { ok: false; error: ErrorData; tree: FolderEntry[]; truncated: boolean };

export interface DraftSummary {
  id: string;
  source: { root: string; path: string };
  /** The built package (absent when the scan refused the folder: nothing was kept). */
  /** compression: from the package's first bytes; names its target (.tar.gz or .tar.zst), as the repository does. */
  package: { length: number; sha256: string; compression: PackageCompression } | null;
  scan: ScanVerdict;
  /** For a folder uploaded from a browser: how the server chose the modes the browser cannot send. */
  modes?: FolderModes;
  /**
   * true when the studio packed it (a folder under a source root, or an uploaded folder), with the
   * compression asked for: the review then holds it to the repository's compression setting for
   * the product, as ota-repo holds a folder it packs. false for an uploaded package (published as it is).
   */
  packed: boolean;
}

/** The publisher's fields of a release, as the page sends them. */
export interface ReviewFields {
  product?: unknown;
  type?: unknown;
  version?: unknown;
  channel?: unknown;
  notes?: unknown;
  minFromVersion?: unknown;
  rolloutPercent?: unknown;
  requirements?: unknown;
  /** The siblings' versions the release needs: `{ product: range }` (manifest `dependencies`). */
  dependencies?: unknown;
  /** The configured repository to publish to (default: this server's own). */
  repository?: unknown;
}

export interface SigningRole {
  role: string;
  keyids: string[];
  threshold: number;
  expires: string;
  /** Whether this server holds enough of the role's keys to sign it. */
  held: boolean;
  /** For a delegated targets role: the target paths it may sign (the top-level targets role delegates them). */
  paths?: string[];
}

export type ReviewResult =
  | {
      ok: true;
      /** The configured repository reviewed for (null: this server's own, unnamed). */
      repository: string | null;
      manifest: Manifest;
      /** The exact bytes that become the manifest target. */
      manifestText: string;
      manifestTarget: TargetInfo;
      packageTarget: TargetInfo;
      /**
       * The other targets publishing signs, made from the package by the same code as `ota-repo add`:
       * the release's tree index and each delta from an earlier release that passes the size gate.
       */
      derivedTargets: Array<TargetInfo & { what: string }>;
      fileVersion: string | null;
      notes: string[];
      signing: SigningRole[];
    }
  | { ok: false; fieldErrors: Record<string, string> };

interface Draft {
  summary: DraftSummary;
  dir: string;
  packageFile: string;
  scanFiles: PackageScanFile[];
  review?: { input: ReleaseInput; manifestSha256: string; packageSha256: string; destination: Destination };
}

export type Studio = ReturnType<typeof createStudio>;

export function createStudio(options: StudioOptions) {
  const drafts = new Map<string, Draft>();
  const configured = options.repositories ?? [];
  const own: Destination = { name: configured.find((r) => r.local === true)?.name ?? null, publisher: options.publisher, exclusive: options.exclusive };
  const destinations = new Map<string, Destination>();
  for (const r of configured) {
    if (r.local === true || r.publisher === undefined) continue;
    // One publish at a time into each repository folder (this server's timestamp job signs only its own).
    let tail: Promise<unknown> = Promise.resolve();
    const exclusive = <T>(fn: () => Promise<T>): Promise<T> => {
      const run = tail.then(fn, fn);
      tail = run.catch(() => undefined);
      return run;
    };
    destinations.set(r.name, { name: r.name, publisher: r.publisher, exclusive });
  }

  /** The repository a review or publish names: this server's own when none is named. */
  function destination(name: unknown): Destination {
    if (name === undefined || name === null || name === '' || (own.name !== null && name === own.name)) return own;
    if (typeof name !== 'string') throw new OtaError('API_INVALID_REQUEST', 'repository: expected the name of a configured repository');
    const found = destinations.get(name);
    if (found !== undefined) return found;
    const writable = [...(own.name !== null ? [own.name] : []), ...destinations.keys()];
    if (configured.some((r) => r.name === name)) {
      throw new OtaError('PUBLISH_REPOSITORY_NOT_WRITABLE', `repository ${name} is configured for connection tests only: give it path (its folder) and keys (the studio's keys for it) in the studio configuration to publish to it. Nothing was stored or signed`, {
        details: { repository: name, writable },
      });
    }
    throw new OtaError('API_NOT_FOUND', `no repository ${JSON.stringify(name)} is configured (it may publish to: ${writable.join(', ') || "this server's own"})`, { details: { repository: name, writable } });
  }

  async function releases(publisher: Publisher = options.publisher): Promise<PublishedRelease[]> {
    const targets = await publisher.listTargets();
    return targets
      .filter((t) => t.custom.kind === 'manifest' && typeof t.custom.product === 'string' && typeof t.custom.version === 'string')
      .map((t) => ({ product: t.custom.product!, version: t.custom.version!, channel: t.custom.channel ?? 'stable' }));
  }

  async function productTypes(): Promise<ProductTypeTemplate[]> {
    const names = await listProductTypeNames(options.productTypesDir);
    return Promise.all(names.map((n) => readProductType(options.productTypesDir, n)));
  }

  async function signingRoles(publisher: Publisher = options.publisher): Promise<SigningRole[]> {
    const state = await publisher.loadState();
    const root = state.root.signed;
    const expiresOf: Record<string, string> = {
      root: root.expires,
      targets: state.targets.signed.expires,
      snapshot: state.snapshot.signed.expires,
      timestamp: state.timestamp.signed.expires,
    };
    const out: SigningRole[] = [];
    for (const role of ['targets', 'snapshot', 'timestamp', 'root']) {
      const def = root.roles[role];
      if (def === undefined) continue;
      const held = await heldKeys(publisher.keysDir, role, def.keyIDs);
      out.push({ role, keyids: [...def.keyIDs], threshold: def.threshold, expires: expiresOf[role]!, held: held >= def.threshold });
    }
    for (const [name, def] of Object.entries(state.targets.signed.delegations?.roles ?? {})) {
      const held = await heldKeys(path.join(publisher.keysDir, 'delegated'), name, def.keyIDs);
      out.push({ role: name, keyids: [...def.keyIDs], threshold: def.threshold, expires: state.delegated[name]?.signed.expires ?? '', held: held >= def.threshold, paths: [...(def.paths ?? [])] });
    }
    return out;
  }

  /** The compression a pack asks for, or (none asked) what ota-repo.json of this server's repository packs folders with. */
  async function packCompression(asked: unknown): Promise<PackageCompression> {
    if (asked === undefined || asked === null || asked === '') return (await options.publisher.packCompression()).compression;
    try {
      return parseCompression(asked, 'compression');
    } catch (error) {
      throw new OtaError('API_INVALID_REQUEST', (error as Error).message, { details: { field: 'compression' } });
    }
  }

  async function drop(id: string): Promise<void> {
    const draft = drafts.get(id);
    drafts.delete(id);
    if (draft !== undefined) await fs.rm(draft.dir, { recursive: true, force: true });
  }

  function get(id: unknown): Draft {
    const draft = typeof id === 'string' ? drafts.get(id) : undefined;
    if (draft === undefined) throw new OtaError('API_NOT_FOUND', `no draft ${JSON.stringify(id)} on this server (drafts live until publish or a server restart): build the package again`);
    return draft;
  }

  /** Build (or receive) a package into a new draft and scan it; a refused package leaves nothing behind. */
  async function draftFrom(
    source: DraftSummary['source'],
    build: (file: string) => Promise<void>,
    listing: (() => Promise<{ entries: FolderEntry[]; truncated: boolean }>) | null,
    extra: Pick<DraftSummary, 'modes' | 'packed'>,
  ): Promise<DraftSummary> {
    const id = randomBytes(9).toString('base64url');
    const dir = path.join(options.draftsDir, id);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    // No extension: a package here may be gzip or zstd, and everything that reads it goes by its first bytes.
    const packageFile = path.join(dir, 'package');
    try {
      await build(packageFile);
      // Default limits and rules: the robot's stage step scans with the same.
      const scan = await scanPackage(packageFile);
      const summary: DraftSummary = {
        id,
        source,
        package: { length: (await fs.stat(packageFile)).size, sha256: scan.sha256, compression: await requireCompression(packageFile) },
        scan: { ok: true, entries: scan.entries, totalBytes: scan.totalBytes, files: scan.files },
        ...extra,
      };
      drafts.set(id, { summary, dir, packageFile, scanFiles: scan.files });
      while (drafts.size > MAX_DRAFTS) await drop(drafts.keys().next().value!);
      return summary;
    } catch (error) {
      await fs.rm(dir, { recursive: true, force: true });
      if (!isOtaError(error) || !error.code.startsWith('PACKAGE_')) throw error;
      const tree = listing === null ? { entries: [], truncated: false } : await listing();
      return { id: '', source, package: null, scan: { ok: false, error: toErrorData(error), tree: tree.entries, truncated: tree.truncated }, ...extra };
    }
  }

  return {
    async context() {
      const [types, published, signing] = await Promise.all([productTypes(), releases(), signingRoles()]);
      return {
        sourceRoots: options.sourceRoots.map((r) => ({ name: r.name })),
        // What a pack uses when the page asks for none (ota-repo.json of this server's repository).
        compression: await options.publisher.packCompression(),
        productTypes: types.map(({ raw: _raw, file, ...t }) => ({ ...t, file: path.basename(file) })),
        releases: published,
        signing,
      };
    },

    async folders(root: unknown, rel: unknown): Promise<{ root: string; path: string; folders: string[] }> {
      const folder = await resolveFolder(options.sourceRoots, root, rel);
      return { root: folder.root.name, path: folder.rel, folders: await listSubfolders(folder.abs) };
    },

    async versions(product: unknown, channel: unknown, repository?: unknown): Promise<VersionProposals> {
      if (typeof product !== 'string' || typeof channel !== 'string') throw new OtaError('API_INVALID_REQUEST', 'versions needs query parameters product and channel');
      return proposeVersions(latestOnChannel(await releases(destination(repository).publisher), product, channel));
    },

    /** Pack the folder with the project's packer and scan it as a robot would; nothing is signed. */
    async createDraft(root: unknown, rel: unknown, compression?: unknown): Promise<DraftSummary> {
      const folder = await resolveFolder(options.sourceRoots, root, rel);
      const packed = await packCompression(compression);
      return draftFrom({ root: folder.root.name, path: folder.rel }, (file) => createPackage(folder.abs, file, { compression: packed }).then(() => {}), async () => listTree(folder.abs), { packed: true });
    },

    /**
     * A folder the publisher uploaded from the browser, assembled by ./folder-uploads.ts into a
     * build folder with the modes it chose: packed and scanned exactly as a folder under a source root.
     */
    async createDraftFromFolder(name: string, tree: string, modes: FolderModes, compression?: unknown): Promise<DraftSummary> {
      const packed = await packCompression(compression);
      return draftFrom({ root: '(uploaded folder)', path: name }, (file) => createPackage(tree, file, { compression: packed }).then(() => {}), async () => listTree(tree), { modes, packed: true });
    },

    /**
     * A package the publisher uploads from the browser (a .tar.gz or .tar.zst, up to the server's upload limit):
     * received into a draft, then scanned as a robot would scan it.
     */
    async createDraftFromArchive(name: unknown, receive: (file: string) => Promise<void>): Promise<DraftSummary> {
      const label = typeof name === 'string' && name.length > 0 && name.length <= 255 ? name : 'upload';
      return draftFrom({ root: '(uploaded archive)', path: label }, async (file) => {
        await receive(file);
        await requireCompression(file).catch((error: unknown) => {
          throw new OtaError('PACKAGE_CORRUPT', `${label} is neither gzip nor zstd: expected a .tar.gz or .tar.zst package`, { cause: error });
        });
      }, null, { packed: false });
    },

    /** The exact manifest that publish() would sign, or the problems of each field. */
    async review(id: unknown, fields: ReviewFields): Promise<ReviewResult> {
      const draft = get(id);
      // Versions, dependencies, deltas and who signs: all against the repository published to.
      const dest = destination(fields.repository);
      const publisher = dest.publisher;
      const fieldErrors: Record<string, string> = {};
      let type: ProductTypeTemplate | null = null;
      try {
        type = await readProductType(options.productTypesDir, String(fields.type ?? ''));
      } catch (error) {
        fieldErrors.type = isOtaError(error) ? error.message : String(error);
      }
      const input = releaseInput(fields, fieldErrors);
      const product = input.product;
      const packageTarget: TargetInfo = { name: `${product}/${product}-${input.version}${archiveExtension(draft.summary.package!.compression)}`, length: draft.summary.package!.length, sha256: draft.summary.package!.sha256 };
      const releasedAt = options.clock.now();
      let manifest: Manifest | null = null;
      try {
        manifest = buildManifest(input, { target: packageTarget.name, length: packageTarget.length, sha256: packageTarget.sha256 }, releasedAt);
      } catch (error) {
        if (!isOtaError(error) || error.code !== 'MANIFEST_INVALID') throw error;
        const issues = (error.details?.issues as Array<{ field: string; value: string; expected: string }> | undefined) ?? [];
        for (const issue of issues) fieldErrors[issue.field] ??= `is ${issue.value}: ${issue.expected}`;
        if (issues.length === 0) fieldErrors[String(error.details?.field ?? 'version')] ??= error.message.replace(/^[^:]*: /, '');
      }
      if (input.dependencies !== undefined) {
        // Against every version published in this repository of each sibling (any channel).
        const published = new Map<string, string[]>();
        for (const r of await releases(publisher)) if (r.product !== product) published.set(r.product, [...(published.get(r.product) ?? []), r.version]);
        for (const v of evaluateDependencies(input.dependencies, published, 'published')) {
          if (v.problem !== null) fieldErrors[`dependencies.${v.product}`] ??= v.message;
        }
      }
      if (draft.summary.packed && product !== '' && fieldErrors.product === undefined) {
        // As ota-repo packs a folder: with the compression the repository's ota-repo.json sets for this product.
        const want = await publisher.packCompression(product);
        const have = draft.summary.package!.compression;
        if (want.setting !== null && want.compression !== have) {
          fieldErrors.compression = `the repository packs ${product} with ${want.compression} (ota-repo.json ${want.setting}); this package was packed with ${have}: choose ${want.compression} in step 1 and build the package again`;
        }
      }
      let fileVersion: string | null = null;
      if (fieldErrors.version === undefined) {
        const problem = versionProblem(input.version, await releases(publisher), product, input.channel ?? 'stable');
        if (problem !== null) fieldErrors.version = problem;
      }
      if (type !== null && fieldErrors.version === undefined) {
        try {
          fileVersion = (await checkReleasePackage(draft.packageFile, input.version, { versionFile: type.versionFile })).fileVersion;
        } catch (error) {
          if (!isOtaError(error) || error.code !== 'RELEASE_VERSION_MISMATCH') throw error;
          fieldErrors.version = error.message;
        }
      }
      if (Object.keys(fieldErrors).length > 0 || manifest === null || type === null) return { ok: false, fieldErrors };
      // The manifest exactly as add() will sign it: the same code computes its tree index and the
      // deltas from earlier releases, so the SHA-256 shown is the one publish() must match.
      const reviewed: ReleaseInput = { ...input, releasedAt, check: { versionFile: type.versionFile } };
      const preview = await publisher.preview({ ...reviewed, packageFile: draft.packageFile });
      const manifestText = serializeManifest(preview.manifest);
      draft.review = { input: reviewed, manifestSha256: preview.manifestTarget.sha256, packageSha256: preview.packageTarget.sha256, destination: dest };
      return {
        ok: true,
        repository: dest.name,
        manifest: preview.manifest,
        manifestText,
        manifestTarget: preview.manifestTarget,
        // The name too: a channel delegated on its own puts the release under <product>/<channel>/.
        packageTarget: { ...packageTarget, name: preview.packageTarget.name, length: preview.packageTarget.length, sha256: preview.packageTarget.sha256 },
        derivedTargets: [
          ...(preview.indexTarget !== null ? [{ ...preview.indexTarget, what: `tree index (${preview.manifest.index?.entries ?? 0} entries)` }] : []),
          ...preview.deltas.filter((d) => d.target !== undefined).map((d) => ({ ...d.target!, what: `delta from ${d.fromVersion} (${d.files} files, ${d.removed} removed)` })),
        ],
        fileVersion,
        notes: [
          ...preservedNotes(type, draft.scanFiles),
          ...preview.deltas
            .filter((d) => !d.published)
            .map((d) => `No delta from ${d.fromVersion}: at ${d.bytes.toLocaleString('en')} bytes it is not smaller than ${d.limitBytes.toLocaleString('en')} bytes (the size gate), so robots on ${d.fromVersion} download the full package.`),
        ],
        signing: await signingRoles(publisher),
      };
    },

    /**
     * Sign and publish the reviewed release. The page sends back the SHA-256s it showed; the
     * publisher refuses (PUBLISH_CONTENT_CHANGED) unless the stored bytes have exactly those.
     */
    async publish(
      id: unknown,
      shown: { packageSha256?: unknown; manifestSha256?: unknown; repository?: unknown },
    ): Promise<{ product: string; version: string; channel: string; repository: string | null; role: string | null; manifestTarget: TargetInfo; packageTarget: TargetInfo; publish: PublishResult }> {
      const draft = get(id);
      if (draft.review === undefined) throw new OtaError('API_INVALID_REQUEST', 'review the release before publishing it (POST …/review)');
      const { review } = draft;
      if (shown.packageSha256 !== review.packageSha256 || shown.manifestSha256 !== review.manifestSha256) {
        throw new OtaError('PUBLISH_CONTENT_CHANGED', 'the checksums sent are not those of the last review of this draft: review it again and publish what it shows');
      }
      const dest = review.destination;
      if (shown.repository !== undefined && destination(shown.repository) !== dest) {
        throw new OtaError('PUBLISH_CONTENT_CHANGED', `the release was reviewed for repository ${dest.name ?? "this server's own"}, not ${String(shown.repository)}: review it again for the repository to publish to`);
      }
      const result = await dest.exclusive(async () => {
        // Under the publish lock: a version published after the review (by another page or
        // ota-repo) is refused by name before anything is stored.
        const { product, version } = review.input;
        if ((await releases(dest.publisher)).some((r) => r.product === product && r.version === version)) {
          throw new OtaError('VERSION_TAKEN', `${product} ${version} is already published in ${dest.name === null ? 'this repository' : `repository ${dest.name}`} (published after this release was reviewed): nothing was stored or signed; choose a greater version and check again`, { details: { field: 'version' } });
        }
        // Decided before anything is stored, with the keys the studio holds for that repository:
        // a product (or channel) outside them is refused with nothing written (docs/trust-model.md).
        const { role } = await dest.publisher.signingRoleFor(review.input.product, review.input.channel ?? 'stable');
        const added = await dest.publisher.add({ ...review.input, packageFile: draft.packageFile, expect: { packageSha256: review.packageSha256, manifestSha256: review.manifestSha256 } });
        return { ...added, role: role ?? null, publish: await dest.publisher.publish(role !== undefined ? { role } : {}) };
      });
      await drop(draft.summary.id);
      return {
        product: result.manifest.product,
        version: result.manifest.version,
        channel: result.manifest.channel,
        repository: dest.name,
        role: result.role,
        manifestTarget: result.manifestTarget,
        packageTarget: result.packageTarget,
        publish: result.publish,
      };
    },

    async close(): Promise<void> {
      for (const id of [...drafts.keys()]) await drop(id);
    },
  };
}

/** The release fields from the page's form; a wrongly typed field becomes that field's error. */
function releaseInput(fields: ReviewFields, errors: Record<string, string>): ReleaseInput & { channel: string } {
  const text = (name: keyof ReviewFields, fallback = ''): string => {
    const v = fields[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') {
      errors[name] = 'expected text';
      return fallback;
    }
    return v.trim();
  };
  const input: ReleaseInput & { channel: string } = { product: text('product'), version: text('version'), channel: text('channel', 'stable') || 'stable' };
  const notes = fields.notes;
  if (typeof notes === 'string') input.notes = notes;
  const minFrom = text('minFromVersion');
  if (minFrom !== '') input.minFromVersion = minFrom;
  const rollout = fields.rolloutPercent;
  if (rollout !== undefined && rollout !== null && rollout !== '') {
    const n = typeof rollout === 'number' ? rollout : Number(rollout);
    if (!Number.isFinite(n)) errors.rolloutPercent = `is ${JSON.stringify(rollout)}: expected a number from 0 to 100`;
    else input.rolloutPercent = n;
  }
  const deps = fields.dependencies;
  if (deps !== undefined && deps !== null && deps !== '') {
    if (typeof deps !== 'object' || Array.isArray(deps)) errors.dependencies = 'expected an object of product: semver range';
    else {
      const out: Record<string, string> = {};
      for (const [name, range] of Object.entries(deps as Record<string, unknown>)) {
        const key = name.trim();
        if (key === '') continue;
        if (typeof range !== 'string' || range.trim() === '') errors[`dependencies.${key}`] = 'expected a semver range such as ^1.4.0';
        else out[key] = range.trim();
      }
      if (Object.keys(out).length > 0) input.dependencies = out;
    }
  }
  const req = fields.requirements;
  if (req !== undefined && req !== null) {
    if (typeof req !== 'object' || Array.isArray(req)) errors.requirements = 'expected an object';
    else {
      const r = req as Record<string, unknown>;
      const requirements: NonNullable<ReleaseInput['requirements']> = {};
      const list = (v: unknown) => (Array.isArray(v) ? v.map((x) => String(x).trim()).filter(Boolean) : typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : []);
      const arch = list(r.arch);
      const os = list(r.os);
      if (arch.length > 0) requirements.arch = arch;
      if (os.length > 0) requirements.os = os;
      if (r.minFreeBytes !== undefined && r.minFreeBytes !== null && r.minFreeBytes !== '') {
        const n = Number(r.minFreeBytes);
        if (!Number.isInteger(n) || n < 0) errors['requirements.minFreeBytes'] = `is ${JSON.stringify(r.minFreeBytes)}: expected a whole number of bytes`;
        else requirements.minFreeBytes = n;
      }
      if (Object.keys(requirements).length > 0) input.requirements = requirements;
    }
  }
  return input;
}

/** What robots of this type do with the parts of the package under a preserved path. */
function preservedNotes(type: ProductTypeTemplate, files: readonly PackageScanFile[]): string[] {
  const notes: string[] = [];
  for (const p of type.preservedPaths) {
    const shipped = files.filter((f) => f.path === p || f.path.startsWith(`${p}/`)).length;
    if (shipped > 0) {
      notes.push(`The package ships ${shipped} entr${shipped === 1 ? 'y' : 'ies'} under ${p}/, a preserved path of ${type.name}: robots that already have ${p} keep their own copy; the shipped one reaches only robots without it.`);
    }
  }
  return notes;
}

async function heldKeys(keysDir: string, role: string, keyIDs: readonly string[]): Promise<number> {
  const names = await fs.readdir(path.join(keysDir, role)).catch(() => [] as string[]);
  return names.filter((n) => keyIDs.includes(n.replace(/\.json$/, ''))).length;
}

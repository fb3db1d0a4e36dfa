#!/usr/bin/env node
/**
 * ota-repo: the publisher's tool. Creates a signed TUF repository, stages releases (package +
 * manifest), signs and publishes them, re-signs the timestamp, rotates keys and verifies the
 * result as a robot would. Every misuse ends with one line naming what is wrong and exit code ≠ 0.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError } from 'commander';
import { systemClock } from '../core/clock.js';
import { OtaError, isOtaError } from '../core/errors.js';
import { parseDurationArg } from '../core/duration.js';
import { silentLogger } from '../core/logger.js';
import { generateSigningKey, isRoleName, readKeyFile, ROLES, saveKey, type RoleName } from '../repo/keys.js';
import { createPublisher, type InitOptions, type ReleaseInput } from '../repo/repository.js';
import { verifyRepository } from '../repo/verify.js';
import { parseCompression } from '../package/compression.js';
import { githubUploadCommands, writeMirrorAssets } from '../repo/mirror-assets.js';
import { readProductType, shippedProductTypesDir } from '../products/product-types.js';


function parseRoleAssignments(values: string[], what: string, parse: (v: string, label: string) => number): Partial<Record<RoleName, number>> {
  const result: Partial<Record<RoleName, number>> = {};
  for (const value of values) {
    const [role, amount] = value.split('=');
    if (role === undefined || amount === undefined || !isRoleName(role)) {
      throw new OtaError('CONFIG_INVALID', `${what} ${JSON.stringify(value)}: expected ROLE=VALUE with ROLE one of ${ROLES.join(', ')}`);
    }
    result[role] = parse(amount, `${what} for ${role}`);
  }
  return result;
}

function positiveInt(text: string, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new OtaError('CONFIG_INVALID', `${what} is ${JSON.stringify(text)}: expected a whole number ≥ 1`);
  return n;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The version file a product type names (config/product-types/<type>.yaml), else the default VERSION. */
async function typeVersionFile(type: unknown): Promise<string> {
  if (typeof type !== 'string') return 'VERSION';
  try {
    return (await readProductType(shippedProductTypesDir(), type)).versionFile;
  } catch (error) {
    throw isOtaError(error) ? new OtaError('CONFIG_INVALID', `--type ${type}: ${error.message}`) : error;
  }
}

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: CliIo = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };

/**
 * ota-repo's command line with its actions, not yet parsed: main() runs it, and the bash
 * completion generator (./completion.ts) reads its commands and options from it.
 */
export function otaRepoProgram(io: CliIo = stdio): Command {
  const program = new Command('ota-repo')
    .description('publish releases into a signed TUF repository for otad')
    .option('--repo <dir>', 'repository folder (metadata/ and targets/)', process.env.OTA_REPO_DIR)
    .option('--keys <dir>', 'signing keys folder (private keys, 0600)', process.env.OTA_KEYS_DIR)
    .option('--json', 'print results as JSON')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s.trimEnd()), writeErr: (s) => io.err(s.trimEnd()) })
    .showHelpAfterError(false);

  const globals = () => {
    const o = program.opts<{ repo?: string; keys?: string; json?: boolean }>();
    if (o.repo === undefined) throw new OtaError('CONFIG_INVALID', 'missing --repo <dir> (or OTA_REPO_DIR): the repository folder');
    if (o.keys === undefined) throw new OtaError('CONFIG_INVALID', 'missing --keys <dir> (or OTA_KEYS_DIR): the signing keys folder');
    return { repoDir: path.resolve(o.repo), keysDir: path.resolve(o.keys), json: o.json === true };
  };
  const print = (json: boolean, value: unknown, text: string) => io.out(json ? JSON.stringify(value, null, 2) : text);
  const publisherFor = (g: { repoDir: string; keysDir: string }) => createPublisher({ ...g, clock: systemClock, logger: silentLogger });

  program
    .command('init')
    .description('create keys and version 1 of every role')
    .option('--threshold <role=n>', 'signatures required for a role (repeatable)', collect, [])
    .option('--keys-per-role <role=n>', 'keys to generate for a role (repeatable)', collect, [])
    .option('--expiry <role=duration>', 'expiry period of a role, e.g. timestamp=1d (repeatable)', collect, [])
    .action(async (opts: { threshold: string[]; keysPerRole: string[]; expiry: string[] }) => {
      const g = globals();
      const init: InitOptions = {
        thresholds: parseRoleAssignments(opts.threshold, 'threshold', positiveInt),
        keyCounts: parseRoleAssignments(opts.keysPerRole, 'keys-per-role', positiveInt),
        expiryMs: parseRoleAssignments(opts.expiry, 'expiry', parseDurationArg),
      };
      const result = await publisherFor(g).init(init);
      print(g.json, result, `initialised ${g.repoDir}\ntrusted root for robots: ${result.rootFile}\nkeys in ${g.keysDir}: ${ROLES.map((r) => `${r} ×${result.keys[r].length}`).join(', ')}\n` +
        `the root key (${path.join(g.keysDir, 'root')}) is the fleet's trust itself: move it offline (an encrypted stick) now; only \`ota-repo rotate-key\` needs it (docs/keys.md)`);
    });

  program
    .command('keygen')
    .description('generate a new ed25519 key for a role (used by rotate-key --key)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .action(async (opts: { role: string }) => {
      const g = globals();
      if (!isRoleName(opts.role)) throw new OtaError('CONFIG_INVALID', `--role is ${JSON.stringify(opts.role)}: expected one of ${ROLES.join(', ')}`);
      const key = generateSigningKey(opts.role);
      const file = await saveKey(path.join(g.keysDir, 'new'), key);
      print(g.json, { keyid: key.keyid, role: key.role, file }, `new ${key.role} key ${key.keyid}\nwritten to ${file} (0600)`);
    });

  program
    .command('add')
    .description('stage a release: package and manifest become targets under <product>/ (<product>/<channel>/ for a channel delegated on its own)')
    .requiredOption('--product <name>', 'product name, e.g. robot-ai')
    .requiredOption('--version <semver>', 'release version, e.g. 2.1.0')
    .option('--package <file>', 'a ready package, .tar.gz or .tar.zst (told apart by its first bytes; published with its own compression)')
    .option('--source <dir>', 'a directory to package')
    .option('--channel <name>', 'release channel', 'stable')
    .option('--notes <text>', 'release notes')
    .option('--notes-file <file>', 'release notes from a file')
    .option('--min-from <semver>', 'oldest installed version that may update to this one')
    .option('--rollout <percent>', 'phased rollout percentage (0-100)')
    .option('--max-deferral-hours <hours>', 'how long robots may defer this release')
    .option('--install-by <iso-time>', 'latest time by which robots must install it')
    .option('--min-free-bytes <n>', 'free disk space the release needs')
    .option('--arch <list>', 'robot architectures it runs on, comma-separated (arm64, amd64); robots of another architecture never install it')
    .option('--os <list>', 'operating systems it runs on, comma-separated (ubuntu-24.04); others never install it')
    .option('--type <type>', 'product type (config/product-types/<type>.yaml): where its version file is')
    .option('--version-file <path>', 'the version file inside the release (default: the type\'s versionFile, else VERSION)')
    .option('--no-version-file', 'the release has no version file: skip the version check')
    .option('--delta-from <n>', 'write deltas from the newest N published releases of the same product and channel (0: none; default 3, or ota-repo.json deltas.fromLast)')
    .option('--delta-max-share <share>', 'publish a delta only when smaller than this share of the full package, e.g. 0.7 or 70% (default 70%, or ota-repo.json deltas.maxShare)')
    .option('--compression <gzip|zstd>', 'compression of the package built from --source and of its deltas (default: ota-repo.json products.<product>.compression, else compression, else gzip). zstd is smaller and faster to unpack, but only otad on Node.js 22.15/24 or later reads it: robots with an older otad need gzip')
    .option('--publish', 'sign and publish right away')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const g = globals();
      if ((opts.package === undefined) === (opts.source === undefined)) {
        throw new OtaError('CONFIG_INVALID', 'add needs exactly one of --package <file.tar.gz> or --source <dir>');
      }
      if (opts.notes !== undefined && opts.notesFile !== undefined) throw new OtaError('CONFIG_INVALID', 'use --notes or --notes-file, not both');
      const num = (name: string, value: unknown): number | undefined => {
        if (value === undefined) return undefined;
        const n = Number(value);
        if (!Number.isFinite(n)) throw new OtaError('CONFIG_INVALID', `${name} is ${JSON.stringify(value)}: expected a number`);
        return n;
      };
      const input: ReleaseInput = { product: String(opts.product), version: String(opts.version), channel: String(opts.channel) };
      if (typeof opts.package === 'string') input.packageFile = path.resolve(opts.package);
      if (typeof opts.source === 'string') input.sourceDir = path.resolve(opts.source);
      if (typeof opts.notes === 'string') input.notes = opts.notes;
      if (opts.compression !== undefined) input.compression = parseCompression(opts.compression, '--compression');
      if (typeof opts.notesFile === 'string') input.notes = await fs.readFile(opts.notesFile, 'utf8');
      if (typeof opts.minFrom === 'string') input.minFromVersion = opts.minFrom;
      const rollout = num('--rollout', opts.rollout);
      if (rollout !== undefined) input.rolloutPercent = rollout;
      const deferral = num('--max-deferral-hours', opts.maxDeferralHours);
      if (deferral !== undefined) input.maxDeferralHours = deferral;
      if (typeof opts.installBy === 'string') input.installBy = opts.installBy;
      const minFree = num('--min-free-bytes', opts.minFreeBytes);
      const list = (v: unknown) => (typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : undefined);
      const arch = list(opts.arch);
      const os = list(opts.os);
      if (minFree !== undefined || arch !== undefined || os !== undefined) {
        input.requirements = { ...(minFree !== undefined ? { minFreeBytes: minFree } : {}), ...(arch ? { arch } : {}), ...(os ? { os } : {}) };
      }
      // Commander turns --no-version-file into versionFile === false.
      input.check = { versionFile: opts.versionFile === false ? null : typeof opts.versionFile === 'string' ? opts.versionFile : await typeVersionFile(opts.type) };
      if (typeof opts.deltaFrom === 'string') {
        const n = Number(opts.deltaFrom);
        if (!Number.isInteger(n) || n < 0) throw new OtaError('CONFIG_INVALID', `--delta-from is ${JSON.stringify(opts.deltaFrom)}: expected a whole number ≥ 0`);
        input.deltas = { ...(input.deltas ?? {}), fromLast: n };
      }
      if (typeof opts.deltaMaxShare === 'string') {
        const text = opts.deltaMaxShare.trim();
        const share = text.endsWith('%') ? Number(text.slice(0, -1)) / 100 : Number(text);
        if (!Number.isFinite(share) || share <= 0 || share > 1) throw new OtaError('CONFIG_INVALID', `--delta-max-share is ${JSON.stringify(opts.deltaMaxShare)}: expected a share above 0 and at most 1, such as 0.7 or 70%`);
        input.deltas = { ...(input.deltas ?? {}), maxShare: share };
      }
      const publisher = publisherFor(g);
      // With --publish, who signs is settled before anything is stored: the product's delegated
      // role when its key is here, else the top-level targets role (PUBLISH_OUTSIDE_DELEGATION otherwise).
      const signing = opts.publish === true ? await publisher.signingRoleFor(input.product, input.channel ?? 'stable') : undefined;
      const added = await publisher.add(input);
      const deltaLines = added.deltas.map((d) =>
        d.published
          ? `delta from ${d.fromVersion}: ${d.bytes} bytes (${d.files} files, ${d.removed} removed), ${pct(d.bytes, added.packageTarget.length)} of the package`
          : `delta from ${d.fromVersion}: ${d.bytes} bytes, ${pct(d.bytes, added.packageTarget.length)} of the package, not below the gate of ${d.limitBytes} bytes: not published (robots on ${d.fromVersion} download the full package)`,
      );
      const published = signing !== undefined ? await publisher.publish(signing.role !== undefined ? { role: signing.role } : {}) : undefined;
      print(
        g.json,
        { ...added, ...(published ? { publish: published } : {}) },
        `staged ${added.manifest.product} ${added.manifest.version} (${added.packageTarget.length} bytes, sha256 ${added.packageTarget.sha256})` +
          `\npackage: ${added.packageTarget.name}` +
          `\ntree index: ${added.manifest.index?.entries ?? 0} entries, ${added.manifest.index?.bytes ?? 0} bytes of files` +
          (added.clearedWriteBits.length > 0
            ? `\nnote: cleared the group and other write bits of ${added.clearedWriteBits.length} entr${added.clearedWriteBits.length === 1 ? 'y' : 'ies'} (robots refuse them): ${added.clearedWriteBits.slice(0, 5).join(', ')}${added.clearedWriteBits.length > 5 ? ', …' : ''}`
            : '') +
          (deltaLines.length > 0 ? `\n${deltaLines.join('\n')}` : '') +
          (published ? `\npublished: targets ${published.targetsVersion}, snapshot ${published.snapshotVersion}, timestamp ${published.timestampVersion}` : '\nrun "ota-repo publish" to sign it'),
      );
    });

  program
    .command('rollout')
    .description("change a release's phased-rollout percentage (lower it to halt the release for robots that have not started it)")
    .requiredOption('--product <name>', 'product name')
    .requiredOption('--version <semver>', 'release version')
    .requiredOption('--percent <n>', 'robots taking part, 0-100')
    .option('--publish', 'sign and publish right away')
    .action(async (opts: { product: string; version: string; percent: string; publish?: boolean }) => {
      const g = globals();
      const percent = Number(opts.percent);
      const publisher = publisherFor(g);
      // The release's channel decides which delegation covers its manifest (a channel may have its own).
      const channel = opts.publish === true ? (await publisher.listTargets()).find((t) => t.custom.kind === 'manifest' && t.custom.product === opts.product && t.custom.version === opts.version)?.custom.channel : undefined;
      const signing = opts.publish === true ? await publisher.signingRoleFor(opts.product, channel ?? 'stable') : undefined;
      const changed = await publisher.setRollout({ product: opts.product, version: opts.version, percent });
      const published = signing !== undefined ? await publisher.publish(signing.role !== undefined ? { role: signing.role } : {}) : undefined;
      print(
        g.json,
        { ...changed, ...(published ? { publish: published } : {}) },
        `rollout of ${opts.product} ${opts.version} set to ${percent}%` + (published ? `\npublished: targets ${published.targetsVersion}` : '\nrun "ota-repo publish" to sign it'),
      );
    });

  program
    .command('publish')
    .description('sign staged targets, a new snapshot and timestamp')
    .option('--resign-targets', 'sign a new targets version even with nothing staged (refreshes its expiry)')
    .option('--role <name>', 'sign the staged targets into this delegated targets role (e.g. product-robot-ai, or product-robot-ai~beta for a channel) with its keys alone')
    .action(async (opts: { resignTargets?: boolean; role?: string }) => {
      const g = globals();
      if (opts.role !== undefined && opts.resignTargets === true) throw new OtaError('CONFIG_INVALID', '--role and --resign-targets do not go together: --resign-targets signs the top-level targets role');
      const result = await publisherFor(g).publish({ resignTargets: opts.resignTargets === true, ...(opts.role !== undefined ? { role: opts.role } : {}) });
      print(
        g.json,
        result,
        `published${opts.role !== undefined ? ` through ${opts.role}` : ''}: ${result.published.join(', ')}; targets ${result.targetsVersion}, snapshot ${result.snapshotVersion}, timestamp ${result.timestampVersion}`,
      );
    });

  program
    .command('delegate')
    .description('create, or rotate and renew, the delegated targets role of a product or of one channel of it (offline: needs the top-level targets key)')
    .requiredOption('--product <name>', 'product whose targets (<product>/*, with --channel <product>/<channel>/*) the role may sign')
    .option('--channel <name>', 'delegate only this channel: the role product-<product>~<channel> may sign <product>/<channel>/* (releases of that channel are then published there)')
    .option('--expires <duration>', 'how long the delegation lasts, e.g. 90d', '90d')
    .option('--key-count <n>', 'keys to make for the role (default: the threshold)')
    .option('--threshold <n>', 'signatures of those keys each version of the role needs', '1')
    .option('--key-out <dir>', "keys folder the role's new private keys are written to (default: --keys); copy its delegated/<role>/ folder to the studio")
    .action(async (opts: { product: string; channel?: string; expires: string; keyCount?: string; threshold: string; keyOut?: string }) => {
      const g = globals();
      const expiresInMs = parseDurationArg(opts.expires, '--expires');
      const whole = (name: string, v: string): number => {
        const n = Number(v);
        if (!/^\d+$/.test(v.trim()) || !Number.isInteger(n) || n < 1) throw new OtaError('CONFIG_INVALID', `${name} is ${JSON.stringify(v)}: expected a whole number ≥ 1`);
        return n;
      };
      const threshold = whole('--threshold', opts.threshold);
      const keyCount = opts.keyCount !== undefined ? whole('--key-count', opts.keyCount) : threshold;
      const result = await publisherFor(g).delegate({
        product: opts.product,
        ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
        expiresInMs,
        keyCount,
        threshold,
        ...(opts.keyOut !== undefined ? { keyOut: path.resolve(opts.keyOut) } : {}),
      });
      print(
        g.json,
        result,
        [
          `${result.replacedKeyIds.length > 0 ? 'rotated' : 'created'} delegated role ${result.role} for ${result.paths.join(', ')} until ${result.expires}, threshold ${result.threshold} of ${result.keyids.length} key${result.keyids.length === 1 ? '' : 's'}`,
          ...result.keyids.map((id, i) => `key ${id} written to ${result.keyFiles[i]} (0600)`),
          ...(result.replacedKeyIds.length > 0 ? [`no longer trusted: ${result.replacedKeyIds.join(', ')}; ${result.carriedTargets} target(s) signed again with the new key${result.keyids.length === 1 ? '' : 's'}`] : []),
          `published: targets ${result.publish.targetsVersion}, snapshot ${result.publish.snapshotVersion}, timestamp ${result.publish.timestampVersion}`,
        ].join('\n'),
      );
    });

  program
    .command('undelegate')
    .description('remove the delegated targets role of a product or of one channel of it; robots stop finding what it signed (offline: needs the top-level targets key)')
    .requiredOption('--product <name>', 'product whose delegation is removed')
    .option('--channel <name>', "remove the channel's delegation (product-<product>~<channel>) instead of the product's")
    .option('--key-out <dir>', "keys folder whose copies of the role's keys are moved to retired/ (default: --keys)")
    .action(async (opts: { product: string; channel?: string; keyOut?: string }) => {
      const g = globals();
      const result = await publisherFor(g).undelegate({
        product: opts.product,
        ...(opts.channel !== undefined ? { channel: opts.channel } : {}),
        ...(opts.keyOut !== undefined ? { keyOut: path.resolve(opts.keyOut) } : {}),
      });
      print(
        g.json,
        result,
        [
          `removed delegated role ${result.role} (${result.paths.join(', ')}): keys ${result.removedKeyIds.join(', ')} no longer trusted, ${result.retiredKeyFiles} key file(s) moved to retired/`,
          `robots no longer find the ${result.droppedTargets} target(s) it signed`,
          `published: targets ${result.publish.targetsVersion}, snapshot ${result.publish.snapshotVersion}, timestamp ${result.publish.timestampVersion}`,
        ].join('\n'),
      );
    });

  program
    .command('delegations')
    .description('list the delegated targets roles: paths, keys, threshold, expiry')
    .action(async () => {
      const g = globals();
      const list = await publisherFor(g).delegations();
      print(
        g.json,
        list,
        list.length === 0
          ? 'no delegations'
          : list.map((d) => `${d.role}: ${d.paths.join(', ')}; keys ${d.keyids.join(', ')} (threshold ${d.threshold}); version ${d.version}, expires ${d.expires}, ${d.targets} target(s)`).join('\n'),
      );
    });

  program
    .command('refresh-timestamp')
    .description('re-sign timestamp.json with a fresh expiry (online key)')
    .option('--if-expiring-within <duration>', 'only when it expires within this duration, e.g. 12h')
    .action(async (opts: { ifExpiringWithin?: string }) => {
      const g = globals();
      const within = opts.ifExpiringWithin === undefined ? undefined : parseDurationArg(opts.ifExpiringWithin, '--if-expiring-within');
      const result = await publisherFor(g).refreshTimestamp(within === undefined ? {} : { onlyIfExpiringWithinMs: within });
      print(g.json, result, result.refreshed ? `timestamp ${result.version} expires ${result.expires}` : `timestamp ${result.version} still valid until ${result.expires}: not re-signed`);
    });

  program
    .command('rotate-key')
    .description('replace the keys of a role in a new root (signed by old and new root keys)')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
    .option('--key <file>', 'the new key (from keygen); default: generate one')
    .option('--remove <keyid>', 'key id to take out (repeatable; default: all current keys of the role)', collect, [])
    .option('--threshold <n>', 'new threshold for the role')
    .action(async (opts: { role: string; key?: string; remove: string[]; threshold?: string }) => {
      const g = globals();
      if (!isRoleName(opts.role)) throw new OtaError('CONFIG_INVALID', `--role is ${JSON.stringify(opts.role)}: expected one of ${ROLES.join(', ')}`);
      const rotate: Parameters<ReturnType<typeof publisherFor>['rotateKey']>[0] = { role: opts.role };
      if (opts.key !== undefined) rotate.newKey = await readKeyFile(path.resolve(opts.key), opts.role);
      if (opts.remove.length > 0) rotate.removeKeyIds = opts.remove;
      if (opts.threshold !== undefined) rotate.threshold = positiveInt(opts.threshold, '--threshold');
      const result = await publisherFor(g).rotateKey(rotate);
      if (opts.key !== undefined) await fs.rm(path.resolve(opts.key), { force: true }).catch(() => {});
      print(g.json, result, `root ${result.rootVersion}: ${result.role} key ${result.addedKeyId} added, ${result.removedKeyIds.length} removed`);
    });

  program
    .command('mirror-assets')
    .description('write the packages, deltas and tree indexes under their flat asset names, for a mirror such as GitHub release assets (repository.mirrorUrl)')
    .requiredOption('--out <dir>', 'folder to write the assets into')
    .option('--product <name>', "only this product's targets")
    .option('--github <owner/repo>', 'also print the gh commands that upload the assets to a release of this GitHub repository')
    .option('--tag <tag>', 'the release tag for --github (the mirror URL is https://github.com/<owner/repo>/releases/download/<tag>/)', 'ota')
    .action(async (opts: { out: string; product?: string; github?: string; tag: string }) => {
      const o = program.opts<{ repo?: string; json?: boolean }>();
      if (o.repo === undefined) throw new OtaError('CONFIG_INVALID', 'missing --repo <dir> (or OTA_REPO_DIR): the repository folder');
      const repoDir = path.resolve(o.repo);
      // Listing the signed targets reads metadata only: no signing key is needed.
      const targets = await createPublisher({ repoDir, keysDir: path.join(repoDir, 'keys-not-used'), clock: systemClock, logger: silentLogger }).listTargets();
      const assets = await writeMirrorAssets({ repoDir, outDir: path.resolve(opts.out), targets, ...(opts.product !== undefined ? { product: opts.product } : {}) });
      const commands = opts.github !== undefined ? githubUploadCommands(assets, opts.github, opts.tag) : [];
      const lines = [
        ...assets.map((a) => `${a.asset}  ${a.length} bytes  sha256 ${a.sha256}  (${a.target})`),
        `${assets.length} asset(s) in ${path.resolve(opts.out)}`,
        ...(opts.github !== undefined ? ['upload them with:', ...commands, `robots: repository.mirrorUrl: https://github.com/${opts.github}/releases/download/${opts.tag}/`] : []),
      ];
      print(o.json === true, { assets, commands }, lines.join('\n'));
    });

  program
    .command('verify')
    .description('check the repository as a robot would')
    .option('--root <file>', 'trusted root to start from (default: metadata/1.root.json)')
    .action(async (opts: { root?: string }) => {
      const o = program.opts<{ repo?: string; json?: boolean }>();
      if (o.repo === undefined) throw new OtaError('CONFIG_INVALID', 'missing --repo <dir> (or OTA_REPO_DIR): the repository folder');
      const report = await verifyRepository({
        repoDir: path.resolve(o.repo),
        ...(opts.root !== undefined ? { trustedRootPath: path.resolve(opts.root) } : {}),
        clock: systemClock,
        logger: silentLogger,
      });
      const lines = [
        `root ${report.rootVersion}, timestamp ${report.timestampVersion} (expires ${report.timestampExpires}), ${report.targets} targets`,
        ...Object.entries(report.latest).map(([k, v]) => `latest ${k}: ${v}`),
        ...report.problems.map((p) => `PROBLEM ${p.target ?? ''}: ${p.error.code}: ${p.error.message}`),
        report.ok ? 'repository OK' : `repository has ${report.problems.length} problem(s)`,
      ];
      print(o.json === true, report, lines.join('\n'));
      if (!report.ok) throw new ExitCode(1);
    });

  return program;
}

export async function main(argv: string[], io: CliIo = stdio): Promise<number> {
  const program = otaRepoProgram(io);
  try {
    if (argv.length === 0) {
      io.err('ota-repo: error: no command given (init, keygen, add, rollout, publish, delegate, undelegate, delegations, refresh-timestamp, rotate-key, mirror-assets, verify); see ota-repo --help');
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof ExitCode) return error.code;
    if (error instanceof CommanderError) {
      // Commander already printed its one-line message (or the help text).
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
    }
    if (isOtaError(error)) io.err(`ota-repo: ${error.code}: ${error.message}`);
    else io.err(`ota-repo: error: ${(error as Error).message ?? String(error)}`);
    return 1;
  }
}

function pct(part: number, whole: number): string {
  return `${((part * 100) / whole).toFixed(1)} %`;
}

class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}


if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`ota-repo: error: ${String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

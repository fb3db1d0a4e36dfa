/**
 * The release manifest: the signed description of one release of one product. It is a TUF target
 * beside the package it names, so it is only ever read after its hash and length were verified.
 * Parsing is strict about what it needs and tolerant of fields added by newer minor schema versions.
 */
import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { OtaError } from '../core/errors.js';

/** The schema this code writes. Readers accept any `1.x`; a new major means a breaking change. */
export const MANIFEST_SCHEMA_VERSION = '1.1';
export const SUPPORTED_MANIFEST_MAJOR = 1;
/** Release notes are shown on robot screens and stored in the database: keep them bounded. */
export const MAX_NOTES_LENGTH = 16_384;
/** A manifest larger than this is not a manifest: the reader refuses it before parsing. */
export const MAX_MANIFEST_BYTES = 64 * 1024;

export const PRODUCT_RE = /^[a-z0-9][a-z0-9._-]{0,63}$/;
export const CHANNEL_RE = /^[a-z][a-z0-9-]{0,31}$/;
const SHA256_RE = /^[0-9a-f]{64}$/;
/** Target names are relative repository paths: no leading slash, no `..`, no backslashes. */
const TARGET_RE = /^(?!\/)(?!.*(?:^|\/)\.\.?(?:\/|$))[A-Za-z0-9._+\-/]{1,255}$/;

const semverString = z.string().refine((v) => semver.valid(v) === v, { message: 'expected a semantic version such as 2.1.0' });
const isoTime = z.iso.datetime({ offset: true, message: 'expected an ISO 8601 time such as 2026-03-01T12:00:00Z' });

export const manifestSchema = z.object({
  schema: z.string().regex(/^\d+\.\d+$/, { message: 'expected a schema version such as "1.0"' }),
  product: z.string().regex(PRODUCT_RE, { message: 'expected a lower-case product name ([a-z0-9._-], at most 64 characters)' }),
  version: semverString,
  channel: z.string().regex(CHANNEL_RE, { message: 'expected a channel name such as stable or beta' }),
  releasedAt: isoTime,
  notes: z.string().max(MAX_NOTES_LENGTH, { message: `expected release notes of at most ${MAX_NOTES_LENGTH} characters` }).default(''),
  minFromVersion: semverString.optional(),
  requirements: z
    .object({
      minFreeBytes: z.number().int().nonnegative().optional(),
      arch: z.array(z.string().min(1).max(32)).min(1).optional(),
      os: z.array(z.string().min(1).max(64)).min(1).optional(),
    })
    .loose()
    .optional(),
  package: z.object({
    target: z.string().regex(TARGET_RE, { message: 'expected a relative target path such as robot-ai/robot-ai-2.1.0.tar.gz' }),
    length: z.number().int().positive(),
    sha256: z.string().regex(SHA256_RE, { message: 'expected 64 lower-case hex characters' }),
  }),
  /** Schema 1.1: the release's tree index, a TUF target of its own (src/package/tree-index.ts). */
  index: z
    .object({
      target: z.string().regex(TARGET_RE, { message: 'expected a relative target path such as robot-ai/robot-ai-2.1.0.index.json' }),
      length: z.number().int().positive(),
      sha256: z.string().regex(SHA256_RE, { message: 'expected 64 lower-case hex characters' }),
      entries: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
    })
    .optional(),
  /** Schema 1.1: deltas from earlier releases, each a TUF target (needs `index`). */
  deltas: z
    .array(
      z.object({
        fromVersion: semverString,
        target: z.string().regex(TARGET_RE, { message: 'expected a relative target path such as robot-ai/robot-ai-2.0.0-to-2.1.0.delta.tar.gz' }),
        length: z.number().int().positive(),
        sha256: z.string().regex(SHA256_RE, { message: 'expected 64 lower-case hex characters' }),
      }),
    )
    .max(32)
    .optional(),
  /**
   * Schema 1.1, optional: the versions of the product's siblings (the other products on the same
   * robots) this release needs, as semver ranges: `{ "robot-ai-sibling": "^1.4.0" }`. Readers that
   * do not know the field drop it (it changes nothing they do).
   */
  dependencies: z
    .record(
      z.string().regex(PRODUCT_RE, { message: 'expected a lower-case product name ([a-z0-9._-], at most 64 characters)' }),
      z.string().max(256).refine((r) => semver.validRange(r) !== null, { message: 'expected a semver range such as ^1.4.0 or >=1.2.0 <2.0.0' }),
    )
    .refine((d) => Object.keys(d).length <= 32, { message: 'expected at most 32 dependencies' })
    .optional(),
  rolloutPercent: z.number().min(0).max(100).optional(),
  maxDeferralHours: z.number().nonnegative().max(24 * 365).optional(),
  installBy: isoTime.optional(),
});

/** A validated release manifest. Unknown fields from newer minor versions are dropped. */
export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestInput = z.input<typeof manifestSchema>;

/**
 * Parse and validate a manifest from JSON or YAML text, a Buffer, or an object.
 * Throws MANIFEST_SCHEMA_UNSUPPORTED for an unknown major schema version and MANIFEST_INVALID for
 * anything else, naming the field, the value found and what was expected.
 */
export function parseManifest(input: string | Buffer | unknown, source = 'manifest'): Manifest {
  let data: unknown = input;
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    const text = Buffer.isBuffer(input) ? input.toString('utf8') : input;
    if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) {
      throw new OtaError('MANIFEST_INVALID', `${source}: ${Buffer.byteLength(text)} bytes, expected at most ${MAX_MANIFEST_BYTES}`, {
        details: { source, bytes: Buffer.byteLength(text) },
      });
    }
    data = parseText(text, source);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new OtaError('MANIFEST_INVALID', `${source}: expected an object at the top level, got ${describe(data)}`, { details: { source } });
  }
  checkSchemaVersion((data as Record<string, unknown>).schema, source);
  const result = manifestSchema.safeParse(data, { reportInput: true });
  if (!result.success) {
    const issues = result.error.issues.map((issue) => {
      const field = issue.path.length > 0 ? issue.path.join('.') : '(root)';
      const value = 'input' in issue ? describe(issue.input) : 'missing';
      return { field, value, expected: issue.message };
    });
    const first = issues[0]!;
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    throw new OtaError('MANIFEST_INVALID', `${source}: field ${first.field} is ${first.value}: ${first.expected}${more}`, {
      details: { source, issues },
    });
  }
  const manifest = result.data;
  if (manifest.minFromVersion !== undefined && semver.gt(manifest.minFromVersion, manifest.version)) {
    throw new OtaError(
      'MANIFEST_INVALID',
      `${source}: field minFromVersion is ${manifest.minFromVersion}: expected a version not above the release version ${manifest.version}`,
      { details: { source, field: 'minFromVersion' } },
    );
  }
  if (manifest.deltas !== undefined && manifest.deltas.length > 0 && manifest.index === undefined) {
    throw new OtaError('MANIFEST_INVALID', `${source}: field deltas is set without index: a delta can only be applied against a signed tree index`, {
      details: { source, field: 'deltas' },
    });
  }
  if (manifest.dependencies !== undefined && Object.hasOwn(manifest.dependencies, manifest.product)) {
    throw new OtaError('MANIFEST_INVALID', `${source}: field dependencies names ${manifest.product} itself: list the other products it needs`, {
      details: { source, field: `dependencies.${manifest.product}` },
    });
  }
  for (const d of manifest.deltas ?? []) {
    if (!semver.lt(d.fromVersion, manifest.version)) {
      throw new OtaError('MANIFEST_INVALID', `${source}: field deltas has a delta from ${d.fromVersion}: expected a version below ${manifest.version}`, {
        details: { source, field: 'deltas' },
      });
    }
  }
  return manifest;
}

/** The canonical serialisation ota-repo writes: stable key order, so the same input hashes the same. */
export function serializeManifest(manifest: Manifest): string {
  return `${JSON.stringify(sortKeys(manifest), null, 2)}\n`;
}

function checkSchemaVersion(value: unknown, source: string): void {
  if (typeof value !== 'string') {
    throw new OtaError('MANIFEST_INVALID', `${source}: field schema is ${describe(value)}: expected a schema version such as "1.0"`, {
      details: { source, field: 'schema' },
    });
  }
  const major = Number(value.split('.')[0]);
  if (!/^\d+\.\d+$/.test(value) || major !== SUPPORTED_MANIFEST_MAJOR) {
    throw new OtaError(
      'MANIFEST_SCHEMA_UNSUPPORTED',
      `${source}: schema version ${JSON.stringify(value)} is not supported: expected ${SUPPORTED_MANIFEST_MAJOR}.x (this otad reads ${MANIFEST_SCHEMA_VERSION})`,
      { details: { source, schema: value } },
    );
  }
}

function parseText(text: string, source: string): unknown {
  const trimmed = text.trimStart();
  try {
    // JSON is a subset of YAML, but JSON.parse gives better messages for JSON input.
    if (trimmed.startsWith('{')) return JSON.parse(text) as unknown;
    return parseYaml(text, { maxAliasCount: 10 }) as unknown;
  } catch (cause) {
    throw new OtaError('MANIFEST_INVALID', `${source}: not valid JSON or YAML: ${(cause as Error).message.split('\n')[0]}`, {
      cause,
      details: { source },
    });
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

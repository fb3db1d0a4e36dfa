/**
 * Unknown configuration keys. Every object of the schema is strict, so a misspelled key
 * (`healthCheks:`) is refused instead of silently ignored (the product would run without health
 * checks). This file turns zod's `unrecognized_keys` issue into a message that names the key, its
 * path and the closest key that exists at that place. Pure: no I/O.
 */
import type { z } from 'zod';

/** Keys that existed once: the message says what replaced them instead of guessing a neighbour. */
export const REMOVED_KEYS: Record<string, string> = {
  'paths.stagingDir':
    'it was never used: each product stages beside its releasesDir (<dirname of releasesDir>/staging/<product>), on the install filesystem, so that apply is a rename; remove the key',
};

export interface UnknownKey {
  /** Where the key is, e.g. `products[0].healthCheks`. */
  path: string;
  key: string;
  /** The closest known key at that place, when one is close enough to be a likely typo. */
  suggestion: string | null;
  /** Why a key that used to exist is gone (REMOVED_KEYS). */
  removed: string | null;
  message: string;
}

type Schema = z.ZodType;
type Def = { type: string; [k: string]: unknown };

function defOf(schema: Schema): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

/** Strip wrappers (defaults, optionals, transforms) down to the schema that holds the value. */
function unwrap(schema: Schema): Schema {
  let s = schema;
  for (let i = 0; i < 20; i++) {
    const def = defOf(s);
    if (def.type === 'default' || def.type === 'prefault' || def.type === 'optional' || def.type === 'nullable' || def.type === 'readonly') {
      s = def.innerType as Schema;
    } else if (def.type === 'pipe') {
      s = def.in as Schema;
    } else {
      return s;
    }
  }
  return s;
}

/**
 * The object schema at `path` inside `schema`, following arrays, records and discriminated unions
 * (the union member is chosen by the discriminator value found in `input`), or null.
 */
export function objectSchemaAt(schema: Schema, path: ReadonlyArray<PropertyKey>, input: unknown): Schema | null {
  let s: Schema | null = resolveUnion(unwrap(schema), input);
  let value = input;
  for (const seg of path) {
    if (s === null) return null;
    const def = defOf(s);
    value = value !== null && typeof value === 'object' ? (value as Record<PropertyKey, unknown>)[seg] : undefined;
    let next: Schema | null = null;
    if (def.type === 'object') next = ((def.shape as Record<string, Schema>)[String(seg)] ?? null) as Schema | null;
    else if (def.type === 'array') next = def.element as Schema;
    else if (def.type === 'record') next = def.valueType as Schema;
    s = next === null ? null : resolveUnion(unwrap(next), value);
  }
  return s !== null && defOf(s).type === 'object' ? s : null;
}

function resolveUnion(schema: Schema, input: unknown): Schema {
  const def = defOf(schema);
  if (def.type !== 'union') return schema;
  const options = (def.options as Schema[]).map(unwrap);
  const discriminator = typeof def.discriminator === 'string' ? def.discriminator : null;
  if (discriminator !== null && input !== null && typeof input === 'object') {
    const wanted = (input as Record<string, unknown>)[discriminator];
    for (const o of options) {
      const field = objectShape(o)[discriminator];
      if (field !== undefined && literalValues(unwrap(field)).includes(wanted)) return o;
    }
  }
  return options.find((o) => defOf(o).type === 'object') ?? schema;
}

function objectShape(schema: Schema): Record<string, Schema> {
  const def = defOf(schema);
  return def.type === 'object' ? (def.shape as Record<string, Schema>) : {};
}

function literalValues(schema: Schema): unknown[] {
  const def = defOf(schema);
  return def.type === 'literal' ? (def.values as unknown[]) : [];
}

/** The keys an object schema accepts, in declaration order. */
export function knownKeys(schema: Schema): string[] {
  return Object.keys(objectShape(schema));
}

/** Case, `_` and `-` do not count: `health_checks` and `HealthChecks` both mean healthChecks. */
const normalise = (k: string): string => k.toLowerCase().replace(/[_-]/g, '');

export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = prev[j] as number;
      prev[j] = Math.min(above + 1, (prev[j - 1] as number) + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return prev[b.length] as number;
}

/**
 * The known key closest to `key`, if it is close enough to be a typo: at most a third of the
 * key's length in edits (at least 2), so `healthCheks` → healthChecks but `colour` → nothing.
 */
export function closestKey(key: string, known: readonly string[]): string | null {
  const k = normalise(key);
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(k, normalise(candidate));
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const limit = Math.max(2, Math.floor(key.length / 3));
  return best !== null && bestDistance <= limit ? best : null;
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${String(seg)}` : String(seg);
  return out || '(top level)';
}

/** Removed keys are matched without array indices: `products[3].x` matches `products[].x`. */
const removedReason = (path: string): string | null => REMOVED_KEYS[path.replace(/\[\d+\]/g, '[]')] ?? null;

/** One zod `unrecognized_keys` issue (at `issuePath`, listing `keys`) as one UnknownKey each. */
export function describeUnknownKeys(schema: Schema, input: unknown, issuePath: ReadonlyArray<PropertyKey>, keys: readonly string[]): UnknownKey[] {
  const object = objectSchemaAt(schema, issuePath, input);
  const known = object === null ? [] : knownKeys(object);
  return keys.map((key) => {
    const path = formatPath([...issuePath, key]);
    const removed = removedReason(path);
    const suggestion = removed === null ? closestKey(key, known) : null;
    const hint = removed !== null ? `: ${removed}` : suggestion !== null ? `; did you mean ${suggestion}?` : known.length > 0 ? `; known keys here: ${known.join(', ')}` : '';
    return { path, key, suggestion, removed, message: `${path}: unknown key "${key}"${hint}` };
  });
}

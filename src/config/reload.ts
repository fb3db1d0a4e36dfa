/**
 * What a configuration reload (SIGHUP) changes: a pure plan from the running configuration and
 * the newly loaded one.
 *
 * - `changed`: every key whose value differs, as dotted keys; products are matched by name
 *   (`products.robot-ai.channel`), so reordering them changes nothing.
 * - `needsRestart`: the changed keys that only a restart can apply (the table below, with the
 *   reason for each row). The plan's `effective` configuration keeps their RUNNING values, so a
 *   restart-only change is never applied halfway (status, steps and policies all still see the
 *   value the daemon started with).
 * - `applied`: the rest; the daemon rebuilds what depends on them for the next run.
 */
import { OtaError } from '../core/errors.js';
import type { Config } from './load.js';
import type { ProductConfig } from './schema.js';

/** One changed key: its path (product entries by name) and how it is printed. */
export interface ChangedKey {
  path: readonly string[];
  key: string;
}

export interface ReloadPlan {
  changed: string[];
  applied: string[];
  needsRestart: string[];
  /** The configuration the daemon runs on after the reload: `next` with restart-only keys kept. */
  effective: Config;
}

/**
 * Keys that take effect only at the next start, each with the reason; the first matching row wins.
 */
const RESTART_ONLY: ReadonlyArray<{ matches: (path: readonly string[]) => boolean; reason: string }> = [
  // The database, lock, state, trust root and inhibit file are opened or read at start by more than
  // one part (store, lock, steps); moving them under a running daemon would split its state.
  { matches: (p) => p[0] === 'paths', reason: 'files and folders are opened at start' },
  { matches: (p) => p[0] === 'api', reason: 'the REST and Socket.IO listeners are bound at start' },
  { matches: (p) => p[0] === 'dbus', reason: 'the D-Bus name is claimed at start' },
  { matches: (p) => p[0] === 'logging' && p[1] !== 'level', reason: 'log and audit sinks are opened at start' },
  // The crash-loop guard and recovery policy run once, when a product's lifecycle is restored.
  { matches: (p) => p[0] === 'recovery', reason: 'recovery is decided at start' },
  // One lifecycle per product is restored at start; adding or removing one needs a restart.
  { matches: (p) => p[0] === 'products' && p.length === 2, reason: 'products are restored at start' },
  // Where a product lives is what detection and the apply journal read when the daemon starts;
  // switching it between runs would leave the recovery of the old place undone.
  {
    matches: (p) => p[0] === 'products' && p.length >= 3 && ['installPath', 'releasesDir', 'versionFile'].includes(p[2] as string),
    reason: 'where a product is installed is read at start',
  },
];

export function restartReason(path: readonly string[]): string | null {
  return RESTART_ONLY.find((row) => row.matches(path))?.reason ?? null;
}

/** Every key that differs between two configurations (`source` is where it came from, not a key). */
export function changedKeys(a: Config, b: Config): ChangedKey[] {
  const out: ChangedKey[] = [];
  for (const k of unionKeys(a, b)) {
    if (k === 'source' || k === 'products') continue;
    diffValue((a as unknown as Record<string, unknown>)[k], (b as unknown as Record<string, unknown>)[k], [k], out);
  }
  const before = new Map(a.products.map((p) => [p.name, p]));
  const after = new Map(b.products.map((p) => [p.name, p]));
  for (const name of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    diffValue(before.get(name), after.get(name), ['products', name], out);
  }
  return out;
}

export function diffConfig(a: Config, b: Config): string[] {
  return changedKeys(a, b).map((c) => c.key);
}

export function planReload(running: Config, next: Config): ReloadPlan {
  const changes = changedKeys(running, next);
  const restart = changes.filter((c) => restartReason(c.path) !== null);
  const effective = keepRunning(running, next);
  return {
    changed: changes.map((c) => c.key),
    applied: changes.filter((c) => !restart.includes(c)).map((c) => c.key),
    needsRestart: restart.map((c) => c.key),
    effective,
  };
}

/** `next`, with the running value of every restart-only key put back. */
function keepRunning(running: Config, next: Config): Config {
  const effective = structuredClone(next);
  effective.paths = structuredClone(running.paths);
  effective.api = structuredClone(running.api);
  effective.dbus = structuredClone(running.dbus);
  effective.recovery = structuredClone(running.recovery);
  effective.logging = { ...structuredClone(running.logging), level: next.logging.level };
  const nextByName = new Map(next.products.map((p) => [p.name, p]));
  // The running products, in their order: a removed one keeps running as it was, an added one waits.
  effective.products = running.products.map((old): ProductConfig => {
    const updated = nextByName.get(old.name);
    if (updated === undefined) return structuredClone(old);
    return { ...structuredClone(updated), installPath: old.installPath, releasesDir: old.releasesDir, versionFile: old.versionFile };
  });
  // Every restart-only key must now hold its running value: a table row without a matching line
  // above would otherwise be reported as needing a restart and yet be applied.
  const leaked = changedKeys(running, effective).filter((c) => restartReason(c.path) !== null);
  if (leaked.length > 0) {
    throw new OtaError('INTERNAL', `the reload plan would apply restart-only keys: ${leaked.map((c) => c.key).join(', ')}`);
  }
  return effective;
}

function diffValue(a: unknown, b: unknown, path: string[], out: ChangedKey[]): void {
  if (JSON.stringify(a) === JSON.stringify(b)) return;
  if (isPlainObject(a) && isPlainObject(b)) {
    for (const k of unionKeys(a, b)) diffValue(a[k], b[k], [...path, k], out);
    return;
  }
  out.push({ path, key: path.join('.') });
}

function unionKeys(a: object, b: object): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

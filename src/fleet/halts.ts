/**
 * The rollout halts the fleet server told this robot about, remembered until a later answer says
 * otherwise. Kept in the daemon's store so a halt learned before a restart still holds after it:
 * obeying a halt can only stop an install, so keeping a stale one costs at most one check-in
 * interval, while forgetting one could start an install the operator halted.
 */
export interface HaltRecord {
  product: string;
  version: string;
  /** 'halted' or 'paused', as the server said. */
  state: string;
  reason: string;
  learnedAt: number;
}

export interface ValueStore {
  getValue(key: string): string | null;
  setValue(key: string, value: string): void;
}

const KEY = 'fleet:halts';

export interface HaltMemory {
  /** The halt that covers this product and version, if any. */
  find(product: string, version: string): HaltRecord | null;
  all(): HaltRecord[];
  /** An accepted check-in answer lists every rollout of the robot's products that is not active: it replaces what was known. */
  replaceAll(rollouts: unknown, now: number): void;
  /** A lease answer speaks of one product and version only. */
  set(record: HaltRecord): void;
  lift(product: string, version: string): void;
}

export function createHaltMemory(store: ValueStore): HaltMemory {
  let halts: HaltRecord[] = load(store);
  const save = (): void => store.setValue(KEY, JSON.stringify(halts));
  return {
    find: (product, version) => halts.find((h) => h.product === product && h.version === version) ?? null,
    all: () => [...halts],
    replaceAll(rollouts, now) {
      const next = parseRollouts(rollouts, now);
      if (JSON.stringify(next.map(strip)) === JSON.stringify(halts.map(strip))) return;
      // A halt already known keeps the time it was first learned.
      halts = next.map((h) => halts.find((old) => old.product === h.product && old.version === h.version && old.reason === h.reason) ?? h);
      save();
    },
    set(record) {
      halts = [...halts.filter((h) => !(h.product === record.product && h.version === record.version)), record];
      save();
    },
    lift(product, version) {
      const before = halts.length;
      halts = halts.filter((h) => !(h.product === product && h.version === version));
      if (halts.length !== before) save();
    },
  };
}

function strip(h: HaltRecord): Omit<HaltRecord, 'learnedAt'> {
  return { product: h.product, version: h.version, state: h.state, reason: h.reason };
}

/** The rollouts of an answer that stop installs: every entry whose state is not `active`. */
export function parseRollouts(rollouts: unknown, now: number): HaltRecord[] {
  if (!Array.isArray(rollouts)) return [];
  const out: HaltRecord[] = [];
  for (const r of rollouts) {
    if (typeof r !== 'object' || r === null) continue;
    const { product, version, state, reason } = r as Record<string, unknown>;
    if (typeof product !== 'string' || typeof version !== 'string' || typeof state !== 'string' || state === 'active') continue;
    out.push({ product, version, state, reason: typeof reason === 'string' ? reason.slice(0, 512) : '', learnedAt: now });
  }
  return out;
}

function load(store: ValueStore): HaltRecord[] {
  const raw = store.getValue(KEY);
  if (raw === null) return [];
  try {
    const v: unknown = JSON.parse(raw);
    return Array.isArray(v) ? (v as HaltRecord[]).filter((h) => typeof h?.product === 'string' && typeof h?.version === 'string') : [];
  } catch {
    return [];
  }
}

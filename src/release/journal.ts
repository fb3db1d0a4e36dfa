/**
 * The apply journal: one small JSON file per product that says how far the switch of a run got.
 * The database records the machine's state; the journal records the disk-level steps inside
 * `apply`, each written durably BEFORE the step it announces is considered done, so that after a
 * crash `resolveInterrupted` can compare it with what is really on disk.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { fsyncDir, isErrno } from './switch.js';
import { atomicWriteFile } from '../core/atomic-file.js';

/** In order. Each phase is written once the step it names has completed. */
export const APPLY_PHASES = ['prepared', 'services-stopped', 'switched', 'services-started', 'done'] as const;
export type ApplyPhase = (typeof APPLY_PHASES)[number];

export const JOURNAL_SCHEMA = 1;

export interface ApplyJournalEntry {
  schema: typeof JOURNAL_SCHEMA;
  product: string;
  runId: string;
  /** The release live before the run (null: first install). */
  from: string | null;
  to: string;
  phase: ApplyPhase;
  /** Wall-clock ms of the last write (for operators; never used for decisions). */
  updatedAt: number;
}

export interface ApplyJournalRun {
  runId: string;
  from: string | null;
  to: string;
}

export interface ApplyJournal {
  readonly file: string;
  read(): Promise<ApplyJournalEntry | null>;
  /** Start (or restart) a run's journal at `phase`; replaces any entry of another run. */
  begin(run: ApplyJournalRun, phase?: ApplyPhase): Promise<ApplyJournalEntry>;
  /** Record that the current run reached `phase`. Moving backwards is a bug and throws. */
  write(phase: ApplyPhase): Promise<ApplyJournalEntry>;
  clear(): Promise<void>;
}

export interface ApplyJournalOptions {
  /** Directory holding the journals, e.g. /var/lib/ota/journal. */
  dir: string;
  product: string;
  clock: Clock;
  logger: Logger;
}

export function phaseIndex(phase: ApplyPhase): number {
  return APPLY_PHASES.indexOf(phase);
}

export function createApplyJournal(options: ApplyJournalOptions): ApplyJournal {
  const file = path.join(options.dir, `${options.product}.apply-journal.json`);
  const log = options.logger.child({ product: options.product, component: 'apply-journal' });

  async function read(): Promise<ApplyJournalEntry | null> {
    const entry = await readJournalFile(file);
    if (entry === 'damaged') {
      // Writes are atomic, so a bad file is not a torn write: it was damaged or hand-edited.
      throw new OtaError('STORE_FAILED', `apply journal ${file} is not a valid journal entry`, {
        details: { file },
        retryable: false,
      });
    }
    return entry;
  }

  async function persist(entry: ApplyJournalEntry): Promise<ApplyJournalEntry> {
    await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
    await atomicWriteFile(file, `${JSON.stringify(entry, null, 2)}\n`, { mode: 0o600 });
    log.debug('apply journal written', { runId: entry.runId, phase: entry.phase, from: entry.from, to: entry.to });
    return entry;
  }

  return {
    file,
    read,
    async begin(run, phase = 'prepared') {
      return persist({ schema: JOURNAL_SCHEMA, product: options.product, ...run, phase, updatedAt: options.clock.now() });
    },
    async write(phase) {
      const existing = await read();
      if (existing === null) {
        throw new OtaError('INTERNAL', `apply journal ${file}: cannot record phase ${phase} without a run (call begin first)`, {
          details: { phase },
        });
      }
      if (phaseIndex(phase) < phaseIndex(existing.phase)) {
        throw new OtaError('INTERNAL', `apply journal ${file}: phase ${phase} would move run ${existing.runId} back from ${existing.phase}`, {
          details: { phase, current: existing.phase, runId: existing.runId },
        });
      }
      return persist({ ...existing, phase, updatedAt: options.clock.now() });
    },
    async clear() {
      try {
        await fs.rm(file);
      } catch (error) {
        if (isErrno(error, 'ENOENT')) return;
        throw error;
      }
      await fsyncDir(options.dir);
    },
  };
}

/** Durable write: temp file, fsync, rename over, fsync the directory. */
/** A journal file: null when there is none, 'damaged' when it does not parse (each caller decides what that means). */
export async function readJournalFile(file: string): Promise<ApplyJournalEntry | 'damaged' | null> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return null;
    throw error;
  }
  return parseEntry(text) ?? 'damaged';
}

export function parseEntry(text: string): ApplyJournalEntry | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  const ok =
    v.schema === JOURNAL_SCHEMA &&
    typeof v.product === 'string' &&
    typeof v.runId === 'string' &&
    (v.from === null || typeof v.from === 'string') &&
    typeof v.to === 'string' &&
    typeof v.phase === 'string' &&
    (APPLY_PHASES as readonly string[]).includes(v.phase) &&
    typeof v.updatedAt === 'number';
  return ok ? (value as ApplyJournalEntry) : null;
}

// ----- recovery decision (pure) --------------------------------------------------------------

export type InterruptedSwitch =
  /** No journal: no apply was in flight. */
  | { kind: 'none' }
  /** The run got to `done`: only the journal is left to clear. */
  | { kind: 'complete'; runId: string; from: string | null; to: string }
  /**
   * The link still points at `from` (or nothing, on a first install). Undo = start `from`'s
   * services again (when `servicesMayBeDown`) and drop the new release; or redo the switch.
   */
  | { kind: 'not-switched'; runId: string; from: string | null; to: string; phase: ApplyPhase; servicesMayBeDown: boolean; journalAhead: boolean }
  /**
   * The link points at `to`. Finish = start services (when `servicesMayBeDown`) and validate;
   * or undo with a switch back to `from`.
   */
  | { kind: 'switched'; runId: string; from: string | null; to: string; phase: ApplyPhase; servicesMayBeDown: boolean; journalBehind: boolean }
  /** The link points at neither release: the disk was changed behind our back; restore from backup. */
  | { kind: 'unknown'; runId: string; from: string | null; to: string; phase: ApplyPhase; actual: string | null };

/**
 * Decide, from the journal and the version the install link really resolves to
 * (`actualVersion`: null when the link is missing or points outside the releases directory),
 * where an interrupted apply stands. The disk is the truth; the journal says which two releases
 * are in play and whether services may have been left stopped.
 */
export function resolveInterrupted(journal: ApplyJournalEntry | null, actualVersion: string | null): InterruptedSwitch {
  if (journal === null) return { kind: 'none' };
  const { runId, from, to, phase } = journal;
  if (phase === 'done') return { kind: 'complete', runId, from, to };
  const reached = phaseIndex(phase);
  const switchedPhase = phaseIndex('switched');
  const stoppedPhase = phaseIndex('services-stopped');
  const startedPhase = phaseIndex('services-started');

  let onNew: boolean;
  if (from === to) {
    // Reinstalling the same version: the link cannot tell; only the journal can.
    if (actualVersion !== to) return { kind: 'unknown', runId, from, to, phase, actual: actualVersion };
    onNew = reached >= switchedPhase;
  } else if (actualVersion === to) {
    onNew = true;
  } else if (actualVersion === from) {
    onNew = false;
  } else {
    return { kind: 'unknown', runId, from, to, phase, actual: actualVersion };
  }

  if (onNew) {
    // Services were started against the new release only once 'services-started' was written.
    // A link on the new release with an earlier phase means the crash fell between the rename and
    // the journal write: services were stopped and have not been started.
    const servicesMayBeDown = reached < startedPhase;
    return { kind: 'switched', runId, from, to, phase, servicesMayBeDown, journalBehind: reached < switchedPhase };
  }
  // Still on the old release. Services may be down if they were stopped; if the journal claims the
  // switch happened the rename was lost, and whatever runs was started from the wrong release.
  const journalAhead = reached >= switchedPhase;
  const servicesMayBeDown = reached >= stoppedPhase;
  return { kind: 'not-switched', runId, from, to, phase, servicesMayBeDown, journalAhead };
}

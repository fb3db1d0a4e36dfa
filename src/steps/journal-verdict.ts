/**
 * The apply journal's verdict for the recovery policy (src/daemon/recovery-policy.ts), read from
 * the journal and the link on disk when otad starts and finds a run saved in `apply`:
 *
 *   resolveInterrupted | verdict        | the policy then            | why
 *   none               | 'none'         | rolls back                 | apply never wrote its journal: nothing was switched
 *   not-switched       | 'not-switched' | rolls back                 | the old release is still live; undo the rest
 *   switched           | 'switched'     | re-runs apply, validates   | the link is on the new release; finishing is the short way
 *   complete           | 'switched'     | re-runs apply, validates   | apply reached `done`; its re-run returns at once
 *   unknown            | 'not-switched' | rolls back                 | the link is on neither release: only rollback (previous
 *                      |                |                            | release or backup) can bring back a known one
 *   unreadable journal | 'not-switched' | rolls back                 | rollback refuses a damaged journal (ROLLBACK_FAILED), so a
 *                      |                |                            | person looks instead of otad guessing
 */
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import type { ProductConfig } from '../config/schema.js';
import type { JournalVerdict } from '../daemon/recovery-policy.js';
import { createApplyJournal, resolveInterrupted, type InterruptedSwitch } from '../release/journal.js';
import { createReleaseStore } from '../release/layout.js';
import { releasesDirOf } from './ports.js';

export interface JournalVerdictPorts {
  /** The directory of the apply journals (`<stateDir>/journal`, see journalDirFor). */
  journalDir: string;
  logger: Logger;
  clock?: Clock;
}

export function verdictOf(interrupted: InterruptedSwitch): JournalVerdict {
  switch (interrupted.kind) {
    case 'none':
      return 'none';
    case 'not-switched':
    case 'unknown':
      return 'not-switched';
    case 'switched':
    case 'complete':
      return 'switched';
  }
}

export async function journalVerdict(product: ProductConfig, ports: JournalVerdictPorts): Promise<JournalVerdict> {
  const log = ports.logger.child({ product: product.name, component: 'journal-verdict' });
  const journal = createApplyJournal({ dir: ports.journalDir, product: product.name, clock: ports.clock ?? systemClock, logger: ports.logger });
  let entry;
  try {
    entry = await journal.read();
  } catch (error) {
    log.error('apply journal unreadable: recovery will roll back', { file: journal.file, error: String(error) });
    return 'not-switched';
  }
  if (entry === null) return 'none';
  const store = createReleaseStore({ product: product.name, installPath: product.installPath, releasesDir: releasesDirOf(product), logger: ports.logger });
  // Finish an interrupted adoption and drop switch left-overs first, as every step does.
  await store.recover();
  const live = (await store.current())?.version ?? null;
  const interrupted = resolveInterrupted(entry, live);
  const verdict = verdictOf(interrupted);
  log.info('apply journal read after a restart', { runId: entry.runId, from: entry.from, to: entry.to, phase: entry.phase, live, kind: interrupted.kind, verdict });
  return verdict;
}

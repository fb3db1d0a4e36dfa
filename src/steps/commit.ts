/**
 * The commit step: the new release proved healthy. Clearing the apply journal is what marks it
 * good on disk (from here on, recovery never undoes it; a manual rollback still can, to the
 * release its marker names as previous). Then old releases are pruned, keeping the live one and
 * the previous one for a fast rollback, and the run's staging is cleared. Publishing the event is
 * the daemon's job (it publishes every transition); this step only returns the version.
 *
 * Idempotent: a re-run finds no journal, prunes nothing more and returns the same version.
 */
import type { CommitInput, CommitOutput } from '../../machines/types.js';
import { OtaError, toOtaError } from '../core/errors.js';
import { applyJournalOf, releaseStoreOf, type ExecutionPorts } from './ports.js';
import { clearStaging } from '../release/staging.js';
import { readReleaseMarker } from '../release/marker.js';

export type CommitStep = (input: CommitInput, signal: AbortSignal) => Promise<CommitOutput>;

export function createCommit(ports: ExecutionPorts): CommitStep {
  return async function commit(input) {
    const version = input.applied.version;
    const log = ports.logger.child({ step: 'commit', runId: input.runId, version });
    const store = releaseStoreOf(ports);
    const journal = applyJournalOf(ports);
    try {
      await store.recover();
      const live = await store.current();
      if (live?.version !== version) {
        throw new OtaError('APPLY_FAILED', `cannot commit ${ports.product.name} ${version}: ${store.installPath} resolves to ${live?.version ?? 'no release'}`, {
          details: { version, live: live?.version ?? null },
        });
      }
      const entry = await journal.read();
      if (entry !== null) {
        if (entry.runId !== input.runId || entry.to !== version) {
          throw new OtaError('APPLY_FAILED', `cannot commit ${version} (run ${input.runId}): the apply journal records ${entry.to} of run ${entry.runId}`, {
            details: { journal: entry },
          });
        }
        if (entry.phase !== 'done') {
          throw new OtaError('APPLY_FAILED', `cannot commit ${version}: its apply stopped at phase ${entry.phase}`, { details: { journal: entry } });
        }
      }
      const marker = await readReleaseMarker(live.dir);
      const previous = entry?.from ?? input.applied.fromRelease ?? marker?.previousVersion ?? null;
      await journal.clear();
      log.info('release committed', { previous });
      const pruned = await store.prune(previous === null ? [] : [previous]);
      await clearStaging(marker?.staging, input.runId, log);
      log.info('commit done', { kept: [version, ...(previous === null ? [] : [previous])], pruned });
      return { version };
    } catch (error) {
      throw toOtaError(error, 'APPLY_FAILED', `committing ${ports.product.name} ${version}`, { runId: input.runId });
    }
  };
}

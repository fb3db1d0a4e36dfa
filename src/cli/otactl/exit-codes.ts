/**
 * otactl's exit codes: one table, printed by `otactl --help` and mirrored in docs/api.md, so a
 * script can tell "the daemon said no" from "the daemon is not there".
 */
import { ApiClientError } from '../../api/client.js';
import { isOtaError } from '../../core/errors.js';

export const EXIT = { ok: 0, failure: 1, usage: 2, notAllowed: 3, auth: 4, unreachable: 5, timeout: 6 } as const;

export const EXIT_HELP = `
Exit codes:
  0  done
  1  failed (the daemon reported an error, or replay diverged)
  2  usage or configuration error (bad arguments, unknown product, state or run)
  3  not allowed in the current state (the daemon answered 409)
  4  authentication or permission refused (401/403)
  5  the daemon is not reachable (status still prints the state it last saved)
  6  watch --timeout passed before the awaited state
`;

export function exitCodeFor(error: unknown): number {
  if (error instanceof ApiClientError) {
    if (error.status === null) return EXIT.unreachable;
    if (error.status === 409) return EXIT.notAllowed;
    if (error.status === 401 || error.status === 403) return EXIT.auth;
    if (error.status === 400 || error.status === 404 || error.status === 413) return EXIT.usage;
    return EXIT.failure;
  }
  if (error instanceof WatchTimeout) return EXIT.timeout;
  if (isOtaError(error) && error.category === 'config') return EXIT.usage;
  return EXIT.failure;
}

/** `otactl watch --timeout` ran out before the awaited state. */
export class WatchTimeout extends Error {
  readonly code = 'WATCH_TIMEOUT';
  constructor(message: string) {
    super(message);
    this.name = 'WatchTimeout';
  }
}

export function errorText(error: unknown): string {
  const coded = error instanceof ApiClientError || isOtaError(error) || error instanceof WatchTimeout;
  const message = coded ? `${(error as { code: string }).code}: ${(error as Error).message}` : String(error);
  const details = error instanceof ApiClientError && error.status === 409 && error.details?.state ? ` (current state: ${String(error.details.state)})` : '';
  return `otactl: ${message}${details}`;
}

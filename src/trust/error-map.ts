/**
 * tuf-js reports failures as a handful of classes, and wraps snapshot and targets failures into a
 * RuntimeError whose message is the only trace of the original. This table turns both into the
 * stable trust codes. Order matters: the first matching rule wins.
 */
import { OtaError, isOtaError, type ErrorCode } from '../core/errors.js';

interface Rule {
  test: RegExp;
  code: ErrorCode;
  reason: string;
}

const RULES: Rule[] = [
  { test: /Max length reached/i, code: 'TRUST_METADATA_TOO_LARGE', reason: 'metadata larger than its cap' },
  { test: /was signed by \d+\/\d+ keys|failed to verify .* signature|no signature for key/i, code: 'TRUST_SIGNATURE', reason: 'signatures below threshold or by unknown keys' },
  { test: /is expired/i, code: 'TRUST_EXPIRED', reason: 'metadata expired (freeze attack or stale repository)' },
  { test: /Snapshot version doesn't match timestamp|does not match snapshot version/i, code: 'TRUST_MIX_AND_MATCH', reason: 'metadata versions do not match each other' },
  { test: /Unable to load (snapshot|targets).*Expected (length|hash)/i, code: 'TRUST_MIX_AND_MATCH', reason: 'metadata does not match the hash or length its parent signed' },
  { test: /Missing (file )?\S+ in (new )?snapshot/i, code: 'TRUST_MIX_AND_MATCH', reason: 'snapshot does not list the expected metadata' },
  { test: /Expected version \d+, got \d+/i, code: 'TRUST_ROLLBACK', reason: 'root version sequence broken (skipped or replayed root)' },
  { test: /is less than current version/i, code: 'TRUST_ROLLBACK', reason: 'metadata version lower than one already trusted' },
  { test: /Expected length \d+ but got/i, code: 'TRUST_LENGTH_MISMATCH', reason: 'length differs from the signed length' },
  { test: /Expected hash \S+ but got/i, code: 'TRUST_HASH_MISMATCH', reason: 'hash differs from the signed hash' },
  {
    test: /JSON|Unexpected token|Unexpected end|must be|is not defined|expected '\w+', got|Expected '\w+', got|not an array|invalid metadata type|multiple signatures/i,
    code: 'TRUST_METADATA_INVALID',
    reason: 'metadata is malformed',
  },
];

/**
 * Map anything the TUF update threw to an OtaError. `fetchError` is the last error the fetcher
 * raised during this update: when tuf-js wrapped it into a string, it is the real cause.
 */
export function mapTufError(error: unknown, fetchError?: OtaError): OtaError {
  if (isOtaError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (fetchError !== undefined && message.includes(fetchError.message)) return fetchError;
  const status = (error as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number') {
    return new OtaError(status === 404 ? 'HTTP_NOT_FOUND' : 'HTTP_STATUS', `metadata download answered HTTP ${status}: ${message}`, {
      cause: error,
      details: { status },
    });
  }
  for (const rule of RULES) {
    if (rule.test.test(message)) {
      return new OtaError(rule.code, `repository metadata rejected: ${rule.reason}: ${message}`, { cause: error, details: { tuf: message } });
    }
  }
  return new OtaError('TRUST_METADATA_INVALID', `repository metadata rejected: ${message}`, { cause: error, details: { tuf: message } });
}

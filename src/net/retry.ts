/**
 * Retry with exponential backoff and jitter (p-retry). Only OtaErrors with retryable=true are
 * retried; everything else, and any abort, ends the loop at once. The policy numbers are options
 * so tests run with millisecond delays.
 */
import pRetry from 'p-retry';
import { OtaError, toOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { abortReasonToError } from './http-errors.js';

export interface RetryPolicy {
  /** Retries after the first attempt (so attempts = retries + 1). */
  retries: number;
  /** Delay before the first retry. */
  minDelayMs: number;
  /** Ceiling for any single delay. */
  maxDelayMs: number;
  /** Growth per retry. */
  factor: number;
  /** Multiply each delay by a random factor in [1, 2) so a fleet does not retry in lockstep. */
  jitter: boolean;
  /** Stop retrying once this much time has passed since the first attempt. */
  maxRetryTimeMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  retries: 5,
  minDelayMs: 1_000,
  maxDelayMs: 60_000,
  factor: 2,
  jitter: true,
  maxRetryTimeMs: Number.POSITIVE_INFINITY,
};

export interface RetryOptions {
  /** Names the operation in logs ("download", "fetch timestamp.json"). */
  operation: string;
  logger: Logger;
  policy?: Partial<RetryPolicy>;
  signal?: AbortSignal;
  /** A further filter: an error must be retryable AND pass this to be retried. */
  shouldRetry?: (error: OtaError) => boolean;
}

/** Delay before retry number `retryIndex` (0-based), without jitter: the documented schedule. */
export function backoffDelayMs(policy: RetryPolicy, retryIndex: number): number {
  return Math.min(Math.round(policy.minDelayMs * policy.factor ** retryIndex), policy.maxDelayMs);
}

export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const policy: RetryPolicy = { ...defaultRetryPolicy, ...options.policy };
  const log = options.logger.child({ operation: options.operation });
  const signal = options.signal;
  const aborted = (): OtaError => abortReasonToError(signal?.reason, options.operation);
  try {
    return await pRetry(
      async (attempt) => {
        try {
          return await fn(attempt);
        } catch (error) {
          // An abort wins over whatever the attempt threw while being torn down.
          throw signal?.aborted === true ? aborted() : toOtaError(error);
        }
      },
      {
        retries: policy.retries,
        minTimeout: policy.minDelayMs,
        maxTimeout: policy.maxDelayMs,
        factor: policy.factor,
        randomize: policy.jitter,
        maxRetryTime: policy.maxRetryTimeMs,
        unref: true,
        ...(signal === undefined ? {} : { signal }),
        shouldRetry: ({ error }) => {
          if (signal?.aborted === true) return false;
          const ota = toOtaError(error);
          // CANCELLED is retryable for the machine (try the run later), never inside this loop.
          if (!ota.retryable || ota.code === 'CANCELLED') return false;
          return options.shouldRetry === undefined || options.shouldRetry(ota);
        },
        onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
          const ota = toOtaError(error);
          log.warn(`${options.operation}: attempt ${attemptNumber} failed`, {
            code: ota.code,
            retryable: ota.retryable,
            retriesLeft,
            error: ota.message,
          });
        },
      },
    );
  } catch (error) {
    if (signal?.aborted === true) throw aborted();
    throw toOtaError(error);
  }
}

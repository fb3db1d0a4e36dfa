/**
 * The sleep port used by probation: wait `ms` of clock time, or settle early (rejecting) when
 * `signal` aborts, WITHOUT that time passing. realSleep uses timers; manualSleep drives a
 * ManualClock so tests run a ten-minute probation in microseconds.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ManualClock } from '../core/clock.js';

export type Sleep = (ms: number, signal?: AbortSignal) => Promise<void>;

export const realSleep: Sleep = async (ms, signal) => {
  await delay(ms, undefined, signal === undefined ? undefined : { signal });
};

/**
 * A sleep for tests: yields one macrotask (so promptly settling work wins a race against it),
 * then, unless aborted meanwhile, moves the clock forward by `ms` and resolves.
 */
export function manualSleep(clock: ManualClock): Sleep {
  return (ms, signal) =>
    new Promise((resolve, reject) => {
      setImmediate(() => {
        if (signal?.aborted) return reject(signal.reason ?? new Error('aborted'));
        clock.advance(ms);
        resolve();
      });
    });
}

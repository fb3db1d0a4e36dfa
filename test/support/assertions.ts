/** Small assertions shared by tests. */
import { expect } from 'vitest';
import { OtaError } from '../../src/core/errors.js';

/** Awaits a promise that must reject with an OtaError, and returns the error for further checks. */
export async function rejection(promise: Promise<unknown>): Promise<OtaError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(OtaError);
    return error as OtaError;
  }
  throw new Error('expected the promise to reject');
}

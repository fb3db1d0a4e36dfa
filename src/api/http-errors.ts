/**
 * One error shape for every interface: `{ error: { code, message, details? } }`, and the one table
 * that maps a stable error code to an HTTP status. Anything without a known API meaning becomes a
 * generic 500 whose body says nothing about internals (the real error goes to the log only).
 */
import { isOtaError, OtaError, type ErrorCode } from '../core/errors.js';

export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  API_INVALID_REQUEST: 400,
  API_INVALID_EVENT: 400,
  SOURCE_UNKNOWN: 400,
  API_UNAUTHORIZED: 401,
  API_FORBIDDEN: 403,
  SOURCE_SWITCH_FORBIDDEN: 403,
  API_NOT_FOUND: 404,
  PRODUCT_UNKNOWN: 404,
  API_EVENT_NOT_ALLOWED: 409,
  ROLLBACK_NOTHING_TO_UNDO: 409,
  ROLLBACK_TARGET_MISMATCH: 409,
  SOURCE_SWITCH_BUSY: 409,
  REHEARSAL_BUSY: 409,
  REHEARSAL_INTERRUPTED: 409,
  REHEARSAL_UNAVAILABLE: 409,
  API_TOO_LARGE: 413,
  API_RATE_LIMITED: 429,
};

export const GENERIC_INTERNAL: ApiErrorBody = {
  error: { code: 'INTERNAL', message: 'otad could not handle this request; the reason is in the otad log' },
};

/** The HTTP status and body for anything thrown by a handler; `internal` is true for a 500. */
export function toApiError(error: unknown): { status: number; body: ApiErrorBody; internal: boolean } {
  if (isOtaError(error)) {
    let status = STATUS[error.code];
    // "Name a product" (several products, none given) is a bad request, not a missing resource.
    if (error.code === 'PRODUCT_UNKNOWN' && error.details?.product === undefined) status = 400;
    if (status !== undefined) {
      const body: ApiErrorBody = { error: { code: error.code, message: error.message } };
      if (error.details !== undefined) body.error.details = error.details;
      return { status, body, internal: false };
    }
  }
  return { status: 500, body: GENERIC_INTERNAL, internal: true };
}

export function apiError(code: ErrorCode, message: string, details?: Record<string, unknown>): OtaError {
  return new OtaError(code, message, details === undefined ? {} : { details });
}

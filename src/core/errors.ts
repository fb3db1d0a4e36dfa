/**
 * The error hierarchy of otad. Every failure that can reach an operator carries a stable `code`
 * (documented in docs/errors.md), a `category` and whether retrying can help. Before an error
 * enters the machine's context or leaves through an interface it becomes plain data (ErrorData).
 */

export type ErrorCategory =
  | 'config' // the configuration is wrong: fix the file, retrying will not help
  | 'network' // transport trouble: usually transient
  | 'trust' // signatures, metadata, hashes: a security event
  | 'package' // the package itself is malformed or hostile
  | 'storage' // disk, database, filesystem
  | 'precondition' // not safe to update now: wait and re-check
  | 'execution' // hooks, services, apply
  | 'health' // the new release did not prove healthy
  | 'api' // a caller asked for something invalid
  | 'internal'; // a bug: report it

/** Stable error codes. The table in docs/errors.md lists each with its meaning and remedy. */
export const ErrorCodes = {
  // configuration
  CONFIG_INVALID: { category: 'config', retryable: false },
  CONFIG_NOT_FOUND: { category: 'config', retryable: false },
  CONFIG_PARSE: { category: 'config', retryable: false },
  CONFIG_UNKNOWN_KEY: { category: 'config', retryable: false },
  TOKENS_FILE_INSECURE: { category: 'config', retryable: false },
  SERVICE_UNRESOLVABLE: { category: 'config', retryable: false },
  PORT_IN_USE: { category: 'config', retryable: false },
  FILE_MODE_LOOSE: { category: 'config', retryable: false },
  PRODUCT_UNKNOWN: { category: 'config', retryable: false },
  STEP_NOT_CONFIGURED: { category: 'config', retryable: false },
  // process and storage
  ALREADY_RUNNING: { category: 'storage', retryable: false },
  STORE_FAILED: { category: 'storage', retryable: true },
  STORE_SCHEMA_TOO_NEW: { category: 'storage', retryable: false },
  DISK_FULL: { category: 'storage', retryable: true },
  IO_FAILED: { category: 'storage', retryable: true },
  STATE_NOT_SAVED: { category: 'storage', retryable: true },
  PATH_NOT_CREATABLE: { category: 'storage', retryable: false },
  STAGING_OTHER_FILESYSTEM: { category: 'storage', retryable: false },
  REPOSITORY_FOLDER_MISSING: { category: 'storage', retryable: true },
  // network
  NETWORK_OFFLINE: { category: 'network', retryable: true },
  NETWORK_TIMEOUT: { category: 'network', retryable: true },
  NETWORK_TOO_SLOW: { category: 'network', retryable: true },
  NETWORK_RESET: { category: 'network', retryable: true },
  HTTP_STATUS: { category: 'network', retryable: true },
  HTTP_NOT_FOUND: { category: 'network', retryable: false },
  // trust
  TRUST_SIGNATURE: { category: 'trust', retryable: false },
  TRUST_EXPIRED: { category: 'trust', retryable: false },
  TRUST_ROLLBACK: { category: 'trust', retryable: false },
  TRUST_MIX_AND_MATCH: { category: 'trust', retryable: false },
  TRUST_METADATA_TOO_LARGE: { category: 'trust', retryable: false },
  TRUST_METADATA_INVALID: { category: 'trust', retryable: false },
  TRUST_TARGET_UNKNOWN: { category: 'trust', retryable: false },
  TRUST_LENGTH_MISMATCH: { category: 'trust', retryable: false },
  TRUST_HASH_MISMATCH: { category: 'trust', retryable: false },
  TRUST_ROOT_CORRUPT: { category: 'trust', retryable: false },
  TRUST_ROOT_MISSING: { category: 'trust', retryable: false },
  CLOCK_NOT_SYNCED: { category: 'precondition', retryable: true },
  // release manifests
  MANIFEST_INVALID: { category: 'trust', retryable: false },
  MANIFEST_SCHEMA_UNSUPPORTED: { category: 'trust', retryable: false },
  RELEASE_WRONG_PRODUCT: { category: 'trust', retryable: false },
  RELEASE_DOWNGRADE: { category: 'trust', retryable: false },
  RELEASE_INCOMPATIBLE: { category: 'trust', retryable: false },
  RELEASE_VERSION_MISMATCH: { category: 'package', retryable: false },
  PUBLISH_CONTENT_CHANGED: { category: 'package', retryable: false },
  PUBLISH_OUTSIDE_DELEGATION: { category: 'trust', retryable: false },
  PUBLISH_DELEGATION_EXPIRED: { category: 'trust', retryable: false },
  PUBLISH_REPOSITORY_NOT_WRITABLE: { category: 'config', retryable: false },
  TRUST_DELEGATION_VIOLATION: { category: 'trust', retryable: false },
  RELEASE_REQUIREMENTS_UNMET: { category: 'precondition', retryable: false },
  RELEASE_INDEX_INVALID: { category: 'trust', retryable: false },
  // packages
  PACKAGE_UNSAFE_PATH: { category: 'package', retryable: false },
  PACKAGE_UNSAFE_LINK: { category: 'package', retryable: false },
  PACKAGE_UNSAFE_TYPE: { category: 'package', retryable: false },
  PACKAGE_UNSAFE_MODE: { category: 'package', retryable: false },
  PACKAGE_DUPLICATE_ENTRY: { category: 'package', retryable: false },
  PACKAGE_TOO_LARGE: { category: 'package', retryable: false },
  PACKAGE_CORRUPT: { category: 'package', retryable: false },
  PACKAGE_COMPRESSION_UNSUPPORTED: { category: 'package', retryable: false },
  RELEASE_TREE_MISMATCH: { category: 'package', retryable: false },
  DELTA_INVALID: { category: 'package', retryable: false },
  // download ahead and rehearsal
  STAGED_AHEAD_SUPERSEDED: { category: 'precondition', retryable: true },
  REHEARSAL_BUSY: { category: 'api', retryable: true },
  REHEARSAL_INTERRUPTED: { category: 'api', retryable: true },
  REHEARSAL_UNAVAILABLE: { category: 'api', retryable: false },
  // pre-conditions
  PRECHECK_FAILED: { category: 'precondition', retryable: true },
  // execution
  BACKUP_FAILED: { category: 'execution', retryable: true },
  BACKUP_CORRUPT: { category: 'execution', retryable: false },
  APPLY_FAILED: { category: 'execution', retryable: false },
  HOOK_FAILED: { category: 'execution', retryable: false },
  HOOK_TIMEOUT: { category: 'execution', retryable: false },
  SERVICE_FAILED: { category: 'execution', retryable: false },
  ROLLBACK_FAILED: { category: 'execution', retryable: false },
  ROLLBACK_NOTHING_TO_UNDO: { category: 'api', retryable: false },
  ROLLBACK_TARGET_MISMATCH: { category: 'api', retryable: false },
  // the channel and repository a product follows
  SOURCE_UNKNOWN: { category: 'api', retryable: false },
  SOURCE_SWITCH_FORBIDDEN: { category: 'api', retryable: false },
  SOURCE_SWITCH_BUSY: { category: 'api', retryable: true },
  // health
  HEALTH_CHECK_FAILED: { category: 'health', retryable: false },
  HEALTH_CHECK_TIMEOUT: { category: 'health', retryable: false },
  // recovery
  RECOVERY_CRASH_LOOP: { category: 'internal', retryable: false },
  RECOVERY_FOREIGN_SNAPSHOT: { category: 'internal', retryable: false },
  RECOVERY_INTERRUPTED: { category: 'internal', retryable: true },
  // api
  API_UNAUTHORIZED: { category: 'api', retryable: false },
  API_FORBIDDEN: { category: 'api', retryable: false },
  API_INVALID_REQUEST: { category: 'api', retryable: false },
  API_INVALID_EVENT: { category: 'api', retryable: false },
  API_EVENT_NOT_ALLOWED: { category: 'api', retryable: false },
  API_TOO_LARGE: { category: 'api', retryable: false },
  API_RATE_LIMITED: { category: 'api', retryable: true },
  API_NOT_FOUND: { category: 'api', retryable: false },
  TEMPLATE_CHANGED: { category: 'api', retryable: false },
  TEMPLATE_INVALID: { category: 'api', retryable: false },
  UPLOAD_OFFSET_MISMATCH: { category: 'api', retryable: true },
  UPLOAD_PATH_UNSAFE: { category: 'api', retryable: false },
  UPLOAD_TOO_MANY_FILES: { category: 'api', retryable: false },
  VERSION_TAKEN: { category: 'api', retryable: false },
  // fleet server: device authentication, rollouts, site leases (docs/fleet-protocol.md)
  DEVICE_AUTH_REQUIRED: { category: 'api', retryable: false },
  DEVICE_SIGNATURE_INVALID: { category: 'api', retryable: false },
  DEVICE_CLOCK_SKEW: { category: 'api', retryable: true },
  DEVICE_REPLAY: { category: 'api', retryable: false },
  DEVICE_KEY_CONFLICT: { category: 'api', retryable: false },
  DEVICE_PENDING: { category: 'precondition', retryable: true },
  DEVICE_REJECTED: { category: 'api', retryable: false },
  DEVICE_PENDING_LIMIT: { category: 'api', retryable: true },
  ROLLOUT_HALTED: { category: 'precondition', retryable: true },
  ROLLOUT_WAIT: { category: 'precondition', retryable: true },
  ROLLOUT_CONFLICT: { category: 'api', retryable: false },
  SITE_BUDGET_FULL: { category: 'precondition', retryable: true },
  LEASE_EXPIRED: { category: 'precondition', retryable: true },
  FLEET_UNREACHABLE: { category: 'network', retryable: true },
  FLEET_LEASE_REFUSED: { category: 'precondition', retryable: true },
  // metered links (docs/network.md#metered-links)
  METERED_WAIT: { category: 'precondition', retryable: true },
  METERED_BUDGET_EXHAUSTED: { category: 'precondition', retryable: true },
  // anything else
  CANCELLED: { category: 'internal', retryable: true },
  INTERNAL: { category: 'internal', retryable: false },
} as const satisfies Record<string, { category: ErrorCategory; retryable: boolean }>;

export type ErrorCode = keyof typeof ErrorCodes;

/** The JSON form of an error: what the machine's context, the database and the APIs hold. */
export interface ErrorData {
  code: ErrorCode;
  category: ErrorCategory;
  retryable: boolean;
  message: string;
  details?: Record<string, unknown>;
}

export class OtaError extends Error {
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OtaError';
    this.code = code;
    this.category = ErrorCodes[code].category;
    this.retryable = options.retryable ?? ErrorCodes[code].retryable;
    this.details = options.details;
  }

  toJSON(): ErrorData {
    return toErrorData(this);
  }
}

export function isOtaError(value: unknown): value is OtaError {
  return value instanceof OtaError;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ErrorCodes, value);
}

const NODE_CODE_MAP: Record<string, ErrorCode> = {
  ENOSPC: 'DISK_FULL',
  EDQUOT: 'DISK_FULL',
  ECONNRESET: 'NETWORK_RESET',
  ECONNREFUSED: 'NETWORK_OFFLINE',
  ENOTFOUND: 'NETWORK_OFFLINE',
  EAI_AGAIN: 'NETWORK_OFFLINE',
  ENETUNREACH: 'NETWORK_OFFLINE',
  EHOSTUNREACH: 'NETWORK_OFFLINE',
  ETIMEDOUT: 'NETWORK_TIMEOUT',
  EIO: 'IO_FAILED',
  EACCES: 'IO_FAILED',
  EPERM: 'IO_FAILED',
  EROFS: 'IO_FAILED',
  // better-sqlite3 reports SQLite's own result codes.
  SQLITE_FULL: 'DISK_FULL',
  SQLITE_IOERR: 'IO_FAILED',
  SQLITE_READONLY: 'IO_FAILED',
  SQLITE_CORRUPT: 'STORE_FAILED',
  SQLITE_CANTOPEN: 'STORE_FAILED',
};

/**
 * The one place that turns anything thrown into recorded, reported state. Unknown throwables
 * become INTERNAL; Node system errors with a known errno keep their meaning (ENOSPC → DISK_FULL).
 */
export function toErrorData(error: unknown): ErrorData {
  if (error instanceof OtaError) {
    const data: ErrorData = {
      code: error.code,
      category: error.category,
      retryable: error.retryable,
      message: error.message,
    };
    if (error.details !== undefined) data.details = jsonSafe(error.details);
    return data;
  }
  if (isPlainErrorData(error)) return error;
  if (error instanceof Error) {
    if (error.name === 'AbortError') {
      return { code: 'CANCELLED', category: 'internal', retryable: true, message: error.message || 'cancelled' };
    }
    const errno = (error as NodeJS.ErrnoException).code;
    // SQLite extended codes (SQLITE_IOERR_WRITE) map as their primary code.
    const mapped = errno === undefined ? undefined : (NODE_CODE_MAP[errno] ?? NODE_CODE_MAP[errno.replace(/^(SQLITE_[A-Z]+)_.*$/, '$1')]);
    if (mapped !== undefined) {
      const meta = ErrorCodes[mapped];
      return { code: mapped, category: meta.category, retryable: meta.retryable, message: error.message };
    }
    return { code: 'INTERNAL', category: 'internal', retryable: false, message: error.message };
  }
  return { code: 'INTERNAL', category: 'internal', retryable: false, message: String(error) };
}

export function fromErrorData(data: ErrorData): OtaError {
  const options: { details?: Record<string, unknown>; retryable: boolean } = { retryable: data.retryable };
  if (data.details !== undefined) options.details = data.details;
  return new OtaError(data.code, data.message, options);
}

function isPlainErrorData(value: unknown): value is ErrorData {
  if (typeof value !== 'object' || value === null || value instanceof Error) return false;
  const v = value as Record<string, unknown>;
  return isErrorCode(v.code) && typeof v.message === 'string' && typeof v.category === 'string' && typeof v.retryable === 'boolean';
}

function jsonSafe(details: Record<string, unknown>): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(details)) as Record<string, unknown>;
  } catch {
    return { note: 'details were not serialisable' };
  }
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && (error.name === 'AbortError' || (error as NodeJS.ErrnoException).code === 'ABORT_ERR');
}

/**
 * Anything thrown as an OtaError, with the original as the cause. An OtaError stays as it is.
 * Given a `fallback` code and a `message` saying what was being done: ENOSPC/EDQUOT become
 * DISK_FULL, an abort becomes CANCELLED, and any other failure becomes `fallback`. Without them,
 * the error keeps the meaning toErrorData gives it (a known errno keeps its code, else INTERNAL).
 */
export function toOtaError(error: unknown, fallback?: ErrorCode, message?: string, details?: Record<string, unknown>): OtaError {
  if (error instanceof OtaError) return error;
  if (fallback === undefined) {
    const data = toErrorData(error);
    return new OtaError(data.code, data.message, { cause: error, retryable: data.retryable });
  }
  const what = message ?? 'operation failed';
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = error instanceof Error ? error.message : String(error);
  const opts = { cause: error, details: { ...(details ?? {}), ...(errno === undefined ? {} : { errno }) } };
  if (errno === 'ENOSPC' || errno === 'EDQUOT') return new OtaError('DISK_FULL', `${what}: the disk is full (${reason})`, opts);
  if (isAbortError(error)) return new OtaError('CANCELLED', `${what}: cancelled`, opts);
  return new OtaError(fallback, `${what}: ${reason}`, opts);
}

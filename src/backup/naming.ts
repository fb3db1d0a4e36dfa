/**
 * Backup file names: `<product>_<version>_<UTC yyyymmddThhmmssZ>_<deviceId>.tar.gz`, with the
 * checksum beside it in `<name>.sha256`. Underscore separates the fields, so no field may hold one.
 */
import { OtaError } from '../core/errors.js';

export const BACKUP_SUFFIX = '.tar.gz';
export const CHECKSUM_SUFFIX = '.sha256';

const ID = /^[A-Za-z0-9][A-Za-z0-9.-]*$/;
const VERSION = /^[0-9A-Za-z][0-9A-Za-z.+-]*$/;
const NAME = /^([A-Za-z0-9][A-Za-z0-9.-]*)_([0-9A-Za-z][0-9A-Za-z.+-]*)_(\d{8}T\d{6}Z)_([A-Za-z0-9][A-Za-z0-9.-]*)\.tar\.gz$/;

export interface BackupNameParts {
  product: string;
  version: string;
  /** Milliseconds since the epoch, whole seconds. */
  createdAt: number;
  deviceId: string;
}

export function formatBackupTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z').replace(/[-:]/g, '');
}

export function parseBackupTime(stamp: string): number | null {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(stamp);
  if (m === null) return null;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return formatBackupTime(ms) === stamp ? ms : null;
}

export function backupName(parts: BackupNameParts): string {
  checkPart('product', parts.product, ID);
  checkPart('version', parts.version, VERSION);
  checkPart('device id', parts.deviceId, ID);
  if (!Number.isFinite(parts.createdAt)) throw invalid('time', String(parts.createdAt));
  return `${parts.product}_${parts.version}_${formatBackupTime(parts.createdAt)}_${parts.deviceId}${BACKUP_SUFFIX}`;
}

/** The fields of a backup file name, or null when the name is not one of ours. */
export function parseBackupName(name: string): BackupNameParts | null {
  const m = NAME.exec(name);
  if (m === null) return null;
  const createdAt = parseBackupTime(m[3] as string);
  if (createdAt === null) return null;
  return { product: m[1] as string, version: m[2] as string, createdAt, deviceId: m[4] as string };
}

function checkPart(what: string, value: string, pattern: RegExp): void {
  if (!pattern.test(value)) throw invalid(what, value);
}

function invalid(what: string, value: string): OtaError {
  return new OtaError('CONFIG_INVALID', `backup ${what} "${value}" cannot be part of a backup name; expected letters, digits, "." and "-" (no "_" or "/")`, {
    details: { field: what, value },
  });
}

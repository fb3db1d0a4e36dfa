/**
 * otad's private folders (state, cache, backups) are 0700 whatever the umask or whoever created
 * them first: the database, trusted metadata, journals and backups (which hold preserved product
 * configuration) are nobody else's business. A folder that exists with looser bits and belongs to
 * this user is tightened, and the caller logs that it was; one owned by someone else is left as
 * it is (otad does not take over a folder it did not create) and `otad --check-config` reports it.
 */
import { chmodSync, mkdirSync, statSync } from 'node:fs';

export interface PrivateDirResult {
  dir: string;
  /** The mode it had when otad tightened it, or null when it was already private or new. */
  tightenedFrom: number | null;
}

export function ensurePrivateDir(dir: string): PrivateDirResult {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const mode = st.mode & 0o777;
  if ((mode & 0o077) === 0) return { dir, tightenedFrom: null };
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return { dir, tightenedFrom: null };
  chmodSync(dir, 0o700);
  return { dir, tightenedFrom: mode };
}

/**
 * The inhibit lock file: the robot's app creates it while it must not be updated (on a mission)
 * and removes it afterwards. Reading it is the adapter; what its content means is the pure
 * `parseInhibitFile`; whether it still counts (expiry, maximum hold) is decided by the pre-check.
 *
 * Format (docs/pre-checks.md): JSON `{"holder": "...", "reason": "...", "expiresAt": ...}` with
 * expiresAt in ms since the epoch or as an ISO 8601 string, all fields optional. Any other
 * content still inhibits (the file's existence is the signal): its first line is the reason.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';

/** More than a holder, a reason and a date ever need; a huge file is not read whole. */
export const INHIBIT_FILE_MAX_BYTES = 4096;

export interface InhibitFileContent {
  content: string;
  /** Modification time (ms since the epoch): when the app last wrote the file. */
  mtimeMs: number;
}

export interface InhibitFilePort {
  /** null when there is no inhibit file. */
  read(path: string): Promise<InhibitFileContent | null>;
}

export interface ParsedInhibit {
  holder: string;
  reason: string;
  /** null when the file sets no expiry: the maximum hold time applies. */
  expiresAt: number | null;
  /** Set when the content was not the JSON format, or a field was unusable. */
  problem?: string;
}

export function createInhibitFileAdapter(): InhibitFilePort {
  return {
    async read(path) {
      let handle;
      try {
        // O_NOFOLLOW: the file is in a folder the app can write; a symlink there could make otad read
        // (and log) any file on the robot.
        handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
      try {
        const st = await handle.stat();
        if (!st.isFile()) return { content: '', mtimeMs: st.mtimeMs };
        const buffer = Buffer.alloc(INHIBIT_FILE_MAX_BYTES);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
        return { content: buffer.subarray(0, bytesRead).toString('utf8'), mtimeMs: st.mtimeMs };
      } finally {
        await handle.close();
      }
    },
  };
}

export function parseInhibitFile(content: string): ParsedInhibit {
  const text = content.trim();
  if (text.startsWith('{')) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      return { holder: 'unknown', reason: firstLine(text), expiresAt: null, problem: 'content looks like JSON but does not parse' };
    }
    if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
      const d = doc as Record<string, unknown>;
      const holder = typeof d.holder === 'string' && d.holder.trim() !== '' ? clip(d.holder.trim(), 64) : 'unknown';
      const reason = typeof d.reason === 'string' ? clip(d.reason.trim(), 256) : '';
      const expiry = parseExpiry(d.expiresAt);
      return { holder, reason, expiresAt: expiry.value, ...(expiry.problem === undefined ? {} : { problem: expiry.problem }) };
    }
  }
  return { holder: 'unknown', reason: firstLine(text), expiresAt: null, ...(text === '' ? {} : { problem: 'content is not the JSON format' }) };
}

function parseExpiry(value: unknown): { value: number | null; problem?: string } {
  if (value === undefined || value === null) return { value: null };
  if (typeof value === 'number' && Number.isFinite(value)) return { value };
  if (typeof value === 'string') {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return { value: ms };
  }
  return { value: null, problem: `expiresAt ${JSON.stringify(value)} is neither ms since the epoch nor an ISO 8601 time; the maximum hold applies` };
}

function firstLine(text: string): string {
  return clip(text.split('\n')[0]?.trim() ?? '', 256);
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * Log lines for journald. When stdout is a journal stream, each line starts with its syslog
 * priority in the sd-daemon(3) prefix form (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug),
 * which journald strips and stores as PRIORITY= (so `journalctl -p err` finds the errors), and the
 * rest reads as text: "message product=robot-ai runId=… key=value". journald stamps its own time,
 * unit and pid, so the line carries neither a timestamp nor the service name.
 */
import { fstatSync } from 'node:fs';

const PRIORITY: Record<string, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/**
 * systemd sets JOURNAL_STREAM to "device:inode" of the stream it connected to stdout/stderr
 * (systemd.exec(5)). It is inherited by children whose stdout goes elsewhere, so it counts only
 * when it names the very file descriptor we write to.
 */
export function isJournalStream(env: NodeJS.ProcessEnv, fd = 1): boolean {
  const value = env['JOURNAL_STREAM'];
  const m = value ? /^(\d+):(\d+)$/.exec(value) : null;
  if (!m) return false;
  try {
    const st = fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]!) && st.ino === BigInt(m[2]!);
  } catch {
    return false;
  }
}

/** The fields that say which product and run a line belongs to come first. */
const LEADING = ['product', 'runId'];

function formatValue(value: unknown): string {
  if (value === undefined) return 'undefined';
  const text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  // A bare word stays bare; anything a reader could split wrongly (spaces, quotes, '=', newlines) is quoted.
  return typeof value === 'string' && /^[^\s"=\\]+$/.test(text) ? text : typeof value === 'string' ? JSON.stringify(text) : text;
}

/** One journal line, without the trailing newline. A newline in the message would start a new journal entry: it is escaped. */
export function formatJournalLine(level: string, message: string, fields: Record<string, unknown>): string {
  const keys = [...LEADING.filter((k) => fields[k] !== undefined), ...Object.keys(fields).filter((k) => !LEADING.includes(k) && fields[k] !== undefined)];
  const parts = [message.replace(/\r?\n/g, '\\n'), ...keys.map((k) => `${k}=${formatValue(fields[k])}`)];
  return `<${PRIORITY[level] ?? 6}>${parts.join(' ')}`;
}

/**
 * The winston-backed Logger: structured JSON lines on stdout, or under journald (`journal`) text
 * lines with a syslog priority prefix (journal-format.ts), and an optional JSON file; a separate audit channel for security-relevant events. The last lines are kept in memory
 * for the logs endpoint, and every line can be observed (the event bus streams them).
 */
import winston from 'winston';
import type { AuditEvent, AuditSink, LogFields, Logger } from './logger.js';
import { formatJournalLine } from './journal-format.js';

export interface LogLine {
  time: number;
  level: string;
  message: string;
  fields: LogFields;
}

export interface LoggingOptions {
  level: 'error' | 'warn' | 'info' | 'debug';
  file?: string | undefined;
  auditFile?: string | undefined;
  /** Write to stdout (default true). */
  stdout?: boolean;
  /** stdout is a journald stream (isJournalStream): priority-prefixed text lines instead of JSON. */
  journal?: boolean;
  /** How many lines the in-memory tail keeps. */
  tailSize?: number;
  now?: () => number;
}

export interface Logging {
  logger: Logger;
  audit: AuditSink;
  tail(filter?: { level?: string; limit?: number; since?: number; contains?: string; product?: string }): LogLine[];
  onLine(listener: (line: LogLine) => void): () => void;
  setLevel(level: LoggingOptions['level']): void;
  close(): Promise<void>;
}

const LEVELS: Record<string, number> = { error: 0, warn: 1, info: 2, debug: 3 };

/** Fields that must never reach a log: tokens and secrets are redacted wherever they appear. */
const SECRET_KEYS = /^(authorization|token|password|secret|privateKey|bearer)$/i;

export function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEYS.test(k)) out[k] = '[redacted]';
    else if (v instanceof Error) out[k] = { message: v.message, ...(('code' in v) ? { code: (v as { code: unknown }).code } : {}) };
    else out[k] = v;
  }
  return out;
}

/** Log files are created 0640 (owner writes, group adm reads, as deploy/logrotate recreates them); appended to, never truncated. */
export const LOG_FILE_OPTIONS = { flags: 'a', mode: 0o640 } as const;

/** Winston's own keys on a log entry; everything else is a field of the line. */
const ENTRY_KEYS = new Set(['level', 'message', 'timestamp', 'service']);

/** Rewrites the line a transport writes: journald stamps time, unit and pid itself. */
function journalFormat(): winston.Logform.Format {
  return winston.format((info) => {
    const fields = Object.fromEntries(Object.entries(info).filter(([k]) => !ENTRY_KEYS.has(k)));
    (info as Record<symbol, unknown>)[Symbol.for('message')] = formatJournalLine(info.level, String(info.message), fields);
    return info;
  })();
}

export function createLogging(opts: LoggingOptions): Logging {
  const now = opts.now ?? Date.now;
  const tailSize = opts.tailSize ?? 2000;
  const lines: LogLine[] = [];
  const listeners = new Set<(line: LogLine) => void>();

  const transports: winston.transport[] = [];
  if (opts.stdout !== false) transports.push(new winston.transports.Console(opts.journal ? { format: journalFormat() } : {}));
  if (opts.file) transports.push(new winston.transports.File({ filename: opts.file, options: LOG_FILE_OPTIONS }));
  // winston warns about a logger without transports; the in-memory tail still keeps every line.
  if (transports.length === 0) transports.push(new winston.transports.Console({ silent: true }));
  const main = winston.createLogger({
    level: opts.level,
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: 'otad' },
    transports,
  });

  // Each audit event is written once per destination: the main stream (stdout/journald and the log
  // file) carries it as a line with channel "audit", and the audit file, when configured, gets its
  // own copy. The audit logger does not also write to stdout, which printed every event twice.
  const auditTransports: winston.transport[] = [];
  if (opts.auditFile) auditTransports.push(new winston.transports.File({ filename: opts.auditFile, options: LOG_FILE_OPTIONS }));
  if (auditTransports.length === 0) auditTransports.push(new winston.transports.Console({ silent: true }));
  const auditLogger = winston.createLogger({
    level: 'info',
    format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: 'otad', channel: 'audit' },
    transports: auditTransports,
  });

  let level = opts.level;
  // After close() the winston streams are ended: late lines (a child process exiting) stay in memory only.
  let closed = false;

  function record(lvl: string, message: string, fields: LogFields): void {
    if ((LEVELS[lvl] ?? 2) > (LEVELS[level] ?? 2)) return;
    const safe = redact(fields);
    const line: LogLine = { time: now(), level: lvl, message, fields: safe };
    lines.push(line);
    if (lines.length > tailSize) lines.splice(0, lines.length - tailSize);
    if (!closed) main.log(lvl, message, safe);
    for (const l of listeners) {
      try {
        l(line);
      } catch {
        // A listener must never break logging.
      }
    }
  }

  function make(base: LogFields): Logger {
    return {
      debug: (m, f) => record('debug', m, { ...base, ...f }),
      info: (m, f) => record('info', m, { ...base, ...f }),
      warn: (m, f) => record('warn', m, { ...base, ...f }),
      error: (m, f) => record('error', m, { ...base, ...f }),
      child: (f) => make({ ...base, ...f }),
    };
  }

  const audit: AuditSink = {
    audit(event: AuditEvent) {
      const fields = redact({ ...event.details, kind: event.kind, product: event.product, runId: event.runId, actor: event.actor });
      if (!closed) auditLogger.info(event.message, fields);
      record('info', `audit: ${event.message}`, { channel: 'audit', ...fields });
    },
  };

  return {
    logger: make({}),
    audit,
    tail(filter = {}) {
      const max = filter.level ? (LEVELS[filter.level] ?? 3) : 3;
      const out = lines.filter(
        (l) =>
          (LEVELS[l.level] ?? 2) <= max &&
          (filter.since === undefined || l.time >= filter.since) &&
          (filter.contains === undefined || l.message.includes(filter.contains)) &&
          // "-": lines of otad itself, about no product.
          (filter.product === undefined || (filter.product === '-' ? l.fields.product === undefined : l.fields.product === filter.product)),
      );
      return out.slice(-(filter.limit ?? 200));
    },
    onLine(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    setLevel(l) {
      level = l;
      main.level = l;
    },
    async close() {
      if (closed) return;
      closed = true;
      // The logger's own 'finish' comes before its file transports have written their last
      // lines; a process that exits right after close() (exit 78 on a bad configuration) would lose
      // the line that says why. So wait for every transport too, with a bound for a stuck disk.
      const finished = (emitter: { once(event: 'finish', fn: () => void): unknown }) => new Promise<void>((resolve) => emitter.once('finish', resolve));
      const all = [main, auditLogger].flatMap((lg) => [finished(lg), ...lg.transports.map((t) => finished(t))]);
      for (const lg of [main, auditLogger]) lg.end();
      await Promise.race([Promise.all(all), new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]);
    },
  };
}

/**
 * The logging port. Steps and adapters receive a Logger; only src/core/logging.ts builds the
 * winston-backed one. `audit` is the separate channel for security-relevant events.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export type AuditKind =
  | 'install'
  | 'rollback'
  | 'signature-failure'
  | 'trust-failure'
  | 'api-auth-failure'
  | 'api-control'
  | 'config-reload'
  | 'recovery'
  | 'package-rejected'
  | 'delta-fallback'
  | 'staged-ahead'
  | 'rehearsal'
  | 'key-rotation'
  | 'upload'
  | 'studio-publish'
  | 'studio-template-saved'
  | 'device-refused'
  | 'device-pending'
  | 'device-accepted'
  | 'device-rejected'
  | 'device-tags'
  | 'device-preauthorized'
  | 'rollout-created'
  | 'rollout-halted'
  | 'rollout-resumed'
  | 'rollout-batch-opened'
  | 'rollout-done';

export interface AuditEvent {
  kind: AuditKind;
  message: string;
  product?: string;
  runId?: string;
  actor?: string;
  details?: Record<string, unknown>;
}

export interface AuditSink {
  audit(event: AuditEvent): void;
}

/** A logger that drops everything: for pure code paths and tests that do not read logs. */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};

/** A logger that keeps lines in memory: tests assert on what was said. */
export class MemoryLogger implements Logger {
  readonly lines: Array<{ level: string; message: string; fields: LogFields }> = [];
  constructor(private readonly base: LogFields = {}, private readonly sink?: MemoryLogger) {}

  private push(level: string, message: string, fields: LogFields = {}): void {
    (this.sink ?? this).lines.push({ level, message, fields: { ...this.base, ...fields } });
  }
  debug(message: string, fields?: LogFields): void { this.push('debug', message, fields); }
  info(message: string, fields?: LogFields): void { this.push('info', message, fields); }
  warn(message: string, fields?: LogFields): void { this.push('warn', message, fields); }
  error(message: string, fields?: LogFields): void { this.push('error', message, fields); }
  child(fields: LogFields): Logger { return new MemoryLogger({ ...this.base, ...fields }, this.sink ?? this); }
}

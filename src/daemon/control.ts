/**
 * The daemon's surface for the edges (REST, Socket.IO, D-Bus, otactl): read state, dispatch an
 * allow-listed event. Handlers depend on this interface only, never on the store or the machine.
 */
import type { ChoiceRecord, ErrorInfo, EventSource, Offer, PreCheckReason, PublicEventType, RunOutcome } from '../../machines/types.js';
import type { AuditRecord, InhibitRecord, PageQuery, ReleaseRecord, RunRecord, TransitionRecord } from '../store/store.js';
import type { LogLine } from '../core/logging.js';
import type { EventBus, ProgressMessage } from './event-bus.js';
import type { ProductDefinition, RepositoryStatus } from './repository-status.js';

export interface ProductStatus {
  product: string;
  state: string;
  runId: string | null;
  runKind: string | null;
  installedVersion: string | null;
  offeredVersion: string | null;
  offer: Offer | null;
  releaseNotes: string | null;
  choice: ChoiceRecord | null;
  /** Events the product accepts now. */
  allowedEvents: PublicEventType[];
  deadlines: { choice: number | null; confirm: number | null; scheduledAt: number | null; preCheckRetryAt: number | null };
  nextCheckAt: number | null;
  preCheckReasons: PreCheckReason[];
  progress: ProgressMessage | null;
  lastCheckAt: number | null;
  lastOutcome: RunOutcome | null;
  error: ErrorInfo | null;
  notification: { version: string; notes: string; foundAt: number } | null;
  recovery: { action: string; reason: string } | null;
}

export interface DaemonStatus {
  deviceId: string;
  otadVersion: string;
  machineVersion: number;
  environment: string;
  simulation: boolean;
  startedAt: number;
  now: number;
  stepsConfigured: boolean;
  products: ProductStatus[];
  inhibits: InhibitRecord[];
  network: Record<string, unknown> | null;
}

export interface DispatchRequest {
  product?: string;
  /** Validated against PUBLIC_EVENTS: anything else is refused with API_INVALID_EVENT. */
  type: string;
  source: EventSource;
  /** Who asked (token name, D-Bus sender, user): for the audit log. */
  actor?: string;
  reason?: string;
}

export interface DispatchResult {
  product: string;
  event: PublicEventType;
  state: string;
  runId: string | null;
}

export interface InhibitRequest {
  holder: string;
  reason: string;
  /** Capped by configuration (inhibit.maxHold). */
  durationMs?: number;
  actor?: string;
  source: EventSource;
}

export interface RunExport {
  format: 'otad-run/1';
  exportedAt: number;
  deviceId: string;
  machineVersion: number;
  run: RunRecord;
  /** The snapshot the machine was in before the run's first transition (null: a fresh machine). */
  initialSnapshot: unknown;
  transitions: TransitionRecord[];
}

export interface DaemonControl {
  status(): DaemonStatus;
  dispatch(request: DispatchRequest): Promise<DispatchResult>;
  history(q?: PageQuery): RunRecord[];
  transitions(q?: PageQuery): TransitionRecord[];
  logs(q?: { level?: string; limit?: number; since?: number; contains?: string }): LogLine[];
  audit(limit?: number): AuditRecord[];
  releases(product?: string): ReleaseRecord[];
  acknowledge(product: string, version: string | null, source: EventSource, actor?: string): number;
  holdInhibit(request: InhibitRequest): InhibitRecord;
  releaseInhibit(holder: string, source: EventSource, actor?: string): boolean;
  exportRun(runId: string): RunExport;
  /** Each product's definition from configuration: install path, services, health checks, preserved paths. */
  productDefinitions(): ProductDefinition[];
  /** Each product's repository as otad sees it: reachability and latency (probed by otad), metadata expiry, last successful check. */
  repositories(): Promise<RepositoryStatus[]>;
  health(): { ok: boolean; products: Array<{ product: string; state: string }>; uptimeMs: number };
  readonly bus: EventBus;
}

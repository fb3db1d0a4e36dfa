/**
 * The daemon's surface for the edges (REST, Socket.IO, D-Bus, otactl): read state, dispatch an
 * allow-listed event. Handlers depend on this interface only, never on the store or the machine.
 */
import type { ChoiceRecord, ErrorInfo, EventSource, Offer, PreCheckReason, PublicEventType, RunOutcome } from '../../machines/types.js';
import type { AuditRecord, InhibitRecord, PageQuery, ReleaseRecord, RunRecord, TransitionRecord } from '../store/store.js';
import type { LogLine } from '../core/logging.js';
import type { Downtime, DowntimeSummary } from '../store/downtime.js';
import type { EventBus, ProgressMessage } from './event-bus.js';
import type { ProductDefinition, RepositoryStatus } from './repository-status.js';
import type { ProductSource } from './source-selection.js';
import type { MaintenanceRequest, MaintenanceStatus } from './maintenance.js';
import type { AppReport, RobotStateStatus } from './robot-state.js';
import type { DownloadAheadStatus } from './download-ahead.js';
import type { RehearsalReport } from './rehearsal.js';

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
  /** The downtime of the product's newest run that stopped its services (null: none yet). */
  lastDowntime: ({ runId: string } & Downtime) | null;
  error: ErrorInfo | null;
  notification: { version: string; notes: string; foundAt: number } | null;
  recovery: { action: string; reason: string } | null;
  /**
   * The machine moved but the move could not be saved (disk full, I/O error): `state` and the rest
   * stay what the database holds, `to` is where it moved, and otad retries the save on its own.
   * Null (or absent): everything is saved.
   */
  saveFailure?: { to: string; error: ErrorInfo; attempts: number; since: number; nextAttemptAt: number | null } | null;
  /**
   * Where a rollback would go, as of the product's last state change (null: nothing to go back
   * to, or this daemon has no view of the disk). When it is null for a real install, ROLLBACK is
   * not among allowedEvents.
   */
  rollbackTarget: RollbackTarget | null;
  /** The mission lease: in maintenance now (dispatch no missions), the request waiting for an answer, the last answer. */
  maintenance: MaintenanceStatus;
  /** Download ahead of the install slot (schedule.downloadAhead): what is staged, waiting or failed, and the last discard. */
  downloadAhead?: DownloadAheadStatus;
}

export interface RollbackTarget {
  /** The release a rollback returns to; null only when a failed first install is undone. */
  version: string | null;
  method: 'previous-release' | 'backup' | 'undo-first-install';
  /** The release the rollback leaves (removed from disk; marked bad only when asked, or after a failure). */
  leaves: string | null;
}

export interface BadMarkInfo {
  at: number;
  reason: string;
  /** 'automatic': a failed apply or validation, a rejected package, a crash loop; 'operator': someone asked. Null for marks recorded before this was kept. */
  by: 'automatic' | 'operator' | null;
  /** The operator (token name, D-Bus caller) or 'otad'. */
  actor: string | null;
  runId: string | null;
}

export interface ReleaseEntry {
  version: string;
  /** The version installed now. */
  installed: boolean;
  /** The version a rollback would return to. */
  previous: boolean;
  /** Kept as a release directory beside the live one. */
  onDisk: boolean;
  /** A backup of this version is in the backup directory. */
  backup: boolean;
  channel: string | null;
  releasedAt: number | null;
  /** When a check first found it (null: known only from disk). */
  foundAt: number | null;
  /** Null: not marked bad (it may be offered). */
  bad: BadMarkInfo | null;
}

export interface ReleaseHistory {
  product: string;
  installedVersion: string | null;
  rollbackTarget: RollbackTarget | null;
  /** Why there is nothing to roll back to (null when there is, or when the daemon cannot tell). */
  rollbackUnavailable: string | null;
  /** Newest first. */
  releases: ReleaseEntry[];
}

/** A switch of the channel and repository a product follows (either may be left as it is). */
export interface SourceRequest {
  product: string;
  channel?: string;
  repository?: string;
  source: EventSource;
  actor?: string;
}

export interface UnmarkRequest {
  product: string;
  version: string;
  source: EventSource;
  actor?: string;
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
  /** Leases (REST, otactl) and file-descriptor inhibitors (D-Bus Inhibit), oldest first. */
  inhibits: HeldInhibit[];
  network: Record<string, unknown> | null;
  /** The device key the fleet server knows this robot by (null: otad runs without one). */
  deviceKey: { publicKey: string; fingerprint: string } | null;
  /** Rollout halts the fleet server announced, honoured before any install of that version. */
  fleetHalts: Array<{ product: string; version: string; state: string; reason: string; learnedAt: number }>;
  /** The robot-state gates, the app's last reports and the last evaluation (docs/pre-checks.md). */
  robotState: RobotStateStatus;
}

export interface DispatchRequest {
  product?: string;
  /** Validated against PUBLIC_EVENTS: anything else is refused with API_INVALID_EVENT. */
  type: string;
  source: EventSource;
  /** Who asked (token name, D-Bus sender, user): for the audit log. */
  actor?: string;
  reason?: string;
  /** ROLLBACK only: also mark the release it leaves bad, so it is not offered again. */
  markBad?: boolean;
}

export interface DispatchResult {
  product: string;
  event: PublicEventType;
  state: string;
  runId: string | null;
}

/** An inhibit in force: a lease with an expiry, or one that lasts while its holder keeps a file descriptor open. */
export interface HeldInhibit {
  holder: string;
  reason: string;
  since: number;
  /** When a lease runs out unless renewed; null for an fd inhibitor (it ends when the holder closes the fd or dies). */
  expiresAt: number | null;
  kind: 'lease' | 'fd';
}

/** A file-descriptor inhibitor (D-Bus Inhibit): held until `release` is called, when the holder's fd closes. */
export interface FdInhibitRequest {
  who: string;
  why: string;
  mode: string;
  actor?: string;
  source: EventSource;
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
  /** Last, median and max downtime over the retained runs (of one product). */
  downtimeSummary(product?: string): DowntimeSummary;
  transitions(q?: PageQuery): TransitionRecord[];
  /** The transition log's retained range (index lookups only): what a resuming reader can still get. */
  transitionRange(): { oldest: number | null; latest: number; prunedThrough: number };
  logs(q?: { level?: string; limit?: number; since?: number; contains?: string; product?: string }): LogLine[];
  audit(limit?: number): AuditRecord[];
  releases(product?: string): ReleaseRecord[];
  /** Every release known for a product (found, on disk, backed up, marked bad) and where a rollback would go. */
  releaseHistory(product: string): Promise<ReleaseHistory>;
  /** Clear a bad mark (audited): the release may be offered again. API_NOT_FOUND when it is not marked bad. */
  unmarkRelease(request: UnmarkRequest): { product: string; version: string; cleared: BadMarkInfo };
  acknowledge(product: string, version: string | null, source: EventSource, actor?: string): number;
  /** GrantMaintenance / DenyMaintenance: answer the product's waiting maintenance request (an empty requestId: whichever is waiting); API_NOT_FOUND when none is. */
  answerMaintenance(request: { product: string; requestId: string; grant: boolean; reason: string | null; source: EventSource; actor: string }): MaintenanceRequest;
  holdInhibit(request: InhibitRequest): InhibitRecord;
  /** The app reports docked, charging, battery and stationary for the robot-state gates; each field is stamped on receipt. */
  reportRobotState?(report: AppReport, source: EventSource, actor: string): { accepted: Array<keyof AppReport>; at: number };
  releaseInhibit(holder: string, source: EventSource, actor?: string): boolean;
  /** Renew a lease for durationMs (default inhibit.leaseTtl, capped by inhibit.maxHold); null when no lease is held by this holder (it expired or was released). */
  renewInhibit(holder: string, durationMs: number | undefined, source: EventSource, actor?: string): InhibitRecord | null;
  /** Register a file-descriptor inhibitor; the returned function releases it (idempotent). */
  holdFdInhibit(request: FdInhibitRequest): { id: string; release: (why: string) => void };
  /** Every inhibit in force now (leases and fd inhibitors). */
  heldInhibits(): HeldInhibit[];
  exportRun(runId: string): RunExport;
  /** Each product's definition from configuration: install path, services, health checks, preserved paths. */
  productDefinitions(): ProductDefinition[];
  /** Each product's repository as otad sees it: reachability and latency (probed by otad), metadata expiry, last successful check. */
  repositories(): Promise<RepositoryStatus[]>;
  /** The channel and repository the product follows, the configured choices and whether switching is allowed. */
  productSource(product: string): ProductSource;
  /** Switch them (audited): SOURCE_UNKNOWN, SOURCE_SWITCH_FORBIDDEN or SOURCE_SWITCH_BUSY when refused. */
  selectSource(request: SourceRequest): ProductSource & { changed: boolean };
  /** Rehearse an update (check, pre-check, download, staging into a scratch folder; nothing installed): REHEARSAL_BUSY while a run executes. */
  rehearse(request: { product?: string; source: EventSource; actor?: string }): Promise<RehearsalReport>;
  health(): { ok: boolean; products: Array<{ product: string; state: string }>; uptimeMs: number };
  readonly bus: EventBus;
}

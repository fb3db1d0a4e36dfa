/**
 * The fleet server's store: devices, their keys and decisions, key conflicts, each product's last
 * report, a bounded check-in history, request nonces and an audit trail. One interface, two backends
 * (SQLite for one operator, PostgreSQL for fleets served by several processes); see sql-fleet-store.ts.
 * Rollouts and update leases are part of it too (their rules: src/server/rollouts/).
 */
import type { BatchSelector, Rollout, RolloutStep } from '../rollouts/rollout-model.js';

export type DeviceStatus = 'pending' | 'accepted' | 'rejected';

export type Tags = Record<string, string>;

export interface ProductReport {
  product: string;
  version: string | null;
  state: string;
  lastOutcome: string | null;
  error: string | null;
  runId: string | null;
  targetVersion: string | null;
  /** The downtime of the product's newest measured run, as the device reported it (absent: never reported). */
  downtime?: DowntimeReport | null;
}

/** A device's report of one run's downtime, milliseconds (docs/fleet-protocol.md). */
export interface DowntimeReport {
  runId: string;
  totalMs: number;
  stopMs: number;
  switchMs: number;
  startMs: number;
  probeMs: number;
  /** totalMs minus the product's start-up and the probe interval. */
  otadMs: number;
  greenOn: 'new' | 'old';
  acrossRestart: boolean;
  greenAt: number;
}

export interface ProductState extends ProductReport {
  updatedAt: number;
}

export interface KeyConflict {
  fingerprint: string;
  publicKey: string;
  source: string | null;
  firstSeen: number;
  lastSeen: number;
  count: number;
}

export interface Device {
  id: string;
  status: DeviceStatus;
  publicKey: string;
  fingerprint: string;
  /** What the robot reports, overlaid with what the operator set (the operator wins). */
  tags: Tags;
  reportedTags: Tags;
  operatorTags: Tags;
  site: string | null;
  source: string | null;
  /** null until the first check-in (a preauthorized device that has not called yet). */
  firstSeen: number | null;
  lastSeen: number | null;
  checkins: number;
  createdAt: number;
  decidedBy: string | null;
  decidedAt: number | null;
}

export interface DeviceView extends Device {
  products: ProductState[];
  conflicts: KeyConflict[];
}

export interface CheckinInput {
  deviceId: string;
  publicKey: string;
  nonce: string;
  /** The nonce is kept (and a replay refused) until then: the signature's timestamp plus the skew window. */
  nonceExpiresAt: number;
  source: string;
  now: number;
  report: ProductReport;
  /** The robot's tags; null (the body had none) keeps what it reported before. */
  reportedTags: Tags | null;
  /** Beyond this many pending devices an unknown device is refused. */
  maxPending: number;
}

/**
 * What the store decided, atomically with the nonce: anything but `pending` and `accepted` left
 * the database as it was (the nonce included), apart from the conflict row `conflict` records.
 */
export type CheckinOutcome =
  | { kind: 'replay' }
  | { kind: 'conflict'; device: Device; conflict: KeyConflict }
  | { kind: 'rejected'; device: Device }
  | { kind: 'pending-full'; pending: number }
  | { kind: 'pending'; device: Device; created: boolean }
  | {
      kind: 'accepted';
      device: Device;
      /** What the answer tells the robot: the halts and waits of its products, read in the check-in's transaction. */
      rollouts: RolloutNotice[];
      /** Active rollouts where this check-in made the device a failure: worth evaluating at once. */
      failedIn: string[];
    };

export interface AuditEntry {
  at: number;
  kind: string;
  message: string;
  deviceId?: string | null;
  source?: string | null;
  actor?: string | null;
  code?: string | null;
  details?: Record<string, unknown>;
}

export interface StoredAudit extends Required<Omit<AuditEntry, 'details'>> {
  id: number;
  details: Record<string, unknown> | null;
}

export interface Preauthorization {
  deviceId: string;
  publicKey: string;
  tags: Tags;
}

export interface ListDevicesQuery {
  limit: number;
  offset: number;
  status?: DeviceStatus;
  /** Devices whose id or site contains this text (case-insensitive). */
  search?: string;
}

export interface Retention {
  /** Check-ins kept per device (the newest). */
  checkinsPerDevice: number;
  /** Check-ins and audit entries older than this are removed. */
  maxAgeMs: number;
}

export interface CreateRolloutInput {
  product: string;
  version: string;
  batches: BatchSelector[];
  soakMs: number;
  failureThreshold: number;
  minReports: number;
}

/** A signed device request's identity, checked against the device record with its nonce. */
export interface DeviceRequestAuth {
  deviceId: string;
  publicKey: string;
  nonce: string;
  nonceExpiresAt: number;
  now: number;
  /** Where it came from (recorded with a key conflict). */
  source?: string;
}

/**
 * Why a signed device request was refused by the device record (sql-device-auth.ts, the same for
 * every device endpoint); nothing it sent was stored, apart from the conflict row `conflict` records.
 */
export type DeviceRefusal =
  | { kind: 'replay' }
  | { kind: 'unknown' }
  | { kind: 'conflict'; device: Device; conflict: KeyConflict }
  | { kind: 'rejected'; device: Device }
  | { kind: 'pending'; device: Device };

/** At most `default` unexpired leases per site (0: no budget), `sites` overriding it per site. */
export interface SiteBudgets {
  default: number;
  sites: Record<string, number>;
}

export interface Lease {
  id: string;
  deviceId: string;
  site: string | null;
  product: string;
  version: string;
  fromVersion: string | null;
  createdAt: number;
  ttlMs: number;
  expiresAt: number;
}

export interface LeaseRequest extends DeviceRequestAuth {
  product: string;
  version: string;
  fromVersion: string | null;
  ttlMs: number;
  budgets: SiteBudgets;
}

export type LeaseOutcome =
  | DeviceRefusal
  | { kind: 'granted'; lease: Lease }
  | { kind: 'halted' | 'wait'; rolloutId: string; reason: string }
  | { kind: 'budget-full'; site: string; max: number; held: number; retryAfterMs: number };

export type LeaseChange = DeviceRefusal | { kind: 'expired' } | { kind: 'renewed'; lease: Lease } | { kind: 'returned' };

/** What an accepted check-in's answer says about the rollouts of the device's products. */
export interface RolloutNotice {
  product: string;
  version: string;
  state: 'halted' | 'wait';
  reason: string;
}

export interface FleetStore {
  readonly backend: 'sqlite' | 'postgres';
  /**
   * The signed check-in: nonce, device decision, product state and history, the device's place in
   * the rollout counters, and the rollouts the answer names, in one transaction.
   */
  checkin(input: CheckinInput): Promise<CheckinOutcome>;
  getDevice(id: string): Promise<DeviceView | null>;
  listDevices(query: ListDevicesQuery): Promise<{ devices: DeviceView[]; total: number }>;
  countDevices(status?: DeviceStatus, search?: string): Promise<number>;
  /** accept or reject; null when there is no such device. */
  decide(id: string, status: 'accepted' | 'rejected', actor: string, now: number): Promise<Device | null>;
  /** Replaces the operator's tags of a device; null when there is no such device. */
  setOperatorTags(id: string, tags: Tags, actor: string, now: number): Promise<Device | null>;
  /** Accepts devices in advance with their keys (an existing record takes the listed key). */
  preauthorize(entries: readonly Preauthorization[], actor: string, now: number): Promise<{ created: number; updated: number }>;
  checkinHistory(deviceId: string, limit: number): Promise<Array<ProductReport & { at: number }>>;
  audit(entry: AuditEntry): Promise<void>;
  listAudit(limit: number, deviceId?: string): Promise<StoredAudit[]>;
  /** Removes expired nonces and leases, and history and audit past the retention; answers what it removed. */
  prune(now: number): Promise<{ nonces: number; checkins: number; audit: number; leases: number }>;
  /** A new rollout with batch 1 open; `exists` when this release already has one that is not done. */
  createRollout(input: CreateRolloutInput, actor: string, now: number): Promise<{ kind: 'created'; rollout: Rollout } | { kind: 'exists'; id: string }>;
  /** Newest first, each batch with its counts. */
  listRollouts(): Promise<Rollout[]>;
  getRollout(id: string): Promise<Rollout | null>;
  /** An operator's halt or resume; `unchanged` when the rollout was not in a state it applies to. */
  haltRollout(id: string, reason: string, actor: string, now: number): Promise<{ kind: 'changed' | 'unchanged'; rollout: Rollout } | null>;
  resumeRollout(id: string, actor: string, now: number): Promise<{ kind: 'changed' | 'unchanged'; rollout: Rollout } | null>;
  /**
   * Applies what each active rollout's counts call for (open, halt, finish), each change audited;
   * `ids`: only these rollouts. Reads each rollout's counters, not the fleet.
   */
  evaluateRollouts(now: number, ids?: readonly string[]): Promise<Array<{ rolloutId: string; step: RolloutStep }>>;
  /** The halts and waits the device must obey, over every product it has reported. */
  rolloutNotices(deviceId: string): Promise<RolloutNotice[]>;
  /** The rollout gate and the site's budget, atomically with the nonce and across processes. */
  requestLease(request: LeaseRequest): Promise<LeaseOutcome>;
  renewLease(auth: DeviceRequestAuth, leaseId: string): Promise<LeaseChange>;
  returnLease(auth: DeviceRequestAuth, leaseId: string): Promise<LeaseChange>;
  /** Unexpired leases, oldest first. */
  listLeases(now: number): Promise<Lease[]>;
  close(): Promise<void>;
}

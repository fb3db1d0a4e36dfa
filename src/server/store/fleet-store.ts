/**
 * The fleet server's store: devices, their keys and decisions, key conflicts, each product's last
 * report, a bounded check-in history, request nonces and an audit trail. One interface, two backends
 * (SQLite for one operator, PostgreSQL for fleets served by several processes); see sql-fleet-store.ts.
 * Later additions (rollouts, batches, leases) add methods here and a migration entry, nothing else.
 */
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
  | { kind: 'accepted'; device: Device };

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
}

export interface Retention {
  /** Check-ins kept per device (the newest). */
  checkinsPerDevice: number;
  /** Check-ins and audit entries older than this are removed. */
  maxAgeMs: number;
}

export interface FleetStore {
  readonly backend: 'sqlite' | 'postgres';
  /** The signed check-in: nonce, device decision, product state and history, in one transaction. */
  checkin(input: CheckinInput): Promise<CheckinOutcome>;
  getDevice(id: string): Promise<DeviceView | null>;
  listDevices(query: ListDevicesQuery): Promise<{ devices: DeviceView[]; total: number }>;
  countDevices(status?: DeviceStatus): Promise<number>;
  /** accept or reject; null when there is no such device. */
  decide(id: string, status: 'accepted' | 'rejected', actor: string, now: number): Promise<Device | null>;
  /** Replaces the operator's tags of a device; null when there is no such device. */
  setOperatorTags(id: string, tags: Tags, actor: string, now: number): Promise<Device | null>;
  /** Accepts devices in advance with their keys (an existing record takes the listed key). */
  preauthorize(entries: readonly Preauthorization[], actor: string, now: number): Promise<{ created: number; updated: number }>;
  checkinHistory(deviceId: string, limit: number): Promise<Array<ProductReport & { at: number }>>;
  audit(entry: AuditEntry): Promise<void>;
  listAudit(limit: number, deviceId?: string): Promise<StoredAudit[]>;
  /** Removes expired nonces and history and audit past the retention; answers what it removed. */
  prune(now: number): Promise<{ nonces: number; checkins: number; audit: number }>;
  close(): Promise<void>;
}

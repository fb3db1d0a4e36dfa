/**
 * D-Bus API v2, shaped like systemd-logind, RAUC and UPower: on the bus name io.otad.Daemon1,
 *  - /io/otad/Daemon1, interface io.otad.Manager1: the products (ListProducts, GetProduct), the
 *    inhibitors (Inhibit → fd, ListInhibitors) and daemon-wide properties;
 *  - /io/otad/Product/<escaped name>, interface io.otad.Product1: one object per product with typed
 *    properties that emit org.freedesktop.DBus.Properties.PropertiesChanged, typed methods and signals.
 * Every argument has a name in the introspection (dbus-next cannot name arguments, so NamedInterface
 * adds them to its introspection data). Refusals are D-Bus errors io.otad.Error.<CODE>. Control
 * methods go through the Edge, like REST and Socket.IO. The introspection is in docs/dbus/*.xml.
 */
import './usocket-compat.js';
import dbus from 'dbus-next';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DaemonControl, ProductStatus } from '../daemon/control.js';
import type { RehearsalReport } from '../daemon/rehearsal.js';
import type { Caller, Edge } from './edge.js';
import { toApiError } from './http-errors.js';

export const MANAGER_INTERFACE = 'io.otad.Manager1';
export const PRODUCT_INTERFACE = 'io.otad.Product1';
export const MANAGER_PATH = '/io/otad/Daemon1';
export const PRODUCT_PATH_PREFIX = '/io/otad/Product';
export const ERROR_PREFIX = 'io.otad.Error';

/** The states in which the product's services are stopped or restarted (the robot is not available for missions). */
export const MAINTENANCE_STATES: ReadonlySet<string> = new Set(['apply', 'validate', 'rollback']);

/**
 * A product name as a D-Bus object path element, escaped as systemd's sd_bus_path_encode does:
 * every byte outside [A-Za-z0-9] becomes _xx (lower-case hex), so robot-ai is robot_2dai.
 */
export function escapePathElement(name: string): string {
  if (name === '') return '_';
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

export function productPath(name: string): string {
  return `${PRODUCT_PATH_PREFIX}/${escapePathElement(name)}`;
}

/** Argument names per member: methods [in, out], signals [args]. */
type ArgNames = Record<string, { in?: string[]; out?: string[]; args?: string[] }>;

interface XmlArg {
  $: { name?: string; direction?: string; type: string };
}
interface XmlMember {
  $: { name: string };
  arg?: XmlArg[];
}
interface XmlInterface {
  method?: XmlMember[];
  signal?: XmlMember[];
}

/** An Interface whose introspection names every argument. */
class NamedInterface extends dbus.interface.Interface {
  constructor(
    name: string,
    private readonly argNames: ArgNames,
  ) {
    super(name);
  }
  /** dbus-next's own introspection data (not in its type declarations), with the argument names added. */
  $introspect(): unknown {
    const base = (dbus.interface.Interface.prototype as unknown as { $introspect: (this: unknown) => XmlInterface }).$introspect;
    const xml = base.call(this);
    for (const m of xml.method ?? []) {
      const names = this.argNames[m.$.name];
      let i = 0;
      let o = 0;
      for (const a of m.arg ?? []) {
        const n = a.$.direction === 'out' ? names?.out?.[o++] : names?.in?.[i++];
        if (n) a.$ = { name: n, ...a.$ };
      }
    }
    for (const s of xml.signal ?? []) {
      const names = this.argNames[s.$.name];
      (s.arg ?? []).forEach((a, k) => {
        const n = names?.args?.[k];
        if (n) a.$ = { name: n, ...a.$ };
      });
    }
    return xml;
  }
}

/** The typed property values of one product object. */
export interface ProductProps {
  Name: string;
  State: string;
  RunId: string;
  InstalledVersion: string;
  OfferedVersion: string;
  /** Bytes the offer downloads (the delta's length, else the package's); 0: no offer. */
  OfferedDownloadBytes: bigint;
  /** Percent of the current step (0-100), -1 while the step's total is unknown, 0 outside a step. */
  Progress: number;
  ProgressStep: string;
  LastOutcome: string;
  LastErrorCode: string;
  /** µs since the epoch of the next scheduled install or check; 0: none. */
  NextScheduled: bigint;
  Inhibited: boolean;
  Maintenance: boolean;
  AllowedEvents: string[];
  /**
   * (run_id, total_ms, stop_ms, switch_ms, start_ms, probe_ms, otad_ms, green_on, green_at_us): the
   * newest run's downtime once measured; run_id "" (and zeros) while its services are down, before
   * the first such run, or when it could not be measured.
   */
  LastDowntime: [string, number, number, number, number, number, number, string, bigint];
  /** (code, message) of every reason the last pre-check did not pass (robot-state gates included); empty once it passes. */
  PreCheckReasons: Array<[string, string]>;
}

const NO_DOWNTIME: ProductProps['LastDowntime'] = ['', 0, 0, 0, 0, 0, 0, '', 0n];

/** The LastDowntime struct of a product's status. */
export function lastDowntimeProp(p: Pick<ProductStatus, 'lastDowntime'>): ProductProps['LastDowntime'] {
  const d = p.lastDowntime;
  if (d === null || d.totalMs === null || d.otadMs === null || d.greenAt === null) return NO_DOWNTIME;
  return [d.runId, d.totalMs, d.stopMs, d.switchMs, d.startMs, d.probeMs, d.otadMs, d.greenOn ?? '', BigInt(Math.round(d.greenAt)) * 1000n];
}

const READ = dbus.interface.ACCESS_READ;

/** Equal D-Bus values: arrays and structs element by element. */
function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  return a === b;
}

export function propsFrom(p: ProductStatus, state: string, inhibited: boolean): ProductProps {
  const prog = p.progress;
  let progress = 0;
  if (prog) progress = prog.total && prog.total > 0 ? Math.min(100, (prog.bytes / prog.total) * 100) : -1;
  const next = p.deadlines.scheduledAt ?? p.nextCheckAt;
  return {
    Name: p.product,
    State: state,
    RunId: p.runId ?? '',
    InstalledVersion: p.installedVersion ?? '',
    OfferedVersion: p.offeredVersion ?? '',
    OfferedDownloadBytes: BigInt(p.offer?.downloadBytes ?? p.offer?.package.length ?? 0),
    Progress: progress,
    ProgressStep: prog?.step ?? '',
    LastOutcome: p.lastOutcome ?? '',
    LastErrorCode: p.error?.code ?? '',
    NextScheduled: next ? BigInt(Math.round(next)) * 1000n : 0n,
    Inhibited: inhibited,
    // The mission lease's window (from the grant until the run settles), or a disruptive state otad entered without one (a rollback after a restart).
    Maintenance: p.maintenance.active || MAINTENANCE_STATES.has(state),
    AllowedEvents: [...p.allowedEvents],
    LastDowntime: lastDowntimeProp(p),
    PreCheckReasons: p.preCheckReasons.map((r) => [r.code, r.message] as [string, string]),
  };
}

export interface ProductOps {
  event(type: string, extra?: { markBad?: boolean; reason?: string; expectVersion?: string }): Promise<[string, string]>;
  acknowledge(version: string): Promise<number>;
  unmark(version: string): Promise<void>;
  releases(): Promise<Array<[string, boolean, boolean, boolean, boolean, string, string]>>;
  maintenance(grant: boolean, requestId: string, reason: string): Promise<void>;
}

const PRODUCT_ARGS: ArgNames = {
  CheckNow: { out: ['state', 'run_id'] },
  UpdateNow: { out: ['state', 'run_id'] },
  UpdateAt3AM: { out: ['state', 'run_id'] },
  Confirm: { out: ['state', 'run_id'] },
  Cancel: { out: ['state', 'run_id'] },
  Reset: { out: ['state', 'run_id'] },
  Rollback: { in: ['version', 'mark_bad', 'reason'], out: ['state', 'run_id'] },
  Acknowledge: { in: ['version'], out: ['acknowledged'] },
  UnmarkBad: { in: ['version'] },
  GetReleases: { out: ['releases'] },
  GrantMaintenance: { in: ['request_id'] },
  DenyMaintenance: { in: ['request_id', 'reason'] },
  MaintenanceRequested: { args: ['request_id', 'run_id', 'version', 'timeout_ms'] },
  StateChanged: { args: ['from', 'to', 'run_id', 'cause'] },
  RunFinished: { args: ['run_id', 'outcome', 'version', 'error_code'] },
  UpdateAvailable: { args: ['version', 'notes'] },
};

export class ProductObject extends NamedInterface {
  props: ProductProps;
  constructor(
    initial: ProductProps,
    private readonly ops: ProductOps,
  ) {
    super(PRODUCT_INTERFACE, PRODUCT_ARGS);
    this.props = initial;
  }
  /** Replace the values; returns the ones that changed (for PropertiesChanged). */
  update(next: ProductProps): Partial<ProductProps> {
    const changed: Record<string, unknown> = {};
    for (const k of Object.keys(next) as Array<keyof ProductProps>) {
      const a = this.props[k];
      const b = next[k];
      if (!sameValue(a, b)) changed[k] = b;
    }
    this.props = next;
    return changed as Partial<ProductProps>;
  }
  get Name() { return this.props.Name; }
  get State() { return this.props.State; }
  get RunId() { return this.props.RunId; }
  get InstalledVersion() { return this.props.InstalledVersion; }
  get OfferedVersion() { return this.props.OfferedVersion; }
  get OfferedDownloadBytes() { return this.props.OfferedDownloadBytes; }
  get Progress() { return this.props.Progress; }
  get ProgressStep() { return this.props.ProgressStep; }
  get LastOutcome() { return this.props.LastOutcome; }
  get LastErrorCode() { return this.props.LastErrorCode; }
  get NextScheduled() { return this.props.NextScheduled; }
  get Inhibited() { return this.props.Inhibited; }
  get Maintenance() { return this.props.Maintenance; }
  get AllowedEvents() { return this.props.AllowedEvents; }
  get LastDowntime() { return this.props.LastDowntime; }
  get PreCheckReasons() { return this.props.PreCheckReasons; }

  CheckNow() { return this.ops.event('CHECK_NOW'); }
  UpdateNow() { return this.ops.event('UPDATE_NOW'); }
  UpdateAt3AM() { return this.ops.event('SCHEDULE_3AM'); }
  Confirm() { return this.ops.event('CONFIRM'); }
  Cancel() { return this.ops.event('CANCEL'); }
  Reset() { return this.ops.event('RESET'); }
  Rollback(version: string, markBad: boolean, reason: string) {
    return this.ops.event('ROLLBACK', { markBad, ...(reason ? { reason } : {}), ...(version ? { expectVersion: version } : {}) });
  }
  Acknowledge(version: string) { return this.ops.acknowledge(version); }
  UnmarkBad(version: string) { return this.ops.unmark(version); }
  GetReleases() { return this.ops.releases(); }
  GrantMaintenance(requestId: string) { return this.ops.maintenance(true, requestId, ''); }
  DenyMaintenance(requestId: string, reason: string) { return this.ops.maintenance(false, requestId, reason); }

  StateChanged(from: string, to: string, runId: string, cause: string) { return [from, to, runId, cause]; }
  RunFinished(runId: string, outcome: string, version: string, errorCode: string) { return [runId, outcome, version, errorCode]; }
  UpdateAvailable(version: string, notes: string) { return [version, notes]; }
  MaintenanceRequested(requestId: string, runId: string, version: string, timeoutMs: bigint) { return [requestId, runId, version, timeoutMs]; }
}

const ss = () => ({ outSignature: 'ss' });
const prop = (signature: string): { signature: string; access: dbus.PropertyAccess } => ({ signature, access: READ });
ProductObject.configureMembers({
  properties: {
    Name: prop('s'),
    State: prop('s'),
    RunId: prop('s'),
    InstalledVersion: prop('s'),
    OfferedVersion: prop('s'),
    OfferedDownloadBytes: prop('t'),
    Progress: prop('d'),
    ProgressStep: prop('s'),
    LastOutcome: prop('s'),
    LastErrorCode: prop('s'),
    NextScheduled: prop('t'),
    Inhibited: prop('b'),
    Maintenance: prop('b'),
    AllowedEvents: prop('as'),
    LastDowntime: prop('(sddddddst)'),
    PreCheckReasons: prop('a(ss)'),
  },
  methods: {
    CheckNow: ss(),
    UpdateNow: ss(),
    UpdateAt3AM: ss(),
    Confirm: ss(),
    Cancel: ss(),
    Reset: ss(),
    Rollback: { inSignature: 'sbs', outSignature: 'ss' },
    Acknowledge: { inSignature: 's', outSignature: 'u' },
    UnmarkBad: { inSignature: 's' },
    GetReleases: { outSignature: 'a(sbbbbss)' },
    GrantMaintenance: { inSignature: 's' },
    DenyMaintenance: { inSignature: 'ss' },
  },
  signals: { StateChanged: { signature: 'ssss' }, RunFinished: { signature: 'ssss' }, UpdateAvailable: { signature: 'ss' }, MaintenanceRequested: { signature: 'ssst' } },
});

export interface ManagerOps {
  version: string;
  deviceId: string;
  inhibited(): boolean;
  products(): string[];
  inhibit(who: string, why: string, mode: string): Promise<number>;
  inhibitors(): Array<[string, string, string, bigint, bigint]>;
  rehearse(product: string): Promise<RehearseReply>;
  reportRobotState(report: Record<string, dbus.Variant>): Promise<[string[], bigint]>;
}

/** The D-Bus type each key of ReportRobotState's a{sv} must carry (the fields of REST POST /api/v1/robot-state). */
export const ROBOT_STATE_KEYS: Record<string, { signatures: string[]; shown: string }> = {
  docked: { signatures: ['b'], shown: 'b (boolean)' },
  charging: { signatures: ['b'], shown: 'b (boolean)' },
  stationary: { signatures: ['b'], shown: 'b (boolean)' },
  batteryPercent: { signatures: ['d', 'y', 'n', 'q', 'i', 'u'], shown: 'd (double; an integer type is taken too)' },
  batteryTrend: { signatures: ['s'], shown: 's (rising, steady or falling)' },
};

/**
 * ReportRobotState's a{sv} as the REST body: each known key's variant must have its type (a
 * wrong one is API_INVALID_REQUEST naming the key); unknown keys are passed on for the edge's
 * schema to refuse, as REST refuses them.
 */
export function robotStateBody(report: Record<string, unknown>): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, raw] of Object.entries(report ?? {})) {
    const v = raw instanceof dbus.Variant ? raw : null;
    const want = ROBOT_STATE_KEYS[key];
    if (want && v && !want.signatures.includes(v.signature)) {
      problems.push(`${key} must be a variant of type ${want.shown}, not ${v.signature}`);
      continue;
    }
    body[key] = v ? v.value : raw;
  }
  if (problems.length > 0) throw new OtaError('API_INVALID_REQUEST', `robot state: ${problems.join('; ')}`, { details: { problems } });
  return body;
}

/** Rehearse's reply: the report's fields, typed (predicted_downtime_ms -1: no history to predict from). */
export type RehearseReply = [string, boolean, string, string, bigint, bigint, string[], boolean, Array<[string, string, string]>, bigint, string, Array<[string, string]>];

export function rehearseReply(r: RehearsalReport): RehearseReply {
  return [
    r.version ?? '',
    r.available,
    r.stoppedAt ?? '',
    r.error?.code ?? '',
    BigInt(r.download?.bytes ?? 0),
    BigInt(r.disk?.totalBytes ?? 0),
    r.services.wouldRestart,
    r.preCheck?.ok ?? false,
    (r.preCheck?.verdicts ?? []).map((v) => [v.condition, v.verdict, v.detail] as [string, string, string]),
    BigInt(r.downtime.predictedMs ?? -1),
    r.downtime.basis,
    (r.preCheck?.reasons ?? []).map((x) => [x.code, x.message] as [string, string]),
  ];
}

const MANAGER_ARGS: ArgNames = {
  Rehearse: { in: ['product'], out: ['version', 'available', 'stopped_at', 'error_code', 'download_bytes', 'disk_bytes', 'would_restart', 'precheck_ok', 'precheck_verdicts', 'predicted_downtime_ms', 'downtime_basis', 'precheck_reasons'] },
  ReportRobotState: { in: ['report'], out: ['accepted', 'reported_at'] },
  ListProducts: { out: ['products'] },
  GetProduct: { in: ['name'], out: ['object_path'] },
  Inhibit: { in: ['who', 'why', 'mode'], out: ['fd'] },
  ListInhibitors: { out: ['inhibitors'] },
};

export class ManagerObject extends NamedInterface {
  constructor(private readonly ops: ManagerOps) {
    super(MANAGER_INTERFACE, MANAGER_ARGS);
  }
  get Version() { return this.ops.version; }
  get DeviceId() { return this.ops.deviceId; }
  get Inhibited() { return this.ops.inhibited(); }
  ListProducts() { return this.ops.products().map(productPath); }
  GetProduct(name: string) {
    const names = this.ops.products();
    const pick = name === '' && names.length === 1 ? names[0] : name;
    if (pick === undefined || !names.includes(pick)) {
      throw dbusError(new OtaError('PRODUCT_UNKNOWN', `unknown product "${name}"; this robot manages ${names.join(', ') || 'none'}`, { details: { product: name } }));
    }
    return productPath(pick);
  }
  Inhibit(who: string, why: string, mode: string) { return this.ops.inhibit(who, why, mode); }
  ListInhibitors() { return this.ops.inhibitors(); }
  Rehearse(product: string) { return this.ops.rehearse(product); }
  ReportRobotState(report: Record<string, dbus.Variant>) { return this.ops.reportRobotState(report); }
}

ManagerObject.configureMembers({
  properties: { Version: prop('s'), DeviceId: prop('s'), Inhibited: prop('b') },
  methods: {
    ListProducts: { outSignature: 'ao' },
    GetProduct: { inSignature: 's', outSignature: 'o' },
    Inhibit: { inSignature: 'sss', outSignature: 'h' },
    ListInhibitors: { outSignature: 'a(ssstt)' },
    Rehearse: { inSignature: 's', outSignature: 'sbssttasba(sss)xsa(ss)' },
    ReportRobotState: { inSignature: 'a{sv}', outSignature: 'ast' },
  },
});

/** A refusal as io.otad.Error.<CODE>; an unexpected failure as io.otad.Error.INTERNAL with a generic message. */
export function dbusError(error: unknown): dbus.DBusError {
  const mapped = toApiError(error);
  return new dbus.DBusError(`${ERROR_PREFIX}.${mapped.body.error.code}`, mapped.body.error.message);
}

export interface V2Deps {
  bus: dbus.MessageBus;
  control: DaemonControl;
  edge: Edge;
  logger: Logger;
  version: string;
  /** Inhibit(who, why, mode) → fd; undefined: the bus connection cannot pass file descriptors. */
  inhibit?: (who: string, why: string, mode: string) => Promise<number>;
  inhibitors?: () => Array<[string, string, string, bigint, bigint]>;
}

export interface V2Service {
  /** Re-read the status and emit PropertiesChanged for what changed. */
  refresh(): void;
  close(): void;
}

export function exportV2(deps: V2Deps): V2Service {
  const { bus, control, edge, logger } = deps;
  const caller: Caller = { actor: 'dbus', source: 'dbus' };
  const wrap = async <T>(what: string, fn: () => T | Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      const e = dbusError(error);
      if (e.type.endsWith('.INTERNAL')) logger.error('a D-Bus method failed', { method: what, error: String(error) });
      throw e;
    }
  };
  const status = () => control.status();
  const first = status();
  const inhibitedNow = (s = status()) => s.inhibits.length > 0;

  const objects = new Map<string, ProductObject>();
  for (const p of first.products) {
    const name = p.product;
    const ops: ProductOps = {
      event: (type, extra = {}) =>
        wrap(type, async () => {
          if (extra.expectVersion !== undefined) {
            const target = control.status().products.find((x) => x.product === name)?.rollbackTarget?.version ?? null;
            if (target !== extra.expectVersion) {
              throw new OtaError('ROLLBACK_TARGET_MISMATCH', `a rollback of ${name} would go to ${target ?? 'no release'}, not ${extra.expectVersion}; nothing was changed`, {
                details: { product: name, expected: extra.expectVersion, target },
              });
            }
          }
          const r = await edge.dispatch({ type, product: name, ...(extra.markBad !== undefined ? { markBad: extra.markBad } : {}), ...(extra.reason ? { reason: extra.reason } : {}) }, caller);
          return [r.state, r.runId ?? ''] as [string, string];
        }),
      acknowledge: (version) => wrap('Acknowledge', () => edge.acknowledge({ product: name, ...(version ? { version } : {}) }, caller).acknowledged),
      unmark: (version) =>
        wrap('UnmarkBad', () => {
          edge.unmarkRelease({ product: name, version }, caller);
        }),
      releases: () =>
        wrap('GetReleases', async () =>
          (await control.releaseHistory(name)).releases.map((r) => [r.version, r.installed, r.previous, r.onDisk, r.backup, r.channel ?? '', r.bad?.reason ?? ''] as [string, boolean, boolean, boolean, boolean, string, string]),
        ),
      maintenance: (grant, requestId, reason) =>
        wrap(grant ? 'GrantMaintenance' : 'DenyMaintenance', () => {
          edge.answerMaintenance(name, { answer: grant ? 'grant' : 'deny', ...(requestId ? { requestId } : {}), ...(reason ? { reason } : {}) }, caller);
        }),
    };
    const obj = new ProductObject(propsFrom(p, p.state, inhibitedNow(first)), ops);
    objects.set(name, obj);
    bus.export(productPath(name), obj);
  }

  const manager = new ManagerObject({
    version: deps.version,
    deviceId: first.deviceId,
    inhibited: () => inhibitedNow(),
    products: () => [...objects.keys()],
    inhibit: (who, why, mode) =>
      wrap('Inhibit', () => {
        if (!deps.inhibit) throw new OtaError('API_INVALID_REQUEST', 'this otad cannot pass file descriptors on its bus connection; use the REST inhibit lease');
        return deps.inhibit(who, why, mode);
      }),
    inhibitors: () => deps.inhibitors?.() ?? [],
    rehearse: (product) => wrap('Rehearse', async () => rehearseReply(await edge.rehearse({ product }, caller))),
    reportRobotState: (report) =>
      wrap('ReportRobotState', () => {
        const r = edge.reportRobotState(robotStateBody(report), caller);
        return [r.accepted, BigInt(Math.round(r.at)) * 1000n] as [string[], bigint];
      }),
  });
  bus.export(MANAGER_PATH, manager);

  const emit = (fn: () => void) => {
    try {
      fn();
    } catch (error) {
      logger.warn('a D-Bus signal could not be sent', { error: String(error) });
    }
  };
  let managerInhibited = inhibitedNow(first);
  // State follows the transition messages one by one (the status may already be further on), so
  // every transition of a run is a PropertiesChanged with its own State.
  const refresh = (stateOf: (name: string, current: string) => string = (_n, current) => current) => {
    let s;
    try {
      s = status();
    } catch (error) {
      logger.warn('D-Bus properties could not be refreshed', { error: String(error) });
      return;
    }
    const inh = inhibitedNow(s);
    for (const p of s.products) {
      const obj = objects.get(p.product);
      if (!obj) continue;
      const changed = obj.update(propsFrom(p, stateOf(p.product, obj.props.State), inh));
      if (Object.keys(changed).length > 0) emit(() => dbus.interface.Interface.emitPropertiesChanged(obj, changed, []));
    }
    if (inh !== managerInhibited) {
      managerInhibited = inh;
      emit(() => dbus.interface.Interface.emitPropertiesChanged(manager, { Inhibited: inh }, []));
    }
  };
  const offs = [
    control.bus.subscribe('transition', (t) => {
      refresh((name, current) => (name === t.product ? t.to : current));
      const obj = objects.get(t.product);
      if (obj) emit(() => obj.StateChanged(t.from, t.to, t.runId ?? '', t.cause));
    }),
    control.bus.subscribe('progress', () => refresh()),
    control.bus.subscribe('notification', (n) => {
      refresh();
      const obj = objects.get(n.product);
      if (!obj) return;
      if (n.kind === 'update-available') emit(() => obj.UpdateAvailable(n.version ?? '', n.notes ?? ''));
      if (n.kind === 'run-ended') emit(() => obj.RunFinished(n.runId ?? '', n.outcome ?? '', n.version ?? '', n.error?.code ?? ''));
      if (n.kind === 'maintenance-requested' && n.maintenance) emit(() => obj.MaintenanceRequested(n.maintenance!.requestId, n.runId ?? '', n.version ?? '', BigInt(n.maintenance!.timeoutMs ?? 0)));
    }),
  ];
  // Time-driven changes (an inhibit lease expiring, the next check moving) have no event.
  const timer = setInterval(() => refresh(), 1000);
  timer.unref();

  return {
    refresh: () => refresh(),
    close() {
      clearInterval(timer);
      for (const off of offs) off();
      for (const [name, obj] of objects) {
        try {
          bus.unexport(productPath(name), obj);
        } catch {
          // already gone with the bus
        }
      }
      try {
        bus.unexport(MANAGER_PATH, manager);
      } catch {
        // already gone with the bus
      }
    },
  };
}

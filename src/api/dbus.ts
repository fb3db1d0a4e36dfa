/**
 * The D-Bus service (dbus-next, members declared with Interface.configureMembers, no decorators):
 * name from configuration (io.otad.Daemon1). API v2 (io.otad.Manager1 on /io/otad/Daemon1 and
 * io.otad.Product1 per product, dbus-v2.ts) is the interface to build on; this file also keeps the
 * v1 interface io.otad.Daemon1 on /io/otad/Daemon1 for one more release (deprecated).
 * Methods dispatch through the same Edge as REST (validation, rate limit, audit); an empty
 * product means "the only product". Refusals are D-Bus errors named io.otad.Daemon1.Error.<CODE>;
 * an unexpected failure is io.otad.Daemon1.Error.INTERNAL with a generic message (never a stack).
 * Who may call what is the bus policy's job: deploy/dbus/io.otad.Daemon1.conf.
 */
import { createRequire } from 'node:module';
import type { Writable } from 'node:stream';
import './usocket-compat.js';
import dbus from 'dbus-next';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DaemonControl } from '../daemon/control.js';
import type { Edge } from './edge.js';
import { toApiError } from './http-errors.js';
import { exportV2, type V2Service } from './dbus-v2.js';
import { createSocketPairFactory, type SocketPairFactory } from './fd-inhibitor.js';
import { OTAD_VERSION } from '../core/version.js';

export const DBUS_OBJECT_PATH = '/io/otad/Daemon1';
export const DBUS_INTERFACE = 'io.otad.Daemon1';

export interface DbusDeps {
  control: DaemonControl;
  edge: Edge;
  logger: Logger;
  /** 'system', 'session', or a bus address such as unix:path=/run/otad-bus. */
  bus: string;
  name: string;
  connectTimeoutMs?: number;
}

export interface DbusService {
  close(): Promise<void>;
}

type EventFn = (type: string, product: string, extra?: { markBad?: boolean; reason?: string }) => Promise<string>;

interface ReleaseFns {
  releases(product: string): Promise<string>;
  unmark(product: string, version: string): Promise<string>;
}

class OtadInterface extends dbus.interface.Interface {
  constructor(
    private readonly send: EventFn,
    private readonly status: () => string,
    private readonly releaseFns: ReleaseFns,
  ) {
    super(DBUS_INTERFACE);
  }
  UpdateNow(product: string) {
    return this.send('UPDATE_NOW', product);
  }
  Schedule3AM(product: string) {
    return this.send('SCHEDULE_3AM', product);
  }
  CheckNow(product: string) {
    return this.send('CHECK_NOW', product);
  }
  Confirm(product: string) {
    return this.send('CONFIRM', product);
  }
  Cancel(product: string) {
    return this.send('CANCEL', product);
  }
  /** Rolls back without marking the release it leaves bad (as before RollbackWith existed). */
  Rollback(product: string) {
    return this.send('ROLLBACK', product);
  }
  /** (s product, b markBad, s reason) → s: a rollback that may also mark the release it leaves bad. */
  RollbackWith(product: string, markBad: boolean, reason: string) {
    return this.send('ROLLBACK', product, { markBad, ...(reason ? { reason } : {}) });
  }
  /** (s product) → s: the ReleaseHistory JSON of GET /api/v1/products/{product}/releases. */
  GetReleases(product: string) {
    return this.releaseFns.releases(product);
  }
  /** (s product, s version) → s: clears a bad mark; the UnmarkResult JSON. */
  UnmarkBad(product: string, version: string) {
    return this.releaseFns.unmark(product, version);
  }
  GetStatus() {
    return this.status();
  }
  // Signals: the returned array is the signal's body.
  StateChanged(product: string, from: string, to: string, runId: string) {
    return [product, from, to, runId];
  }
  Progress(product: string, step: string, bytes: number, total: number) {
    return [product, step, bytes, total];
  }
  UpdateAvailable(product: string, version: string, notes: string) {
    return [product, version, notes];
  }
}

// configureMembers writes into each options object (name, fn): every member needs its own.
const event = () => ({ inSignature: 's', outSignature: 's' });
OtadInterface.configureMembers({
  methods: {
    UpdateNow: event(),
    Schedule3AM: event(),
    CheckNow: event(),
    Confirm: event(),
    Cancel: event(),
    Rollback: event(),
    RollbackWith: { inSignature: 'sbs', outSignature: 's' },
    GetStatus: { outSignature: 's' },
    GetReleases: { inSignature: 's', outSignature: 's' },
    UnmarkBad: { inSignature: 'ss', outSignature: 's' },
  },
  signals: { StateChanged: { signature: 'ssss' }, Progress: { signature: 'ssxx' }, UpdateAvailable: { signature: 'sss' } },
});

/** An empty product means the only one, as for the event methods. */
function onlyProduct(control: DaemonControl): string {
  const names = control.productDefinitions().map((p) => p.product);
  if (names.length === 1) return names[0] as string;
  throw new OtaError('PRODUCT_UNKNOWN', `name a product: this robot manages ${names.join(', ') || 'none'}`, { details: { known: names } });
}

/**
 * Passing file descriptors (Inhibit → h) needs dbus-next's optional native socket module usocket
 * (built at npm install); without it the bus connection cannot carry them and Inhibit says so.
 */
export const FD_PASSING: boolean = (() => {
  try {
    createRequire(import.meta.url)('usocket');
    return true;
  } catch {
    return false;
  }
})();

function connect(bus: string): dbus.MessageBus {
  const negotiateUnixFd = FD_PASSING;
  if (bus === 'system') return dbus.systemBus({ negotiateUnixFd });
  // dbus-next reads negotiateUnixFd for every bus; its type declarations list it for the system bus only.
  if (bus === 'session') return dbus.sessionBus({ negotiateUnixFd } as dbus.SessionBusOptions);
  return dbus.sessionBus({ busAddress: bus, negotiateUnixFd } as dbus.SessionBusOptions);
}

/** Close otad's copy of a passed fd once the reply carrying it has left (sendmsg duplicated it into the message). */
function closeWhenSent(bus: dbus.MessageBus, socket: { destroy(): void }): void {
  const stream = (bus as unknown as { _connection?: { stream?: Writable } })._connection?.stream;
  let rounds = 0;
  const tick = () => {
    if (!stream || stream.writableLength === 0 || ++rounds > 100_000) socket.destroy();
    else setImmediate(tick);
  };
  setImmediate(tick);
}

export async function startDbusService(deps: DbusDeps): Promise<DbusService> {
  const { control, edge, logger } = deps;
  const bus = connect(deps.bus);
  bus.on('error', (error: unknown) => logger.error('D-Bus connection error', { bus: deps.bus, error: String(error) }));

  const answer = async (what: string, fn: () => unknown): Promise<string> => {
    try {
      return JSON.stringify(await fn());
    } catch (error) {
      const mapped = toApiError(error);
      if (mapped.internal) logger.error('a D-Bus method failed', { method: what, error: String(error) });
      throw new dbus.DBusError(`${DBUS_INTERFACE}.Error.${mapped.body.error.code}`, mapped.body.error.message);
    }
  };
  const caller = { actor: 'dbus', source: 'dbus' as const };
  const send: EventFn = (type, product, extra = {}) => answer(type, () => edge.dispatch({ type, ...(product ? { product } : {}), ...extra }, caller));
  const releaseFns: ReleaseFns = {
    releases: (product) => answer('GetReleases', () => control.releaseHistory(product || onlyProduct(control))),
    unmark: (product, version) => answer('UnmarkBad', () => edge.unmarkRelease({ product: product || onlyProduct(control), version }, caller)),
  };
  const iface = new OtadInterface(send, () => {
    try {
      return JSON.stringify(control.status());
    } catch (error) {
      logger.error('D-Bus GetStatus failed', { error: String(error) });
      throw new dbus.DBusError(`${DBUS_INTERFACE}.Error.INTERNAL`, 'otad could not read its status; the reason is in the otad log');
    }
  }, releaseFns);

  const timeoutMs = deps.connectTimeoutMs ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const reply = await Promise.race([
      bus.requestName(deps.name, dbus.NameFlag.DO_NOT_QUEUE),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from the bus within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
      throw new Error(`the name ${deps.name} is owned by another process (reply ${reply})`);
    }
  } catch (error) {
    bus.disconnect();
    throw new OtaError('CONFIG_INVALID', `cannot start the D-Bus service ${deps.name} on bus "${deps.bus}": ${(error as Error).message}; check dbus.bus and the bus policy (deploy/dbus/io.otad.Daemon1.conf)`, {
      details: { bus: deps.bus, name: deps.name },
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
  bus.export(DBUS_OBJECT_PATH, iface);
  const pairs: SocketPairFactory | null = FD_PASSING ? await createSocketPairFactory() : null;
  const heldFds = new Set<(how: string) => void>();
  const inhibit = async (who: string, why: string, mode: string): Promise<number> => {
    if (!pairs) throw new OtaError('API_INVALID_REQUEST', 'this otad cannot pass file descriptors (the optional module usocket is not built); use the REST inhibit lease');
    const hold = edge.holdFdInhibit({ who, why, mode }, caller);
    let pair;
    try {
      pair = await pairs.pair();
    } catch (error) {
      hold.release('its file descriptor could not be made');
      throw error;
    }
    const release = (how: string) => {
      if (!heldFds.delete(release)) return;
      hold.release(how);
      pair.ours.destroy();
      v2.refresh();
    };
    heldFds.add(release);
    pair.ours.once('close', () => release(`${who} closed its inhibitor file descriptor (or exited)`));
    closeWhenSent(bus, pair.theirs);
    setImmediate(() => v2.refresh());
    logger.info('inhibitor taken over D-Bus', { who, why, mode });
    return pair.fd;
  };
  const usec = (ms: number | null) => (ms === null ? 0n : BigInt(Math.round(ms)) * 1000n);
  const v2: V2Service = exportV2({
    bus,
    control,
    edge,
    logger,
    version: OTAD_VERSION,
    inhibit,
    inhibitors: () => control.heldInhibits().map((i) => [i.holder, i.reason, 'block', usec(i.since), usec(i.expiresAt)] as [string, string, string, bigint, bigint]),
  });

  const emit = (fn: () => void) => {
    try {
      fn();
    } catch (error) {
      logger.warn('a D-Bus signal could not be sent', { error: String(error) });
    }
  };
  const offs = [
    control.bus.subscribe('transition', (t) => emit(() => iface.StateChanged(t.product, t.from, t.to, t.runId ?? ''))),
    control.bus.subscribe('progress', (p) => emit(() => iface.Progress(p.product, p.step, Math.round(p.bytes), p.total === null ? -1 : Math.round(p.total)))),
    control.bus.subscribe('notification', (n) => {
      if (n.kind === 'update-available') emit(() => iface.UpdateAvailable(n.product, n.version ?? '', n.notes ?? ''));
    }),
  ];
  logger.info('D-Bus service ready', { bus: deps.bus, name: deps.name, path: DBUS_OBJECT_PATH });
  return {
    async close() {
      for (const off of offs) off();
      v2.close();
      for (const release of [...heldFds]) release('otad stopped its D-Bus service');
      pairs?.close();
      try {
        bus.unexport(DBUS_OBJECT_PATH, iface);
        await bus.releaseName(deps.name);
      } catch {
        // The bus may already be gone; disconnecting is what matters.
      }
      bus.disconnect();
    },
  };
}

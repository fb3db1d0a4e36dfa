/**
 * Metered links: is the robot's active connection one whose bytes cost money, and what may a
 * product download on it this month?
 *
 * - `createNetworkManagerMetered` reads NetworkManager's global `Metered` property (NMMetered, a
 *   uint32) from `org.freedesktop.NetworkManager` at `/org/freedesktop/NetworkManager` over the
 *   system bus (or any bus address) and follows `org.freedesktop.DBus.Properties.PropertiesChanged`.
 *   Its answer, `metered`, is `yes` for `yes` and `guess-yes`, `no` for `no` and `guess-no`, and
 *   `unknown` when NetworkManager says `unknown` or cannot be asked (the reason says which).
 * - Each user of the reading decides what `unknown` means. The per-product policy
 *   (`createMeteredGate`) follows NetworkManager's advice and treats it as not metered; download
 *   ahead's `unmetered` policy (src/daemon/download-ahead.ts) downloads only on `no`.
 * - `createMeteredGate` applies one product's policy (`network.metered`: download | wait | allow,
 *   `network.meteredBudget` bytes per calendar month) to the pre-check and to the downloader, and
 *   counts the bytes that really arrived while the link was metered in the state database
 *   (key `metered-bytes:<product>:<YYYY-MM>`, the month in the robot's local time).
 */
import dbus from 'dbus-next';
import type { Clock } from '../core/clock.js';
import { OtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DownloadMeter } from './download.js';

export const NM_BUS_NAME = 'org.freedesktop.NetworkManager';
export const NM_OBJECT_PATH = '/org/freedesktop/NetworkManager';
export const NM_INTERFACE = 'org.freedesktop.NetworkManager';
const PROPERTIES = 'org.freedesktop.DBus.Properties';

/** NMMetered, as NetworkManager's D-Bus API numbers it. */
export const NM_METERED = ['unknown', 'yes', 'no', 'guess-yes', 'guess-no'] as const;
export type MeteredValue = (typeof NM_METERED)[number];

export interface MeteredReading {
  /** yes: NetworkManager says yes or guess-yes; no: no or guess-no; unknown: it says unknown, or could not be asked. */
  metered: 'yes' | 'no' | 'unknown';
  /** NetworkManager's value; null when it could not be read. */
  value: MeteredValue | null;
  /** Where the reading comes from ("NetworkManager on the system bus"; "none"). */
  source: string;
  /** One sentence on the reading, for status and the log ("NetworkManager reports Metered=guess-yes"). */
  reason: string;
  /** When the value was read or last changed (clock, ms since the epoch); 0: never read. */
  at: number;
}

export interface MeteredSource {
  /** The current reading: from PropertiesChanged when subscribed, else read now (at most every 5 s while it fails). */
  read(): Promise<MeteredReading>;
  /** The last reading without asking the bus (the downloader's per-chunk view). */
  last(): MeteredReading;
  close(): void;
}

/** yes / guess-yes → yes; no / guess-no → no; unknown → unknown. */
export function meteredAnswer(value: MeteredValue): MeteredReading['metered'] {
  return value === 'yes' || value === 'guess-yes' ? 'yes' : value === 'no' || value === 'guess-no' ? 'no' : 'unknown';
}

/** A source that never has a reading (a daemon without real steps): always `unknown`, saying why. */
export function unknownMeteredSource(reason: string): MeteredSource {
  const reading: MeteredReading = { metered: 'unknown', value: null, source: 'none', reason, at: 0 };
  return { read: async () => reading, last: () => reading, close() {} };
}

export function meteredFromValue(raw: number): MeteredValue {
  return NM_METERED[raw] ?? 'unknown';
}

export interface NetworkManagerMeteredOptions {
  /** 'system', 'session', or a D-Bus address (unix:path=…). */
  bus: string;
  clock: Clock;
  logger: Logger;
  /** Wait this long before asking again after a failed read. Default 5 s. */
  retryMs?: number;
  /** Budget for one read. Default 3 s. */
  timeoutMs?: number;
}

export function createNetworkManagerMetered(options: NetworkManagerMeteredOptions): MeteredSource {
  const log = options.logger.child({ component: 'metered' });
  const retryMs = options.retryMs ?? 5_000;
  const timeoutMs = options.timeoutMs ?? 3_000;
  let bus: dbus.MessageBus | null = null;
  let subscribed = false;
  let watchingOwner = false;
  let subscription = 0;
  /**
   * The PropertiesChanged listener in force: each proxy dbus-next hands out adds its own match rule,
   * so a listener left on the proxy of a NetworkManager that restarted would keep one more rule (and
   * one more callback) per restart. It is taken off before a new one goes on, and on close.
   */
  let listening: { iface: dbus.ClientInterface; handler: (...args: any[]) => void } | null = null;
  const stopListening = (): void => {
    const l = listening;
    listening = null;
    if (l !== null) l.iface.removeListener('PropertiesChanged', l.handler);
  };
  const source = `NetworkManager on the ${options.bus === 'system' || options.bus === 'session' ? `${options.bus} bus` : `bus ${options.bus}`}`;
  const fromValue = (value: MeteredValue): MeteredReading => ({ metered: meteredAnswer(value), value, source, reason: `NetworkManager reports Metered=${value}`, at: options.clock.now() });
  const failed = (reason: string): MeteredReading => ({ metered: 'unknown', value: null, source, reason, at: options.clock.now() });
  let reading: MeteredReading = { metered: 'unknown', value: null, source, reason: 'NetworkManager not asked yet', at: 0 };
  let failedAt = -Infinity;
  let pending: Promise<MeteredReading> | null = null;
  let reported = '';

  const set = (next: MeteredReading): MeteredReading => {
    const key = next.value ?? `error:${next.reason}`;
    if (key !== reported) {
      reported = key;
      if (next.value !== null) log.info(`NetworkManager reports the link as Metered=${next.value} (metered: ${next.metered})`, { value: next.value, metered: next.metered });
      else log.info(`metered state unknown: ${next.reason}`, { reason: next.reason });
    }
    reading = next;
    return next;
  };

  const connect = (): dbus.MessageBus => {
    if (bus !== null) return bus;
    const b = options.bus === 'system' ? dbus.systemBus() : options.bus === 'session' ? dbus.sessionBus() : dbus.sessionBus({ busAddress: options.bus });
    // A bus that goes away must not crash otad: the next read connects again.
    b.on('error', (error: unknown) => {
      set(failed(`the D-Bus connection failed: ${(error as Error).message}`));
      if (bus === b) {
        bus = null;
        subscribed = false;
        watchingOwner = false;
      }
    });
    bus = b;
    return b;
  };

  async function fetchReading(): Promise<MeteredReading> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const b = connect();
      // A bus that never answers (no system bus here) must not hold up a pre-check.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      const obj = await Promise.race([b.getProxyObject(NM_BUS_NAME, NM_OBJECT_PATH), timeout]);
      const props = obj.getInterface(PROPERTIES);
      const variant = (await Promise.race([props.Get!(NM_INTERFACE, 'Metered'), timeout])) as dbus.Variant<number>;
      const value = meteredFromValue(Number(variant.value));
      if (!subscribed) {
        subscribed = true;
        const generation = ++subscription;
        stopListening();
        const handler = (iface: string, changed: Record<string, dbus.Variant>): void => {
          // A subscription to a NetworkManager that since left the bus is not listened to.
          if (generation !== subscription || iface !== NM_INTERFACE || changed.Metered === undefined) return;
          const v = meteredFromValue(Number(changed.Metered.value));
          set(fromValue(v));
        };
        props.on('PropertiesChanged', handler);
        listening = { iface: props, handler };
        if (!watchingOwner) {
          watchingOwner = true;
          // NetworkManager restarting or stopping: its last value is not a reading any more.
          const busIface = (await Promise.race([b.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus'), timeout])).getInterface('org.freedesktop.DBus');
          busIface.on('NameOwnerChanged', (name: string, _old: string, owner: string) => {
            if (name !== NM_BUS_NAME || bus !== b) return;
            subscribed = false;
            subscription += 1;
            stopListening();
            if (owner === '') {
              failedAt = options.clock.monotonic();
              set(failed(`NetworkManager (${NM_BUS_NAME}) left the bus`));
            }
          });
        }
      }
      return set(fromValue(value));
    } catch (error) {
      failedAt = options.clock.monotonic();
      subscribed = false;
      watchingOwner = false;
      // Start afresh next time: the connection may be the broken part.
      const b = bus;
      bus = null;
      b?.disconnect();
      const message = (error as Error).message ?? String(error);
      return set(failed(`NetworkManager (${NM_BUS_NAME}) could not be asked: ${message}`));
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    async read() {
      if (subscribed && reading.value !== null) return reading;
      if (reading.value === null && options.clock.monotonic() - failedAt < retryMs) return reading;
      pending ??= fetchReading().finally(() => {
        pending = null;
      });
      return pending;
    },
    last: () => reading,
    close() {
      stopListening();
      const b = bus;
      bus = null;
      subscribed = false;
      watchingOwner = false;
      b?.disconnect();
    },
  };
}

// ----- one product's policy ---------------------------------------------------------------------

export type MeteredPolicy = 'download' | 'wait' | 'allow';

export interface KeyValueStore {
  getValue(key: string): string | null;
  setValue(key: string, value: string): void;
}

/** "2026-12": the calendar month of `ms` in the robot's local time (TZ, /etc/localtime). */
export function localMonth(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}`;
}

export function meteredBytesKey(product: string, month: string): string {
  return `metered-bytes:${product}:${month}`;
}

export interface MeteredAssessment {
  reading: MeteredReading;
  policy: MeteredPolicy;
  month: string;
  usedBytes: number;
  /** 0: no budget. */
  budgetBytes: number;
  /** Null: the download may go ahead. */
  refusal: { code: 'METERED_WAIT' | 'METERED_BUDGET_EXHAUSTED'; message: string } | null;
}

export interface MeteredGate extends DownloadMeter {
  /** The pre-check's question: may `downloadBytes` (`what`: "delta from 2.0.0", "download") be fetched now? */
  assess(downloadBytes: number, what: string): Promise<MeteredAssessment>;
  /** Bytes fetched outside the downloader (metadata, manifests): counted, never refused. */
  count(bytes: number): void;
  usedBytes(): number;
}

export interface MeteredGateOptions {
  product: string;
  policy: MeteredPolicy;
  budgetBytes: number;
  source: MeteredSource;
  store: KeyValueStore;
  clock: Clock;
  logger: Logger;
  /** Persist at least every this many counted bytes (and after every download attempt). Default 1 MiB. */
  flushEveryBytes?: number;
}

export function createMeteredGate(options: MeteredGateOptions): MeteredGate {
  const { product, policy, budgetBytes, source, store, clock } = options;
  const flushEvery = options.flushEveryBytes ?? 1024 * 1024;
  let unsaved = 0;
  let unsavedMonth = localMonth(clock.now());

  const stored = (month: string): number => {
    const raw = store.getValue(meteredBytesKey(product, month));
    const n = raw === null ? 0 : Number(raw);
    return Number.isFinite(n) && n >= 0 ? n : 0;
  };
  const flush = (): void => {
    if (unsaved === 0) return;
    const key = meteredBytesKey(product, unsavedMonth);
    store.setValue(key, String(stored(unsavedMonth) + unsaved));
    unsaved = 0;
  };
  const used = (): { month: string; bytes: number } => {
    const month = localMonth(clock.now());
    if (month !== unsavedMonth) {
      flush();
      unsavedMonth = month;
    }
    return { month, bytes: stored(month) + unsaved };
  };
  const add = (bytes: number): void => {
    used();
    unsaved += bytes;
    if (unsaved >= flushEvery) flush();
  };

  const fmt = (n: number): string => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

  function refusalFor(reading: MeteredReading, bytes: number, what: string): MeteredAssessment['refusal'] {
    // NetworkManager's advice: only yes and guess-yes count as metered; unknown does not.
    if (reading.metered !== 'yes' || policy === 'allow') return null;
    if (policy === 'wait') {
      return {
        code: 'METERED_WAIT',
        message: `the link is metered (NetworkManager Metered=${reading.value}) and ${product}'s policy is network.metered: wait: nothing is downloaded until the link is not metered`,
      };
    }
    if (budgetBytes <= 0) return null;
    const u = used();
    const left = Math.max(0, budgetBytes - u.bytes);
    if (bytes <= left) return null;
    return {
      code: 'METERED_BUDGET_EXHAUSTED',
      message:
        `the link is metered (NetworkManager Metered=${reading.value}): ${fmt(u.bytes)} (${u.bytes} bytes) of ${product}'s ${fmt(budgetBytes)} (${budgetBytes} bytes) budget for ${u.month} are used, ` +
        `${fmt(left)} (${left} bytes) left, and this needs ${fmt(bytes)} (${bytes} bytes, ${what}); it waits for a link that is not metered or for the next month (network.meteredBudget)`,
    };
  }

  const toError = (r: NonNullable<MeteredAssessment['refusal']>, details: Record<string, unknown>): OtaError => new OtaError(r.code, r.message, { details: { product, ...details } });

  return {
    async assess(downloadBytes, what) {
      const reading = await source.read();
      const u = used();
      return { reading, policy, month: u.month, usedBytes: u.bytes, budgetBytes, refusal: refusalFor(reading, downloadBytes, what) };
    },
    admit(bytes, url) {
      const refusal = refusalFor(source.last(), bytes, 'the rest of this download');
      return refusal === null ? null : toError(refusal, { url, bytes });
    },
    record(bytes) {
      const reading = source.last();
      if (reading.metered !== 'yes') return null;
      add(bytes);
      if (policy === 'wait') return toError(refusalFor(reading, bytes, 'this download')!, {});
      if (policy === 'download' && budgetBytes > 0 && used().bytes > budgetBytes) {
        return toError(refusalFor(reading, 1, 'the rest of this download')!, {});
      }
      return null;
    },
    flush,
    count(bytes) {
      // A few metadata files per check: each one is written at once, so the database always has them.
      if (source.last().metered !== 'yes') return;
      add(bytes);
      flush();
    },
    usedBytes: () => used().bytes,
  };
}

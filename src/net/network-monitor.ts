/**
 * Network awareness: is there a link and a route, does the update server answer, how fast were
 * recent downloads. The daemon asks before checking so no check is attempted while offline
 * (a robot driving through a dead zone should not burn its retry budget).
 */
import type { Clock } from '../core/clock.js';
import { isOtaError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { HttpClient } from './http-client.js';
import { abortReasonToError } from './http-errors.js';
import type { SystemInfoPort } from './system-info.js';

export interface InterfaceInfo {
  name: string;
  mac: string;
  ip4: string;
  type: string;
  operstate: string;
}

export interface NetworkSnapshot {
  /** A usable external link with a default route, or the update server answered. */
  online: boolean;
  /** External (non-loopback) interfaces. */
  interfaces: InterfaceInfo[];
  defaultGateway: string | null;
  /** Time for the probe request to complete; null when it failed or there is no probe URL. */
  latencyMs: number | null;
  /** The probe URL answered with any HTTP status (a 404 still proves the server is there). */
  serverReachable: boolean;
  /** Byte-weighted average of the downloads recorded in the last `throughputWindowMs`. */
  recentThroughputBps: number | null;
  /** Wall-clock time of the snapshot, ms since the epoch. */
  checkedAt: number;
}

export interface NetworkMonitorOptions {
  si: SystemInfoPort;
  http: HttpClient;
  clock: Clock;
  /** Small, cheap URL on the update server (timestamp.json, /healthz); null disables the probe. */
  probeUrl: string | null;
  logger?: Logger;
  /** Probe budget. Default 5 s. */
  probeTimeoutMs?: number;
  /** How far back recordThroughput samples count. Default 10 minutes. */
  throughputWindowMs?: number;
}

export interface WaitForNetworkOptions {
  signal?: AbortSignal;
  /** Delay between two snapshots while offline. */
  pollMs: number;
}

export interface NetworkMonitor {
  snapshot(): Promise<NetworkSnapshot>;
  recordThroughput(bytes: number, ms: number): void;
  /** Resolves with the first online snapshot; rejects with CANCELLED when the signal aborts. */
  waitForNetwork(options: WaitForNetworkOptions): Promise<NetworkSnapshot>;
}

const PROBE_MAX_BYTES = 64 * 1024;
const MAX_SAMPLES = 64;

/** Pure: a link counts when it is external, up, and has an address. */
export function hasUsableLink(interfaces: ReadonlyArray<{ internal: boolean; operstate: string; ip4: string; ip6: string }>): boolean {
  return interfaces.some((i) => !i.internal && i.operstate === 'up' && (i.ip4 !== '' || i.ip6 !== ''));
}

export function createNetworkMonitor(options: NetworkMonitorOptions): NetworkMonitor {
  const { si, http, clock } = options;
  const log = (options.logger ?? silentLogger).child({ component: 'network-monitor' });
  const probeTimeoutMs = options.probeTimeoutMs ?? 5_000;
  const windowMs = options.throughputWindowMs ?? 10 * 60_000;
  const samples: Array<{ at: number; bytes: number; ms: number }> = [];

  async function probe(): Promise<{ reachable: boolean; latencyMs: number | null }> {
    if (options.probeUrl === null) return { reachable: false, latencyMs: null };
    const start = clock.monotonic();
    try {
      await http.getBuffer(options.probeUrl, { maxBytes: PROBE_MAX_BYTES, deadlineMs: probeTimeoutMs });
      return { reachable: true, latencyMs: clock.monotonic() - start };
    } catch (error) {
      // Any HTTP answer proves the path to the server works; only transport failures do not.
      if (isOtaError(error) && (error.code === 'HTTP_STATUS' || error.code === 'HTTP_NOT_FOUND' || error.code === 'TRUST_LENGTH_MISMATCH')) {
        return { reachable: true, latencyMs: clock.monotonic() - start };
      }
      log.debug('probe failed', { code: isOtaError(error) ? error.code : 'unknown' });
      return { reachable: false, latencyMs: null };
    }
  }

  function recentThroughput(): number | null {
    const since = clock.now() - windowMs;
    let bytes = 0;
    let ms = 0;
    for (const s of samples) {
      if (s.at < since) continue;
      bytes += s.bytes;
      ms += s.ms;
    }
    return ms > 0 ? Math.round((bytes * 1000) / ms) : null;
  }

  const monitor: NetworkMonitor = {
    async snapshot() {
      const [interfaces, gateway] = await Promise.all([
        si.networkInterfaces().catch(() => []),
        si.networkGatewayDefault().catch(() => null),
      ]);
      const linkUp = hasUsableLink(interfaces);
      // No probe without a link: it could only time out. A link without a default route may
      // still reach the server through a specific route, so the probe decides then.
      const { reachable, latencyMs } = linkUp ? await probe() : { reachable: false, latencyMs: null };
      return {
        online: (linkUp && gateway !== null) || reachable,
        interfaces: interfaces
          .filter((i) => !i.internal)
          .map((i) => ({ name: i.name, mac: i.mac, ip4: i.ip4, type: i.type, operstate: i.operstate })),
        defaultGateway: gateway,
        latencyMs,
        serverReachable: reachable,
        recentThroughputBps: recentThroughput(),
        checkedAt: clock.now(),
      };
    },

    recordThroughput(bytes, ms) {
      if (!(bytes > 0) || !(ms > 0)) return;
      samples.push({ at: clock.now(), bytes, ms });
      if (samples.length > MAX_SAMPLES) samples.shift();
    },

    async waitForNetwork({ signal, pollMs }) {
      let announced = false;
      for (;;) {
        if (signal?.aborted === true) throw abortReasonToError(signal.reason, 'waiting for the network');
        const snap = await monitor.snapshot();
        if (snap.online) return snap;
        if (!announced) {
          log.info('offline: waiting for the network before checking for updates', { pollMs });
          announced = true;
        }
        await sleep(pollMs, signal);
      }
    },
  };
  return monitor;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReasonToError(signal?.reason, 'waiting for the network'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}


/**
 * The robot's side of the fleet server, made once at start: its device key, the halts it was told
 * about (kept in the store), and its update leases. Check-ins and the pre-check's fleet gate both
 * use it; `http(config)` points them at the configuration of the run or check-in that asks, so a
 * reload's new server.url applies to the next one.
 */
import type { Config } from '../config/load.js';
import type { Logger } from '../core/logger.js';
import { createFleetHttp, type FleetHttp } from './fleet-http.js';
import { createHaltMemory, type HaltMemory, type ValueStore } from './halts.js';
import { createLeaseClient, type LeaseClient } from './lease-client.js';
import type { DeviceKey } from './signing.js';

export interface DeviceFleet {
  deviceId: string;
  key: DeviceKey;
  fingerprint: string;
  halts: HaltMemory;
  leases: LeaseClient;
  http(config: Config): FleetHttp;
  stop(): void;
}

export interface DeviceFleetOptions {
  deviceId: string;
  key: DeviceKey;
  fingerprint: string;
  store: ValueStore;
  logger: Logger;
  now: () => number;
  fetch?: typeof fetch;
}

export function createDeviceFleet(opts: DeviceFleetOptions): DeviceFleet {
  const halts = createHaltMemory(opts.store);
  const leases = createLeaseClient({ halts, logger: opts.logger, now: opts.now });
  const identity = { deviceId: opts.deviceId, key: opts.key };
  return {
    deviceId: opts.deviceId,
    key: opts.key,
    fingerprint: opts.fingerprint,
    halts,
    leases,
    http: (config) =>
      createFleetHttp({
        serverUrl: config.server.url,
        identity,
        now: opts.now,
        timeoutMs: config.server.connectTimeout + config.server.headersTimeout,
        ...(opts.fetch ? { fetch: opts.fetch } : {}),
      }),
    stop: () => leases.stop(),
  };
}

/**
 * The robot's side of the fleet server, made once at start: its device key, the halts it was told
 * about (kept in the store), and its update leases. Check-ins and the pre-check's fleet gate both
 * use it; `http(config)` points them at the configuration of the run or check-in that asks, so a
 * reload's new server.url applies to the next one.
 */
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import type { Config } from '../config/load.js';
import { readCaFile } from '../net/http-client.js';
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
  now: () => number;
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
  /** One connection pool for every request instead of one made per transport setting (the fleet simulator's many robots share one). */
  dispatcher?: Dispatcher;
}

export function createDeviceFleet(opts: DeviceFleetOptions): DeviceFleet {
  const halts = createHaltMemory(opts.store);
  const leases = createLeaseClient({ halts, logger: opts.logger, now: opts.now });
  const identity = { deviceId: opts.deviceId, key: opts.key };
  // One pool per transport setting, as the repository client has: server.caFile's CA is added to the roots.
  const agents = new Map<string, Agent>();
  const agentFor = (config: Config): Agent => {
    const key = JSON.stringify([config.server.caFile ?? null, config.server.connectTimeout, config.server.headersTimeout]);
    let agent = agents.get(key);
    if (!agent) {
      const ca = config.server.caFile === undefined ? undefined : [...rootCertificates, readCaFile(config.server.caFile)];
      agent = new Agent({
        connect: { timeout: config.server.connectTimeout, rejectUnauthorized: true, ...(ca === undefined ? {} : { ca }) },
        headersTimeout: config.server.headersTimeout,
        keepAliveTimeout: 30_000,
        connections: 2,
      });
      agents.set(key, agent);
    }
    return agent;
  };
  return {
    deviceId: opts.deviceId,
    key: opts.key,
    fingerprint: opts.fingerprint,
    halts,
    leases,
    now: opts.now,
    http: (config) =>
      createFleetHttp({
        serverUrl: config.server.url,
        identity,
        now: opts.now,
        timeoutMs: config.server.connectTimeout + config.server.headersTimeout,
        dispatcher: opts.dispatcher ?? agentFor(config),
      }),
    stop() {
      leases.stop();
      for (const a of agents.values()) void a.close();
      agents.clear();
    },
  };
}

/**
 * The interfaces otad starts beside the daemon, as configuration enables them: REST v1 with
 * /metrics and the Socket.IO stream (api.enabled), and the D-Bus service (dbus.enabled). They
 * share one rate limiter for control actions, so a caller cannot multiply its budget by
 * switching interface.
 */
import { systemClock, type Clock } from '../core/clock.js';
import type { Config } from '../config/load.js';
import type { Logging } from '../core/logging.js';
import type { DaemonControl } from '../daemon/control.js';
import type { Interface, InterfaceStarter } from '../daemon/main.js';
import { startDbusService } from './dbus.js';
import { createEdge } from './edge.js';
import { createFixedWindowLimiter } from './rate-limit.js';
import { startApiServer, type ApiAddress } from './server.js';
import { loadTokensFile } from './tokens.js';

export interface StartedInterfaces {
  interfaces: Interface[];
  /** The REST/Socket.IO address, when the API is enabled. */
  api: ApiAddress | null;
}

export async function startInterfaces(control: DaemonControl, config: Config, logging: Logging, clock: Clock = systemClock): Promise<StartedInterfaces> {
  const logger = logging.logger.child({ component: 'api' });
  const limiter = createFixedWindowLimiter({ windowMs: config.api.controlRateLimit.window, max: config.api.controlRateLimit.max, clock });
  const edge = createEdge({ control, limiter, audit: logging.audit });
  const interfaces: Interface[] = [];
  let api: ApiAddress | null = null;
  try {
    if (config.api.enabled) {
      const tokens = loadTokensFile(config.api.tokensFile);
      const server = await startApiServer({ control, edge, tokens, api: config.api, stateDir: config.paths.stateDir, clock, logger, audit: logging.audit });
      api = server.address;
      interfaces.push({ name: 'api', close: () => server.close() });
    }
    if (config.dbus.enabled) {
      const service = await startDbusService({ control, edge, logger: logging.logger.child({ component: 'dbus' }), bus: config.dbus.bus, name: config.dbus.name });
      interfaces.push({ name: 'dbus', close: () => service.close() });
    }
  } catch (error) {
    for (const i of interfaces) await i.close().catch(() => undefined);
    throw error;
  }
  return { interfaces, api };
}

export const defaultInterfaces: InterfaceStarter = async (daemon, config, logging) => (await startInterfaces(daemon, config, logging)).interfaces;

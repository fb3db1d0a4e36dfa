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
import { isOtaError } from '../core/errors.js';

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
    const tokens = config.api.enabled ? loadTokensOrNull(config.api.tokensFile, logger) : null;
    if (tokens) {
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

/**
 * A missing tokens file leaves the REST API and Socket.IO off and otad running: updates, rollbacks
 * and D-Bus go on, and the error says how to fix it. Stopping the whole daemon (and, under systemd,
 * never restarting it) would leave a robot without updates for want of a file only the API needs.
 * A tokens file that exists but is unsafe or invalid still stops otad (exit 78): that is a mistake
 * someone made and must see, and serving with a secret others can read is worse than not serving.
 */
function loadTokensOrNull(path: string, logger: Logging['logger']): ReturnType<typeof loadTokensFile> | null {
  try {
    return loadTokensFile(path);
  } catch (error) {
    if (!(isOtaError(error) && error.code === 'CONFIG_NOT_FOUND' && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')) throw error;
    logger.error('the REST API and Socket.IO stay off: there is no API tokens file; create it with mode 0600 (docs/api.md) and restart otad, or set api.enabled: false', { path });
    return null;
  }
}

export const defaultInterfaces: InterfaceStarter = async (daemon, config, logging) => (await startInterfaces(daemon, config, logging)).interfaces;

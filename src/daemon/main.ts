/**
 * The otad process: load configuration, take the single-instance lock, restore every product's
 * lifecycle, start the interfaces, and handle signals (SIGTERM/SIGINT: checkpoint and close;
 * SIGHUP: reload configuration and report what changed or why the new file was refused).
 */
import { existsSync } from 'node:fs';
import { ensurePrivateDir } from '../core/private-dir.js';
import { join } from 'node:path';
import { systemClock, type Clock } from '../core/clock.js';
import { OtaError, toErrorData } from '../core/errors.js';
import { createLogging, type Logging } from '../core/logging.js';
import { isJournalStream } from '../core/journal-format.js';
import { loadDeviceIdentity, systemDeviceIdSources, type DeviceIdSources } from '../core/device-id.js';
import { loadConfig, type Config } from '../config/load.js';
import { Store } from '../store/store.js';
import { readGoldenRoot } from '../trust/trusted-root.js';
import { Daemon, type ReloadReport } from './daemon.js';
import type { StepProvider } from './step-provider.js';
import { acquireInstanceLock, type InstanceLock } from './instance-lock.js';
import { newCheckinMemory, startCheckins, type CheckinReporter } from './checkin.js';
import { keyFingerprint, loadOrCreateDeviceKey } from '../fleet/signing.js';
import { createDeviceFleet } from '../fleet/device-fleet.js';
import { createSdNotifier, formatProductStatus, type SdNotifier } from './sd-notify.js';
import { startProcessUnits } from './process-units-at-start.js';

/** Something started beside the daemon (REST, Socket.IO, D-Bus): stopped on shutdown. */
export interface Interface {
  name: string;
  close(): Promise<void>;
}

export type InterfaceStarter = (daemon: Daemon, config: Config, logging: Logging) => Promise<Interface[]>;

export interface OtadOptions {
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  stepProvider: StepProvider;
  startInterfaces?: InterfaceStarter;
  deviceIdSources?: DeviceIdSources;
  /** Install signal handlers (the real process); tests that embed the daemon leave this off. */
  handleSignals?: boolean;
}

export interface RunningOtad {
  daemon: Daemon;
  config: Config;
  logging: Logging;
  reload(): ({ ok: true } & ReloadReport) | { ok: false; error: string };
  /** Check in every product now (nothing when check-ins are off). */
  checkIn(): Promise<void>;
  shutdown(reason: string): Promise<void>;
}

export async function startOtad(opts: OtadOptions): Promise<RunningOtad> {
  const env = opts.env ?? process.env;
  const clock = opts.clock ?? systemClock;
  const loadOpts = { ...(opts.configPath ? { path: opts.configPath } : {}), env, allowMissingDefault: true };
  const config = loadConfig(loadOpts);
  // Only the real process's fd 1 can be the journal stream systemd named in JOURNAL_STREAM.
  const journal = opts.handleSignals === true && isJournalStream(env);
  const logging = createLogging({ level: config.logging.level, stdout: config.logging.stdout, journal, file: config.logging.file, auditFile: config.logging.auditFile });
  const log = logging.logger;

  let lock: InstanceLock | null = null;
  let daemon: Daemon | null = null;
  let interfaces: Interface[] = [];
  let checkins: CheckinReporter | null = null;
  const checkinMemory = newCheckinMemory();
  const startCheckinsFor = (d: Daemon, c: Config): CheckinReporter | null =>
    c.fleet.checkins && c.server.checkIn && opts.stepProvider.real && d.fleet
      ? startCheckins({ control: d, fleet: d.fleet, config: c, logger: log, memory: checkinMemory, now: () => clock.now() })
      : null;
  try {
    // The state folder holds the database, the device id and trusted metadata; the cache the
    // downloads and release cache; the backups preserved configuration: otad's alone (0700).
    for (const dir of new Set([config.paths.stateDir, config.paths.cacheDir, config.paths.backupDir])) {
      const r = ensurePrivateDir(dir);
      if (r.tightenedFrom !== null) log.warn(`tightened ${dir} from mode ${r.tightenedFrom.toString(8)} to 700: it holds otad's private state`, { dir, from: r.tightenedFrom.toString(8) });
    }
    lock = acquireInstanceLock(config.paths.lockFile);
    const identity = await loadDeviceIdentity(join(config.paths.stateDir, 'device-id'), opts.deviceIdSources ?? systemDeviceIdSources());
    const uncleanStart = readUncleanStart(config.paths.database);
    const keyFile = join(config.paths.stateDir, 'device-key.pem');
    // Without its key otad still starts (it must be able to finish or roll back a run); it then
    // neither checks in nor takes leases, and says why.
    let keyError: unknown = null;
    const deviceKey = await loadOrCreateDeviceKey(keyFile).catch((error: unknown) => {
      keyError = error;
      return null;
    });
    const fingerprint = deviceKey ? keyFingerprint(deviceKey.publicKey) : null;
    daemon = new Daemon({
      config,
      logging,
      clock,
      deviceId: identity.deviceId,
      stepProvider: opts.stepProvider,
      uncleanStart,
      ...(deviceKey && fingerprint
        ? { fleet: (store: Store) => createDeviceFleet({ deviceId: identity.deviceId, key: deviceKey, fingerprint, store, logger: log, now: () => clock.now() }) }
        : {}),
    });
    log.info('otad starting', {
      pid: process.pid,
      config: config.source ?? '(defaults)',
      environment: config.environment,
      deviceId: identity.deviceId,
      deviceIdSource: identity.source,
      deviceKey: fingerprint,
      products: config.products.map((p) => p.name),
      uncleanStart,
    });
    // Said after "otad starting", so every start's log begins with that line.
    if (keyError !== null) {
      log.error('the device key cannot be used: no check-ins and no update leases until it is fixed (move the file away to make a new one)', { file: keyFile, error: toErrorData(keyError) });
    }
    if (deviceKey?.created) log.info(`made a new device key, fingerprint ${fingerprint}`, { fingerprint, publicKey: deviceKey.publicKey, file: keyFile });
    // Before any lifecycle is restored, so no step stops or starts a unit at the same time.
    const store = daemon.store;
    await startProcessUnits({
      products: config.products,
      stateDir: config.paths.stateDir,
      simulation: config.simulation,
      savedState: (product) => store.loadSnapshot(product)?.state ?? null,
      logger: log,
    });
    await daemon.start();
    await reportTrustedRoot(config, log);
    if (opts.startInterfaces) interfaces = await opts.startInterfaces(daemon, config, logging);
    checkins = startCheckinsFor(daemon, config);
    void checkins?.reportAll();
  } catch (error) {
    log.error('otad could not start', { error: toErrorData(error) });
    lock?.release();
    await logging.close();
    throw error;
  }

  const d = daemon;
  // Only the real process speaks to the service manager: an embedded daemon (tests) must not claim
  // readiness for whatever process runs it.
  const notifier: SdNotifier | null = opts.handleSignals
    ? createSdNotifier({
        env,
        pid: process.pid,
        onError: (error) =>
          log.error('cannot notify systemd (NOTIFY_SOCKET is set): the sd-notify module is missing or failed; install libsystemd-dev and run npm ci again, or otad will not be reported ready', {
            error: error.message,
          }),
      })
    : null;
  const productStatus = () => formatProductStatus(d.status().products.map((p) => ({ product: p.product, state: p.state })));
  if (notifier?.enabled) d.bus.subscribe('transition', () => notifier.status(productStatus()));
  let stopping: Promise<void> | null = null;
  const running: RunningOtad = {
    daemon: d,
    config,
    logging,
    reload() {
      let next: Config;
      try {
        next = loadConfig(loadOpts);
      } catch (error) {
        const message = error instanceof OtaError ? error.message : String(error);
        log.error('configuration reload refused; keeping the running configuration', { error: toErrorData(error) });
        logging.audit.audit({ kind: 'config-reload', message: 'configuration reload refused', details: { error: message } });
        return { ok: false, error: message };
      }
      let report: ReloadReport;
      try {
        report = d.reload(next);
      } catch (error) {
        const message = error instanceof OtaError ? error.message : String(error);
        log.error('configuration reload refused; keeping the running configuration', { error: toErrorData(error) });
        logging.audit.audit({ kind: 'config-reload', message: 'configuration reload refused', details: { error: message } });
        return { ok: false, error: message };
      }
      // Check-ins follow the server and the fleet section: they go where the next run's requests go.
      if (report.applied.some((k) => k.startsWith('server.') || k.startsWith('fleet.') || k === 'environment' || k.startsWith('environments.'))) {
        checkins?.stop();
        checkins = startCheckinsFor(d, d.currentConfig);
      }
      log.info(report.changed.length ? 'configuration reloaded' : 'configuration reloaded: nothing changed', { ...report });
      logging.audit.audit({ kind: 'config-reload', message: 'configuration reloaded', details: { ...report } });
      return { ok: true, ...report };
    },
    checkIn: () => checkins?.reportAll() ?? Promise.resolve(),
    shutdown(reason: string) {
      if (stopping) return stopping;
      stopping = (async () => {
        notifier?.stopping();
        notifier?.close();
        log.info('otad stopping', { reason });
        checkins?.stop();
        for (const i of interfaces) await i.close().catch((e: unknown) => log.warn(`closing ${i.name} failed`, { error: String(e) }));
        await d.stop();
        lock?.release();
        log.info('otad stopped cleanly');
        await logging.close();
      })();
      return stopping;
    },
  };

  if (opts.handleSignals) {
    const stop = (signal: string) => {
      void running.shutdown(signal).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      // systemd >= 253 matches RELOADING=1 to the reload by its MONOTONIC_USEC (Type=notify-reload).
      notifier?.reloading();
      const result = running.reload();
      notifier?.ready(result.ok ? productStatus() : `${productStatus()} (configuration reload refused: ${result.error})`);
    });
    process.on('unhandledRejection', (reason) => log.error('unhandled rejection (the daemon keeps running)', { error: toErrorData(reason) }));
  }
  log.info('otad ready', { pid: process.pid, products: d.status().products.map((p) => ({ product: p.product, state: p.state })) });
  // READY=1 only now: every product is restored and every interface listens (api.json is written).
  notifier?.ready(productStatus());
  notifier?.startWatchdog();
  return running;
}

/**
 * Every product's checks start from the golden trusted root. Without a usable one otad still runs
 * (it keeps serving status and can roll back), but no update can be trusted: say so at start, with
 * the code a check would fail with, instead of first at 3 AM.
 */
async function reportTrustedRoot(config: Config, log: Logging['logger']): Promise<void> {
  if (config.products.length === 0) return;
  try {
    await readGoldenRoot(config.paths.trustedRoot);
  } catch (error) {
    log.error('no usable trusted root: no update can be checked until it is fixed', { error: toErrorData(error), path: config.paths.trustedRoot });
  }
}

/**
 * A clean shutdown is recorded in the store; anything else (SIGKILL, power cut) is an unclean start.
 * The very first start, on a state folder without a database, is not: nothing ran before it.
 */
function readUncleanStart(database: string): boolean {
  if (!existsSync(database)) return false;
  let store: Store | null = null;
  try {
    store = Store.open(database);
    return store.getValue('cleanShutdown') !== '1';
  } catch {
    return true;
  } finally {
    store?.close();
  }
}

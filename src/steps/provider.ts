/**
 * Wires the real steps for each product: the repository (TUF over HTTP, or a local folder), the
 * network monitor, the system adapters (disk, power, clock, inhibit file, check commands), the
 * backup manager, the release store and the service manager. The daemon calls `steps(ctx)` once
 * per product and `journalVerdict(product)` on start.
 */
import type { Steps } from '../../machines/types.js';
import type { ProductConfig } from '../config/schema.js';
import type { Config } from '../config/load.js';
import type { StepContext, StepProvider } from '../daemon/step-provider.js';
import { createSystemAdapters, type SystemAdapters } from '../adapters/system/index.js';
import { createBackupManager } from '../backup/backup-manager.js';
import { createHttpClient, type HttpClient } from '../net/http-client.js';
import { createNetworkMonitor, type NetworkSnapshot } from '../net/network-monitor.js';
import { createSystemInfoAdapter } from '../net/system-info.js';
import { detectProduct } from '../products/registry.js';
import { createApply } from './apply.js';
import { createBackupStep } from './backup.js';
import { createCheckStep } from './check.js';
import { createCommit } from './commit.js';
import { executionPortsFromContext, journalDirFor } from './ports.js';
import { journalVerdict } from './journal-verdict.js';
import { createPreCheckStep } from './pre-check.js';
import { createRepositoryForProduct, repositoryUrlsFor } from './repository-factory.js';
import { createRollback } from './rollback.js';
import { previewRollback, type RunFacts } from './rollback-preview.js';
import { systemClock } from '../core/clock.js';
import { createStageStep } from './stage.js';
import { aheadOps, withStagedAhead } from './stage-ahead.js';
import { serviceChooser } from '../services/choice.js';
import path from 'node:path';
import { createValidate } from './validate.js';
import { OTAD_VERSION } from '../core/version.js';
import { silentLogger } from '../core/logger.js';
import type { PackageLimits } from '../package/limits.js';

export interface RealStepOptions {
  /** Replace the system adapters (tests on machines without a battery sensor or timedatectl). */
  system?: Partial<SystemAdapters>;
}

export interface RealStepProvider extends StepProvider {
  /** The newest network snapshot any product's check took. */
  network(): NetworkSnapshot | null;
}

export function realStepProvider(options: RealStepOptions = {}): RealStepProvider {
  let network: NetworkSnapshot | null = null;
  const clients = new Map<string, HttpClient>();

  function httpFor(ctx: StepContext): HttpClient {
    // One pool per distinct transport setting: a reload that changes any of them gets a new pool for
    // the next run. An old pool is not closed (a run in flight may still use it); its idle sockets
    // close by themselves after the idle timeout.
    const key = JSON.stringify([ctx.config.server.caFile ?? null, ctx.config.server.connectTimeout, ctx.config.server.headersTimeout, ctx.config.server.idleTimeout]);
    let http = clients.get(key);
    if (!http) {
      http = createHttpClient({
        connectTimeoutMs: ctx.config.server.connectTimeout,
        headersTimeoutMs: ctx.config.server.headersTimeout,
        idleTimeoutMs: ctx.config.server.idleTimeout,
        ...(ctx.config.server.caFile ? { caFile: ctx.config.server.caFile } : {}),
        userAgent: `otad/${OTAD_VERSION}`,
        logger: ctx.logger,
      });
      clients.set(key, http);
    }
    return http;
  }

  return {
    real: true,
    network: () => network,

    steps(ctx: StepContext): Steps {
      const { product, config, clock, logger, audit } = ctx;
      const http = httpFor(ctx);
      const isLocal = product.repository.kind === 'local';
      const monitor = createNetworkMonitor({
        si: createSystemInfoAdapter(),
        http,
        clock,
        probeUrl: isLocal ? null : new URL('timestamp.json', repositoryUrlsFor(product, config).metadataBaseUrl).toString(),
        logger,
      });
      const repository = createRepositoryForProduct(product, config, {
        clock,
        logger,
        audit,
        http,
        onThroughput: (bytes, ms) => monitor.recordThroughput(bytes, ms),
      });
      const system: SystemAdapters = { ...createSystemAdapters(), ...options.system };
      const execution = executionPortsFromContext(ctx);
      const backups = createBackupManager({ clock, logger, deviceId: ctx.deviceId });

      const stage = createStageStep({ product, config, repository, clock, logger, progress: ctx.progress,
        audit,
        limits: definedLimits(product.packageLimits),
        markBad: (version, reason, runId) => ctx.store.markBad(product.name, version, { reason, at: clock.now(), by: 'automatic', actor: 'otad', runId }),
      });
      const aheadPorts = { product, config, repository, clock, logger, audit, events: {} };
      ctx.onAhead?.(aheadOps(aheadPorts, stage));

      return {
        check: createCheckStep({
          product,
          config,
          deviceId: ctx.deviceId,
          repository,
          network: monitor,
          isBad: (p, v) => ctx.store.isBad(p, v),
          clock,
          logger,
          audit,
          networkStatus: {
            update(snapshot) {
              network = snapshot;
              ctx.store.setValue(`network:${product.name}`, JSON.stringify(snapshot));
            },
          },
        }),
        preCheck: createPreCheckStep({
          ...system,
          product,
          config,
          network: monitor,
          clock,
          inhibits: ctx.inhibits,
          logger,
          // A local folder (USB stick) needs no server.
          ...(isLocal ? { options: { requireServerReachable: false } } : {}),
        }),
        backup: createBackupStep({ product, config, backups, detect: detectProduct, clock, logger, deviceId: ctx.deviceId, progress: ctx.progress }),
        // A release staged ahead of the install slot is verified again and used; otherwise the stage step runs.
        stage: withStagedAhead(stage, aheadPorts),
        apply: createApply(execution),
        validate: createValidate(execution, { progress: ctx.progress }),
        commit: createCommit(execution),
        rollback: createRollback(execution),
      };
    },

    previewRollback(product: ProductConfig, config: Config, run: RunFacts) {
      return previewRollback(
        {
          product,
          journalDir: journalDirFor(config.paths.stateDir),
          backupDir: config.paths.backupDir,
          backups: createBackupManager({ clock: systemClock, logger: silentLogger, deviceId: '' }),
          clock: systemClock,
          logger: silentLogger,
        },
        run,
      );
    },

    rehearsal(ctx: StepContext, scratchDir: string) {
      const { product, config, clock, logger } = ctx;
      const http = httpFor(ctx);
      const isLocal = product.repository.kind === 'local';
      const monitor = createNetworkMonitor({
        si: createSystemInfoAdapter(),
        http,
        clock,
        probeUrl: isLocal ? null : new URL('timestamp.json', repositoryUrlsFor(product, config).metadataBaseUrl).toString(),
        logger,
      });
      const repository = createRepositoryForProduct(product, config, { clock, logger, audit: ctx.audit, http, onThroughput: (bytes, ms) => monitor.recordThroughput(bytes, ms) });
      const system: SystemAdapters = { ...createSystemAdapters(), ...options.system };
      // The stage step works in the scratch folder: its own download cache, releases and staging
      // folders (one filesystem), so nothing of the product's own is written or removed.
      const scratchProduct: ProductConfig = { ...product, releasesDir: path.join(scratchDir, 'releases') };
      const scratchConfig: Config = { ...config, paths: { ...config.paths, cacheDir: path.join(scratchDir, 'cache') } };
      const chooser = serviceChooser(product, { stateDir: config.paths.stateDir, logger });
      return {
        // It refreshes the signed metadata and compares versions; its manifest cache is the scratch folder's.
        check: createCheckStep({ product, config: scratchConfig, deviceId: ctx.deviceId, repository, network: monitor, isBad: (p, v) => ctx.store.isBad(p, v), clock, logger, audit: ctx.audit }),
        preCheck: createPreCheckStep({ ...system, product, config, network: monitor, clock, inhibits: ctx.inhibits, logger, ...(isLocal ? { options: { requireServerReachable: false } } : {}) }),
        stage: createStageStep({ product: scratchProduct, config: scratchConfig, repository, clock, logger, progress: ctx.progress, limits: definedLimits(product.packageLimits) }),
        services: async () => {
          const s = await chooser();
          return { kind: s.kind, units: s.units };
        },
      };
    },

    journalVerdict(product: ProductConfig, config: Config) {
      return journalVerdict(product, { journalDir: journalDirFor(config.paths.stateDir), logger: silentLogger });
    },
  };
}

export function defaultStepProvider(): RealStepProvider {
  return realStepProvider();
}

/** The product's package caps without the keys it leaves unset (those keep their defaults). */
function definedLimits(limits: ProductConfig['packageLimits']): Partial<PackageLimits> {
  return Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) as Partial<PackageLimits>;
}

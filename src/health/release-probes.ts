/**
 * The probes a release is judged by in validation and rollback probation: the product's
 * configured health checks, a running check for every unit it runs, and otad's own marker check.
 */
import { OtaError } from '../core/errors.js';
import type { HealthCheckConfig, ProductConfig } from '../config/schema.js';
import { RELEASE_MARKER } from '../products/registry.js';
import type { ReleaseStore } from '../release/layout.js';
import { readReleaseMarker } from '../release/marker.js';
import type { ServiceManager } from '../services/service-manager.js';
import { createProbes, type HealthCheck, type HealthProbe } from './checks.js';

/** The product definition's checks in the shape the probes take. */
export function toHealthChecks(checks: readonly HealthCheckConfig[]): HealthCheck[] {
  return checks.map((c): HealthCheck => {
    switch (c.kind) {
      case 'unit':
        return { kind: 'unit', unit: c.unit };
      case 'http':
        return { kind: 'http', url: c.url, expectStatus: c.expectStatus, timeoutMs: c.timeout };
      case 'command':
        return { kind: 'command', command: c.command, timeoutMs: c.timeout };
      case 'version':
        return { kind: 'version', ...(c.command === undefined ? {} : { command: c.command }), ...(c.file === undefined ? {} : { file: c.file }) };
    }
  });
}

export const MARKER_CHECK_NAME = 'release-marker';

/**
 * The check every validation includes: the install path resolves to the release of `version`
 * and that release's marker says so. With `requireMarker: false` (a rollback to a release that
 * was adopted, not installed by otad) a missing marker is accepted, a different one is not.
 */
export function markerProbe(store: ReleaseStore, productName: string, version: string, requireMarker: boolean): HealthProbe {
  return {
    name: MARKER_CHECK_NAME,
    kind: 'version',
    timeoutMs: 5000,
    async run() {
      const live = await store.current();
      if (live === null) return { ok: false, message: `${store.installPath} does not resolve to a release` };
      if (live.version !== version) return { ok: false, message: `${store.installPath} resolves to release ${live.version}, expected ${version}`, details: { live: live.version } };
      const marker = await readReleaseMarker(live.dir);
      if (marker === null) {
        return requireMarker
          ? { ok: false, message: `release ${live.dir} has no ${RELEASE_MARKER}` }
          : { ok: true, message: `${store.installPath} resolves to ${version} (no marker: not installed by otad)` };
      }
      if (marker.product !== productName || marker.version !== version) {
        return { ok: false, message: `${RELEASE_MARKER} in ${live.dir} says ${marker.product} ${marker.version}, expected ${productName} ${version}` };
      }
      return { ok: true, message: `${store.installPath} resolves to ${productName} ${version}` };
    },
  };
}

/** The product's configured probes plus the marker probe, for the release of `version`. */
export function releaseProbes(
  ports: { product: ProductConfig; simulation: boolean },
  store: ReleaseStore,
  services: ServiceManager,
  version: string,
  requireMarker: boolean,
  units: readonly string[] = [],
): HealthProbe[] {
  const configured = createProbes(toHealthChecks(ports.product.healthChecks), {
    services,
    // The link, not the release dir: checks judge what is live.
    releaseDir: store.installPath,
    expectedVersion: version,
  });
  if (configured.some((p) => p.name === MARKER_CHECK_NAME)) {
    throw new OtaError('CONFIG_INVALID', `health check name "${MARKER_CHECK_NAME}" is reserved for otad's own version check`, { details: { product: ports.product.name } });
  }
  // Every unit the product runs must stay up through probation, configured as a check or not: a
  // service that died at start would otherwise go unnoticed while something else answers its port.
  const watched = new Set(ports.product.healthChecks.flatMap((c) => (c.kind === 'unit' ? [c.unit] : [])));
  const running = ports.simulation ? [] : units.filter((u) => !watched.has(u)).map((u) => unitRunningProbe(services, u));
  return [...configured, ...running, markerProbe(store, ports.product.name, version, requireMarker)];
}

function unitRunningProbe(services: ServiceManager, unit: string): HealthProbe {
  return {
    name: `${unit} running`,
    kind: 'unit',
    timeoutMs: 10_000,
    async run() {
      const st = await services.status(unit);
      return st.active ? { ok: true, message: `${unit} is ${st.state}` } : { ok: false, message: `${unit} is ${st.state}, expected it running`, details: { state: st.state } };
    },
  };
}

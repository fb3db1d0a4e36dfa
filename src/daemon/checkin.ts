/**
 * Fleet check-ins: after otad starts and whenever a run ends, each product reports its device id,
 * installed version, state and last outcome to the update server (POST /api/v1/checkin), which
 * keeps the fleet view. Best effort: a server that does not answer (or a static host that has no
 * such endpoint) costs one debug line, never a failed run.
 */
import type { Logger } from '../core/logger.js';
import type { DaemonControl } from './control.js';

export interface CheckinOptions {
  control: DaemonControl;
  /** The update server's base URL (config.server.url). */
  serverUrl: string;
  logger: Logger;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface CheckinReporter {
  /** Report every product now. */
  reportAll(): Promise<void>;
  stop(): void;
}

export function startCheckins(opts: CheckinOptions): CheckinReporter {
  const doFetch = opts.fetch ?? fetch;
  const log = opts.logger.child({ component: 'checkin' });
  let url: string | null;
  try {
    url = /^https?:/.test(opts.serverUrl) ? new URL('api/v1/checkin', opts.serverUrl.endsWith('/') ? opts.serverUrl : `${opts.serverUrl}/`).toString() : null;
  } catch {
    url = null;
  }

  async function report(product: string): Promise<void> {
    if (!url) return;
    const status = opts.control.status();
    const p = status.products.find((x) => x.product === product);
    if (!p) return;
    const body = {
      deviceId: status.deviceId,
      product: p.product,
      version: p.installedVersion,
      state: p.state,
      lastOutcome: p.lastOutcome,
      error: p.error ? `${p.error.code}: ${p.error.message}`.slice(0, 512) : null,
    };
    try {
      const res = await doFetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5000),
      });
      await res.body?.cancel();
      if (!res.ok) log.debug('check-in not accepted', { product, status: res.status });
    } catch (error) {
      log.debug('check-in failed', { product, error: (error as Error).message });
    }
  }

  const unsubscribe = opts.control.bus.subscribe('notification', (n) => {
    if (n.kind === 'run-ended') void report(n.product);
  });

  return {
    async reportAll() {
      await Promise.all(opts.control.status().products.map((p) => report(p.product)));
    },
    stop: unsubscribe,
  };
}

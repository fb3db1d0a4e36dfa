/**
 * The commands that ask the daemon to do something: the lifecycle events, inhibits and
 * acknowledgements. Each is one REST request; the daemon decides whether it is allowed now.
 */
import type { DispatchResult } from '../../daemon/control.js';
import { parseDuration } from '../../core/duration.js';
import { OtaError } from '../../core/errors.js';
import { type CliContext, iso, out, printJson } from './context.js';

export async function dispatchEvent(ctx: CliContext, type: string, product: string | undefined, reason: string | undefined): Promise<void> {
  const result = await (await ctx.client()).request<DispatchResult>('POST', '/api/v1/events', {
    type,
    ...(product ? { product } : {}),
    ...(reason ? { reason } : {}),
  });
  if (ctx.json) printJson(result);
  else out(`${result.product}: ${type} accepted; now ${result.state}${result.runId ? ` (run ${result.runId})` : ''}`);
}

export async function holdInhibit(ctx: CliContext, holder: string, opts: { reason: string; duration?: string }): Promise<void> {
  let durationMs: number | undefined;
  if (opts.duration !== undefined) {
    try {
      durationMs = parseDuration(opts.duration);
    } catch (error) {
      throw new OtaError('CONFIG_INVALID', `--duration ${opts.duration}: ${(error as Error).message}`);
    }
  }
  const r = await (await ctx.client()).request<{ holder: string; expiresAt: number }>('POST', '/api/v1/inhibit', { holder, reason: opts.reason, ...(durationMs ? { durationMs } : {}) });
  if (ctx.json) printJson(r);
  else out(`inhibit held by ${r.holder} until ${iso(r.expiresAt)}: no update of any product starts before then; release it with \`otactl inhibit release ${r.holder}\``);
}

export async function releaseInhibit(ctx: CliContext, holder: string): Promise<void> {
  const r = await (await ctx.client()).request<{ released: boolean }>('DELETE', `/api/v1/inhibit/${encodeURIComponent(holder)}`);
  if (ctx.json) printJson(r);
  else out(`inhibit held by ${holder} released`);
}

export async function ackNotification(ctx: CliContext, product: string, version: string | undefined): Promise<void> {
  const r = await (await ctx.client()).request<{ acknowledged: number }>('POST', '/api/v1/notifications/ack', { product, ...(version ? { version } : {}) });
  if (ctx.json) printJson(r);
  else out(`${r.acknowledged} notification(s) acknowledged`);
}

/**
 * Rollback and the release list: where a rollback goes, which releases are known and why one is
 * bad, and clearing a bad mark. Each is one or two REST requests; the daemon decides.
 */
import type { ApiClient } from '../../api/client.js';
import type { BadMarkInfo, DaemonStatus, DispatchResult, ReleaseHistory } from '../../daemon/control.js';
import type { ProductSource } from '../../daemon/source-selection.js';
import { OtaError } from '../../core/errors.js';
import { type CliContext, iso, out, printJson } from './context.js';

/** The product named, or the only one the daemon manages. */
async function productOrOnly(c: ApiClient, product: string | undefined): Promise<string> {
  if (product) return product;
  const s = await c.request<DaemonStatus>('GET', '/api/v1/status');
  if (s.products.length === 1) return (s.products[0] as DaemonStatus['products'][number]).product;
  throw new OtaError('CONFIG_INVALID', `name a product: this robot manages ${s.products.map((p) => p.product).join(', ') || 'none'}`);
}

const releasesPath = (product: string) => `/api/v1/products/${encodeURIComponent(product)}/releases`;

export async function rollback(ctx: CliContext, productArg: string | undefined, opts: { reason?: string; markBad?: boolean }): Promise<void> {
  const c = await ctx.client();
  const product = await productOrOnly(c, productArg);
  const before = await c.request<ReleaseHistory>('GET', releasesPath(product));
  const result = await c.request<DispatchResult>('POST', '/api/v1/events', {
    product,
    type: 'ROLLBACK',
    ...(opts.reason ? { reason: opts.reason } : {}),
    ...(opts.markBad ? { markBad: true } : {}),
  });
  if (ctx.json) return printJson({ ...result, rollbackTarget: before.rollbackTarget, markBad: opts.markBad === true });
  const t = before.rollbackTarget;
  const to = t === null ? 'the previous release' : t.version === null ? 'nothing (the failed first install is undone)' : t.version;
  out(`${result.product}: rolling back to ${to}${t?.method === 'backup' ? ' (from a backup)' : ''}; now ${result.state}${result.runId ? ` (run ${result.runId})` : ''}`);
  const leaves = t?.leaves ?? before.installedVersion;
  if (leaves !== null && leaves !== t?.version) {
    out(
      opts.markBad
        ? `  ${leaves} is marked bad and will not be offered again (undo: otactl releases unmark ${leaves})`
        : `  ${leaves} is not marked bad: a later check may offer it again (use --mark-bad to keep it away)`,
    );
  }
}

export function badText(b: BadMarkInfo): string {
  const who = b.by === null ? 'recorded before otad kept who' : b.by === 'operator' ? `by operator ${b.actor ?? '(unknown)'}` : `automatically by ${b.actor ?? 'otad'}`;
  return `BAD since ${iso(b.at)} ${who}${b.runId ? ` (run ${b.runId})` : ''}: ${b.reason}`;
}

export async function releases(ctx: CliContext, opts: { product?: string }): Promise<void> {
  const c = await ctx.client();
  const product = await productOrOnly(c, opts.product);
  const h = await c.request<ReleaseHistory>('GET', releasesPath(product));
  if (ctx.json) return printJson(h);
  const t = h.rollbackTarget;
  const rollbackText =
    t === null
      ? `rollback: nothing to go back to${h.rollbackUnavailable ? ` (${h.rollbackUnavailable})` : ''}`
      : `rollback goes to ${t.version ?? 'nothing (first install undone)'}${t.method === 'backup' ? ' (from a backup)' : ''}`;
  out(`${h.product}: installed ${h.installedVersion ?? '-'}   ${rollbackText}`);
  if (h.releases.length === 0) out('  no releases known yet');
  for (const r of h.releases) {
    const tags = [r.installed ? 'installed' : null, r.previous ? 'previous' : null, r.onDisk ? 'on disk' : null, r.backup ? 'backup' : null, r.foundAt ? `found ${iso(r.foundAt)}` : null].filter((x) => x !== null);
    out(`  ${r.version.padEnd(12)} ${tags.join(', ') || '-'}`);
    if (r.bad) out(`  ${' '.repeat(12)} ${badText(r.bad)}`);
  }
}

export async function unmark(ctx: CliContext, version: string, opts: { product?: string }): Promise<void> {
  const c = await ctx.client();
  const product = await productOrOnly(c, opts.product);
  const r = await c.request<{ product: string; version: string; cleared: BadMarkInfo }>('DELETE', `${releasesPath(product)}/${encodeURIComponent(version)}/bad`);
  if (ctx.json) return printJson(r);
  out(`${r.product} ${r.version}: bad mark cleared (it was ${badText(r.cleared)}); a check may offer it again`);
}

/** `otactl source`: the channel and repository a product follows; with --channel/--repository, switch them. */
export async function source(ctx: CliContext, opts: { product?: string; channel?: string; repository?: string }): Promise<void> {
  const c = await ctx.client();
  const product = await productOrOnly(c, opts.product);
  const path = `/api/v1/products/${encodeURIComponent(product)}/source`;
  const switching = opts.channel !== undefined || opts.repository !== undefined;
  const r = switching
    ? await c.request<ProductSource & { changed: boolean }>('PUT', path, { ...(opts.channel ? { channel: opts.channel } : {}), ...(opts.repository ? { repository: opts.repository } : {}) })
    : await c.request<ProductSource>('GET', path);
  if (ctx.json) return printJson(r);
  const where = (x: ProductSource) => x.repositories.find((p) => p.name === x.repository)?.location ?? 'the server URL';
  if (switching) out(`${r.product}: ${(r as ProductSource & { changed?: boolean }).changed ? 'now follows' : 'already followed'} channel ${r.channel} of repository ${r.repository} (${where(r)}); the next check uses it`);
  else out(`${r.product}: channel ${r.channel} of repository ${r.repository} (${where(r)})${r.selected ? `, chosen ${iso(r.selected.at)} by ${r.selected.actor ?? r.selected.via}` : ', as configured'}`);
  if (!switching) {
    out(`  channels:     ${r.channels.join(', ')}`);
    out(`  repositories: ${r.repositories.map((x) => `${x.name} (${x.location ?? 'the server URL'})`).join(', ')}`);
    out(`  switching:    ${r.switchAllowed ? 'allowed while the product is idle' : 'forbidden by configuration (allowSourceSwitch: false)'}`);
  }
}

/**
 * `otactl status`: each product's state from the running daemon, or, when it cannot be reached,
 * the state it last saved in its database, printed with a warning on stderr and exit code 5 so a
 * script never mistakes a stopped daemon for a healthy one.
 */
import { existsSync } from 'node:fs';
import { ApiClientError } from '../../api/client.js';
import type { DaemonStatus } from '../../daemon/control.js';
import { type CliContext, iso, out, printJson } from './context.js';
import { EXIT } from './exit-codes.js';
import { downtimeText } from './reading.js';

export interface ProductSummary {
  product: string;
  state: string;
  installedVersion: string | null;
  offeredVersion: string | null;
  lastOutcome: string | null;
  offer?: { downloadBytes?: number; delta?: { fromVersion: string }; package?: { length: number } } | null;
}

/** The one-line summary of a product, shared with `otactl watch`'s first lines. */
export function productLine(p: ProductSummary): string {
  return `${p.product}: ${p.state}  installed ${p.installedVersion ?? '-'}${p.offeredVersion ? `  offered ${p.offeredVersion}${downloadText(p.offer)}` : ''}${p.lastOutcome ? `  last run ${p.lastOutcome}` : ''}`;
}

/** " (download 1.2 MiB, delta from 2.0.0)" or " (download 48 MiB, full package)"; empty for offers from before sizes were shown. */
function downloadText(offer: ProductSummary['offer']): string {
  const bytes = offer?.downloadBytes ?? offer?.package?.length;
  if (bytes === undefined) return '';
  return ` (download ${humanBytes(bytes)}, ${offer?.delta !== undefined ? `delta from ${offer.delta.fromVersion}` : 'full package'})`;
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function printStatus(s: DaemonStatus): void {
  out(`device ${s.deviceId}  otad ${s.otadVersion}  environment ${s.environment}${s.simulation ? '  SIMULATION' : ''}${s.stepsConfigured ? '' : '  (no update steps configured)'}`);
  if (s.deviceKey) out(`device key ${s.deviceKey.fingerprint}  public key ${s.deviceKey.publicKey}`);
  for (const h of s.fleetHalts ?? []) out(`fleet: rollout of ${h.product} ${h.version} is ${h.state}${h.reason ? `: ${h.reason}` : ''}`);
  for (const p of s.products) {
    out(productLine(p));
    if (p.releaseNotes) out(`  notes: ${p.releaseNotes.split('\n')[0]}`);
    if (p.deadlines.scheduledAt) out(`  scheduled for ${iso(p.deadlines.scheduledAt)}`);
    const a = p.downloadAhead;
    if (a && a.policy !== 'never' && a.state !== 'idle') {
      out(`  download ahead (${a.policy}): ${a.state}${a.version ? ` ${a.version}` : ''}${a.reason ? `: ${a.reason}` : ''}${a.nextAttemptAt ? `; next try ${iso(a.nextAttemptAt)}` : ''}`);
    }
    if (a?.lastDiscard) out(`  staged-ahead ${a.lastDiscard.version} discarded ${iso(a.lastDiscard.at)}: ${a.lastDiscard.reason}`);
    if (p.progress) out(`  ${p.progress.step}: ${p.progress.bytes}${p.progress.total ? `/${p.progress.total}` : ''} bytes`);
    if (p.preCheckReasons.length) out(`  waiting: ${p.preCheckReasons.map((r) => `${r.code}: ${r.message}`).join('; ')}`);
    if (p.error) out(`  error: ${p.error.code}: ${p.error.message}`);
    const unsaved = p.saveFailure;
    if (unsaved) out(`  not saved: moved to ${unsaved.to} but cannot save it (${unsaved.error.code}: ${unsaved.error.message}); otad retries${unsaved.nextAttemptAt ? `, next at ${iso(unsaved.nextAttemptAt)}` : ''} (${unsaved.attempts} attempts so far)`);
    if (p.lastDowntime) out(`  downtime of run ${p.lastDowntime.runId}: ${downtimeText(p.lastDowntime)}`);
    out(`  allowed now: ${p.allowedEvents.join(', ') || 'none'}   last check ${iso(p.lastCheckAt)}   next check ${iso(p.nextCheckAt)}`);
    if (p.allowedEvents.includes('ROLLBACK') && p.rollbackTarget) out(`  rollback goes to ${p.rollbackTarget.version ?? 'nothing (first install undone)'} (otactl rollback)`);
  }
  for (const i of s.inhibits) out(`inhibit: held by ${i.holder} ${i.expiresAt === null ? 'while it keeps its inhibitor open' : `until ${iso(i.expiresAt)}`}: ${i.reason}`);
}

export async function status(ctx: CliContext): Promise<void> {
  let s: DaemonStatus;
  try {
    s = await (await ctx.client()).request<DaemonStatus>('GET', '/api/v1/status');
  } catch (error) {
    if (error instanceof ApiClientError && error.unreachable) return offlineStatus(ctx, error);
    throw error;
  }
  if (ctx.json) printJson(s);
  else printStatus(s);
}

interface SnapshotRow {
  product: string;
  state: string;
  run_id: string | null;
  snapshot: string;
  updated_at: number;
}

/** The state as the daemon last saved it: shown, but the command still fails (exit 5). */
async function offlineStatus(ctx: CliContext, unreachable: ApiClientError): Promise<void> {
  const cfg = await ctx.config();
  if (!existsSync(cfg.paths.database)) {
    throw new ApiClientError(null, 'UNREACHABLE', `${unreachable.message}; and there is no state database at ${cfg.paths.database} to read instead`);
  }
  // Loaded here only: a status answered by the daemon does not pay for the native module.
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(cfg.paths.database, { readonly: true, fileMustExist: true });
  let rows: SnapshotRow[];
  try {
    rows = db.prepare('SELECT product, state, run_id, snapshot, updated_at FROM snapshots ORDER BY product').all() as SnapshotRow[];
  } finally {
    db.close();
  }
  const products = rows.map((r) => {
    const ctxt = (JSON.parse(r.snapshot) as { context?: Record<string, unknown> }).context ?? {};
    const offer = ctxt.offer as ({ version?: string } & NonNullable<ProductSummary['offer']>) | null | undefined;
    return {
      product: r.product,
      state: r.state,
      runId: r.run_id,
      installedVersion: (ctxt.installedVersion as string | null) ?? null,
      offeredVersion: offer?.version ?? null,
      offer: offer ?? null,
      lastOutcome: (ctxt.lastOutcome as string | null) ?? null,
      updatedAt: new Date(r.updated_at).toISOString(),
    };
  });
  process.stderr.write(`otactl: ${unreachable.code}: ${unreachable.message}\notactl: otad is not running or not reachable; below is the state it last saved in ${cfg.paths.database}\n`);
  process.exitCode = EXIT.unreachable;
  if (ctx.json) {
    printJson({ source: 'database', daemonReachable: false, reason: unreachable.message, products });
    return;
  }
  out(`saved state (otad not reachable):`);
  if (products.length === 0) out('no product state saved yet');
  for (const p of products) out(`${productLine(p)}  (saved ${p.updatedAt})`);
}

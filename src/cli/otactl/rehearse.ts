/**
 * `otactl rehearse [product]`: ask otad to rehearse an update (POST /api/v1/products/{p}/rehearse)
 * and print its report: what it would download, the disk it needs, the services it would restart,
 * the pre-check's verdicts and the downtime the product's history predicts. Nothing is installed.
 */
import type { RehearsalReport } from '../../daemon/rehearsal.js';
import type { DaemonStatus } from '../../daemon/control.js';
import { OtaError } from '../../core/errors.js';
import { type CliContext, out, printJson } from './context.js';
import { EXIT } from './exit-codes.js';

/** A rehearsal downloads a whole release: wait for it as long as a slow link needs. */
const REHEARSAL_TIMEOUT_MS = 30 * 60_000;

const mib = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MiB (${bytes} bytes)`;

export async function rehearse(ctx: CliContext, product: string | undefined): Promise<void> {
  const client = await ctx.client();
  let name = product;
  if (name === undefined) {
    const names = (await client.request<DaemonStatus>('GET', '/api/v1/status')).products.map((p) => p.product);
    if (names.length !== 1) throw new OtaError('PRODUCT_UNKNOWN', `name a product: this robot manages ${names.join(', ') || 'none'}`, { details: { known: names } });
    name = names[0] as string;
  }
  const r = await client.request<RehearsalReport>('POST', `/api/v1/products/${encodeURIComponent(name)}/rehearse`, undefined, { timeoutMs: REHEARSAL_TIMEOUT_MS });
  if (ctx.json) {
    printJson(r);
    if (r.error !== null) process.exitCode = EXIT.failure;
    return;
  }
  out(`rehearsal of ${r.product} (installed ${r.installedVersion ?? 'none'}), ${r.durationMs} ms; nothing under the install path was changed and no service was touched`);
  if (!r.available && r.stoppedAt === null) out('  check: nothing newer on offer; nothing to download');
  if (r.version !== null) out(`  would install: ${r.version}`);
  if (r.error !== null) out(`  stopped at ${r.stoppedAt}: ${r.error.code}: ${r.error.message}`);
  if (r.download) out(`  download: ${mib(r.download.bytes)}, ${r.download.what}`);
  if (r.disk) out(`  disk needed: ${mib(r.disk.totalBytes)} = download ${r.disk.downloadBytes} + staged tree ${r.disk.stagedBytes} + backup ${r.disk.backupBytes} + minFreeBytes ${r.disk.minFreeBytes}`);
  if (r.staged) out(`  staged: ${r.staged.entries} entries, ${r.staged.bytes} bytes, via ${r.staged.via}${r.staged.indexVerified ? ', verified against the signed tree index' : ''} (scratch folder removed)`);
  out(`  services that would restart (${r.services.manager}): ${r.services.wouldRestart.join(', ') || 'none'}; ${r.services.note}`);
  if (r.preCheck) {
    const pre = r.preCheck;
    const codes = [...new Set(pre.reasons.map((x) => x.code))];
    out(
      pre.ok
        ? '  pre-check: would pass: an install now would get past the pre-check (the fleet gate and the maintenance window are not asked in a rehearsal)'
        : `  pre-check: would block: the real update would be refused now: its pre-check would block on ${codes.join(', ')} and the install would wait in preCheckWaiting until they clear`,
    );
    for (const v of pre.verdicts) out(`    ${v.verdict.padEnd(9)} ${v.condition}: ${v.detail}`);
    const gates = pre.robotState ?? [];
    if (gates.length > 0) {
      const blocked = gates.filter((g) => g.reasons.length > 0);
      out(
        blocked.length === 0
          ? `  robot-state gates: all ${gates.length} passed (${gates.map((g) => g.gate).join(', ')})`
          : `  robot-state gates: ${blocked.length} of ${gates.length} blocked: ${blocked.map((g) => `${g.gate} (${[...new Set(g.reasons.map((x) => x.code))].join(', ')})`).join(', ')}`,
      );
    }
  }
  out(`  predicted downtime: ${r.downtime.predictedMs === null ? 'no history' : `${r.downtime.predictedMs} ms`} (${r.downtime.basis})`);
  // A rehearsal that could not go through (nothing newer is not a failure) exits 1.
  if (r.error !== null) process.exitCode = EXIT.failure;
}

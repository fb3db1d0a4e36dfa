/**
 * The commands that read what the daemon recorded: run history, recent log lines, a run's export,
 * and the offline replay of an export (which loads the machine, and only here).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { LogLine } from '../../core/logging.js';
import { isOtaError, OtaError } from '../../core/errors.js';
import type { RunExport } from '../../daemon/control.js';
import type { RunRecord } from '../../store/store.js';
import type { Downtime, DowntimeSummary } from '../../store/downtime.js';
import { type CliContext, iso, out, printJson } from './context.js';
import { EXIT } from './exit-codes.js';

export async function history(ctx: CliContext, opts: { product?: string; limit: string }): Promise<void> {
  const q = new URLSearchParams({ limit: opts.limit, ...(opts.product ? { product: opts.product } : {}) });
  const r = await (await ctx.client()).request<{ runs: RunRecord[]; downtime?: DowntimeSummary }>('GET', `/api/v1/history?${q}`);
  if (ctx.json) return printJson(r);
  if (r.runs.length === 0) out('no runs yet');
  for (const run of r.runs) {
    const w = run.window;
    const window = w && w.ms !== null ? `  window ${(w.ms / 1000).toFixed(1)} s (staging ${(w.stagingMs / 1000).toFixed(1)} s${w.stagedAhead ? ', staged ahead' : ''}${w.fromScheduled ? ', in the install slot' : ''})` : '';
    out(`${run.runId}  ${run.product}  ${run.kind}  ${iso(run.startedAt)}  ${run.fromVersion ?? '-'} → ${run.toVersion ?? '-'}  ${run.outcome ?? run.state}${run.error ? `  ${run.error.code}` : ''}  downtime ${downtimeText(run.downtime ?? null)}${window}`);
  }
  const s = r.downtime;
  if (s !== undefined && s.count > 0) out(`downtime over ${s.count} measured run${s.count === 1 ? '' : 's'}: last ${ms(s.lastMs)}  median ${ms(s.medianMs)}  max ${ms(s.maxMs)}`);
}

const ms = (v: number | null): string => (v === null ? '-' : `${v < 10 ? v.toFixed(1) : Math.round(v)} ms`);

/** "412 ms (stop 80, switch 3, start 20, probe 309)", "-" without one, or why it has no total. */
export function downtimeText(d: Downtime | null): string {
  if (d === null) return '-';
  if (d.totalMs === null) return d.open !== null ? `open (${d.open})` : `unknown (${d.note ?? 'not measured'})`;
  const split = `stop ${Math.round(d.stopMs)}, switch ${Math.round(d.switchMs)}, start ${Math.round(d.startMs)}, probe ${Math.round(d.probeMs)}`;
  const flags = [d.greenOn === 'old' ? 'green on the old release' : null, d.acrossRestart ? 'across a restart' : null, d.clock === 'wall-clock' ? 'wall clock' : null].filter((x) => x !== null);
  return `${ms(d.totalMs)} (${split}; otad ${ms(d.otadMs)}${flags.length ? `; ${flags.join(', ')}` : ''})`;
}

/** Which product a log line is about; lines about the daemon as a whole say so. */
export function logSubject(fields: Record<string, unknown>): string {
  return typeof fields.product === 'string' ? fields.product : '(daemon)';
}

export function logLineText(l: { time: number; level: string; message: string; fields: Record<string, unknown> }): string {
  return `${iso(l.time)} ${l.level.padEnd(5)} ${logSubject(l.fields)}: ${l.message}`;
}

export async function logs(ctx: CliContext, opts: { level?: string; limit: string; contains?: string }): Promise<void> {
  const q = new URLSearchParams({ limit: opts.limit, ...(opts.level ? { level: opts.level } : {}), ...(opts.contains ? { contains: opts.contains } : {}) });
  const r = await (await ctx.client()).request<{ lines: LogLine[] }>('GET', `/api/v1/logs?${q}`);
  if (ctx.json) return printJson(r);
  for (const l of r.lines) out(logLineText(l));
}

export async function exportRun(ctx: CliContext, runId: string, opts: { output?: string }): Promise<void> {
  const r = await (await ctx.client()).request<RunExport>('GET', `/api/v1/runs/${encodeURIComponent(runId)}/export`);
  const text = JSON.stringify(r, null, 2) + '\n';
  if (opts.output) {
    writeFileSync(opts.output, text);
    if (!ctx.json) process.stderr.write(`run ${runId}: ${r.transitions.length} transitions written to ${opts.output}\n`);
  } else {
    process.stdout.write(text);
  }
}

export async function replay(ctx: CliContext, file: string): Promise<void> {
  const { formatReplay, replayRun, validateExport } = await import('../../replay/replay.js');
  let exported: RunExport;
  try {
    exported = validateExport(JSON.parse(readFileSync(file, 'utf8')));
  } catch (error) {
    throw new OtaError('CONFIG_INVALID', `${file}: ${isOtaError(error) ? error.message : (error as Error).message}`);
  }
  const report = replayRun(exported);
  if (ctx.json) printJson(report);
  else out(formatReplay(report));
  if (report.divergence) process.exitCode = EXIT.failure;
}

/**
 * How otactl shows the daemon's progress messages. In a terminal: a bar per step with MiB, rate
 * and time left (the values the daemon measured, not the bar's own guesses). In a pipe or a log
 * file: a line when a step starts and each time it passes another tenth of its total, never a line
 * per message, so `otactl watch > file` stays readable. Pure: no I/O, no clock.
 */
import type { ProgressMessage } from '../../daemon/event-bus.js';

const MiB = 2 ** 20;
/** Without a total there are no tenths: a line per this many bytes instead. */
const UNKNOWN_TOTAL_STRIDE = 10 * MiB;

export function formatMiB(bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`;
}

export function formatRate(bytesPerSecond: number | null): string {
  return bytesPerSecond === null ? '-' : `${(bytesPerSecond / MiB).toFixed(1)} MiB/s`;
}

/** 45s, 3m05s, 1h02m; '-' when unknown. */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '-';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** The text of one progress message: "download 40% 4.0/10.0 MiB at 2.1 MiB/s, 3s left". */
export function progressText(p: ProgressMessage): string {
  // A step that moves no bytes (probation, service restarts) has no amount to show: no "0.0 MiB".
  const counted = (p.total !== null && p.total > 0) || p.bytes > 0 || p.rateBps !== null;
  const amount = !counted ? '' : p.total !== null && p.total > 0 ? ` ${percent(p)}% ${formatMiB(p.bytes).replace(' MiB', '')}/${formatMiB(p.total)}` : ` ${formatMiB(p.bytes)}`;
  const speed = counted && p.rateBps !== null ? ` at ${formatRate(p.rateBps)}` : '';
  const left = p.etaMs !== null ? `${counted ? ',' : ''} ${formatDuration(p.etaMs)} left` : '';
  return `${p.step}${amount}${speed}${left}${p.message ? ` (${p.message})` : ''}`;
}

const percent = (p: ProgressMessage): number => (p.total ? Math.min(100, Math.floor((p.bytes * 100) / p.total)) : 0);

/** The tokens of the terminal bar's format (see BAR_FORMAT); not named like cli-progress's own ({eta}, {value}). */
export function barPayload(p: ProgressMessage): Record<string, string> {
  return {
    product: p.product,
    step: p.step,
    done: formatMiB(p.bytes).replace(' MiB', ''),
    size: p.total !== null ? formatMiB(p.total) : '? MiB',
    rate: formatRate(p.rateBps),
    timeLeft: formatDuration(p.etaMs),
  };
}

export const BAR_FORMAT = '  {product} {step} [{bar}] {percentage}% {done}/{size}  {rate}  {timeLeft} left';

/**
 * Decides which progress messages become a line when the output is not a terminal: the first of
 * each step (per product and run), then the first that reaches each further tenth of the total
 * (or each further 10 MiB without a total), and any message that changes the step's description.
 */
export class ProgressLines {
  private readonly seen = new Map<string, { runId: string; step: string; mark: number; message: string | undefined }>();

  /** The line to print for this message, or null when it adds nothing a reader needs. */
  next(p: ProgressMessage): string | null {
    const mark = p.total !== null && p.total > 0 ? Math.min(10, Math.floor((p.bytes * 10) / p.total)) : Math.floor(p.bytes / UNKNOWN_TOTAL_STRIDE);
    const prev = this.seen.get(p.product);
    const newStep = !prev || prev.runId !== p.runId || prev.step !== p.step;
    if (!newStep && mark <= prev.mark && p.message === prev.message) return null;
    this.seen.set(p.product, { runId: p.runId, step: p.step, mark, message: p.message });
    return `${p.product}: ${progressText(p)}`;
  }
}

/** Durations in configuration and on command lines: an integer of milliseconds, or a number with a unit: "500ms", "90s", "30m", "24h", "7d". */
import { OtaError } from './errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(value: number | string): number {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) throw new Error(`expected a non-negative whole number of milliseconds, got ${value}`);
    return value;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
  if (!m) throw new Error(`expected a duration such as "90s", "30m", "24h" or "7d", got "${value}"`);
  const amount = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(amount * (UNITS[unit] as number));
}

/** A duration given on a command line (`what` names the flag): refused with CONFIG_INVALID. */
export function parseDurationArg(text: string, what: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new OtaError('CONFIG_INVALID', `${what} is ${JSON.stringify(text)}: ${(error as Error).message}`);
  }
}

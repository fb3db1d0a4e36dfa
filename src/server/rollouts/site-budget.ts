/** `--site-budget 2` (every site) and `--site-budget lab=1` (one site), repeatable; 0 means no budget. */
import { OtaError } from '../../core/errors.js';
import type { SiteBudgets } from '../store/fleet-store.js';

export function parseSiteBudgets(values: readonly string[], fallback: number): SiteBudgets {
  const budgets: SiteBudgets = { default: fallback, sites: {} };
  for (const value of values) {
    const m = /^(?:([^=\s]+)=)?([0-9]{1,6})$/.exec(value.trim());
    if (m === null) throw new OtaError('CONFIG_INVALID', `--site-budget ${JSON.stringify(value)}: expected a whole number (every site) or <site>=<n> (one site); 0 is no budget`);
    if (m[1] === undefined) budgets.default = Number(m[2]);
    else budgets.sites[m[1]] = Number(m[2]);
  }
  return budgets;
}

export function describeBudgets(b: SiteBudgets): string {
  const each = b.default === 0 ? 'no budget per site' : `at most ${b.default} robot(s) updating per site`;
  const own = Object.entries(b.sites).map(([site, n]) => `${site}: ${n === 0 ? 'none' : n}`);
  return `${own.length === 0 ? each : `${each} (${own.join(', ')})`}; robots without a site tag have no budget`;
}

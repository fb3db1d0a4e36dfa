/**
 * A new rollout as an operator writes it (REST body or CLI options), validated into the store's
 * input: batches in order, percentages rising, a soak time, the failure threshold and minReports.
 */
import { z } from 'zod';
import { parseDuration } from '../../core/duration.js';
import { OtaError } from '../../core/errors.js';
import { tagsSchema } from '../checkin-body.js';
import type { CreateRolloutInput } from '../store/fleet-store.js';
import type { BatchSelector } from './rollout-model.js';

const selectorSchema = z.union([
  z.object({ percent: z.number().gt(0).max(100) }).strict(),
  z.object({ tags: tagsSchema.refine((t) => Object.keys(t).length > 0, { message: 'a tag batch names at least one tag' }) }).strict(),
  z.object({ all: z.literal(true) }).strict(),
]);

export const rolloutBodySchema = z
  .object({
    product: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'expected a product name' }),
    version: z.string().min(1).max(64),
    batches: z.array(selectorSchema).min(1).max(50),
    soak: z.union([z.string().max(32), z.number().int().min(0)]).default('30m'),
    failureThreshold: z.number().min(0).max(1).default(0.05),
    minReports: z.number().int().min(1).max(1_000_000).default(3),
  })
  .strict();

export function parseRolloutInput(body: unknown): CreateRolloutInput {
  const parsed = rolloutBodySchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new OtaError('API_INVALID_REQUEST', `rollout field ${issue.path.join('.') || '(body)'}: ${issue.message}`);
  }
  const b = parsed.data;
  let soakMs: number;
  try {
    soakMs = parseDuration(b.soak);
  } catch {
    throw new OtaError('API_INVALID_REQUEST', `rollout field soak: ${JSON.stringify(b.soak)} is not a duration (e.g. "30m", "2h", or milliseconds)`);
  }
  let last = 0;
  for (const [i, s] of b.batches.entries()) {
    if (!('percent' in s)) continue;
    if (s.percent <= last) throw new OtaError('API_INVALID_REQUEST', `rollout field batches.${i}.percent: percentages must rise from batch to batch (${s.percent} after ${last})`);
    last = s.percent;
  }
  return { product: b.product, version: b.version, batches: b.batches as BatchSelector[], soakMs, failureThreshold: b.failureThreshold, minReports: b.minReports };
}

/** CLI batch list: "5,25,100" (percentages) or "site=lab;site=dock;*" (tag groups, * for all). */
export function parseBatchList(text: string): BatchSelector[] {
  const parts = text.split(/[;,]/).map((p) => p.trim()).filter((p) => p !== '');
  return parts.map((p): BatchSelector => {
    if (p === '*' || p === 'all') return { all: true };
    if (/^[0-9]+(\.[0-9]+)?%?$/.test(p)) return { percent: Number(p.replace('%', '')) };
    const tags: Record<string, string> = {};
    for (const pair of p.split('+')) {
      const m = /^([^=]+)=(.+)$/.exec(pair.trim());
      if (m === null) throw new OtaError('CONFIG_INVALID', `batch ${JSON.stringify(p)}: expected a percentage (5), tags (site=lab, or site=lab+floor=2) or * for everything left`);
      tags[m[1]!] = m[2]!;
    }
    return { tags };
  });
}

/** The check-in body a robot sends (docs/fleet-protocol.md), validated before anything is stored. */
import { z } from 'zod';

const tagName = /^[a-z][a-z0-9_.-]{0,31}$/;

// Names are checked here rather than as the record's key schema, whose error only says "Invalid key in record".
export const tagsSchema = z.record(z.string(), z.string().max(128, { message: 'tag values are at most 128 characters' })).superRefine((tags, ctx) => {
  const names = Object.keys(tags);
  if (names.length > 32) ctx.addIssue({ code: 'custom', message: 'at most 32 tags' });
  const bad = names.find((name) => !tagName.test(name));
  if (bad !== undefined) ctx.addIssue({ code: 'custom', message: `tag name ${JSON.stringify(bad)}: tag names are 1-32 characters of [a-z0-9_.-], starting with a letter` });
});

const ms = z.number().min(0).max(7 * 24 * 3600 * 1000);
/** The downtime of the product's newest run that stopped its services (otad's Downtime, measured parts only). */
export const downtimeReportSchema = z
  .object({
    runId: z.string().max(64),
    totalMs: ms,
    stopMs: ms,
    switchMs: ms,
    startMs: ms,
    probeMs: ms,
    otadMs: ms,
    greenOn: z.enum(['new', 'old']),
    acrossRestart: z.boolean(),
    greenAt: z.number().int().min(0),
  })
  .strict();

export const checkinSchema = z
  .object({
    deviceId: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, { message: 'expected 1–128 characters of [A-Za-z0-9._:-]' }),
    product: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'expected a product name' }),
    version: z.string().max(64).nullable(),
    state: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,31}$/, { message: 'expected a lifecycle state name' }),
    lastOutcome: z.string().max(32).nullable().optional(),
    error: z.string().max(512).nullable().optional(),
    runId: z.string().max(64).nullable().optional(),
    targetVersion: z.string().max(64).nullable().optional(),
    tags: tagsSchema.optional(),
    downtime: downtimeReportSchema.nullable().optional(),
  })
  .strict();

export type CheckinBody = z.infer<typeof checkinSchema>;

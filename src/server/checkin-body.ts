/** The check-in body a robot sends (docs/fleet-protocol.md), validated before anything is stored. */
import { z } from 'zod';

const tagName = /^[a-z][a-z0-9_.-]{0,31}$/;

export const tagsSchema = z
  .record(z.string().regex(tagName, { message: 'tag names are 1-32 characters of [a-z0-9_.-], starting with a letter' }), z.string().max(128))
  .refine((tags) => Object.keys(tags).length <= 32, { message: 'at most 32 tags' });

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
  })
  .strict();

export type CheckinBody = z.infer<typeof checkinSchema>;

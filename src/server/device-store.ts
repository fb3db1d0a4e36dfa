/**
 * Device check-ins of the reference server: one JSON file, rewritten atomically and one write at a
 * time. A fleet that outgrows this moves check-ins to a real database; the API stays the same.
 */
import { promises as fs } from 'node:fs';
import { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { atomicWriteFile } from '../core/atomic-file.js';

export const checkinSchema = z
  .object({
    deviceId: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, { message: 'expected 1–128 characters of [A-Za-z0-9._:-]' }),
    product: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, { message: 'expected a product name' }),
    version: z.string().max(64).nullable(),
    state: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,31}$/, { message: 'expected a lifecycle state name' }),
    lastOutcome: z.string().max(32).nullable().optional(),
    error: z.string().max(512).nullable().optional(),
  })
  .strict();

export type Checkin = z.infer<typeof checkinSchema>;

export interface DeviceRecord extends Checkin {
  firstSeen: number;
  lastSeen: number;
  checkins: number;
}

export interface DeviceStore {
  record(checkin: Checkin): Promise<DeviceRecord>;
  list(): Promise<DeviceRecord[]>;
}

/** Devices are keyed by deviceId and product: a robot may run several managed products. */
export function createDeviceStore(file: string, clock: Clock, maxDevices = 100_000): DeviceStore {
  let cache: Map<string, DeviceRecord> | null = null;
  let queue: Promise<unknown> = Promise.resolve();

  async function load(): Promise<Map<string, DeviceRecord>> {
    if (cache !== null) return cache;
    try {
      const list = JSON.parse(await fs.readFile(file, 'utf8')) as DeviceRecord[];
      cache = new Map(list.map((d) => [`${d.deviceId}\u0000${d.product}`, d]));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      cache = new Map();
    }
    return cache;
  }

  return {
    record(checkin) {
      const run = queue.then(async () => {
        const devices = await load();
        const key = `${checkin.deviceId}\u0000${checkin.product}`;
        const previous = devices.get(key);
        if (previous === undefined && devices.size >= maxDevices) throw new Error(`device store is full (${maxDevices} devices)`);
        const now = clock.now();
        const record: DeviceRecord = { ...checkin, firstSeen: previous?.firstSeen ?? now, lastSeen: now, checkins: (previous?.checkins ?? 0) + 1 };
        devices.set(key, record);
        await atomicWriteFile(file, `${JSON.stringify([...devices.values()], null, 1)}\n`);
        return record;
      });
      queue = run.catch(() => {});
      return run;
    },
    async list() {
      await queue;
      return [...(await load()).values()].sort((a, b) => a.deviceId.localeCompare(b.deviceId) || a.product.localeCompare(b.product));
    },
  };
}

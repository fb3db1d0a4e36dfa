/** Small filesystem helpers of the publisher. Durable writes are src/core/atomic-file.ts. */
import { promises as fs } from 'node:fs';

export async function exists(file: string): Promise<boolean> {
  try {
    await fs.access(file);
    return true;
  } catch {
    return false;
  }
}

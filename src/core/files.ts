/** Small filesystem questions several rooms ask: does a path exist, what is a file's SHA-256. */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';

/**
 * Whether something is at `path`. By default the path itself is looked at (a dangling symlink
 * exists); with `follow`, what it points to must exist too.
 */
export async function exists(path: string, options: { follow?: boolean } = {}): Promise<boolean> {
  try {
    await (options.follow === true ? stat(path) : lstat(path));
    return true;
  } catch {
    return false;
  }
}

/** SHA-256 (lower-case hex) and length of a file, read as a stream in 1 MiB chunks. */
export async function hashFile(path: string): Promise<{ sha256: string; length: number }> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    length += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), length };
}

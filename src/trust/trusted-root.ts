/**
 * Reading a TUF root from disk. The golden copy (`paths.trustedRoot`) is where all trust starts:
 * missing and damaged are different faults with different remedies (install it, or replace it),
 * so they have different codes. Used by the TUF client and by `otad --check-config`.
 */
import { promises as fs } from 'node:fs';
import { Metadata, MetadataKind } from '@tufjs/models';
import type { Root } from '@tufjs/models';
import { OtaError } from '../core/errors.js';

type Json = Parameters<typeof Metadata.fromJSON>[1];

/** A self-signed root and its bytes; throws whatever reading or verifying threw. */
export async function readRoot(file: string): Promise<{ root: Metadata<Root>; bytes: Buffer }> {
  const bytes = await fs.readFile(file);
  const root = Metadata.fromJSON(MetadataKind.Root, JSON.parse(bytes.toString('utf8')) as Json);
  // A root must carry a threshold of its own signatures: anything else is damage, not trust.
  root.verifyDelegate(MetadataKind.Root, root);
  return { root, bytes };
}

/** The golden trusted root: TRUST_ROOT_MISSING when there is no file, TRUST_ROOT_CORRUPT when it is not a root. */
export async function readGoldenRoot(file: string): Promise<{ root: Metadata<Root>; bytes: Buffer }> {
  try {
    return await readRoot(file);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new OtaError('TRUST_ROOT_MISSING', `golden trusted root ${file} does not exist; install the repository's root.json there (paths.trustedRoot)`, {
        cause,
        details: { path: file },
      });
    }
    throw new OtaError('TRUST_ROOT_CORRUPT', `golden trusted root ${file} is unusable: ${(cause as Error).message}`, { cause, details: { path: file } });
  }
}

/**
 * Two copies of one upload piece at once (a browser re-sending a piece on a new connection after a
 * reset while the server still reads the first copy) must never be appended side by side: the
 * later one ends the earlier one and is told where to resume. Real files in a temporary folder;
 * the request bodies are real readable streams, as express hands them to the upload module.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Request } from 'express';
import { createUploads } from '../../../src/server/studio/uploads.js';
import { OtaError } from '../../../src/core/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'otad-uploads-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

const body = () => new PassThrough() as unknown as Request & PassThrough;

describe('resumable uploads', () => {
  it('a second PUT of the same piece arriving in the same instant ends the first; the file is never interleaved', async () => {
    const uploads = createUploads({ dir, maxBytes: 1 << 24 });
    const bytes = Buffer.alloc(64 * 1024);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 0xff;
    const { id } = await uploads.start('p.tar.gz', bytes.length);
    const a = body();
    const b = body();
    // Both claim offset 0 before either has looked at the file.
    const first = uploads.append(id, '0', a).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    const second = uploads.append(id, '0', b).then(
      (r) => ({ ok: true as const, r }),
      (e: unknown) => ({ ok: false as const, e }),
    );
    a.end(bytes.subarray(0, 1000));
    b.end(bytes);
    const [ra, rb] = await Promise.all([first, second]);
    // The first was ended by the second and wrote nothing: the second appended the whole piece.
    expect(ra.ok).toBe(false);
    expect(rb).toEqual({ ok: true, r: { id, name: 'p.tar.gz', size: bytes.length, received: bytes.length } });
    expect((await fs.readFile(path.join(dir, `${id}.part`))).equals(bytes)).toBe(true);
    await uploads.close();
  });

  it('a second PUT while the first is writing is refused with where to resume, and the first stops writing', async () => {
    const uploads = createUploads({ dir, maxBytes: 1 << 24 });
    const bytes = Buffer.alloc(64 * 1024, 3);
    const { id } = await uploads.start('p.tar.gz', bytes.length);
    const a = body();
    const first = uploads.append(id, '0', a).catch((e: unknown) => e);
    a.write(bytes.subarray(0, 4096));
    await expect.poll(async () => (await fs.stat(path.join(dir, `${id}.part`))).size).toBe(4096);
    const b = body();
    const second = uploads.append(id, '0', b).catch((e: unknown) => e);
    b.end(bytes);
    const refused = await second;
    expect(refused).toBeInstanceOf(OtaError);
    expect((refused as OtaError).code).toBe('UPLOAD_OFFSET_MISMATCH');
    expect((refused as OtaError).details).toEqual({ received: 4096 });
    expect(await first).toBeInstanceOf(Error);
    a.write(bytes.subarray(4096, 8192));
    expect((await uploads.status(id)).received).toBe(4096);
    await uploads.close();
  });
});

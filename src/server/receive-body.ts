/**
 * A request body written to a file, with a byte cap: what the upload endpoint and the studio's
 * archive upload receive. Past the cap the body stops being read (the caller answers 413 and
 * closes the connection), so an oversized upload never fills the disk.
 */
import { createWriteStream, promises as fs } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request } from 'express';
import { OtaError } from '../core/errors.js';

export async function receiveBody(req: Request, file: string, maxBytes: number): Promise<void> {
  let bytes = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, callback) {
      bytes += chunk.length;
      if (bytes > maxBytes) callback(new OtaError('API_TOO_LARGE', `upload exceeds the limit of ${maxBytes} bytes`));
      else callback(null, chunk);
    },
  });
  try {
    await pipeline(req, limiter, createWriteStream(file, { mode: 0o600 }));
  } catch (error) {
    // The caller answers 413 and closes the connection; the rest of the body is never read.
    req.unpipe();
    throw error;
  }
  if (bytes === 0) throw new OtaError('API_INVALID_REQUEST', 'the upload body is empty (send the .tar.gz or .tar.zst package as the request body)');
}


/**
 * Resumable uploads of a package from the publisher's browser. An upload is a session with a
 * declared size; the page sends the bytes in pieces (`PUT …?offset=N`), each appended to one file
 * under `<repo>/.studio-uploads/` as it arrives. What the server has is always the file's size, so
 * after a broken connection the page asks how much arrived and sends the rest. A complete upload
 * becomes a draft (scanned as a robot would scan it) by moving the file, never copying it.
 * Space is checked before the upload starts (the declared size against the free space of the
 * folder); a disk that fills up anyway answers DISK_FULL with what was kept, and the upload can be
 * resumed once there is room.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Request } from 'express';
import { OtaError } from '../../core/errors.js';

/** Upload sessions kept at once; the oldest is dropped (with its bytes) beyond this. */
export const MAX_UPLOADS = 8;

export interface UploadInfo {
  id: string;
  name: string;
  size: number;
  received: number;
}

interface Session {
  info: Omit<UploadInfo, 'received'>;
  file: string;
  /** The PUT writing now, and its end. */
  active: { req: Request; done: Promise<void> } | null;
}

const isDiskFull = (error: unknown) => ['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException).code ?? '');
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

export function createUploads(options: { dir: string; maxBytes: number }) {
  const sessions = new Map<string, Session>();

  async function received(s: Session): Promise<number> {
    return (await fs.stat(s.file).catch(() => ({ size: 0 }))).size;
  }

  function get(id: unknown): Session {
    const s = typeof id === 'string' ? sessions.get(id) : undefined;
    if (s === undefined) throw new OtaError('API_NOT_FOUND', `no upload ${JSON.stringify(id)} on this server (uploads live until they are finished or the server restarts): start the upload again`);
    return s;
  }

  async function drop(id: string): Promise<void> {
    const s = sessions.get(id);
    sessions.delete(id);
    if (s === undefined) return;
    const active = s.active;
    active?.req.destroy();
    await active?.done;
    await fs.rm(s.file, { force: true });
  }

  return {
    async start(name: unknown, size: unknown): Promise<UploadInfo> {
      const label = typeof name === 'string' && name.length > 0 && name.length <= 255 ? name : 'upload';
      if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0) throw new OtaError('API_INVALID_REQUEST', 'an upload needs its size in bytes: {"name": "…", "size": N}');
      if (size > options.maxBytes) throw new OtaError('API_TOO_LARGE', `upload of ${size} bytes exceeds the limit of ${options.maxBytes} bytes (ota-server --max-upload)`);
      await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
      const free = await fs.statfs(options.dir).then((st) => st.bavail * st.bsize);
      // Room for the upload, and again for the draft's scan and the published copy is not needed:
      // the upload becomes the draft by a rename and publishing moves it within the same folder.
      if (free < size) {
        throw new OtaError('DISK_FULL', `the server has ${mib(free)} free in its repository folder, and ${label} needs ${mib(size)}: free space on the server (or start it with a larger --repo disk), then upload again`, {
          details: { free, size },
        });
      }
      const id = randomBytes(9).toString('base64url');
      const file = path.join(options.dir, `${id}.part`);
      await fs.writeFile(file, '', { mode: 0o600 });
      sessions.set(id, { info: { id, name: label, size }, file, active: null });
      while (sessions.size > MAX_UPLOADS) await drop(sessions.keys().next().value!);
      return { id, name: label, size, received: 0 };
    },

    async status(id: unknown): Promise<UploadInfo> {
      const s = get(id);
      // A PUT the server has not yet seen broken is ended first, so the answer is what is kept.
      const active = s.active;
      if (active !== null) {
        active.req.destroy();
        await active.done;
      }
      return { ...s.info, received: await received(s) };
    },

    /** Append the request body at `offset` (which must be what the server has). */
    async append(id: unknown, offsetArg: unknown, req: Request): Promise<UploadInfo> {
      const s = get(id);
      // The piece claims the session before its first await. A second PUT that arrives meanwhile
      // (a browser re-sending a piece on a new connection after a reset, or the page resuming while
      // the old request still looks alive here) ends this one and waits for it to stop writing, so
      // two requests never append side by side: only the session's current claim writes.
      let finished!: () => void;
      const claim = { req, done: new Promise<void>((resolve) => (finished = resolve)) };
      const previous = s.active;
      s.active = claim;
      const superseded = () => new OtaError('UPLOAD_OFFSET_MISMATCH', `upload ${s.info.id}: another piece took over from this one; ask for the bytes the server has and resume there`, { details: { received: null } });
      const limit = s.info.size;
      try {
        if (previous !== null) {
          previous.req.destroy();
          await previous.done;
        }
        if (s.active !== claim) {
          req.resume();
          throw superseded();
        }
        const have = await received(s);
        const offset = Number(offsetArg);
        if (!Number.isInteger(offset) || offset !== have) {
          req.resume();
          throw new OtaError('UPLOAD_OFFSET_MISMATCH', `upload ${s.info.id} has ${have} bytes; send the rest from offset ${have}, not ${String(offsetArg)}`, { details: { received: have } });
        }
        let bytes = have;
        // Written as it arrives; after a failed write (a full disk) the rest of the piece is read
        // and dropped, so the page gets the answer instead of a reset connection.
        const out = await fs.open(s.file, 'a', 0o600);
        let failure: unknown = null;
        try {
          for await (const chunk of req as AsyncIterable<Buffer>) {
            if (failure !== null) continue;
            if (s.active !== claim) {
              failure = superseded();
              continue;
            }
            if (bytes + chunk.length > limit) {
              failure = new OtaError('API_INVALID_REQUEST', `upload ${s.info.id} is ${limit} bytes; this piece goes beyond it`);
              continue;
            }
            try {
              await out.write(chunk);
              bytes += chunk.length;
            } catch (error) {
              failure = error;
            }
          }
        } finally {
          await out.close().catch(() => {});
        }
        if (failure !== null) throw failure;
      } catch (error) {
        if (isDiskFull(error)) {
          throw new OtaError('DISK_FULL', `the server's repository folder is full after ${await received(s)} of ${limit} bytes of ${s.info.name}: free space on the server, then resume the upload (what arrived is kept until the upload is resumed or cancelled)`, {
            cause: error,
            details: { received: await received(s), size: limit },
          });
        }
        throw error;
      } finally {
        if (s.active === claim) s.active = null;
        finished();
      }
      return { ...s.info, received: await received(s) };
    },

    /** A complete upload handed to `into` (which moves the file into a draft); the session ends. */
    async finish<T>(id: unknown, into: (name: string, move: (dest: string) => Promise<void>) => Promise<T>): Promise<T> {
      const s = get(id);
      const have = await received(s);
      if (have !== s.info.size) throw new OtaError('UPLOAD_OFFSET_MISMATCH', `upload ${s.info.id} has ${have} of ${s.info.size} bytes: send the rest first`, { details: { received: have } });
      sessions.delete(s.info.id);
      try {
        return await into(s.info.name, (dest) => fs.rename(s.file, dest));
      } finally {
        await fs.rm(s.file, { force: true });
      }
    },

    async cancel(id: unknown): Promise<void> {
      get(id);
      await drop(id as string);
    },

    async close(): Promise<void> {
      for (const id of [...sessions.keys()]) await drop(id);
    },
  };
}

export type Uploads = ReturnType<typeof createUploads>;

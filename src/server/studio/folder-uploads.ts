/**
 * A folder uploaded from the publisher's browser (`<input type="file" webkitdirectory>` or a folder
 * dropped on the page). The page first declares every file, its path relative to the chosen folder
 * and its size; the server checks the whole list (paths, count, bytes, free space) before it writes
 * anything, then receives each file (`PUT …/files/N`, the N-th declared file) into a build folder of
 * its own under `<repo>/.studio-folders/ID/tree/`. Finishing packs that folder with the project's
 * packer and scans it as a robot would (./drafts.ts), exactly like a folder under a source root;
 * the build folder is removed afterwards, whatever the verdict.
 *
 * Browsers do not tell a page the file modes, so the server decides them (FOLDER_MODE_RULE):
 * files under a `bin/` or `sbin/` folder and files that start with `#!` or an ELF header are
 * 0755, every other file 0644, folders 0755. The draft says which files the rule made executable.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request } from 'express';
import { OtaError, isOtaError } from '../../core/errors.js';

/** Folder uploads kept at once; the oldest is dropped (with its files) beyond this. */
export const MAX_FOLDER_UPLOADS = 4;
/** Files one folder upload may declare (each is one request from the page). */
export const DEFAULT_MAX_FOLDER_FILES = 20_000;
/** Bytes of one declared path, and of one of its segments (as Linux allows). */
const MAX_PATH_BYTES = 1024;
const MAX_SEGMENT_BYTES = 255;

export const FOLDER_MODE_RULE = 'the browser does not send file modes: files under bin/ or sbin/ and files starting with #! or an ELF header are made 0755, every other file 0644, folders 0755';

export interface FolderUploadInfo {
  id: string;
  name: string;
  files: number;
  size: number;
  /** How many of the declared files have arrived. */
  received: number;
}

export interface FolderModes {
  rule: string;
  /** The files the rule made executable (0755), by path. */
  executables: string[];
}

interface Session {
  info: Omit<FolderUploadInfo, 'received'>;
  dir: string;
  tree: string;
  files: Array<{ path: string; size: number }>;
  done: boolean[];
}

const isDiskFull = (error: unknown) => ['ENOSPC', 'EDQUOT'].includes((error as NodeJS.ErrnoException).code ?? '');
const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

/** Why a declared path may not be written inside the build folder, or null when it may. */
export function folderPathProblem(p: unknown): string | null {
  if (typeof p !== 'string' || p === '') return 'expected a non-empty relative path';
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  if (p.includes('\0')) return 'contains a NUL byte';
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return 'is absolute: expected a path relative to the chosen folder';
  if (p.includes('\\')) return 'contains a backslash';
  for (const segment of p.split('/')) {
    if (segment === '..') return 'climbs out of the folder with ".."';
    if (segment === '' || segment === '.') return 'has an empty or "." segment';
    if (Buffer.byteLength(segment) > MAX_SEGMENT_BYTES) return `has a name longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return null;
}

/** Whether FOLDER_MODE_RULE makes this file executable. */
async function executable(rel: string, file: string): Promise<boolean> {
  const dirs = rel.split('/').slice(0, -1);
  if (dirs.includes('bin') || dirs.includes('sbin')) return true;
  const head = Buffer.alloc(4);
  const handle = await fs.open(file, 'r');
  try {
    const { bytesRead } = await handle.read(head, 0, 4, 0);
    return (bytesRead >= 2 && head[0] === 0x23 && head[1] === 0x21) || (bytesRead === 4 && head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])));
  } finally {
    await handle.close();
  }
}

export function createFolderUploads(options: { dir: string; maxBytes: number; maxFiles?: number }) {
  const maxFiles = options.maxFiles ?? DEFAULT_MAX_FOLDER_FILES;
  const sessions = new Map<string, Session>();

  function get(id: unknown): Session {
    const s = typeof id === 'string' ? sessions.get(id) : undefined;
    if (s === undefined) throw new OtaError('API_NOT_FOUND', `no folder upload ${JSON.stringify(id)} on this server (they live until they are finished or the server restarts): choose the folder again`);
    return s;
  }

  async function drop(id: string): Promise<void> {
    const s = sessions.get(id);
    sessions.delete(id);
    if (s !== undefined) await fs.rm(s.dir, { recursive: true, force: true });
  }

  function info(s: Session): FolderUploadInfo {
    return { ...s.info, received: s.done.filter(Boolean).length };
  }

  return {
    maxFiles,

    /** Checks the whole declaration; only then is the build folder made. */
    async start(name: unknown, filesArg: unknown): Promise<FolderUploadInfo> {
      const label = typeof name === 'string' && name.length > 0 && name.length <= 255 && !name.includes('/') ? name : 'folder';
      if (!Array.isArray(filesArg) || filesArg.length === 0) throw new OtaError('API_INVALID_REQUEST', 'a folder upload declares its files: {"name": "…", "files": [{"path": "bin/run", "size": N}, …]}');
      if (filesArg.length > maxFiles) {
        throw new OtaError('UPLOAD_TOO_MANY_FILES', `the folder ${label} has ${filesArg.length} files; a folder upload takes at most ${maxFiles}: upload it as a .tar.gz or .tar.zst package instead`, { details: { files: filesArg.length, max: maxFiles } });
      }
      const files: Session['files'] = [];
      const seen = new Set<string>();
      const dirs = new Set<string>();
      let size = 0;
      for (const [i, f] of filesArg.entries()) {
        const p = (f as { path?: unknown } | null)?.path;
        const problem = folderPathProblem(p);
        if (problem !== null) throw new OtaError('UPLOAD_PATH_UNSAFE', `file ${i + 1} of the folder, ${JSON.stringify(p)}, ${problem}: nothing was written`, { details: { entry: typeof p === 'string' ? p : null } });
        const rel = p as string;
        if (seen.has(rel)) throw new OtaError('UPLOAD_PATH_UNSAFE', `the folder lists ${JSON.stringify(rel)} twice: nothing was written`, { details: { entry: rel } });
        const n = (f as { size?: unknown }).size;
        if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new OtaError('API_INVALID_REQUEST', `file ${JSON.stringify(rel)}: expected its size in bytes`);
        seen.add(rel);
        const parts = rel.split('/');
        for (let k = 1; k < parts.length; k++) dirs.add(parts.slice(0, k).join('/'));
        size += n;
        files.push({ path: rel, size: n });
      }
      const clash = files.find((f) => dirs.has(f.path));
      if (clash !== undefined) throw new OtaError('UPLOAD_PATH_UNSAFE', `the folder lists ${JSON.stringify(clash.path)} both as a file and as a folder: nothing was written`, { details: { entry: clash.path } });
      if (size > options.maxBytes) throw new OtaError('API_TOO_LARGE', `the folder ${label} holds ${size} bytes, more than the limit of ${options.maxBytes} bytes (ota-server --max-upload)`, { details: { size, max: options.maxBytes } });
      await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
      const free = await fs.statfs(options.dir).then((st) => st.bavail * st.bsize);
      // The files, then the package made of them (at most about as large again) while both exist.
      if (free < 2 * size) {
        throw new OtaError('DISK_FULL', `the server has ${mib(free)} free in its repository folder, and the folder ${label} needs ${mib(2 * size)} (its ${mib(size)} of files and their package while it is built): free space on the server, then upload again`, { details: { free, size } });
      }
      const id = randomBytes(9).toString('base64url');
      const dir = path.join(options.dir, id);
      const tree = path.join(dir, 'tree');
      try {
        await fs.mkdir(tree, { recursive: true, mode: 0o700 });
      } catch (error) {
        await fs.rm(dir, { recursive: true, force: true });
        if (isDiskFull(error)) throw new OtaError('DISK_FULL', `the server's repository folder is full: free space on the server, then upload the folder again`, { cause: error });
        throw error;
      }
      sessions.set(id, { info: { id, name: label, files: files.length, size }, dir, tree, files, done: files.map(() => false) });
      while (sessions.size > MAX_FOLDER_UPLOADS) await drop(sessions.keys().next().value!);
      return info(sessions.get(id)!);
    },

    status(id: unknown): FolderUploadInfo {
      return info(get(id));
    },

    /**
     * The body of the index-th declared file, written to its declared place (never a path from
     * this request). Sending a file again replaces it. A full disk ends the whole folder upload and
     * removes what arrived: nothing half-written stays behind.
     */
    async putFile(id: unknown, indexArg: unknown, req: Request): Promise<FolderUploadInfo> {
      const s = get(id);
      const index = Number(indexArg);
      if (!Number.isInteger(index) || index < 0 || index >= s.files.length) {
        req.resume();
        throw new OtaError('API_INVALID_REQUEST', `folder upload ${s.info.id} has files 0 to ${s.files.length - 1}, not ${String(indexArg)}`);
      }
      const f = s.files[index]!;
      const dest = path.join(s.tree, ...f.path.split('/'));
      if (!dest.startsWith(s.tree + path.sep)) throw new OtaError('UPLOAD_PATH_UNSAFE', `${JSON.stringify(f.path)} leads outside the build folder`);
      // A file of its own per request: a retry that arrives while a broken earlier attempt is
      // still being written never shares its bytes; the last complete one is renamed into place.
      const part = path.join(s.dir, `${index}.${randomBytes(6).toString('hex')}.part`);
      let bytes = 0;
      try {
        await fs.mkdir(path.dirname(dest), { recursive: true, mode: 0o755 });
        const limiter = new Transform({
          transform(chunk: Buffer, _enc, callback) {
            bytes += chunk.length;
            if (bytes > f.size) callback(new OtaError('API_INVALID_REQUEST', `${f.path} was declared as ${f.size} bytes; this body is larger`));
            else callback(null, chunk);
          },
        });
        await pipeline(req, limiter, createWriteStream(part, { mode: 0o600 }));
        if (bytes !== f.size) throw new OtaError('API_INVALID_REQUEST', `${f.path} was declared as ${f.size} bytes; ${bytes} arrived: send it again`);
        await fs.rename(part, dest);
        s.done[index] = true;
      } catch (error) {
        req.unpipe();
        req.resume();
        await fs.rm(part, { force: true });
        if (isDiskFull(error) || (isOtaError(error) && error.code === 'DISK_FULL')) {
          await drop(s.info.id);
          throw new OtaError('DISK_FULL', `the server's repository folder filled up while receiving ${f.path} of the folder ${s.info.name}: nothing of it was kept; free space on the server, then upload the folder again`, { cause: error, details: { entry: f.path } });
        }
        // Dropped while this file arrived (a full disk met by another file, a cancel): say so, not ENOENT.
        if (!sessions.has(s.info.id)) throw new OtaError('API_NOT_FOUND', `folder upload ${s.info.id} was ended while ${f.path} arrived (the disk filled up or it was cancelled): choose the folder again`);
        throw error;
      }
      return info(s);
    },

    /**
     * A complete folder given its modes, then handed to `into` (which packs and scans it); the
     * build folder is removed afterwards whatever the verdict.
     */
    async finish<T>(id: unknown, into: (name: string, tree: string, modes: FolderModes) => Promise<T>): Promise<T> {
      const s = get(id);
      const missing = s.files.filter((_, i) => !s.done[i]).map((f) => f.path);
      if (missing.length > 0) {
        throw new OtaError('UPLOAD_OFFSET_MISMATCH', `folder upload ${s.info.id} is missing ${missing.length} of its ${s.files.length} files (first ${missing[0]}): send them first`, { details: { missing: missing.slice(0, 20), received: s.files.length - missing.length } });
      }
      sessions.delete(s.info.id);
      try {
        const executables: string[] = [];
        for (const f of s.files) {
          const file = path.join(s.tree, ...f.path.split('/'));
          const x = await executable(f.path, file);
          if (x) executables.push(f.path);
          await fs.chmod(file, x ? 0o755 : 0o644);
        }
        const chmodDirs = async (dir: string): Promise<void> => {
          await fs.chmod(dir, 0o755);
          for (const e of await fs.readdir(dir, { withFileTypes: true })) if (e.isDirectory()) await chmodDirs(path.join(dir, e.name));
        };
        await chmodDirs(s.tree);
        return await into(s.info.name, s.tree, { rule: FOLDER_MODE_RULE, executables: executables.sort() });
      } finally {
        await fs.rm(s.dir, { recursive: true, force: true });
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

export type FolderUploads = ReturnType<typeof createFolderUploads>;

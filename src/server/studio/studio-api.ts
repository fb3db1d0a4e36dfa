/**
 * The publisher studio's REST endpoints under /api/v1/studio/. Every one needs the upload token
 * (the same bearer rule as POST /api/v1/upload); each validates its input and hands it to the
 * studio workflow (./drafts.ts). Every publish is written to the server's audit log.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { OtaError, isOtaError } from '../../core/errors.js';
import type { AuditSink } from '../../core/logger.js';
import { receiveBody } from '../receive-body.js';
import type { Studio } from './drafts.js';
import type { FolderUploads } from './folder-uploads.js';

export interface StudioApiOptions {
  studio: Studio;
  /** Folders uploaded from the browser, file by file (./folder-uploads.ts). */
  folderUploads: FolderUploads;
  /** The largest archive accepted (the server's upload limit). */
  maxUploadBytes: number;
  audit?: AuditSink;
  authorized(req: Request, res: Response, what: string): boolean;
}

const query = (req: Request, name: string): unknown => (req.query as Record<string, unknown>)[name];

export function studioApiRouter(options: StudioApiOptions): express.Router {
  const router = express.Router();
  const { studio } = options;
  router.use('/api/v1/studio', (req: Request, res: Response, next: NextFunction) => {
    if (options.authorized(req, res, 'the publisher studio')) next();
  });
  // The raw .tar.gz or .tar.zst body: before the JSON parser, which would refuse it.
  router.post('/api/v1/studio/drafts/archive', async (req: Request, res: Response, next: NextFunction) => {
    try {
      const declared = Number(req.get('content-length') ?? NaN);
      if (Number.isFinite(declared) && declared > options.maxUploadBytes) {
        throw new OtaError('API_TOO_LARGE', `upload of ${declared} bytes exceeds the limit of ${options.maxUploadBytes} bytes`);
      }
      const draft = await studio.createDraftFromArchive(query(req, 'name'), (file) => receiveBody(req, file, options.maxUploadBytes));
      res.status(draft.scan.ok ? 201 : 200).json(draft);
    } catch (error) {
      if (isOtaError(error) && error.code === 'API_TOO_LARGE') {
        // Do not read the rest of an oversized body: answer, then drop the connection.
        res.setHeader('Connection', 'close');
        res.on('finish', () => req.destroy());
      }
      next(error);
    }
  });
  // A folder's files, one raw body each: before the JSON parser too.
  router.put('/api/v1/studio/folder-uploads/:id/files/:index', async (req: Request, res: Response) => {
    res.json(await options.folderUploads.putFile(req.params.id, req.params.index, req));
  });
  // A folder's declaration lists every file with its path and size: up to 20,000 of them.
  router.post('/api/v1/studio/folder-uploads', express.json({ limit: '4mb' }));
  // Release notes are at most 16 KiB; the rest of a request is a handful of short fields.
  router.use('/api/v1/studio', express.json({ limit: '96kb' }));
  const body = (req: Request): Record<string, unknown> => (typeof req.body === 'object' && req.body !== null && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {});

  router.get('/api/v1/studio/context', async (_req, res) => {
    res.json(await studio.context());
  });
  router.get('/api/v1/studio/folders', async (req, res) => {
    res.json(await studio.folders(query(req, 'root'), query(req, 'path') ?? ''));
  });
  router.get('/api/v1/studio/versions', async (req, res) => {
    res.json(await studio.versions(query(req, 'product'), query(req, 'channel'), query(req, 'repository')));
  });
  router.post('/api/v1/studio/drafts', async (req, res) => {
    const b = body(req);
    const draft = await studio.createDraft(b.root, b.path ?? '', b.compression);
    res.status(draft.scan.ok ? 201 : 200).json(draft);
  });
  router.post('/api/v1/studio/folder-uploads', async (req, res) => {
    const b = body(req);
    res.status(201).json(await options.folderUploads.start(b.name, b.files));
  });
  router.get('/api/v1/studio/folder-uploads/:id', (req, res) => {
    res.json(options.folderUploads.status(req.params.id));
  });
  router.delete('/api/v1/studio/folder-uploads/:id', async (req, res) => {
    await options.folderUploads.cancel(req.params.id);
    res.status(204).end();
  });
  router.post('/api/v1/studio/folder-uploads/:id/finish', async (req, res) => {
    const compression = body(req).compression;
    const draft = await options.folderUploads.finish(req.params.id, (name, tree, modes) => studio.createDraftFromFolder(name, tree, modes, compression));
    res.status(draft.scan.ok ? 201 : 200).json(draft);
  });
  router.post('/api/v1/studio/drafts/:id/review', async (req, res) => {
    res.json(await studio.review(req.params.id, body(req)));
  });
  router.post('/api/v1/studio/drafts/:id/publish', async (req, res) => {
    const result = await studio.publish(req.params.id, body(req));
    options.audit?.audit({
      kind: 'studio-publish',
      message: `published ${result.product} ${result.version} (channel ${result.channel}) from the publisher studio to ${result.repository === null ? "this server's repository" : `repository ${result.repository}`}${result.role !== null ? `, signed by ${result.role}` : ''}`,
      product: result.product,
      actor: req.ip ?? 'unknown',
      details: {
        repository: result.repository,
        role: result.role,
        package: result.packageTarget,
        manifest: result.manifestTarget,
        targetsVersion: result.publish.targetsVersion,
        snapshotVersion: result.publish.snapshotVersion,
        published: result.publish.published,
      },
    });
    res.status(201).json(result);
  });
  return router;
}

/**
 * The publisher studio's tools beside the release workflow, under /api/v1/studio/ with the upload
 * token: the product-type template editor (./templates.ts), resumable package uploads
 * (./uploads.ts) and the configured repositories with their connection test (./repositories.ts).
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Clock } from '../../core/clock.js';
import { OtaError } from '../../core/errors.js';
import type { AuditSink } from '../../core/logger.js';
import type { Studio } from './drafts.js';
import { testConnection, DEFAULT_EXPIRY_WARN_DAYS, type StudioRepository } from './repositories.js';
import type { TemplateStore } from './templates.js';
import type { Uploads } from './uploads.js';

export interface StudioToolsOptions {
  studio: Studio;
  templates: TemplateStore;
  uploads: Uploads;
  repositories: readonly StudioRepository[];
  clock: Clock;
  audit?: AuditSink;
  authorized(req: Request, res: Response, what: string): boolean;
}

const body = (req: Request): Record<string, unknown> => (typeof req.body === 'object' && req.body !== null && !Array.isArray(req.body) ? (req.body as Record<string, unknown>) : {});

export function studioToolsRouter(options: StudioToolsOptions): express.Router {
  const router = express.Router();
  const { templates, uploads } = options;
  const paths = ['/api/v1/studio/templates', '/api/v1/studio/uploads', '/api/v1/studio/repositories'];
  router.use(paths, (req: Request, res: Response, next: NextFunction) => {
    if (options.authorized(req, res, 'the publisher studio')) next();
  });

  // ---- resumable uploads: the raw pieces come before the JSON parser ----
  router.put('/api/v1/studio/uploads/:id', async (req, res) => {
    res.json(await uploads.append(req.params.id, (req.query as Record<string, unknown>).offset, req));
  });
  router.use(paths, express.json({ limit: '96kb' }));
  router.post('/api/v1/studio/uploads', async (req, res) => {
    const b = body(req);
    res.status(201).json(await uploads.start(b.name, b.size));
  });
  router.get('/api/v1/studio/uploads/:id', async (req, res) => {
    res.json(await uploads.status(req.params.id));
  });
  router.delete('/api/v1/studio/uploads/:id', async (req, res) => {
    await uploads.cancel(req.params.id);
    res.status(204).end();
  });
  router.post('/api/v1/studio/uploads/:id/finish', async (req, res) => {
    const draft = await uploads.finish(req.params.id, (name, move) => options.studio.createDraftFromArchive(name, move));
    res.status(draft.scan.ok ? 201 : 200).json(draft);
  });

  // ---- product-type templates ----
  router.get('/api/v1/studio/templates', async (_req, res) => {
    res.json({ templates: await templates.list() });
  });
  router.get('/api/v1/studio/templates/:name', async (req, res) => {
    res.json(await templates.get(req.params.name, (req.query as Record<string, unknown>).version));
  });
  router.post('/api/v1/studio/templates/:name/check', async (req, res) => {
    res.json(await templates.check(req.params.name, body(req).text));
  });
  router.put('/api/v1/studio/templates/:name', async (req, res) => {
    const b = body(req);
    const result = await templates.save(req.params.name, b.text, b.baseVersion);
    if (result.ok) {
      options.audit?.audit({
        kind: 'studio-template-saved',
        message: `product type ${result.name} saved as version ${result.version} from the publisher studio`,
        actor: req.ip ?? 'unknown',
        details: { type: result.name, version: result.version },
      });
    }
    if (result.ok) return void res.json(result);
    // Refused like every other API error (an `error` with its code), with the problems by key and line.
    const first = result.problems[0];
    const message = `the template was not saved: ${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}${first ? `, first ${first.field}${first.line ? ` (line ${first.line})` : ''}: ${first.message}` : ''}`;
    res.status(422).json({ ...result, error: { code: 'TEMPLATE_INVALID', message } });
  });

  // ---- repositories ----
  router.get('/api/v1/studio/repositories', (_req, res) => {
    res.json({ warnDays: DEFAULT_EXPIRY_WARN_DAYS, repositories: options.repositories.map((r) => ({ name: r.name, url: r.url, local: r.local === true, writable: r.local === true || r.path !== undefined, ...(r.warnDays !== undefined ? { warnDays: r.warnDays } : {}) })) });
  });
  router.post('/api/v1/studio/repositories/:name/test', async (req, res) => {
    const repo = options.repositories.find((r) => r.name === req.params.name);
    if (repo === undefined) throw new OtaError('API_NOT_FOUND', `no repository ${JSON.stringify(req.params.name)} is configured (known: ${options.repositories.map((r) => r.name).join(', ') || 'none'})`);
    res.json(await testConnection(repo, options.clock));
  });
  return router;
}

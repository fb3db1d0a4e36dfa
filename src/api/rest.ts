/**
 * REST v1 (Express 5). Every request passes, in order: the Host allow-list (DNS rebinding), the
 * refusal of credentials in the query string, bearer authentication (except health and the
 * OpenAPI document), the scope and rate-limit checks of control endpoints, the body size limit.
 * Handlers only read state through DaemonControl or go through the Edge; a thrown error becomes
 * the one error shape, and an unexpected one a generic 500 while the daemon keeps running.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import { toErrorData } from '../core/errors.js';
import type { AuditSink, Logger } from '../core/logger.js';
import type { DaemonControl } from '../daemon/control.js';
import type { Edge } from './edge.js';
import { parseBody } from './edge.js';
import { isAllowedHost } from './host-check.js';
import { apiError, toApiError } from './http-errors.js';
import type { Metrics } from './metrics.js';
import { buildOpenApiDocument } from './openapi.js';
import { historyQuerySchema, logsQuerySchema, productPathSchema, transitionsQuerySchema } from './schemas.js';
import { createDashboardRouter } from './ui/router.js';
import { bearerToken, queryHasCredential, type Principal, type TokenVerifier } from './tokens.js';
import type { AuthFailureGuard } from './auth-failures.js';

export interface RestDeps {
  control: DaemonControl;
  edge: Edge;
  tokens: TokenVerifier;
  allowedHosts: readonly string[];
  bodyLimitBytes: number;
  metrics: Metrics;
  logger: Logger;
  audit: AuditSink;
  /** Counts, coalesces and throttles refused requests per remote (auth-failures.ts). */
  authFailures: AuthFailureGuard;
}

type Locals = { principal?: Principal };

export function createRestApp(deps: RestDeps): express.Express {
  const { control, edge, tokens, logger, authFailures } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  const openapi = buildOpenApiDocument();

  /**
   * A refused request: coalesced into the audit log per remote, and once a remote has been refused
   * too often in the window, answered 429 instead (see auth-failures.ts).
   */
  const refuse = (req: Request, res: Response, kind: string, message: string): void => {
    const remote = req.socket.remoteAddress ?? 'unix socket';
    const waitMs = authFailures.throttledFor(remote);
    if (waitMs > 0) {
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(waitMs / 1000))));
      throw apiError('API_RATE_LIMITED', `too many refused requests from ${remote}; try again in ${Math.ceil(waitMs / 1000)} s`, { retryAfterMs: waitMs });
    }
    // The path only: a query string may hold a credential and is never logged.
    authFailures.refuse({ remote, reason: kind, message: `${message}: ${req.method} ${req.baseUrl}${req.path}` });
  };

  app.use((req, res, next) => {
    if (!isAllowedHost(req.headers.host, deps.allowedHosts)) {
      refuse(req, res, 'host', 'request with a foreign Host header refused');
      throw apiError('API_FORBIDDEN', 'this Host is not allowed; otad answers only to the names in api.allowedHosts');
    }
    if (queryHasCredential(req.query as Record<string, unknown>, tokens)) {
      refuse(req, res, 'query-token', 'request with a credential in the query string refused');
      throw apiError('API_UNAUTHORIZED', 'credentials are never accepted in the query string; send Authorization: Bearer <token>');
    }
    next();
  });

  app.get('/api/v1/health', (_req, res) => {
    res.json(control.health());
  });
  app.get('/api/v1/openapi.json', (_req, res) => {
    res.json(openapi);
  });
  app.use('/ui', createDashboardRouter({ tokens, refuse }));

  const authenticate = (req: Request, res: Response<unknown, Locals>, next: NextFunction) => {
    const presented = bearerToken(req.headers.authorization);
    const principal = presented === null ? null : tokens.verify(presented);
    if (!principal) {
      refuse(req, res, presented === null ? 'no-token' : 'wrong-token', presented === null ? 'request without a bearer token refused' : 'request with a wrong token refused');
      res.setHeader('WWW-Authenticate', 'Bearer realm="otad"');
      throw apiError('API_UNAUTHORIZED', presented === null ? 'a bearer token is required (Authorization: Bearer <token>)' : 'the bearer token is not valid');
    }
    res.locals.principal = principal;
    next();
  };

  const requireControl = (req: Request, res: Response<unknown, Locals>, next: NextFunction) => {
    const p = res.locals.principal as Principal;
    if (p.scope !== 'control') {
      refuse(req, res, 'scope', `token "${p.name}" with read scope used on a control endpoint`);
      throw apiError('API_FORBIDDEN', `token "${p.name}" has the read scope; this endpoint needs a control token`);
    }
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > deps.bodyLimitBytes) throw apiError('API_TOO_LARGE', `request body of ${length} bytes is larger than the limit of ${deps.bodyLimitBytes} bytes`);
    next();
  };

  const caller = (res: Response<unknown, Locals>) => ({ actor: (res.locals.principal as Principal).name, source: 'rest' as const });
  const json = express.json({ limit: deps.bodyLimitBytes, type: 'application/json' });

  app.get('/metrics', authenticate, async (_req, res) => {
    res.setHeader('Content-Type', deps.metrics.registry.contentType);
    res.send(await deps.metrics.registry.metrics());
  });

  const v1 = express.Router();
  v1.use(authenticate);
  v1.get('/status', (_req, res) => {
    res.json(control.status());
  });
  v1.get('/products', (_req, res) => {
    res.json({ products: control.productDefinitions() });
  });
  v1.get('/products/:product/releases', async (req, res) => {
    const { product } = parseBody(productPathSchema, { ...req.params }, 'product');
    res.json(await control.releaseHistory(product));
  });
  v1.get('/products/:product/source', (req, res) => {
    const { product } = parseBody(productPathSchema, { ...req.params }, 'product');
    res.json(control.productSource(product));
  });
  v1.put('/products/:product/source', requireControl, json, (req, res) => {
    res.json(edge.selectSource({ ...req.params }, req.body, caller(res)));
  });
  v1.delete('/products/:product/releases/:version/bad', requireControl, (req, res) => {
    res.json(edge.unmarkRelease({ ...req.params }, caller(res)));
  });
  v1.get('/repositories', async (_req, res) => {
    res.json({ repositories: await control.repositories() });
  });
  v1.get('/history', (req, res) => {
    const q = parseBody(historyQuerySchema, req.query, 'history query');
    res.json({ runs: control.history(q), downtime: control.downtimeSummary(q.product) });
  });
  v1.get('/transitions', (req, res) => {
    const q = parseBody(transitionsQuerySchema, req.query, 'transitions query');
    const transitions = control.transitions({ ...q, limit: q.limit ?? 100 });
    const last = transitions.at(-1);
    res.json({ transitions, nextAfterSeq: last ? last.seq : (q.afterSeq ?? 0) });
  });
  v1.get('/logs', (req, res) => {
    const q = parseBody(logsQuerySchema, req.query, 'logs query');
    res.json({ lines: control.logs(q) });
  });
  v1.get('/runs/:runId/export', (req, res) => {
    res.json(control.exportRun(req.params.runId as string));
  });
  v1.post('/events', requireControl, json, async (req, res) => {
    res.status(202).json(await edge.dispatch(req.body, caller(res)));
  });
  v1.post('/inhibit', requireControl, json, (req, res) => {
    res.status(201).json(edge.holdInhibit(req.body, caller(res)));
  });
  v1.post('/inhibit/:holder/heartbeat', requireControl, json, (req, res) => {
    res.json(edge.renewInhibit(req.params.holder as string, req.body ?? {}, caller(res)));
  });
  v1.delete('/inhibit/:holder', requireControl, (req, res) => {
    res.json(edge.releaseInhibit(req.params.holder as string, caller(res)));
  });
  v1.post('/products/:product/rehearse', requireControl, async (req, res) => {
    res.json(await edge.rehearse({ ...req.params }, caller(res)));
  });
  v1.post('/products/:product/maintenance', requireControl, json, (req, res) => {
    res.json(edge.answerMaintenance(req.params.product as string, req.body, caller(res)));
  });
  v1.post('/robot-state', requireControl, json, (req, res) => {
    res.json(edge.reportRobotState(req.body, caller(res)));
  });
  v1.post('/notifications/ack', requireControl, json, (req, res) => {
    res.json(edge.acknowledge(req.body, caller(res)));
  });
  app.use('/api/v1', v1);

  app.use((req, _res) => {
    throw apiError('API_NOT_FOUND', `no endpoint ${req.method} ${req.path}; see /api/v1/openapi.json`);
  });

  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const parserType = (error as { type?: string } | null)?.type;
    let mapped;
    if (parserType === 'entity.too.large') {
      mapped = toApiError(apiError('API_TOO_LARGE', `request body is larger than the limit of ${deps.bodyLimitBytes} bytes`));
    } else if (parserType === 'entity.parse.failed' || parserType === 'encoding.unsupported' || parserType === 'charset.unsupported') {
      mapped = toApiError(apiError('API_INVALID_REQUEST', 'the request body is not valid JSON'));
    } else {
      mapped = toApiError(error);
    }
    if (mapped.internal) logger.error('an API handler failed (answered with a generic 500)', { method: req.method, path: `${req.baseUrl}${req.path}`, error: toErrorData(error) });
    if (mapped.status === 429) {
      const retry = (mapped.body.error.details?.retryAfterMs as number | undefined) ?? 1000;
      res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retry / 1000))));
    }
    if (res.headersSent) return;
    res.status(mapped.status).json(mapped.body);
  });
  return app;
}

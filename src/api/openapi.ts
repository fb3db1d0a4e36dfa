/**
 * The OpenAPI 3.1 document of REST v1, generated from the zod schemas the handlers use
 * (schemas.ts). Served at /api/v1/openapi.json; docs/api.md is checked against it by a test.
 */
import { z } from 'zod';
import { OTAD_VERSION } from '../core/version.js';
import { apiSchemas } from './schemas.js';

const REQUEST_IDS = new Set(['EventRequest', 'InhibitRequest', 'InhibitRenewRequest', 'AckRequest', 'SourceRequest']);

type Json = Record<string, unknown>;

const ref = (id: string): Json => ({ $ref: `#/components/schemas/${id}` });
const json = (id: string, description: string): Json => ({ description, content: { 'application/json': { schema: ref(id) } } });
const err = (description: string): Json => json('Error', description);

const q = (name: string, schema: Json, description: string): Json => ({ name, in: 'query', required: false, schema, description });
const int = (minimum: number, maximum?: number): Json => ({ type: 'integer', minimum, ...(maximum === undefined ? {} : { maximum }) });

const common = { '400': err('invalid request (API_INVALID_REQUEST)'), '401': err('no token, a wrong token, or a token in the query string (API_UNAUTHORIZED)'), '403': err('a foreign Host header, or a read token on a control endpoint (API_FORBIDDEN)'), '500': err('unexpected failure: a generic message, details in the otad log (INTERNAL)') };
const control = { ...common, '413': err('body larger than api.bodyLimitBytes (API_TOO_LARGE)'), '429': err('too many control requests (API_RATE_LIMITED); see Retry-After') };

export function buildOpenApiDocument(): Json {
  const components: Record<string, Json> = {};
  for (const io of ['output', 'input'] as const) {
    const out = z.toJSONSchema(apiSchemas, { uri: (id) => `#/components/schemas/${id}`, io, unrepresentable: 'any' }) as { schemas: Record<string, Json> };
    for (const [id, schema] of Object.entries(out.schemas)) {
      if ((io === 'input') !== REQUEST_IDS.has(id)) continue;
      const { $schema: _s, $id: _i, ...rest } = schema;
      components[id] = rest;
    }
  }
  const read = { security: [{ bearer: [] }] };
  return {
    openapi: '3.1.0',
    info: {
      title: 'otad local API',
      version: OTAD_VERSION,
      description:
        'The local REST API of otad, the over-the-air update daemon on a robot. Localhost only by default. Every endpoint except health, openapi.json and the document itself needs a bearer token; control endpoints need a token with the control scope. Errors have one shape: { error: { code, message, details? } }.',
    },
    servers: [{ url: '/api/v1' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'a token from api.tokensFile; never in the query string' } },
      schemas: components,
    },
    paths: {
      '/status': { get: { operationId: 'getStatus', summary: 'device and per-product lifecycle status', ...read, responses: { '200': json('Status', 'status'), ...common } } },
      '/products': { get: { operationId: 'getProducts', summary: "each product's definition: install path, services, health checks, preserved paths, probation, repository", ...read, responses: { '200': json('Products', 'product definitions'), ...common } } },
      '/products/{product}/releases': {
        get: {
          operationId: 'getReleases',
          summary: 'every release known for the product (found by a check, on disk, backed up, marked bad), which is installed, where a rollback would go, and why a release is bad (reason, when, automatic or operator, who, which run)',
          ...read,
          parameters: [{ name: 'product', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': json('ReleaseHistory', 'the releases, newest first'), ...common, '404': err('unknown product (PRODUCT_UNKNOWN)') },
        },
      },
      '/products/{product}/source': {
        get: {
          operationId: 'getSource',
          summary: 'the channel and repository the product follows, the configured choices, whether switching is allowed, and who chose',
          ...read,
          parameters: [{ name: 'product', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': json('ProductSource', 'the source'), ...common, '404': err('unknown product (PRODUCT_UNKNOWN)') },
        },
        put: {
          operationId: 'selectSource',
          summary: "switch the channel and/or repository the product's next check reads, among the configured choices (control scope; audited; kept across restarts)",
          ...read,
          parameters: [{ name: 'product', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: { required: true, content: { 'application/json': { schema: ref('SourceRequest') } } },
          responses: {
            '200': json('ProductSource', 'the source now in force (changed: false when nothing had to change)'),
            ...control,
            '400': err('invalid body (API_INVALID_REQUEST), or a channel or repository the product does not offer (SOURCE_UNKNOWN; details lists the choices)'),
            '403': err('a read token (API_FORBIDDEN), or the configuration forbids switching (SOURCE_SWITCH_FORBIDDEN)'),
            '404': err('unknown product (PRODUCT_UNKNOWN)'),
            '409': err('a run is in flight: switching waits until the product is idle (SOURCE_SWITCH_BUSY; details.state)'),
          },
        },
      },
      '/products/{product}/releases/{version}/bad': {
        delete: {
          operationId: 'unmarkRelease',
          summary: 'clear the bad mark of a release, so checks may offer it again (control scope; audited)',
          ...read,
          parameters: [
            { name: 'product', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'version', in: 'path', required: true, schema: { type: 'string' } },
          ],
          responses: { '200': json('UnmarkResult', 'the mark that was cleared'), ...control, '404': err('unknown product (PRODUCT_UNKNOWN), or the release is not marked bad (API_NOT_FOUND)') },
        },
      },
      '/repositories': {
        get: {
          operationId: 'getRepositories',
          summary: "each product's repository as otad sees it: reachability and latency of otad's own probe (kept 5 s), the trusted metadata's expiry and signers, the last successful check",
          ...read,
          responses: { '200': json('Repositories', 'repository status'), ...common },
        },
      },
      '/events': {
        post: {
          operationId: 'postEvent',
          summary: 'dispatch an allow-listed event (control scope)',
          ...read,
          requestBody: { required: true, content: { 'application/json': { schema: ref('EventRequest') } } },
          responses: {
            '202': json('DispatchResult', 'accepted: the machine moved on'),
            ...control,
            '404': err('unknown product (PRODUCT_UNKNOWN)'),
            '409': err('not allowed in the current state (API_EVENT_NOT_ALLOWED; details.state and details.allowed), or a ROLLBACK with nothing to go back to (ROLLBACK_NOTHING_TO_UNDO; nothing changed), or the product\'s last move is not saved yet (STATE_NOT_SAVED: the disk is full or failing; otad retries the save)'),
          },
        },
      },
      '/inhibit': {
        post: {
          operationId: 'holdInhibit',
          summary: 'hold an inhibit: no update starts while it is held (control scope)',
          ...read,
          requestBody: { required: true, content: { 'application/json': { schema: ref('InhibitRequest') } } },
          responses: { '201': json('Inhibit', 'held'), ...control },
        },
      },
      '/inhibit/{holder}/heartbeat': {
        post: {
          operationId: 'renewInhibit',
          summary: 'renew an inhibit lease for durationMs (default inhibit.leaseTtl): a lease not renewed in time is released (control scope)',
          ...read,
          parameters: [{ name: 'holder', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: { required: false, content: { 'application/json': { schema: ref('InhibitRenewRequest') } } },
          responses: { '200': json('Inhibit', 'renewed'), ...control, '404': err('no lease held by this holder: it expired or was released (API_NOT_FOUND)') },
        },
      },
      '/inhibit/{holder}': {
        delete: {
          operationId: 'releaseInhibit',
          summary: 'release an inhibit (control scope)',
          ...read,
          parameters: [{ name: 'holder', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': json('InhibitReleased', 'released'), ...control, '404': err('no inhibit held by this holder (API_NOT_FOUND)') },
        },
      },
      '/products/{product}/rehearse': {
        post: {
          operationId: 'rehearse',
          summary: 'rehearse an update: the real check, pre-check, download and staging into a scratch folder (removed afterwards); nothing under the install path changes and no service is touched (control scope; audited)',
          ...read,
          parameters: [{ name: 'product', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': json('Rehearsal', 'what the update would download, need and restart, the pre-check verdicts and the predicted downtime'), ...control, '404': err('unknown product (PRODUCT_UNKNOWN)'), '409': err('a run is in progress, or another rehearsal (REHEARSAL_BUSY); this otad has no real steps (REHEARSAL_UNAVAILABLE)') },
        },
      },
      '/products/{product}/maintenance': {
        post: {
          operationId: 'answerMaintenance',
          summary: 'GrantMaintenance or DenyMaintenance: answer the maintenance request otad sent before an install (control scope; audited)',
          ...read,
          parameters: [{ name: 'product', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: { required: true, content: { 'application/json': { schema: ref('MaintenanceAnswer') } } },
          responses: { '200': json('MaintenanceAnswered', 'answered'), ...control, '404': err('unknown product (PRODUCT_UNKNOWN), or no maintenance request is waiting / not this requestId (API_NOT_FOUND)') },
        },
      },
      '/robot-state': {
        post: {
          operationId: 'reportRobotState',
          summary: "the app's robot state for the robot-state gates (robotState.gates, source app); each field stamped on receipt (control scope). The same report: D-Bus Manager1.ReportRobotState(a{sv}), Socket.IO robot-state",
          ...read,
          requestBody: { required: true, content: { 'application/json': { schema: ref('RobotStateReport') } } },
          responses: { '200': json('RobotStateAccepted', 'taken'), ...control },
        },
      },
      '/notifications/ack': {
        post: {
          operationId: 'acknowledgeRelease',
          summary: 'acknowledge a release notification (control scope)',
          ...read,
          requestBody: { required: true, content: { 'application/json': { schema: ref('AckRequest') } } },
          responses: { '200': json('AckResult', 'acknowledged'), ...control, '404': err('unknown product (PRODUCT_UNKNOWN)') },
        },
      },
      '/history': {
        get: {
          operationId: 'getHistory',
          summary: 'update runs, newest first',
          ...read,
          parameters: [q('product', { type: 'string' }, 'only this product'), q('limit', int(1, 1000), 'at most this many (default 100)'), q('offset', int(0), 'skip this many')],
          responses: { '200': json('History', 'runs'), ...common },
        },
      },
      '/transitions': {
        get: {
          operationId: 'getTransitions',
          summary: 'the transition log, oldest first, paged by sequence number',
          ...read,
          parameters: [
            q('afterSeq', int(0), 'only transitions with a greater sequence number'),
            q('limit', int(1, 1000), 'page size (default 100)'),
            q('product', { type: 'string' }, 'only this product'),
            q('runId', { type: 'string' }, 'only this run'),
          ],
          responses: { '200': json('Transitions', 'a page of transitions'), ...common },
        },
      },
      '/logs': {
        get: {
          operationId: 'getLogs',
          summary: 'the last log lines kept in memory, filtered',
          ...read,
          parameters: [
            q('level', { type: 'string', enum: ['error', 'warn', 'info', 'debug'] }, 'this level and more severe'),
            q('limit', int(1, 2000), 'at most this many (the newest)'),
            q('contains', { type: 'string' }, 'only lines whose message contains this text'),
            q('since', int(0), 'only lines at or after this time (ms since the epoch)'),
            q('product', { type: 'string' }, "only lines about this product; '-' for otad's own lines about no product"),
          ],
          responses: { '200': json('Logs', 'log lines'), ...common },
        },
      },
      '/runs/{runId}/export': {
        get: {
          operationId: 'exportRun',
          summary: "one run's transitions and snapshots, for offline replay (otactl replay)",
          ...read,
          parameters: [{ name: 'runId', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { '200': json('RunExport', 'the run'), ...common, '404': err('no such run (API_NOT_FOUND)') },
        },
      },
      '/health': {
        get: {
          operationId: 'getHealth',
          summary: 'liveness: no token needed (state names only)',
          responses: { '200': json('Health', 'the daemon is serving'), '403': common['403'] },
        },
      },
    },
  };
}

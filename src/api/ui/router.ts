/**
 * The operator dashboard otad serves on the robot, under /ui/: one static HTML page with plain ES
 * modules (public/), the Socket.IO browser client that matches the server (the ESM build that the
 * socket.io package itself ships), and /ui/session, which tells the page which scope its token has
 * so that a read-only operator is not shown buttons that would only be refused.
 *
 * The static files hold no data and need no token; every datum comes from REST v1 and the stream,
 * with the bearer token the operator typed. The page runs under a strict Content-Security-Policy:
 * scripts only from this origin (no inline script, no eval), no form may submit anywhere (so the
 * token form can never put the token in a URL), and no other site may frame it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Request, type Response } from 'express';
import { apiError } from '../http-errors.js';
import { bearerToken, type TokenVerifier } from '../tokens.js';

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The browser client the socket.io server package ships, as an ES module (same version as the server). */
export const SOCKET_CLIENT_FILE = 'socket.io.esm.min.js';

export interface DashboardDeps {
  tokens: TokenVerifier;
  /** Records a refused request (coalesced and throttled per remote), or throws API_RATE_LIMITED. */
  refuse(req: Request, res: Response, reason: string, message: string): void;
  /** Folder of index.html and its modules; found beside this file (or its source) when omitted. */
  assetsDir?: string;
}

/**
 * Where the page's files are: beside this module when it runs from src/ (tsx, tests), or in the
 * source tree when it runs compiled from dist/src/api/ui/ and the build did not copy them.
 */
export function findAssetsDir(moduleUrl: string = import.meta.url): string | null {
  const here = dirname(fileURLToPath(moduleUrl));
  const candidates = [join(here, 'public'), resolve(here, '../../../../src/api/ui/public')];
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? null;
}

/**
 * The release notes' Markdown renderer and sanitizer, as the ES modules the marked and dompurify
 * packages ship: served as they are, so the page renders notes with exactly the installed versions.
 */
export const VENDOR_MODULES: Readonly<Record<string, { pkg: string; file: string }>> = {
  'marked.esm.js': { pkg: 'marked', file: 'lib/marked.esm.js' },
  'purify.es.mjs': { pkg: 'dompurify', file: 'dist/purify.es.mjs' },
};

function packageDir(pkg: string): string {
  const require = createRequire(import.meta.url);
  // Neither package exports package.json; its main entry sits one folder below the package root.
  let dir = dirname(require.resolve(pkg));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}

/** The folder of the socket.io package's browser builds (client-dist/). */
export function socketClientDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('socket.io/package.json')), 'client-dist');
}

function securityHeaders(_req: Request, res: Response, next: () => void): void {
  res.setHeader('Content-Security-Policy', DASHBOARD_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  // Revalidated on every load, so a page from an older otad is never run against a newer API.
  res.setHeader('Cache-Control', 'no-cache');
  next();
}

export function createDashboardRouter(deps: DashboardDeps): express.Router {
  const router = express.Router({ strict: true });
  const assetsDir = deps.assetsDir ?? findAssetsDir();
  const clientDir = socketClientDir();
  const staticOptions = { index: false as const, dotfiles: 'ignore' as const, etag: true, redirect: false, fallthrough: true };

  router.use(securityHeaders);

  router.get('/session', (req, res) => {
    const presented = bearerToken(req.headers.authorization);
    const principal = presented === null ? null : deps.tokens.verify(presented);
    if (!principal) {
      deps.refuse(req, res, presented === null ? 'no-token' : 'wrong-token', presented === null ? 'request without a bearer token refused' : 'request with a wrong token refused');
      res.setHeader('WWW-Authenticate', 'Bearer realm="otad"');
      throw apiError('API_UNAUTHORIZED', presented === null ? 'a bearer token is required (Authorization: Bearer <token>)' : 'the bearer token is not valid');
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({ name: principal.name, scope: principal.scope });
  });

  const vendorRoots = Object.fromEntries(Object.entries(VENDOR_MODULES).map(([name, m]) => [name, { root: packageDir(m.pkg), file: m.file }]));
  router.get('/vendor/:file', (req, res, next) => {
    const file = req.params.file as string;
    const vendor = Object.hasOwn(vendorRoots, file) ? vendorRoots[file] : undefined;
    if (vendor) {
      res.type('text/javascript');
      return res.sendFile(vendor.file, { root: vendor.root, dotfiles: 'deny' });
    }
    if (file !== SOCKET_CLIENT_FILE && file !== `${SOCKET_CLIENT_FILE}.map`) return next();
    res.sendFile(file, { root: clientDir, dotfiles: 'deny' });
  });

  if (assetsDir === null) {
    router.use((_req, _res) => {
      throw apiError('API_NOT_FOUND', 'the dashboard files are not installed: expected src/api/ui/public/index.html beside otad (copy it next to the compiled router)');
    });
    return router;
  }
  router.get('/', (req, res) => {
    // "/ui" would make the page's relative module URLs resolve against "/": send it to "/ui/".
    if (!req.originalUrl.split('?')[0]!.endsWith('/')) return res.redirect(301, `${req.baseUrl}/`);
    res.sendFile('index.html', { root: assetsDir });
  });
  router.use(express.static(assetsDir, staticOptions));
  return router;
}

/**
 * The fleet page ota-server serves under /fleet/ (and `/` redirects there): static HTML, CSS and
 * plain ES modules from public/, with Preact and htm served from their installed packages, so
 * there is no build step. The files hold no data and need no token; every datum comes from the
 * REST API with the bearer token the operator typed (kept in the tab's sessionStorage, never a
 * cookie). The page runs under the same strict Content-Security-Policy as the robot's dashboard:
 * scripts only from this origin, no inline script or eval, no form may submit anywhere, no framing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import { OtaError } from '../../core/errors.js';

export const FLEET_PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The view library's browser modules, by the name the page imports them under. Both files are
 * self-contained ES modules (no bare imports), so the browser needs no import map.
 */
export const VENDOR_MODULES: Readonly<Record<string, { pkg: string; file: string }>> = {
  'preact.mjs': { pkg: 'preact', file: 'dist/preact.mjs' },
  'htm.mjs': { pkg: 'htm', file: 'dist/htm.mjs' },
};

/** Beside this module (running from src/ or a build that copied public/), else the source tree. */
export function findFleetAssetsDir(moduleUrl: string = import.meta.url): string | null {
  const here = dirname(fileURLToPath(moduleUrl));
  const candidates = [join(here, 'public'), resolve(here, '../../../../src/server/ui/public')];
  return candidates.find((dir) => existsSync(join(dir, 'index.html'))) ?? null;
}

/** The installed package's folder: up from its entry point (htm's exports hide its package.json). */
function packageDir(pkg: string): string {
  const require = createRequire(import.meta.url);
  let dir = dirname(require.resolve(pkg));
  while (!existsSync(join(dir, 'package.json')) || (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name !== pkg) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`package ${pkg} has no package.json above ${require.resolve(pkg)}`);
    dir = up;
  }
  return dir;
}

function securityHeaders(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Content-Security-Policy', FLEET_PAGE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  // Revalidated on every load, so a page from an older ota-server never runs against a newer API.
  res.setHeader('Cache-Control', 'no-cache');
  next();
}

export function fleetPageRouter(options: { assetsDir?: string | null } = {}): express.Router {
  const router = express.Router({ strict: true });
  const assetsDir = options.assetsDir === undefined ? findFleetAssetsDir() : options.assetsDir;
  const vendor = Object.fromEntries(Object.entries(VENDOR_MODULES).map(([name, m]) => [name, { root: packageDir(m.pkg), file: m.file }]));
  const staticOptions = { index: false as const, dotfiles: 'ignore' as const, etag: true, redirect: false, fallthrough: true };

  router.get('/', (_req, res) => res.redirect(302, '/fleet/'));
  // "/fleet" would make the page's relative module URLs resolve against "/".
  router.get('/fleet', (_req, res) => res.redirect(301, '/fleet/'));

  const page = express.Router({ strict: true });
  page.use(securityHeaders);
  page.get('/vendor/:file', (req, res, next) => {
    const file = String(req.params.file);
    const found = Object.hasOwn(vendor, file) ? vendor[file] : undefined;
    if (found === undefined) return next();
    res.sendFile(found.file, { root: found.root, dotfiles: 'deny' });
  });
  if (assetsDir === null) {
    page.use(() => {
      throw new OtaError('API_NOT_FOUND', 'the fleet page files are not installed: expected src/server/ui/public/index.html beside ota-server (the build copies it to dist/src/server/ui/public)');
    });
  } else {
    page.get('/', (_req, res) => res.sendFile('index.html', { root: assetsDir }));
    page.use(express.static(assetsDir, staticOptions));
  }
  router.use('/fleet', page);
  return router;
}

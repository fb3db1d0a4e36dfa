/**
 * The pages ota-server serves: the fleet page under /fleet/ (files in public/), the publisher
 * studio under /studio/ (files in studio/, and `/` redirects there), and the stylesheet both share
 * under /shared/. Static HTML, CSS and plain ES modules, with Preact, htm, marked and dompurify
 * served from their installed packages, so there is no build step. The files hold no data and need no token; every datum comes from the
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
 * The browser modules the pages import, by the name they import them under. Each file is a
 * self-contained ES module (no bare imports), so the browser needs no import map. marked and
 * dompurify render the studio's release-notes preview (the robot's dashboard uses the same two).
 */
export const VENDOR_MODULES: Readonly<Record<string, { pkg: string; file: string }>> = {
  'preact.mjs': { pkg: 'preact', file: 'dist/preact.mjs' },
  'htm.mjs': { pkg: 'htm', file: 'dist/htm.mjs' },
  'marked.esm.js': { pkg: 'marked', file: 'lib/marked.esm.js' },
  'purify.es.mjs': { pkg: 'dompurify', file: 'dist/purify.es.mjs' },
};

/** The pages ota-server serves, each a folder beside this module (public/ is the fleet page's). */
export const PAGES = { fleet: 'public', studio: 'studio', shared: 'shared' } as const;

/** Beside this module (running from src/ or a build that copied the folder), else the source tree. */
export function findPageDir(folder: string, moduleUrl: string = import.meta.url): string | null {
  const here = dirname(fileURLToPath(moduleUrl));
  const candidates = [join(here, folder), resolve(here, '../../../../src/server/ui', folder)];
  const marker = folder === PAGES.shared ? 'base.css' : 'index.html';
  return candidates.find((dir) => existsSync(join(dir, marker))) ?? null;
}

export function findFleetAssetsDir(moduleUrl: string = import.meta.url): string | null {
  return findPageDir(PAGES.fleet, moduleUrl);
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

const staticOptions = { index: false as const, dotfiles: 'ignore' as const, etag: true, redirect: false, fallthrough: true };

/** One page's files under /<mount>/, with the vendor modules under /<mount>/vendor/. */
function pageRouter(mount: string, assetsDir: string | null, vendor: Record<string, { root: string; file: string }>, what: string): express.Router {
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
      throw new OtaError('API_NOT_FOUND', `the ${what} files are not installed: expected src/server/ui/${mount} beside ota-server (the build copies it to dist/src/server/ui)`);
    });
  } else {
    page.get('/', (_req, res) => res.sendFile('index.html', { root: assetsDir }));
    page.use(express.static(assetsDir, staticOptions));
  }
  return page;
}

export interface PageRouterOptions {
  /** The fleet page's folder (default: found beside this module); null: not installed. */
  assetsDir?: string | null;
  studioDir?: string | null;
  sharedDir?: string | null;
}

/**
 * The operator pages: the publisher studio at /studio/ (where / leads), the fleet page at /fleet/,
 * and the stylesheet both share at /shared/.
 */
export function fleetPageRouter(options: PageRouterOptions = {}): express.Router {
  const router = express.Router({ strict: true });
  const vendor = Object.fromEntries(Object.entries(VENDOR_MODULES).map(([name, m]) => [name, { root: packageDir(m.pkg), file: m.file }]));
  const fleetDir = options.assetsDir === undefined ? findPageDir(PAGES.fleet) : options.assetsDir;
  const studioDir = options.studioDir === undefined ? findPageDir(PAGES.studio) : options.studioDir;
  const sharedDir = options.sharedDir === undefined ? findPageDir(PAGES.shared) : options.sharedDir;

  router.get('/', (_req, res) => res.redirect(302, '/studio/'));
  // "/fleet" would make the page's relative module URLs resolve against "/".
  router.get('/fleet', (_req, res) => res.redirect(301, '/fleet/'));
  router.get('/studio', (_req, res) => res.redirect(301, '/studio/'));
  router.use('/fleet', pageRouter('public', fleetDir, vendor, 'fleet page'));
  router.use('/studio', pageRouter('studio', studioDir, vendor, 'publisher studio'));
  const shared = express.Router({ strict: true });
  shared.use(securityHeaders);
  if (sharedDir !== null) shared.use(express.static(sharedDir, staticOptions));
  router.use('/shared', shared);
  return router;
}

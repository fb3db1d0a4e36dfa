/**
 * Bearer tokens: read from a YAML file (`tokens: [{ name, token, scope: read|control }]`) that
 * only its owner may read, and compared in constant time. Tokens are kept only as SHA-256 digests
 * so that every comparison has the same length and timingSafeEqual never leaks which prefix matched.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import { OtaError } from '../core/errors.js';

export type Scope = 'read' | 'control';

export interface Principal {
  name: string;
  scope: Scope;
}

const tokensFileSchema = z.object({
  tokens: z
    .array(
      z.object({
        name: z.string().regex(/^[\w.@:-]{1,64}$/, 'expected 1-64 characters of letters, digits and . _ @ : -'),
        token: z.string().min(16, 'a token must be at least 16 characters long'),
        scope: z.enum(['read', 'control']),
      }),
    )
    .min(1, 'list at least one token'),
});

export interface TokenVerifier {
  /** The principal a presented token belongs to, or null. Runs in time independent of the match. */
  verify(presented: string): Principal | null;
  readonly count: number;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export function createTokenVerifier(entries: ReadonlyArray<{ name: string; token: string; scope: Scope }>): TokenVerifier {
  const hashed = entries.map((e) => ({ name: e.name, scope: e.scope, hash: digest(e.token) }));
  return {
    count: hashed.length,
    verify(presented) {
      const h = digest(presented);
      let found: Principal | null = null;
      // Every entry is compared, match or not, so the time does not depend on which one matched.
      for (const e of hashed) {
        if (timingSafeEqual(h, e.hash) && found === null) found = { name: e.name, scope: e.scope };
      }
      return found;
    },
  };
}

/**
 * Loads the tokens file. Refuses a file that group or other may read or write: a token that
 * other local users can read is no secret.
 */
export function loadTokensFile(path: string): TokenVerifier {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (error) {
    throw new OtaError('CONFIG_NOT_FOUND', `API tokens file ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)}); create it with mode 0600 or set api.tokensFile`, {
      details: { path },
      cause: error,
    });
  }
  if ((mode & 0o077) !== 0) {
    throw new OtaError(
      'TOKENS_FILE_INSECURE',
      `API tokens file ${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}; group and other must have no access: run chmod 600 ${path}`,
      { details: { path, mode: mode & 0o777 } },
    );
  }
  let doc: unknown;
  try {
    doc = YAML.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new OtaError('CONFIG_PARSE', `API tokens file ${path} is not valid YAML: ${(error as Error).message}`, { details: { path }, cause: error });
  }
  const parsed = tokensFileSchema.safeParse(doc);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`);
    throw new OtaError('CONFIG_INVALID', `API tokens file ${path} is invalid: ${problems.join('; ')}`, { details: { path, problems } });
  }
  const names = new Set<string>();
  for (const t of parsed.data.tokens) {
    if (names.has(t.name)) throw new OtaError('CONFIG_INVALID', `API tokens file ${path} names token "${t.name}" twice; names must be unique`, { details: { path } });
    names.add(t.name);
  }
  return createTokenVerifier(parsed.data.tokens);
}

/** The bearer token of an Authorization header, or null when absent or not a bearer credential. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? (m[1] as string) : null;
}

/** Query parameter names that look like an attempt to pass a credential in a URL. */
export const CREDENTIAL_PARAM = /^(access[_-]?token|token|auth|authorization|bearer|api[_-]?key|key)$/i;

/**
 * True when a query string (REST) or a Socket.IO handshake query carries a credential: a parameter
 * named like one, a value that is a valid token under any name, or a value that is a bearer
 * credential ("Bearer …"). One rule for every transport. Such a request is refused even if it also has a good header: the token is now in
 * URLs, proxies' logs and shell history, and the caller must learn that.
 */
export function queryHasCredential(query: Record<string, unknown>, verifier: TokenVerifier): boolean {
  for (const [k, v] of Object.entries(query)) {
    if (CREDENTIAL_PARAM.test(k)) return true;
    const values = Array.isArray(v) ? v : [v];
    for (const value of values) {
      if (typeof value !== 'string') continue;
      if (/^bearer\s/i.test(value.trim())) return true;
      if (value.length >= 16 && verifier.verify(value)) return true;
    }
  }
  return false;
}

// The HTTP client ota-server's pages (the fleet page and the publisher studio) share. The token goes
// in the Authorization header only: never in a URL, never in a cookie (so no other site's form can
// act with it).

/** An answer of the API in its one error shape, or a request that got no answer at all (status 0). */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: no answer)
   * @param {string} code stable error code (docs/errors.md)
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * @param {string} token
 * @returns {(method: string, path: string, body?: unknown) => Promise<any>}
 */
export function createCall(token) {
  return async function call(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      res = await fetch(path, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new ApiError(0, 'NETWORK', `ota-server did not answer (${why})`);
    }
    const text = await res.text();
    let data = null;
    try {
      data = text === '' ? null : JSON.parse(text);
    } catch {
      // Not JSON (a proxy's error page): reported below with the status.
    }
    if (!res.ok) {
      const e = data && typeof data === 'object' && data.error;
      if (e && typeof e.code === 'string') throw new ApiError(res.status, e.code, String(e.message ?? ''));
      throw new ApiError(res.status, 'HTTP_ERROR', `ota-server answered ${res.status} ${res.statusText}`);
    }
    return data;
  };
}

/** An error in words for the page: the API's message with its stable code, or what went wrong. */
export function describeError(/** @type {unknown} */ error) {
  if (error instanceof ApiError) return error.status === 0 ? error.message : `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}

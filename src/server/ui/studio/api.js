// REST client of the publisher studio. The token goes in the Authorization header only: never in a
// URL, never in a cookie (so no other site's form can act with it).

/** An answer of the API in its one error shape, or a request that got no answer at all (status 0). */
export class ApiError extends Error {
  /** @param {number} status HTTP status (0: no answer) @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** @param {string} token */
export function createApi(token) {
  /** @param {string} method @param {string} path @param {unknown} [body] */
  async function call(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
    } catch (error) {
      throw new ApiError(0, 'NETWORK', `ota-server did not answer (${error instanceof Error ? error.message : String(error)})`);
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
  }

  /** A .tar.gz from the publisher's machine, sent as the raw body (fetch reports no upload progress). */
  async function uploadArchive(/** @type {File} */ file) {
    let res;
    try {
      res = await fetch(`/api/v1/studio/drafts/archive?${new URLSearchParams({ name: file.name })}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json', 'Content-Type': 'application/gzip' },
        body: file,
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (error) {
      throw new ApiError(0, 'NETWORK', `the upload did not reach ota-server (${error instanceof Error ? error.message : String(error)}); try again`);
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      const e = data && typeof data === 'object' && data.error;
      if (e && typeof e.code === 'string') throw new ApiError(res.status, e.code, String(e.message ?? ''));
      throw new ApiError(res.status, 'HTTP_ERROR', `ota-server answered ${res.status} ${res.statusText}`);
    }
    return data;
  }

  const q = (/** @type {Record<string, string>} */ params) => new URLSearchParams(params).toString();
  const id = (/** @type {string} */ s) => encodeURIComponent(s);
  return {
    context: () => call('GET', '/api/v1/studio/context'),
    /** @param {string} root @param {string} path */
    folders: (root, path) => call('GET', `/api/v1/studio/folders?${q({ root, path })}`),
    /** @param {string} product @param {string} channel */
    versions: (product, channel) => call('GET', `/api/v1/studio/versions?${q({ product, channel })}`),
    /** @param {string} root @param {string} path */
    createDraft: (root, path) => call('POST', '/api/v1/studio/drafts', { root, path }),
    uploadArchive,
    /** @param {string} draftId @param {Record<string, unknown>} fields */
    review: (draftId, fields) => call('POST', `/api/v1/studio/drafts/${id(draftId)}/review`, fields),
    /** @param {string} draftId @param {{ packageSha256: string, manifestSha256: string }} shown */
    publish: (draftId, shown) => call('POST', `/api/v1/studio/drafts/${id(draftId)}/publish`, shown),
  };
}

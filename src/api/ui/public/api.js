// REST v1 client for the dashboard. The token goes in the Authorization header only, never in a URL.

/** An answer of the API in its one error shape, or a request that got no answer at all. */
export class ApiError extends Error {
  /**
   * @param {number} status HTTP status (0: no answer)
   * @param {string} code stable error code (docs/errors.md)
   * @param {string} message
   * @param {Record<string, unknown>} [details]
   */
  constructor(status, code, message, details) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** @param {string} token */
export function createApi(token) {
  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   */
  async function call(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${token}`, Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
    } catch (error) {
      throw new ApiError(0, 'NETWORK', `otad did not answer (${error instanceof Error ? error.message : String(error)})`);
    }
    const text = await res.text();
    let data = null;
    try {
      data = text === '' ? null : JSON.parse(text);
    } catch {
      // Not JSON: reported below with the status.
    }
    if (!res.ok) {
      const e = data && typeof data === 'object' && data.error;
      if (e && typeof e.code === 'string') throw new ApiError(res.status, e.code, String(e.message ?? ''), e.details);
      throw new ApiError(res.status, 'HTTP_ERROR', `otad answered ${res.status} ${res.statusText}`);
    }
    return data;
  }

  return {
    /** @returns {Promise<{ name: string, scope: 'read' | 'control' }>} */
    session: () => call('GET', '/ui/session'),
    status: () => call('GET', '/api/v1/status'),
    products: () => call('GET', '/api/v1/products'),
    repositories: () => call('GET', '/api/v1/repositories'),
    /** @param {string} product @param {number} limit */
    history: (product, limit) => call('GET', `/api/v1/history?product=${encodeURIComponent(product)}&limit=${limit}`),
    /** @param {{ limit: number, level: string, product?: string, contains?: string }} q */
    logs: (q) => {
      const params = new URLSearchParams({ level: q.level, limit: String(q.limit) });
      if (q.product) params.set('product', q.product);
      if (q.contains) params.set('contains', q.contains);
      return call('GET', `/api/v1/logs?${params}`);
    },
    /** @param {string} product @param {string} type @param {{ markBad?: boolean }} [extra] */
    sendEvent: (product, type, extra = {}) => call('POST', '/api/v1/events', { product, type, reason: 'operator dashboard', ...extra }),
    /** @param {string} product */
    releases: (product) => call('GET', `/api/v1/products/${encodeURIComponent(product)}/releases`),
    /** @param {string} product */
    source: (product) => call('GET', `/api/v1/products/${encodeURIComponent(product)}/source`),
    /** @param {string} product @param {{ channel?: string, repository?: string }} choice */
    selectSource: (product, choice) => call('PUT', `/api/v1/products/${encodeURIComponent(product)}/source`, choice),
    /** @param {string} product @param {string} version */
    unmark: (product, version) => call('DELETE', `/api/v1/products/${encodeURIComponent(product)}/releases/${encodeURIComponent(version)}/bad`),
  };
}

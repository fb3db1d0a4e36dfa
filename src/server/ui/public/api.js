// REST client of the fleet page. The token goes in the Authorization header only: never in a URL,
// never in a cookie (so no other site's form can act with it).

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

  const id = (/** @type {string} */ s) => encodeURIComponent(s);
  return {
    /** @param {{ limit: number, offset: number, status?: string, q?: string }} query */
    devices(query) {
      const params = new URLSearchParams({ limit: String(query.limit), offset: String(query.offset) });
      if (query.status) params.set('status', query.status);
      if (query.q) params.set('q', query.q);
      return call('GET', `/api/v1/devices?${params}`);
    },
    /** @param {string} deviceId @param {'accept' | 'reject'} verb */
    decide: (deviceId, verb) => call('POST', `/api/v1/devices/${id(deviceId)}/${verb}`),
    rollouts: () => call('GET', '/api/v1/rollouts'),
    /** @param {string} rolloutId @param {string} reason */
    halt: (rolloutId, reason) => call('POST', `/api/v1/rollouts/${id(rolloutId)}/halt`, { reason }),
    /** @param {string} rolloutId */
    resume: (rolloutId) => call('POST', `/api/v1/rollouts/${id(rolloutId)}/resume`, {}),
    leases: () => call('GET', '/api/v1/leases'),
  };
}

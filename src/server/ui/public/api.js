// REST client of the fleet page, on the HTTP client ota-server's pages share (/shared/http.js).

import { ApiError, createCall } from '/shared/http.js';

export { ApiError };

/** @param {string} token */
export function createApi(token) {
  const call = createCall(token);
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

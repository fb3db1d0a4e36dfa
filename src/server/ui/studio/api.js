// REST client of the publisher studio, on the HTTP client ota-server's pages share (/shared/http.js).

import { ApiError, createCall } from '/shared/http.js';

export { ApiError };

/** @param {string} token */
export function createApi(token) {
  const call = createCall(token);

  /** A .tar.gz from the publisher's machine, sent as the raw body (fetch reports no upload progress). */
  const uploadArchive = (/** @type {File} */ file) =>
    call('POST', `/api/v1/studio/drafts/archive?${new URLSearchParams({ name: file.name })}`, undefined, {
      contentType: 'application/gzip',
      body: file,
      unreachable: 'the upload did not reach ota-server',
    });

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

// REST client of the publisher studio, on the HTTP client ota-server's pages share (/shared/http.js).

import { ApiError, createCall } from '/shared/http.js';

export { ApiError };

/**
 * One piece of a resumable upload (PUT /api/v1/studio/uploads/ID?offset=N) with XMLHttpRequest, the
 * one browser API that reports upload progress. A broken connection rejects with status 0.
 * @param {string} token @param {string} id @param {number} offset @param {Blob} piece
 * @param {(sent: number) => void} onProgress bytes of this piece sent so far
 * @returns {Promise<{ id: string, size: number, received: number }>}
 */
function putPiece(token, id, offset, piece, onProgress) {
  return putBlob(token, `/api/v1/studio/uploads/${encodeURIComponent(id)}?offset=${offset}`, piece, onProgress);
}

/**
 * A raw body PUT with upload progress.
 * @param {string} token @param {string} url @param {Blob} piece @param {(sent: number) => void} onProgress
 * @returns {Promise<any>}
 */
function putBlob(token, url, piece, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the connection to ota-server broke during the upload'));
    xhr.ontimeout = xhr.onerror;
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: reported with the status below
      }
      if (xhr.status >= 200 && xhr.status < 300 && data) return resolve(data);
      const e = data && data.error;
      reject(e && typeof e.code === 'string' ? new ApiError(xhr.status, e.code, String(e.message ?? '')) : new ApiError(xhr.status, 'HTTP_ERROR', `ota-server answered ${xhr.status}`));
    };
    xhr.send(piece);
  });
}

/** @param {string} token */
export function createApi(token) {
  const call = createCall(token);

  const q = (/** @type {Record<string, string>} */ params) => new URLSearchParams(params).toString();
  const id = (/** @type {string} */ s) => encodeURIComponent(s);
  return {
    context: () => call('GET', '/api/v1/studio/context'),
    /** @param {string} root @param {string} path */
    folders: (root, path) => call('GET', `/api/v1/studio/folders?${q({ root, path })}`),
    /** @param {string} product @param {string} channel @param {string} [repository] a configured repository (default: this server's) */
    versions: (product, channel, repository) => call('GET', `/api/v1/studio/versions?${q({ product, channel, ...(repository ? { repository } : {}) })}`),
    /** @param {string} root @param {string} path @param {string} [compression] 'gzip' or 'zstd' (default: the repository's ota-repo.json) */
    createDraft: (root, path, compression) => call('POST', '/api/v1/studio/drafts', { root, path, ...(compression ? { compression } : {}) }),
    /** @param {string} draftId @param {Record<string, unknown>} fields */
    review: (draftId, fields) => call('POST', `/api/v1/studio/drafts/${id(draftId)}/review`, fields),
    /** @param {string} draftId @param {{ packageSha256: string, manifestSha256: string }} shown */
    /** @param {string} name @param {number} size */
    startUpload: (name, size) => call('POST', '/api/v1/studio/uploads', { name, size }),
    /** @param {string} uploadId */
    uploadStatus: (uploadId) => call('GET', `/api/v1/studio/uploads/${id(uploadId)}`),
    /** @param {string} uploadId @param {number} offset @param {Blob} piece @param {(sent: number) => void} onProgress */
    putPiece: (uploadId, offset, piece, onProgress) => putPiece(token, uploadId, offset, piece, onProgress),
    /** @param {string} uploadId */
    finishUpload: (uploadId) => call('POST', `/api/v1/studio/uploads/${id(uploadId)}/finish`, {}),
    /** @param {string} name @param {Array<{ path: string, size: number }>} files */
    startFolderUpload: (name, files) => call('POST', '/api/v1/studio/folder-uploads', { name, files }),
    /** @param {string} uploadId @param {number} index @param {Blob} file @param {(sent: number) => void} onProgress */
    putFolderFile: (uploadId, index, file, onProgress) => putBlob(token, `/api/v1/studio/folder-uploads/${id(uploadId)}/files/${index}`, file, onProgress),
    /** @param {string} uploadId @param {string} [compression] 'gzip' or 'zstd' (default: the repository's ota-repo.json) */
    finishFolderUpload: (uploadId, compression) => call('POST', `/api/v1/studio/folder-uploads/${id(uploadId)}/finish`, compression ? { compression } : {}),
    /** @param {string} uploadId */
    cancelFolderUpload: (uploadId) => call('DELETE', `/api/v1/studio/folder-uploads/${id(uploadId)}`),
    /** @param {string} uploadId */
    cancelUpload: (uploadId) => call('DELETE', `/api/v1/studio/uploads/${id(uploadId)}`),
    templates: () => call('GET', '/api/v1/studio/templates'),
    /** @param {string} name */
    template: (name) => call('GET', `/api/v1/studio/templates/${id(name)}`),
    /** @param {string} name @param {string} text */
    checkTemplate: (name, text) => call('POST', `/api/v1/studio/templates/${id(name)}/check`, { text }),
    /** @param {string} name @param {string} text @param {number} baseVersion */
    saveTemplate: (name, text, baseVersion) => call('PUT', `/api/v1/studio/templates/${id(name)}`, { text, baseVersion }),
    repositories: () => call('GET', '/api/v1/studio/repositories'),
    /** @param {string} name */
    testRepository: (name) => call('POST', `/api/v1/studio/repositories/${id(name)}/test`, {}),
    /** @param {string} draftId @param {{ packageSha256: string, manifestSha256: string }} shown */
    publish: (draftId, shown) => call('POST', `/api/v1/studio/drafts/${id(draftId)}/publish`, shown),
  };
}

// The view library the studio renders with: Preact with htm's tagged templates, and the release
// notes' Markdown renderer and sanitiser, all served from their installed packages as ES modules.
import { h, render } from './vendor/preact.mjs';
import htm from './vendor/htm.mjs';
import { marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';

export const html = htm.bind(h);
export { render };

/** Markdown to HTML that is safe to insert: marked renders, DOMPurify removes scripts, handlers and unknown URLs. */
export function markdownToSafeHtml(/** @type {string} */ text) {
  return DOMPurify.sanitize(marked.parse(text, { async: false, gfm: true }));
}

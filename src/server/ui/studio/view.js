// The view library the studio renders with: Preact with htm's tagged templates, and the release
// notes' Markdown renderer and sanitiser, all served from their installed packages as ES modules.
import { h, render } from './vendor/preact.mjs';
import htm from './vendor/htm.mjs';
import { marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';

export const html = htm.bind(h);
export { render };

let last = { text: '', html: '' };

/**
 * Markdown to HTML that is safe to insert, as the robot's dashboard renders the same notes: marked
 * renders, DOMPurify removes scripts, handlers and unknown URLs; images (the page's policy loads
 * none from elsewhere), forms and style attributes are dropped too. The last result is kept, so
 * a redraw that did not change the notes does not parse them again.
 */
export function markdownToSafeHtml(/** @type {string} */ text) {
  if (text === last.text && last.html !== '') return last.html;
  const html = DOMPurify.sanitize(/** @type {string} */ (marked.parse(text, { async: false, gfm: true })), {
    FORBID_TAGS: ['img', 'style', 'form', 'input', 'button'],
    FORBID_ATTR: ['style'],
  });
  last = { text, html };
  return html;
}

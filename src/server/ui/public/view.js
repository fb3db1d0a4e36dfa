// The view library the fleet page renders with: Preact with htm's tagged templates, both served
// from their installed packages as plain ES modules (no build step).
import { h, render } from './vendor/preact.mjs';
import htm from './vendor/htm.mjs';

export const html = htm.bind(h);
export { render };

// Module resolution hooks for record-imports.mjs (they run on the loader thread).
import { appendFileSync } from 'node:fs';

let file = null;

export function initialize(data) {
  file = data?.file ?? null;
}

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (file && !result.url.startsWith('node:')) appendFileSync(file, `${result.url}\n`);
  return result;
}

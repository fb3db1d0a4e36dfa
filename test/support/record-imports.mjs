// `node --import ./test/support/record-imports.mjs …`: writes the URL of every module the program
// imports (ES module resolution, so each package it imports from its own code) to the file named
// by OTA_TEST_IMPORTS_FILE, one per line. Lets a test see what a command loads.
import { register } from 'node:module';

register('./record-imports-hooks.mjs', import.meta.url, { data: { file: process.env.OTA_TEST_IMPORTS_FILE } });

// Node's own internal modules the program loaded (process.moduleLoadList), as `internal:<name>`
// lines at exit: Node's bundled undici, say, is loaded by builtins' lazy getters, not by an import.
import { appendFileSync } from 'node:fs';

process.on('exit', () => {
  const file = process.env.OTA_TEST_IMPORTS_FILE;
  if (!file) return;
  const internal = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => `internal:${m.slice('NativeModule '.length)}`);
  appendFileSync(file, internal.map((m) => `${m}\n`).join(''));
});

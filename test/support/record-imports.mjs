// `node --import ./test/support/record-imports.mjs …`: writes the URL of every module the program
// imports (ES module resolution, so each package it imports from its own code) to the file named
// by OTA_TEST_IMPORTS_FILE, one per line. Lets a test see what a command loads.
import { register } from 'node:module';

register('./record-imports-hooks.mjs', import.meta.url, { data: { file: process.env.OTA_TEST_IMPORTS_FILE } });

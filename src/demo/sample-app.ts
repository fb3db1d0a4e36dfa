/**
 * The demo's stand-in for robot-ai: a release tree with a small HTTP service that reports its
 * version and health, a hook, and a preserved configuration folder. A "broken" release answers
 * its health check with 500, so the demo can show an automatic rollback.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SERVICE = `// robot-ai (demo): serves /health and /version on the port in config/port.
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const version = readFileSync(join(root, 'VERSION'), 'utf8').trim();
if (process.argv.includes('--version')) { console.log(version); process.exit(0); }
const port = Number(readFileSync(join(root, 'config', 'port'), 'utf8').trim());
const broken = existsSync(join(root, 'BROKEN'));
const server = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(broken ? 500 : 200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: !broken, version }));
  } else if (req.url === '/version') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(version + '\\n');
  } else {
    res.writeHead(404);
    res.end();
  }
});
// A release may take a while to start answering (START_DELAY_MS: a slow start, as on a robot after a cold boot).
const startDelayMs = existsSync(join(root, 'START_DELAY_MS')) ? Number(readFileSync(join(root, 'START_DELAY_MS'), 'utf8').trim()) : 0;
setTimeout(() => server.listen(port, '127.0.0.1', () => console.log('robot-ai ' + version + ' listening on ' + port)), startDelayMs);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

export interface SampleRelease {
  version: string;
  notes: string;
  broken?: boolean;
  /** The service listens only this long after it started (a slow start). */
  startDelayMs?: number;
  /** The post-apply hook sleeps this long before it finishes (a slow hook). */
  postApplySleepS?: number;
}

/** Writes a complete release tree of the demo app into `dir`. */
export function writeSampleRelease(dir: string, release: SampleRelease, port: number): void {
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(dir, 'config'), { recursive: true });
  mkdirSync(join(dir, '.ota/hooks'), { recursive: true });
  writeFileSync(join(dir, 'VERSION'), `${release.version}\n`);
  writeFileSync(join(dir, 'bin/robot-ai.mjs'), SERVICE);
  writeFileSync(join(dir, 'config/port'), `${port}\n`);
  writeFileSync(join(dir, 'NOTES.md'), release.notes + '\n');
  if (release.broken) writeFileSync(join(dir, 'BROKEN'), 'this release fails its health check on purpose\n');
  if (release.startDelayMs !== undefined) writeFileSync(join(dir, 'START_DELAY_MS'), `${release.startDelayMs}\n`);
  const hook = join(dir, '.ota/hooks/post-apply');
  const slowHook = release.postApplySleepS === undefined ? '' : `sleep ${release.postApplySleepS}\n`;
  writeFileSync(hook, `#!/bin/sh\n${slowHook}echo "post-apply: $OTA_PRODUCT $OTA_FROM_VERSION -> $OTA_TO_VERSION"\n`);
  chmodSync(hook, 0o755);
}

#!/usr/bin/env node
/**
 * otactl: the command-line client of otad for people and scripts on the robot.
 *
 * Talks to the daemon's local API (REST v1 and the Socket.IO stream). The daemon is found by
 * --url, OTA_URL, `<stateDir>/api.json`, or api.host/api.port of the configuration; the token by
 * --token-file, OTA_TOKEN_FILE, or the configured api.tokensFile. Output is readable by default and
 * JSON with --json; the exit codes are in ./otactl/exit-codes.ts and `otactl --help`.
 *
 * This file only declares the commands: each one loads its module when it runs, so `otactl status`
 * does not pay for the Socket.IO client, the progress bars, the machine or the config schema.
 */
import { EXIT, errorText, exitCodeFor } from './otactl/exit-codes.js';

/**
 * `otactl [-c FILE] [--url URL] [--token-file FILE] [--json] status`, exactly, is the one command
 * scripts and prompts run all the time: it is answered without loading commander (about 10 ms of
 * a ~100 ms budget). Any other command line, or any option this does not know, goes to the full
 * command tree in ./otactl/program.ts, which parses it the usual way and gives the usual errors.
 */
function plainStatus(args: readonly string[]): import('./otactl/context.js').Globals | null {
  if (args.at(-1) !== 'status') return null;
  const globals: import('./otactl/context.js').Globals = {};
  const names: Record<string, 'config' | 'url' | 'tokenFile'> = { '-c': 'config', '--config': 'config', '--url': 'url', '--token-file': 'tokenFile' };
  for (let i = 0; i < args.length - 1; i++) {
    const a = args[i]!;
    if (a === '--json') {
      globals.json = true;
      continue;
    }
    const eq = a.indexOf('=');
    const name = names[eq > 0 ? a.slice(0, eq) : a];
    if (name === undefined || globals[name] !== undefined) return null;
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '' || i >= args.length - 1 || value.startsWith('-')) return null;
    globals[name] = value;
  }
  return globals;
}

const fast = plainStatus(process.argv.slice(2));
const run = fast
  ? Promise.all([import('./otactl/status.js'), import('./otactl/context.js')]).then(([m, c]) => m.status(new c.CliContext(fast)))
  : import('./otactl/program.js').then((m) => m.run());
run.then(
  () => process.exit(process.exitCode ?? EXIT.ok),
  (error: unknown) => {
    // Commander's errors (CommanderError, InvalidArgumentError) carry a code "commander.…".
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      process.exit(code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help' ? EXIT.ok : EXIT.usage);
    }
    process.stderr.write(`${errorText(error)}\n`);
    process.exit(exitCodeFor(error));
  },
);

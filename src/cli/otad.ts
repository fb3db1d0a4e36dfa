#!/usr/bin/env node
/**
 * otad: the update daemon. `otad [--config FILE]` runs it; `otad --check-config` checks the
 * configuration and the host it would run on (src/daemon/preflight.ts), lists every error and
 * warning with its code, and exits 0 only when otad would start and work (2 otherwise); --print
 * adds the resolved configuration as JSON.
 *
 * Exit statuses of the daemon: 0 after a clean stop, 78 (EX_CONFIG, sysexits.h) when it cannot
 * start because of its configuration (invalid file, unsafe or invalid tokens file, port in
 * use), 1 for anything else. The unit lists 78 in RestartPreventExitStatus=: restarting cannot fix
 * a broken file, so it fails visibly in `systemctl status` instead of looping every RestartSec.
 */
import { isOtaError } from '../core/errors.js';
import { startOtad } from '../daemon/main.js';
import { otadProgram } from './otad-program.js';
import { formatReport, preflight } from '../daemon/preflight.js';
import { defaultStepProvider } from '../steps/provider.js';
import { defaultInterfaces } from '../api/interfaces.js';

/** sysexits.h EX_CONFIG; deploy/systemd/otad.service keeps it in RestartPreventExitStatus=. */
export const EXIT_CONFIG = 78;

const program = otadProgram().parse();

const opts = program.opts<{ config?: string; checkConfig?: boolean; print?: boolean }>();

async function main(): Promise<void> {
  if (opts.checkConfig) {
    const report = await preflight(opts.config ? { configPath: opts.config } : {});
    if (opts.print && report.config !== null) process.stdout.write(JSON.stringify(report.config, null, 2) + '\n');
    // stdout carries only the JSON with --print; the findings go to stderr then, and on failure.
    (report.errors.length > 0 || opts.print ? process.stderr : process.stdout).write(formatReport(report));
    process.exitCode = report.errors.length > 0 ? 2 : 0;
    return;
  }
  await startOtad({
    ...(opts.config ? { configPath: opts.config } : {}),
    stepProvider: defaultStepProvider(),
    startInterfaces: defaultInterfaces,
    handleSignals: true,
  });
}

main().catch((error: unknown) => {
  const message = isOtaError(error) ? `${error.code}: ${error.message}` : String(error);
  process.stderr.write(`otad: ${message}\n`);
  process.exit(isOtaError(error) && error.category === 'config' ? EXIT_CONFIG : 1);
});

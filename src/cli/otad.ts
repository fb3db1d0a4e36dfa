#!/usr/bin/env node
/**
 * otad: the update daemon. `otad [--config FILE]` runs it; `otad --check-config` validates the
 * configuration and exits (0: valid, 2: invalid), printing the resolved configuration with --print.
 */
import { Command } from 'commander';
import { loadConfig } from '../config/load.js';
import { isOtaError } from '../core/errors.js';
import { startOtad } from '../daemon/main.js';
import { OTAD_VERSION } from '../core/version.js';
import { defaultStepProvider } from '../steps/provider.js';
import { defaultInterfaces } from '../api/interfaces.js';

const program = new Command()
  .name('otad')
  .description('Over-the-air update daemon for Ubuntu robots')
  .version(OTAD_VERSION)
  .option('-c, --config <file>', 'configuration file (default: $OTA_CONFIG or /etc/ota/config.yaml)')
  .option('--check-config', 'validate the configuration and exit')
  .option('--print', 'with --check-config: print the resolved configuration as JSON')
  .parse();

const opts = program.opts<{ config?: string; checkConfig?: boolean; print?: boolean }>();

async function main(): Promise<void> {
  if (opts.checkConfig) {
    const config = loadConfig({ ...(opts.config ? { path: opts.config } : {}), allowMissingDefault: true });
    if (opts.print) process.stdout.write(JSON.stringify(config, null, 2) + '\n');
    else process.stdout.write(`configuration ${config.source ?? '(defaults)'} is valid: ${config.products.length} product(s)\n`);
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
  process.exit(isOtaError(error) && error.category === 'config' ? 2 : 1);
});

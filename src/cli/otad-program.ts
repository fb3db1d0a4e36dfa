/**
 * otad's command line (commander), in a module of its own so that the bash completion generator
 * (./completion.ts) reads the same options the daemon parses, without starting the daemon.
 */
import { Command } from 'commander';
import { OTAD_VERSION } from '../core/version.js';

export function otadProgram(): Command {
  return new Command()
    .name('otad')
    .description('Over-the-air update daemon for Ubuntu robots')
    .version(OTAD_VERSION)
    .option('-c, --config <file>', 'configuration file (default: $OTA_CONFIG or /etc/ota/config.yaml)')
    .option('--check-config', 'check the configuration and this host (paths, trusted root, tokens, port, services); list every problem and exit')
    .option('--print', 'with --check-config: print the resolved configuration as JSON');
}

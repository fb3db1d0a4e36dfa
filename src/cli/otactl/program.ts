/**
 * The otactl command tree (commander). Loaded by ../otactl.ts for every command line except the
 * plain `otactl [globals] status`, which skips commander to answer sooner (see there).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { STATE_NAMES } from '../../../machines/types.js';
import { OTAD_VERSION } from '../../core/version.js';
import { CliContext, type Globals } from './context.js';
import { EXIT_HELP } from './exit-codes.js';

const program = new Command()
  .name('otactl')
  .description('Control and watch the otad update daemon')
  .version(OTAD_VERSION)
  .option('-c, --config <file>', 'otad configuration file (default: $OTA_CONFIG or /etc/ota/config.yaml)')
  .option('--url <url>', 'otad API address (default: $OTA_URL, <stateDir>/api.json, or api.host:api.port)')
  .option('--token-file <file>', 'file with an API token (default: $OTA_TOKEN_FILE or api.tokensFile)')
  .option('--json', 'machine-readable output')
  .addHelpText('after', EXIT_HELP)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

const ctx = () => new CliContext(program.opts<Globals>());

program
  .command('status')
  .description("show each product's lifecycle state; when otad is not reachable, the state it last saved, and exit 5")
  .action(async () => (await import('./status.js')).status(ctx()));

function eventCommand(name: string, type: string, description: string, withReason = false): void {
  const cmd = program.command(`${name} [product]`).description(description);
  if (withReason) cmd.option('-r, --reason <text>', 'why (recorded in the audit log)');
  cmd.action(async (product: string | undefined, opts: { reason?: string }) => (await import('./events.js')).dispatchEvent(ctx(), type, product, opts.reason));
}
eventCommand('check', 'CHECK_NOW', 'check for an update now');
eventCommand('update-now', 'UPDATE_NOW', 'install the offered update now');
eventCommand('schedule', 'SCHEDULE_3AM', 'install the offered update in the next maintenance slot (3 AM)');
eventCommand('confirm', 'CONFIRM', 'confirm an UPDATE_NOW that needs confirmation');
eventCommand('cancel', 'CANCEL', 'cancel the current run (until apply starts); the offer is dropped until the next check');
eventCommand('reset', 'RESET', 'acknowledge a failed run and return to idle');

program
  .command('rollback [product]')
  .description('roll back to the previous release, saying to which (refused, exit 3, when there is nothing to go back to); the release left is marked bad only with --mark-bad')
  .option('-r, --reason <text>', 'why (recorded in the audit log and the bad mark)')
  .option('--mark-bad', 'also mark the release it leaves bad, so no check offers it again (undo: otactl releases unmark VERSION)')
  .action(async (product: string | undefined, opts: { reason?: string; markBad?: boolean }) => (await import('./releases.js')).rollback(ctx(), product, opts));

const releases = program
  .command('releases')
  .description('every release known for a product: installed, previous (where a rollback goes), on disk, backed up, bad and why')
  .option('-p, --product <name>')
  .action(async (opts: { product?: string }) => (await import('./releases.js')).releases(ctx(), opts));
releases
  .command('unmark <version>')
  .description('clear the bad mark of a release, so a check may offer it again (audited)')
  .option('-p, --product <name>')
  .action(async (version: string, opts: { product?: string }) => {
    // -p may be given before the subcommand too: `otactl releases -p robot-ai unmark 1.1.0`.
    const product = opts.product ?? releases.opts<{ product?: string }>().product;
    await (await import('./releases.js')).unmark(ctx(), version, product === undefined ? {} : { product });
  });

program
  .command('source')
  .description('the channel and repository a product follows and the configured choices; --channel and/or --repository switch them (audited, kept across restarts, only while the product is idle)')
  .option('-p, --product <name>')
  .option('--channel <name>', 'follow this configured channel from the next check on')
  .option('--repository <name>', 'read this configured repository from the next check on')
  .action(async (opts: { product?: string; channel?: string; repository?: string }) => (await import('./releases.js')).source(ctx(), opts));

const HOLDER_HELP = 'who holds the inhibit (for example robot-ai.mission): a name you choose for the holder, not a product; release it with the same name';
const inhibit = program
  .command('inhibit')
  .description('hold or release an inhibit: while any is held, no update of any product starts (each holder holds its own)');
inhibit
  .command('hold')
  .description(
    'hold an inhibit in the name of HOLDER for as long as this command runs (or until --for): over D-Bus it keeps its inhibitor file descriptor, over REST it renews a lease; if the command dies the inhibit ends with it (D-Bus: at once, REST: within --ttl). With --duration it takes a fixed lease instead and returns',
  )
  .argument('<holder>', HOLDER_HELP)
  .requiredOption('-r, --reason <text>', 'why updates must wait')
  .option('--for <duration>', 'release the inhibit and exit after this long (for example 30m)')
  .addOption(new Option('--via <transport>', 'auto: D-Bus when dbus.enabled is set in the configuration (or --bus is given), else REST').choices(['auto', 'dbus', 'rest']).default('auto'))
  .option('--ttl <duration>', 'REST: the lease length, renewed every third of it (default 1m)')
  .option('--bus <address>', 'D-Bus: system, session or a bus address (default: dbus.bus)')
  .option('-d, --duration <duration>', 'take a fixed lease of this length (for example 30m, 2h; capped by inhibit.maxHold) and return at once; it outlives the command')
  .action(async (holder: string, opts: { reason: string; duration?: string; for?: string; via?: string; ttl?: string; bus?: string }) => {
    if (opts.duration !== undefined) {
      if (opts.for !== undefined) throw new (await import('../../core/errors.js')).OtaError('CONFIG_INVALID', '--duration takes a fixed lease and returns; --for holds while the command runs: give one of them');
      return (await import('./events.js')).holdInhibit(ctx(), holder, { reason: opts.reason, duration: opts.duration });
    }
    return (await import('./inhibit-hold.js')).holdInForeground(ctx(), holder, opts);
  });
inhibit
  .command('release')
  .description('release the inhibit held in the name of HOLDER')
  .argument('<holder>', 'the holder name given to `inhibit hold`')
  .action(async (holder: string) => (await import('./events.js')).releaseInhibit(ctx(), holder));

program
  .command('ack <product> [version]')
  .description('acknowledge the release notification of a product')
  .action(async (product: string, version: string | undefined) => (await import('./events.js')).ackNotification(ctx(), product, version));

program
  .command('rehearse [product]')
  .description('rehearse an update: the real check, pre-check, download and staging into a scratch folder (removed afterwards), stopping before anything touches the install path or the services; prints the download, the disk needed, the services that would restart, the pre-check verdicts and the downtime predicted from history (exit 3 while a run is in progress, 1 when it stopped early)')
  .action(async (product: string | undefined) => (await import('./rehearse.js')).rehearse(ctx(), product));

program
  .command('history')
  .description('update runs, newest first, each with its install window (pre-check to the end; "staged ahead" when it used a download made before the slot)')
  .option('-p, --product <name>')
  .option('-n, --limit <n>', 'at most this many', '20')
  .action(async (opts: { product?: string; limit: string }) => (await import('./reading.js')).history(ctx(), opts));

program
  .command('logs')
  .description("the daemon's recent log lines, each naming its product ((daemon) for the daemon as a whole)")
  .addOption(new Option('-l, --level <level>', 'this level and more severe').choices(['error', 'warn', 'info', 'debug']))
  .option('-n, --limit <n>', 'at most this many', '50')
  .option('--contains <text>', 'only lines containing this text')
  .action(async (opts: { level?: string; limit: string; contains?: string }) => (await import('./reading.js')).logs(ctx(), opts));

program
  .command('export <runId>')
  .description("write a run's transitions and snapshots to a file, for `otactl replay`")
  .option('-o, --output <file>', 'write here instead of standard output')
  .action(async (runId: string, opts: { output?: string }) => (await import('./reading.js')).exportRun(ctx(), runId, opts));

program
  .command('replay <file>')
  .description('feed an exported run into the machine offline and compare the state sequence (exit 1 when it diverges)')
  .action(async (file: string) => (await import('./reading.js')).replay(ctx(), file));

function machineState(value: string): string {
  if ((STATE_NAMES as readonly string[]).includes(value)) return value;
  throw new InvalidArgumentError(`"${value}" is not a state of the update machine; its states are ${STATE_NAMES.join(', ')}`);
}

program
  .command('watch')
  .description('print the current state, then follow transitions, progress and notifications live (Ctrl-C to stop)')
  .option('-p, --product <name>', 'only this product')
  .addOption(new Option('--until <state>', `exit 0 once a product is in this state (at once if it already is): ${STATE_NAMES.join(', ')}`).argParser(machineState))
  .option('--since-seq <n>', 'first replay the transitions after this sequence number')
  .option('--logs', 'also stream log lines')
  .option('-t, --timeout <duration>', 'give up after this long (for example 90s, 10m): exit 6')
  .action(async (opts: import('./watch.js').WatchOptions) => (await import('./watch.js')).watch(ctx(), opts));

/** Parses process.argv and runs the command; errors (CommanderError included) reach the caller. */
export async function run(): Promise<void> {
  await program.parseAsync();
}

/** The command tree itself, read by the bash completion generator (../completion.ts). */
export { program as otactlProgram };

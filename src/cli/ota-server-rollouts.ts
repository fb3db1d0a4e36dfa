/**
 * `ota-server rollouts create|list|halt|resume`: the operator's rollouts, made directly on the fleet
 * database through the same store functions the REST API calls (no server and no token needed,
 * only access to the database). Running ota-server processes pick the changes up at once: they
 * keep no rollout state of their own.
 */
import { Command } from 'commander';
import { parseDurationArg } from '../core/duration.js';
import { OtaError } from '../core/errors.js';
import { parseBatchList, parseRolloutInput } from '../server/rollouts/rollout-input.js';
import type { Rollout } from '../server/rollouts/rollout-model.js';
import type { FleetStore } from '../server/store/fleet-store.js';
import { openFleetStore } from '../server/store/open-fleet-store.js';
import { cliActor, databaseOf } from './ota-server-devices.js';

interface DatabaseOptions {
  database?: string;
  repo?: string;
}

const selectorText = (s: Rollout['batches'][number]['selector']): string =>
  'all' in s ? 'everything left' : 'percent' in s ? `${s.percent} %` : Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join('+');

export function describeRollout(r: Rollout): string {
  const lines = [`${r.id}  ${r.product} ${r.version}  ${r.state}${r.halt ? ` (by ${r.halt.by}: ${r.halt.reason})` : ''}`];
  for (const b of r.batches) {
    const c = b.counts;
    lines.push(`  batch ${b.index} [${selectorText(b.selector)}] ${b.state}: ${c.devices} robots, ${c.committed} committed, ${c.running} running, ${c.rolledBack} rolled back, ${c.failed} failed, ${c.notStarted} not started`);
  }
  return lines.join('\n');
}

function parseThreshold(text: string): number {
  const percent = text.trim().endsWith('%');
  const n = Number(text.replace('%', '').trim());
  const value = percent ? n / 100 : n;
  if (!Number.isFinite(value) || value < 0 || value > 1) throw new OtaError('CONFIG_INVALID', `--failure-threshold ${JSON.stringify(text)}: expected a fraction (0.05) or a percentage (5%)`);
  return value;
}

export async function runRolloutsCommand(argv: string[], out: (text: string) => void, now: () => number = Date.now): Promise<void> {
  const withStore = async <T>(o: DatabaseOptions, fn: (store: FleetStore) => Promise<T>): Promise<T> => {
    const store = await openFleetStore(databaseOf(o));
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  const program = new Command('ota-server rollouts').description('create, list, halt and resume rollouts directly in the fleet database').exitOverride();
  const common = (c: Command) => c.option('--database <db>', 'fleet database: a SQLite file or a postgres:// URL').option('--repo <dir>', 'repository folder (the database is <repo>/fleet.db)');
  common(program.command('create').description('roll a release out in batches; batch 1 opens at once'))
    .requiredOption('--product <name>', 'product')
    .requiredOption('--version <version>', 'release version')
    .requiredOption('--batches <list>', 'percentages "5,25,100", or groups "site=lab;site=dock;*" (* is everything left)')
    .option('--soak <duration>', 'how long a batch stays open and healthy before the next opens', '30m')
    .option('--failure-threshold <ratio>', 'halt when failures pass this share of outcomes (0.05 or 5%)', '0.05')
    .option('--min-reports <n>', 'outcomes a batch needs before it can halt or open the next', '3')
    .option('--json', 'print JSON')
    .action(async (o: DatabaseOptions & { product: string; version: string; batches: string; soak: string; failureThreshold: string; minReports: string; json?: boolean }) => {
      const input = parseRolloutInput({
        product: o.product,
        version: o.version,
        batches: parseBatchList(o.batches),
        soak: parseDurationArg(o.soak, '--soak'),
        failureThreshold: parseThreshold(o.failureThreshold),
        minReports: Number(o.minReports),
      });
      await withStore(o, async (store) => {
        const result = await store.createRollout(input, cliActor(), now());
        if (result.kind === 'exists') throw new OtaError('ROLLOUT_CONFLICT', `${input.product} ${input.version} already has rollout ${result.id}, which is not done`);
        out(o.json ? JSON.stringify(result.rollout, null, 2) : `created ${describeRollout(result.rollout)}`);
      });
    });
  common(program.command('list').description('rollouts, newest first, with each batch and its counts'))
    .option('--json', 'print JSON')
    .action(async (o: DatabaseOptions & { json?: boolean }) => {
      await withStore(o, async (store) => {
        const rollouts = await store.listRollouts();
        if (o.json) return out(JSON.stringify({ rollouts }, null, 2));
        out(rollouts.length === 0 ? 'no rollouts' : rollouts.map(describeRollout).join('\n'));
      });
    });
  common(program.command('halt <id>').description('halt a rollout: robots start no install of its release'))
    .option('--reason <text>', 'why (shown to operators and sent to robots)', 'halted by an operator')
    .action(async (id: string, o: DatabaseOptions & { reason: string }) => {
      await withStore(o, async (store) => {
        const result = await store.haltRollout(id, o.reason, cliActor(), now());
        if (result === null) throw new OtaError('API_NOT_FOUND', `no rollout ${id} in the fleet database`);
        if (result.kind === 'unchanged') throw new OtaError('ROLLOUT_CONFLICT', `rollout ${id} is ${result.rollout.state}, not active: nothing to halt`);
        out(`halted ${describeRollout(result.rollout)}`);
      });
    });
  common(program.command('resume <id>').description('resume a halted rollout; failures so far are forgiven, new ones count'))
    .action(async (id: string, o: DatabaseOptions) => {
      await withStore(o, async (store) => {
        const result = await store.resumeRollout(id, cliActor(), now());
        if (result === null) throw new OtaError('API_NOT_FOUND', `no rollout ${id} in the fleet database`);
        if (result.kind === 'unchanged') throw new OtaError('ROLLOUT_CONFLICT', `rollout ${id} is ${result.rollout.state}, not halted: nothing to resume`);
        out(`resumed ${describeRollout(result.rollout)}`);
      });
    });
  await program.parseAsync(argv, { from: 'user' });
}

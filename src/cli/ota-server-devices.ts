/**
 * `ota-server devices list|accept|reject|preauthorize`: the operator's decisions, made directly on
 * the fleet database (no server and no token needed, only access to the database).
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { OtaError } from '../core/errors.js';
import { parsePreauthorizeFile } from '../server/preauthorize-file.js';
import type { DeviceStatus, DeviceView, FleetStore } from '../server/store/fleet-store.js';
import { openFleetStore } from '../server/store/open-fleet-store.js';

interface DatabaseOptions {
  database?: string;
  repo?: string;
}

/** `--database`, or `<repo>/fleet.db`. */
export function databaseOf(o: DatabaseOptions): string {
  if (o.database !== undefined) return o.database;
  if (o.repo !== undefined) return path.join(path.resolve(o.repo), 'fleet.db');
  throw new OtaError('CONFIG_INVALID', 'name the fleet database with --database <file.db | postgres://…> or --repo <dir> (its fleet.db)');
}

export function cliActor(): string {
  let name = 'unknown';
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry: keep "unknown"
  }
  return `cli:${name}`;
}

/** Reads a preauthorization list and accepts its devices; answers a sentence for the operator. */
export async function preauthorizeFromFile(store: FleetStore, file: string, now: number): Promise<string> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new OtaError('CONFIG_NOT_FOUND', `preauthorize file ${file} is not readable: ${(cause as Error).message}`, { cause });
  }
  const entries = parsePreauthorizeFile(text, file);
  const actor = `${cliActor()} (preauthorize ${path.basename(file)})`;
  const result = await store.preauthorize(entries, actor, now);
  await store.audit({ at: now, kind: 'device-preauthorized', actor, message: `preauthorized ${entries.length} device(s) from ${file}: ${result.created} new, ${result.updated} updated` });
  return `preauthorized ${entries.length} device(s) from ${file}: ${result.created} new, ${result.updated} already known (now accepted with the listed key)`;
}

const when = (ms: number | null) => (ms === null ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));

function table(devices: DeviceView[]): string {
  const rows = devices.map((d) => [
    d.id,
    d.status,
    d.fingerprint,
    d.site ?? '-',
    when(d.lastSeen),
    d.products.map((p) => `${p.product} ${p.version ?? '-'} ${p.state}`).join(', ') || '-',
    d.conflicts.length === 0 ? '-' : d.conflicts.map((c) => `${c.fingerprint} x${c.count}`).join(', '),
  ]);
  const head = ['DEVICE', 'STATUS', 'KEY', 'SITE', 'LAST SEEN', 'PRODUCTS', 'KEY CONFLICTS'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ')).join('\n');
}

export async function runDevicesCommand(argv: string[], out: (text: string) => void, now: () => number = Date.now): Promise<void> {
  const withStore = async <T>(o: DatabaseOptions, fn: (store: FleetStore) => Promise<T>): Promise<T> => {
    const store = await openFleetStore(databaseOf(o));
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  const program = new Command('ota-server devices').description('list, accept and reject devices directly in the fleet database').exitOverride();
  const common = (c: Command) => c.option('--database <db>', 'fleet database: a SQLite file or a postgres:// URL').option('--repo <dir>', 'repository folder (the database is <repo>/fleet.db)');
  common(program.command('list').description('devices with status, key fingerprint, site, products and key conflicts'))
    .option('--status <status>', 'only pending, accepted or rejected devices')
    .option('--limit <n>', 'at most this many', '100')
    .option('--offset <n>', 'skip this many', '0')
    .option('--json', 'print JSON')
    .action(async (o: DatabaseOptions & { status?: string; limit: string; offset: string; json?: boolean }) => {
      if (o.status !== undefined && !['pending', 'accepted', 'rejected'].includes(o.status)) throw new OtaError('CONFIG_INVALID', '--status must be pending, accepted or rejected');
      const limit = Number(o.limit);
      const offset = Number(o.offset);
      if (!Number.isInteger(limit) || limit < 1 || !Number.isInteger(offset) || offset < 0) throw new OtaError('CONFIG_INVALID', '--limit and --offset must be whole numbers');
      await withStore(o, async (store) => {
        const page = await store.listDevices({ limit, offset, ...(o.status !== undefined ? { status: o.status as DeviceStatus } : {}) });
        if (o.json) return out(JSON.stringify(page, null, 2));
        out(page.devices.length === 0 ? 'no devices' : table(page.devices));
        if (page.total > offset + page.devices.length) out(`(${page.devices.length} of ${page.total}; --offset ${offset + page.devices.length} for more)`);
      });
    });
  for (const [verb, status] of [
    ['accept', 'accepted'],
    ['reject', 'rejected'],
  ] as const) {
    common(program.command(`${verb} <id>`).description(`${verb} a device`)).action(async (id: string, o: DatabaseOptions) => {
      await withStore(o, async (store) => {
        const actor = cliActor();
        const device = await store.decide(id, status, actor, now());
        if (device === null) throw new OtaError('API_NOT_FOUND', `no device ${id} in the fleet database`);
        await store.audit({ at: now(), kind: `device-${status}`, message: `device ${id} ${status} (key ${device.fingerprint})`, deviceId: id, actor });
        out(`device ${id} ${status} (key ${device.fingerprint})`);
      });
    });
  }
  common(program.command('preauthorize <file>').description('accept the devices listed in <file> in advance: "<device id> <public key> [site=<site>] [key=value…]"')).action(
    async (file: string, o: DatabaseOptions) => {
      await withStore(o, async (store) => out(await preauthorizeFromFile(store, path.resolve(file), now())));
    },
  );
  await program.parseAsync(argv, { from: 'user' });
}

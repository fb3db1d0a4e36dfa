#!/usr/bin/env node
/**
 * otactl: the command-line client for people and scripts on the robot.
 */
import { Command } from 'commander';
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { loadConfig } from '../config/load.js';
import { isOtaError, OtaError } from '../core/errors.js';
import { OTAD_VERSION } from '../daemon/daemon.js';

interface SnapshotRow {
  product: string;
  state: string;
  run_id: string | null;
  snapshot: string;
  updated_at: number;
}

const program = new Command().name('otactl').description('Control and watch the otad update daemon').version(OTAD_VERSION);
program.option('-c, --config <file>', 'otad configuration file (default: $OTA_CONFIG or /etc/ota/config.yaml)').option('--json', 'machine-readable output');

program
  .command('status')
  .description("show each product's lifecycle state, as the daemon last saved it")
  .action(() => {
    const g = program.opts<{ config?: string; json?: boolean }>();
    const config = loadConfig({ ...(g.config ? { path: g.config } : {}), allowMissingDefault: true });
    if (!existsSync(config.paths.database)) {
      throw new OtaError('STORE_FAILED', `no otad state database at ${config.paths.database}: has otad run on this robot?`);
    }
    const db = new Database(config.paths.database, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT product, state, run_id, snapshot, updated_at FROM snapshots ORDER BY product').all() as SnapshotRow[];
      const products = rows.map((r) => {
        const ctx = (JSON.parse(r.snapshot) as { context?: Record<string, unknown> }).context ?? {};
        const offer = ctx.offer as { version?: string } | null | undefined;
        return {
          product: r.product,
          state: r.state,
          runId: r.run_id,
          installedVersion: (ctx.installedVersion as string | null) ?? null,
          offeredVersion: offer?.version ?? null,
          lastOutcome: (ctx.lastOutcome as string | null) ?? null,
          updatedAt: new Date(r.updated_at).toISOString(),
        };
      });
      if (g.json) {
        process.stdout.write(JSON.stringify({ products }, null, 2) + '\n');
        return;
      }
      if (products.length === 0) process.stdout.write('no product state saved yet\n');
      for (const p of products) {
        process.stdout.write(
          `${p.product}: ${p.state}  installed ${p.installedVersion ?? '-'}${p.offeredVersion ? `  offered ${p.offeredVersion}` : ''}${p.lastOutcome ? `  last run ${p.lastOutcome}` : ''}  (${p.updatedAt})\n`,
        );
      }
    } finally {
      db.close();
    }
  });

program.parseAsync().catch((error: unknown) => {
  const message = isOtaError(error) ? `${error.code}: ${error.message}` : String(error);
  process.stderr.write(`otactl: ${message}\n`);
  process.exit(isOtaError(error) && error.category === 'config' ? 2 : 1);
});

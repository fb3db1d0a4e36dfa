/**
 * `ota-repo verify`: check a repository folder exactly as a robot would — TUF client workflow
 * from a trusted root, then every target downloaded and checked against its signed length and hash,
 * every manifest parsed and matched with its package.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Clock } from '../core/clock.js';
import { toErrorData, type ErrorData } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { parseManifest } from '../manifest/schema.js';
import { createLocalFolderRepository } from '../trust/local-folder-repository.js';
import { createPublisher } from './repository.js';

export interface VerifyReport {
  ok: boolean;
  rootVersion: number;
  timestampVersion: number;
  timestampExpires: string;
  targets: number;
  latest: Record<string, string>;
  problems: Array<{ target?: string; error: ErrorData }>;
}

export async function verifyRepository(options: { repoDir: string; trustedRootPath?: string; clock: Clock; logger: Logger }): Promise<VerifyReport> {
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ota-repo-verify-'));
  try {
    const trustedRootPath = options.trustedRootPath ?? path.join(options.repoDir, 'metadata', '1.root.json');
    const client = createLocalFolderRepository(options.repoDir, {
      metadataDir: path.join(work, 'metadata'),
      trustedRootPath,
      clock: options.clock,
      logger: options.logger,
    });
    await client.refresh();
    // The publisher's view lists names; every check below goes through the verified client.
    const publisher = createPublisher({ repoDir: options.repoDir, keysDir: path.join(work, 'no-keys'), clock: options.clock });
    const state = await publisher.loadState();
    const targets = await publisher.listTargets();
    const problems: VerifyReport['problems'] = [];
    const latest: Record<string, string> = {};
    await fs.mkdir(path.join(work, 'targets'));
    for (const [i, target] of targets.entries()) {
      const dest = path.join(work, 'targets', String(i));
      try {
        await client.downloadTarget(target, dest);
        if (target.custom.kind === 'manifest') parseManifest(await fs.readFile(dest), target.name);
      } catch (error) {
        problems.push({ target: target.name, error: toErrorData(error) });
      } finally {
        await fs.rm(dest, { force: true });
      }
    }
    const streams = new Set(targets.filter((t) => t.custom.kind === 'manifest').map((t) => `${t.custom.product}\u0000${t.custom.channel ?? 'stable'}`));
    for (const stream of streams) {
      const [product, channel] = stream.split('\u0000') as [string, string];
      try {
        const release = await client.latestRelease(product, { channel, allowPrerelease: true });
        if (release !== null) latest[`${product}@${channel}`] = release.manifest.version;
      } catch (error) {
        problems.push({ target: `${product}@${channel}`, error: toErrorData(error) });
      }
    }
    return {
      ok: problems.length === 0,
      rootVersion: state.root.signed.version,
      timestampVersion: state.timestamp.signed.version,
      timestampExpires: state.timestamp.signed.expires,
      targets: targets.length,
      latest,
      problems,
    };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

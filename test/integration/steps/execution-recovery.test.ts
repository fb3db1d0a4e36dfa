/**
 * Apply and rollback "killed" at every named instant (a throw from the checkpoint seam, after
 * which nothing of that process is used again), then recovered the way the daemon does after a
 * restart: journalVerdict → recovery policy → re-run apply and validate, or roll back. Each case
 * must end on one complete release, its service running, the journal cleared.
 */
import * as fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RollbackInput } from '../../../machines/types.js';
import { decideRecovery } from '../../../src/daemon/recovery-policy.js';
import { hashTree } from '../../../src/package/create.js';
import { RELEASE_MARKER } from '../../../src/products/registry.js';
import { createApply } from '../../../src/steps/apply.js';
import { createCommit } from '../../../src/steps/commit.js';
import { journalDirFor, type StepCheckpoint } from '../../../src/steps/ports.js';
import { journalVerdict } from '../../../src/steps/journal-verdict.js';
import { createRollback } from '../../../src/steps/rollback.js';
import { createValidate } from '../../../src/steps/validate.js';
import { createWorld, offer, waitForVersion, type World } from './execution-world.js';

class Crash extends Error {}
let world: World;
const signal = new AbortController().signal;
const quickProbation = { windowMs: 50, intervalMs: 30, failureThreshold: 60 };

beforeEach(async () => {
  world = await createWorld();
});
afterEach(async () => {
  await world.close();
});

const crashAt = (point: StepCheckpoint) => (name: StepCheckpoint) => {
  if (name === point) throw new Crash(point);
};

function withoutMarker(hashes: Record<string, string>): Record<string, string> {
  const { [RELEASE_MARKER]: _marker, ...rest } = hashes;
  return rest;
}

/** 1.0.0 installed plainly with the robot's own config; 2.0.0 staged. Returns both expected trees. */
async function scene(runId: string) {
  await world.plainInstall('1.0.0');
  await fs.writeFile(path.join(world.installPath, 'config', 'robot.yaml'), 'robot-name: r2\n');
  const oldTree = await hashTree(world.installPath);
  const staged = await world.stage('2.0.0', runId, { hooks: { 'pre-apply': 'echo checking', 'post-apply': 'echo warmed' } });
  const newTree = { ...(await hashTree(staged.releaseDir)), 'config/robot.yaml': oldTree['config/robot.yaml'] as string };
  const input = { product: 'robot-ai', runId, offer: offer('2.0.0'), staged, installedVersion: '1.0.0' };
  return { oldTree, newTree, input };
}

const APPLY_POINTS: StepCheckpoint[] = [
  'adopt:intent-written',
  'adopt:moved',
  'adopt:temp-link',
  'adopt:linked',
  'import:synced',
  'apply:imported',
  'apply:prepared',
  'apply:hooks-run',
  'apply:services-stopped',
  'switch:temp-link',
  'apply:switched',
  'apply:services-started',
  'apply:done',
];

describe('apply killed at each instant, recovered from the disk', () => {
  for (const point of APPLY_POINTS) {
    it(`killed at ${point}: the verdict leads to one complete release with its service running`, async () => {
      const { oldTree, newTree, input } = await scene('r1');
      await expect(createApply(world.ports({ checkpoint: crashAt(point) }))(input, signal)).rejects.toBeInstanceOf(Error);

      // A restarted daemon: fresh adapters over the same disk.
      const verdict = await journalVerdict(world.product, { journalDir: journalDirFor(world.stateDir), logger: world.logger });
      const decision = decideRecovery({ state: 'apply', compatible: true, restoreCount: 1, maxRestores: 3, journal: verdict });
      let live: string;
      if (decision.action === 'rerun') {
        const out = await createApply(world.ports())(input, signal);
        await createValidate(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
        await createCommit(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
        live = '2.0.0';
        expect(withoutMarker(await hashTree(world.installPath))).toEqual(newTree);
        expect(world.db.isBad('robot-ai', '2.0.0')).toBe(false);
      } else {
        expect(decision.action).toBe('rollback');
        const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(
          { product: 'robot-ai', runId: 'r1', reason: decision.reason, cause: 'interrupted', offer: offer('2.0.0'), applied: null, backup: null, installedVersion: '1.0.0', markBad: false, requestedBy: null, failure: null },
          signal,
        );
        live = '1.0.0';
        expect(result.restoredVersion).toBe('1.0.0');
        expect(await hashTree(world.installPath)).toEqual(oldTree);
        expect((await world.releases().list()).map((r) => r.version)).toEqual(['1.0.0']);
        // A crash or power cut proves nothing against the release: it is not marked bad.
        expect(world.db.isBad('robot-ai', '2.0.0')).toBe(false);
      }
      // Which way each instant goes: killed before the rename, back; after it, forward.
      const forward = ['apply:switched', 'apply:services-started', 'apply:done'].includes(point);
      expect(live).toBe(forward ? '2.0.0' : '1.0.0');
      expect(await world.releases().current()).toMatchObject({ version: live });
      expect(await waitForVersion(world)).toBe(live);
      expect(await world.journal().read()).toBeNull();
    });
  }
});

const ROLLBACK_POINTS: StepCheckpoint[] = ['rollback:planned', 'switch:temp-link', 'rollback:restored', 'rollback:done'];

describe('rollback killed at each instant, run again', () => {
  for (const point of ROLLBACK_POINTS) {
    it(`killed at ${point}: the second run ends in the same state as one uninterrupted run`, async () => {
      const { oldTree, input } = await scene('r1');
      const out = await createApply(world.ports())(input, signal);
      const rollbackInput: RollbackInput = { product: 'robot-ai', runId: 'r1', reason: 'validation failed', cause: 'failure', offer: offer('2.0.0'), applied: out, backup: null, installedVersion: '1.0.0', markBad: false, requestedBy: null, failure: null };

      await expect(createRollback(world.ports({ rollbackProbation: quickProbation, checkpoint: crashAt(point) }))(rollbackInput, signal)).rejects.toBeInstanceOf(Error);
      const result = await createRollback(world.ports({ rollbackProbation: quickProbation }))(rollbackInput, signal);

      expect(result).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
      expect(await hashTree(world.installPath)).toEqual(oldTree);
      expect((await world.releases().list()).map((r) => r.version)).toEqual(['1.0.0']);
      expect(await waitForVersion(world)).toBe('1.0.0');
      expect(await world.journal().read()).toBeNull();
      expect(world.db.isBad('robot-ai', '2.0.0')).toBe(true);
    });
  }
});

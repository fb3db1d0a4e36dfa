/**
 * Configuration reload in-process, on a real SQLite file: which step set and policy each run uses.
 * The step provider records, for every step call, the configuration its step set was built from,
 * so the test sees exactly what a run ran with. (The spawned otad with real steps and two real
 * servers is in reload-e2e.test.ts.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { STEP_NAMES, type StepName, type Steps } from '../../../machines/types.js';
import { buildConfig, type Config } from '../../../src/config/load.js';
import type { ProductConfig } from '../../../src/config/schema.js';
import { systemClock } from '../../../src/core/clock.js';
import { createLogging } from '../../../src/core/logging.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { type StepContext, type StepProvider } from '../../../src/daemon/step-provider.js';
import { createFakeSteps } from '../../support/fake-steps.js';
import { waitUntil } from '../../support/otad-process.js';

interface StepCall {
  step: StepName;
  runId: string;
  /** The step set this call belongs to (1: built at start, 2: built by the reload, …). */
  generation: number;
  product: ProductConfig;
  config: Config;
}

/** Fake steps that remember which configuration their set was built from. */
function recordingProvider(): StepProvider & { calls: StepCall[]; built: number } {
  const calls: StepCall[] = [];
  const provider = {
    real: true,
    calls,
    built: 0,
    journalVerdict: async () => 'none' as const,
    steps(ctx: StepContext): Steps {
      provider.built += 1;
      const generation = provider.built;
      const inner = createFakeSteps({ offerVersion: '2.0.0' });
      const out: Record<string, unknown> = {};
      for (const name of STEP_NAMES) {
        out[name] = (input: { runId: string }, signal: AbortSignal) => {
          calls.push({ step: name, runId: input.runId, generation, product: ctx.product, config: ctx.config });
          return (inner[name] as (i: unknown, s: AbortSignal) => Promise<unknown>)(input, signal);
        };
      }
      return out as unknown as Steps;
    },
  };
  return provider;
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function raw(dir: string, over: { url: string; product?: Record<string, unknown>; level?: string }) {
  return {
    environment: 'test',
    server: { url: over.url },
    paths: { stateDir: join(dir, 'state') },
    logging: { level: over.level ?? 'info', stdout: false },
    decision: { defaultChoice: 'SCHEDULE_3AM', choiceTimeout: '1h' },
    products: [{ name: 'robot-ai', installPath: join(dir, 'opt/robot-ai'), ...over.product }],
  };
}

const OLD_PRODUCT = {
  channel: 'stable',
  precheck: { minBatteryPercent: 30, minFreeBytes: 0 },
  healthChecks: [{ kind: 'http', url: 'http://127.0.0.1:9/old-health' }],
  services: ['robot-ai-old.service'],
  probation: { window: '2m', interval: '10s', failureThreshold: 3 },
  repository: { kind: 'tuf' },
  schedule: { checkAt: '03:00', window: '0s' },
};

const NEW_PRODUCT = {
  channel: 'beta',
  precheck: { minBatteryPercent: 55, minFreeBytes: 1_000_000 },
  healthChecks: [{ kind: 'command', command: ['true'] }],
  services: ['robot-ai-new.service'],
  probation: { window: '30s', interval: '2s', failureThreshold: 1 },
  repository: { kind: 'tuf', url: 'http://127.0.0.1:3333/' },
  schedule: { checkAt: '04:30', window: '0s' },
  // A confirmation step: a run in flight must not grow one halfway.
  decision: { confirmTimeout: '1h' },
};

describe('configuration reload', () => {
  it('gives the next run steps and policy built from the new configuration, and leaves the run in flight as it started', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-reload-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const provider = recordingProvider();
    const config = buildConfig(raw(dir, { url: 'http://127.0.0.1:1111', product: OLD_PRODUCT }));
    const logging = createLogging({ level: 'info', stdout: false });
    const daemon = new Daemon({ config, logging, clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    const state = () => daemon.status().products[0]!;
    const nextCheckBefore = state().nextCheckAt;

    // Run 1 starts on the old configuration and waits for a choice.
    const run1 = (await daemon.dispatch({ product: 'robot-ai', type: 'CHECK_NOW', source: 'cli' })).runId!;
    await waitUntil(() => state().state === 'awaitingChoice', { what: 'run 1 to offer' });

    const next = buildConfig(raw(dir, { url: 'http://127.0.0.1:2222', product: NEW_PRODUCT, level: 'debug' }));
    const report = daemon.reload(next);
    expect(report.needsRestart).toEqual([]);
    expect(report.applied).toEqual(report.changed);
    expect(report.changed).toEqual(
      expect.arrayContaining([
        'server.url',
        'logging.level',
        'products.robot-ai.channel',
        'products.robot-ai.precheck.minBatteryPercent',
        'products.robot-ai.precheck.minFreeBytes',
        'products.robot-ai.healthChecks',
        'products.robot-ai.services',
        'products.robot-ai.probation.window',
        'products.robot-ai.repository.url',
        'products.robot-ai.schedule.checkAt',
        'products.robot-ai.decision.confirmTimeout',
      ]),
    );
    // The daily check and the log level change at once.
    expect(state().nextCheckAt).not.toBe(nextCheckBefore);
    expect(new Date(state().nextCheckAt!).getMinutes()).toBe(30);
    logging.logger.debug('a debug line after the reload');
    expect(daemon.logs({ contains: 'a debug line after the reload' })).toHaveLength(1);

    // Run 1 finishes as it started: no confirmation step, every step from the first set.
    await daemon.dispatch({ product: 'robot-ai', type: 'UPDATE_NOW', source: 'cli' });
    await waitUntil(() => state().state === 'idle' && state().lastOutcome === 'committed', { what: 'run 1 to commit' });
    const first = provider.calls.filter((c) => c.runId === run1);
    expect(first.map((c) => c.step)).toEqual(['check', 'preCheck', 'backup', 'stage', 'apply', 'validate', 'commit']);
    expect(new Set(first.map((c) => c.generation))).toEqual(new Set([1]));
    expect(first.every((c) => c.config.server.url === 'http://127.0.0.1:1111' && c.product.channel === 'stable')).toBe(true);
    expect(daemon.transitions({ runId: run1, limit: 100 }).map((t) => t.to)).not.toContain('confirming');

    // Run 2 uses the new set, and the new policy: UPDATE_NOW now waits for a confirmation.
    const run2 = (await daemon.dispatch({ product: 'robot-ai', type: 'CHECK_NOW', source: 'cli' })).runId!;
    await waitUntil(() => state().state === 'awaitingChoice', { what: 'run 2 to offer' });
    await daemon.dispatch({ product: 'robot-ai', type: 'UPDATE_NOW', source: 'cli' });
    await waitUntil(() => state().state === 'confirming', { what: 'run 2 to ask for confirmation' });
    await daemon.dispatch({ product: 'robot-ai', type: 'CONFIRM', source: 'cli' });
    await waitUntil(() => state().state === 'idle' && state().runId === run2 && state().lastOutcome === 'committed', { what: 'run 2 to commit' });
    // The new policy reached the machine between the runs without reopening the finished run.
    const runs = daemon.history({ product: 'robot-ai' });
    for (const runId of [run1, run2]) {
      expect(runs.find((r) => r.runId === runId)).toMatchObject({ outcome: 'committed', endedAt: expect.any(Number) });
    }
    const second = provider.calls.filter((c) => c.runId === run2);
    expect(second.map((c) => c.step)).toEqual(['check', 'preCheck', 'backup', 'stage', 'apply', 'validate', 'commit']);
    expect(new Set(second.map((c) => c.generation))).toEqual(new Set([2]));
    const used = second[0]!;
    expect(used.config.server.url).toBe('http://127.0.0.1:2222');
    expect(used.product).toMatchObject({
      channel: 'beta',
      precheck: { minBatteryPercent: 55, minFreeBytes: 1_000_000 },
      healthChecks: [{ kind: 'command', command: ['true'] }],
      services: ['robot-ai-new.service'],
      probation: { window: 30_000, interval: 2_000, failureThreshold: 1 },
      repository: { kind: 'tuf', url: 'http://127.0.0.1:3333/' },
    });
  });

  it('keeps the running paths and products after a reload that needs a restart, and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-reload-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const provider = recordingProvider();
    const config = buildConfig(raw(dir, { url: 'http://127.0.0.1:1111' }));
    const daemon = new Daemon({ config, logging: createLogging({ level: 'info', stdout: false }), clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    const moved = raw(dir, { url: 'http://127.0.0.1:1111' });
    const next = buildConfig({ ...moved, paths: { stateDir: join(dir, 'elsewhere') }, products: [...moved.products, { name: 'nav', installPath: join(dir, 'opt/nav') }] });
    const report = daemon.reload(next);
    expect(report.applied).toEqual([]);
    expect(report.needsRestart).toEqual(expect.arrayContaining(['paths.stateDir', 'paths.database', 'products.nav']));
    // Nothing was rebuilt and nothing moved: the running configuration is what the daemon uses.
    expect(provider.built).toBe(1);
    expect(daemon.currentConfig.paths).toEqual(config.paths);
    expect(daemon.status().products.map((p) => p.product)).toEqual(['robot-ai']);
    expect(daemon.productDefinitions().map((p) => p.product)).toEqual(['robot-ai']);
  });

  it('refuses a configuration whose steps cannot be built, and keeps running on the old one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'otad-reload-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const provider = recordingProvider();
    const inner = provider.steps.bind(provider);
    provider.steps = (ctx) => {
      if (ctx.config.server.url.includes('broken')) throw new Error('cannot build steps for this server');
      return inner(ctx);
    };
    const config = buildConfig(raw(dir, { url: 'http://127.0.0.1:1111' }));
    const daemon = new Daemon({ config, logging: createLogging({ level: 'info', stdout: false }), clock: systemClock, deviceId: 'mac-0242ac110002', stepProvider: provider });
    await daemon.start();
    cleanups.push(() => daemon.stop(0));
    expect(() => daemon.reload(buildConfig(raw(dir, { url: 'http://broken.invalid', level: 'debug' })))).toThrow('cannot build steps');
    expect(daemon.currentConfig.server.url).toBe('http://127.0.0.1:1111');
    expect(daemon.currentConfig.logging.level).toBe('info');
  });
});

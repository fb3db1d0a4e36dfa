import * as fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OtaError } from '../../../src/core/errors.js';
import { createApply } from '../../../src/steps/apply.js';
import { createValidate } from '../../../src/steps/validate.js';
import { createWorld, offer, type ReleaseOptions, type World } from './execution-world.js';

let world: World;
const signal = new AbortController().signal;

beforeEach(async () => {
  world = await createWorld();
});
afterEach(async () => {
  await world.close();
});

async function applyRelease(version: string, options: ReleaseOptions = {}) {
  await world.plainInstall('1.0.0');
  const staged = await world.stage(version, 'r1', options);
  return createApply(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer(version), staged, installedVersion: '1.0.0' }, signal);
}

async function waitForHealth(url: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const ok = await fetch(url).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} never answered`);
}

async function validateError(promise: Promise<unknown>): Promise<OtaError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OtaError);
  return error as OtaError;
}

describe('validate', () => {
  it('fails with HEALTH_CHECK_FAILED when the new release answers its health endpoint with an error', async () => {
    const out = await applyRelease('2.0.0', { broken: true });
    const product = { ...world.product, probation: { window: 200, interval: 50, failureThreshold: 3 } };
    const error = await validateError(createValidate(world.ports({ product }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal));
    expect(error.code).toBe('HEALTH_CHECK_FAILED');
    expect(error.details).toMatchObject({ check: `http://127.0.0.1:${world.port}/health`, failureThreshold: 3 });
  });

  it('fails with HEALTH_CHECK_TIMEOUT when the health endpoint hangs past its timeout', async () => {
    const product = {
      ...world.product,
      healthChecks: [{ kind: 'http' as const, url: `http://127.0.0.1:${world.port}/health`, expectStatus: 200, timeout: 300 }],
    };
    const out = await applyRelease('2.0.0', { hang: true });
    // Wait until the hanging service accepts connections, so the probe hangs rather than being refused.
    for (let i = 0; i < 200; i += 1) {
      const connected = await new Promise<boolean>((resolve) => {
        const s = net.connect(world.port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (connected) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const error = await validateError(createValidate(world.ports({ product }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal));
    expect(error.code).toBe('HEALTH_CHECK_TIMEOUT');
  });

  it("fails when the install path does not resolve to a release marked with the offered version, even if the product's own checks pass", async () => {
    const out = await applyRelease('2.0.0');
    const product = { ...world.product, healthChecks: [], probation: { window: 0, interval: 20, failureThreshold: 2 } };
    // Someone put 1.0.0 back behind otad's back.
    await world.releases().switchTo('1.0.0');
    const error = await validateError(createValidate(world.ports({ product }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal));
    expect(error.code).toBe('HEALTH_CHECK_FAILED');
    expect(error.details).toMatchObject({ check: 'release-marker' });
    expect(String(error.details?.lastMessage)).toContain('resolves to release 1.0.0, expected 2.0.0');
  });

  it('fails the marker check when the release has no marker of its own', async () => {
    const out = await applyRelease('2.0.0');
    await fs.rm(path.join(world.releasesDir, '2.0.0', '.ota-release.json'));
    const product = { ...world.product, healthChecks: [], probation: { window: 0, interval: 20, failureThreshold: 1 } };
    const error = await validateError(createValidate(world.ports({ product }))({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal));
    expect(error.code).toBe('HEALTH_CHECK_FAILED');
  });

  it('reports every check with its result when the release passes', async () => {
    const out = await applyRelease('2.0.0');
    const result = await createValidate(world.ports())({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    expect(result.healthy).toBe(true);
    expect(result.checks.every((c) => c.ok)).toBe(true);
    expect(result.checks.find((c) => c.name === 'release-marker')?.detail).toContain('resolves to robot-ai 2.0.0');
  });

  it('reports each probation round as progress: round n of about m, which checks passed, the window elapsed', async () => {
    const out = await applyRelease('2.0.0');
    // This test is about the progress messages, not about a slow start: with rounds 50 ms apart, a
    // service that takes longer than that to listen on a loaded machine would fail the probation.
    await waitForHealth(`http://127.0.0.1:${world.port}/health`);
    const product = { ...world.product, probation: { window: 100, interval: 50, failureThreshold: 3 } };
    const messages: Array<Record<string, any>> = [];
    await createValidate(world.ports({ product }), { progress: (m) => messages.push(m) })({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    expect(messages.length).toBeGreaterThanOrEqual(2);
    const first = messages[0]!;
    expect(first).toMatchObject({ runId: 'r1', step: 'probation', total: 100, rateBps: null, probation: { round: 1, rounds: 3 } });
    expect(first.message).toMatch(/^round 1 of 3: \d+ of \d+ checks passed \(.*release-marker.*\)/);
    expect(first.probation.checks.find((c: { name: string }) => c.name === 'release-marker')).toEqual({ name: 'release-marker', ok: true });
    expect(messages.map((m) => m.probation.round)).toEqual(messages.map((_, i) => i + 1));
  });
});

/**
 * Hand-written fake steps for tests: configurable delays and failures, an invocation log (JSON
 * lines) so a test can see which step ran how often in which process, and a switch marker that
 * stands for "the apply switched the link", read back by the fake journal.
 */
import { appendFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { STEP_NAMES, type Offer, type StepName, type Steps } from '../../machines/types.js';
import { OtaError, type ErrorCode } from '../../src/core/errors.js';
import type { StepProvider } from '../../src/daemon/step-provider.js';

export interface FakeStepsSpec {
  /** Milliseconds each step takes (default 0). */
  delayMs?: Partial<Record<StepName, number>>;
  /** Steps that fail, with the code they fail with. */
  fail?: Partial<Record<StepName, ErrorCode>>;
  /** The check finds this version (null: up to date). */
  offerVersion?: string | null;
  product?: string;
  /** Pre-check fails this many times before it passes. */
  preCheckFailures?: number;
  /** JSON-lines file every invocation is appended to. */
  logFile?: string;
  /** File the fake apply writes halfway through (the "switch"); the fake journal reads it. */
  switchMarker?: string;
  /** The process SIGKILLs itself when this step starts (a crash loop). */
  crashIn?: StepName;
  /**
   * Pre-check refuses with INHIBITED while the daemon reports an inhibit (the StepContext port the
   * real pre-check reads); set by fakeStepProvider from the context it is given.
   */
  honourInhibits?: boolean;
  inhibits?: () => Array<{ holder: string; reason: string; expiresAt: number | null }>;
}

export interface Invocation {
  step: StepName;
  runId: string;
  phase: 'start' | 'end' | 'error';
  pid: number;
  at: number;
}

export function fakeOffer(product: string, version: string): Offer {
  return {
    product,
    version,
    channel: 'stable',
    releasedAt: Date.UTC(2026, 10, 1),
    notes: `Release ${version}: faster planning, fewer stops.`,
    manifest: { name: `${product}/${product}-${version}.manifest.json`, length: 512, sha256: 'a'.repeat(64) },
    package: { name: `${product}/${product}-${version}.tar.gz`, length: 4096, sha256: 'b'.repeat(64) },
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new OtaError('CANCELLED', 'step cancelled'));
      },
      { once: true },
    );
  });
}

export function createFakeSteps(spec: FakeStepsSpec = {}): Steps & { invocations: Invocation[] } {
  const invocations: Invocation[] = [];
  let preCheckFailuresLeft = spec.preCheckFailures ?? 0;
  const record = (step: StepName, runId: string, phase: Invocation['phase']) => {
    const inv: Invocation = { step, runId, phase, pid: process.pid, at: Date.now() };
    invocations.push(inv);
    if (spec.logFile) appendFileSync(spec.logFile, JSON.stringify(inv) + '\n');
  };
  const wrap = <K extends StepName>(name: K, body: (input: Parameters<Steps[K]>[0], signal: AbortSignal) => Promise<Awaited<ReturnType<Steps[K]>>>) =>
    (async (input: Parameters<Steps[K]>[0], signal: AbortSignal) => {
      record(name, input.runId, 'start');
      if (spec.crashIn === name) process.kill(process.pid, 'SIGKILL');
      try {
        const failCode = spec.fail?.[name];
        if (name !== 'apply') await sleep(spec.delayMs?.[name] ?? 0, signal);
        if (failCode) throw new OtaError(failCode, `fake ${name} failed as the test asked`);
        const out = await body(input, signal);
        record(name, input.runId, 'end');
        return out;
      } catch (error) {
        record(name, input.runId, 'error');
        throw error;
      }
    }) as Steps[K];

  const steps: Steps = {
    check: wrap('check', async (input) => {
      const version = spec.offerVersion === undefined ? '2.0.0' : spec.offerVersion;
      if (version === null) return { available: false, installedVersion: input.installedVersion };
      return { available: true, installedVersion: input.installedVersion, offer: fakeOffer(input.product, version) };
    }),
    preCheck: wrap('preCheck', async () => {
      if (spec.honourInhibits) {
        const held = spec.inhibits?.() ?? [];
        if (held.length > 0) return { ok: false, reasons: held.map((i) => ({ code: 'INHIBITED' as const, message: `updates are inhibited by ${i.holder}: ${i.reason}` })) };
      }
      if (preCheckFailuresLeft > 0) {
        preCheckFailuresLeft--;
        return { ok: false, reasons: [{ code: 'BATTERY_LOW', message: 'battery at 12%, needs 30%' }] };
      }
      return { ok: true };
    }),
    backup: wrap('backup', async (input) => ({ path: `/backups/${input.product}-${input.runId}.tar.gz`, sha256: 'c'.repeat(64), bytes: 1234 })),
    stage: wrap('stage', async (input) => ({ releaseDir: `/releases/${input.offer.version}`, packagePath: `/cache/${input.offer.package.name}` })),
    apply: wrap('apply', async (input, signal) => {
      const half = (spec.delayMs?.apply ?? 0) / 2;
      await sleep(half, signal);
      if (spec.switchMarker) writeFileSync(spec.switchMarker, input.runId);
      await sleep(half, signal);
      return { fromRelease: input.installedVersion, toRelease: `/releases/${input.offer.version}`, version: input.offer.version };
    }),
    validate: wrap('validate', async () => ({ healthy: true as const, checks: [{ name: 'unit robot-ai-core.service', ok: true }] })),
    commit: wrap('commit', async (input) => ({ version: input.applied.version })),
    rollback: wrap('rollback', async (input) => {
      if (spec.switchMarker && existsSync(spec.switchMarker)) rmSync(spec.switchMarker);
      return { restoredVersion: input.installedVersion, method: input.applied ? ('previous-release' as const) : ('nothing-to-undo' as const) };
    }),
  };
  return Object.assign(steps, { invocations });
}

export function fakeStepProvider(spec: FakeStepsSpec = {}): StepProvider & { steps: () => Steps & { invocations: Invocation[] } } {
  const steps = createFakeSteps(spec);
  return {
    real: true,
    steps: (ctx?: { inhibits(): Array<{ holder: string; reason: string; expiresAt: number | null }> }) => {
      if (ctx) spec.inhibits = () => ctx.inhibits();
      return steps;
    },
    journalVerdict: async () => (spec.switchMarker && existsSync(spec.switchMarker) ? 'switched' : 'not-switched'),
  };
}

export { STEP_NAMES };

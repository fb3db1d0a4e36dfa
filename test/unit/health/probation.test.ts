import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/core/clock.js';
import { OtaError } from '../../../src/core/errors.js';
import { assertLoopbackUrl, createProbe, reportsVersion, type HealthProbe, type ProbeOutcome } from '../../../src/health/checks.js';
import { runProbation, type ProbationOptions } from '../../../src/health/probation.js';
import { manualSleep } from '../../../src/health/sleep.js';
import type { ServiceManager, ServiceStatus } from '../../../src/services/service-manager.js';

/** A probe that answers from a script, one answer per round (the last one repeats). */
function scripted(name: string, answers: boolean[], timeoutMs = 1000): HealthProbe & { calls: number } {
  const probe = {
    name,
    kind: 'command' as const,
    timeoutMs,
    calls: 0,
    async run(): Promise<ProbeOutcome> {
      const ok = answers[Math.min(probe.calls, answers.length - 1)] ?? true;
      probe.calls += 1;
      return { ok, message: ok ? 'fine' : `bad answer ${probe.calls}` };
    },
  };
  return probe;
}

/** A probe that never answers unless aborted. */
function hanging(name: string): HealthProbe & { aborted: boolean } {
  const probe = {
    name,
    kind: 'http' as const,
    timeoutMs: 5000,
    aborted: false,
    run(signal: AbortSignal): Promise<ProbeOutcome> {
      return new Promise(() => {
        signal.addEventListener('abort', () => {
          probe.aborted = true;
        });
      });
    },
  };
  return probe;
}

function setup(checks: HealthProbe[], extra: Partial<ProbationOptions> = {}) {
  const clock = new ManualClock('2025-01-01T03:00:00Z');
  const options: ProbationOptions = { checks, windowMs: 60_000, intervalMs: 10_000, failureThreshold: 3, clock, sleep: manualSleep(clock), ...extra };
  return { clock, options };
}

describe('runProbation', () => {
  it('passes when every check stays healthy through the whole window, probing once per interval', async () => {
    const a = scripted('a', [true]);
    const b = scripted('b', [true]);
    const { clock, options } = setup([a, b]);
    const start = clock.monotonic();
    const result = await runProbation(options);
    expect(result).toMatchObject({ passed: true, rounds: 7, elapsedMs: 60_000 });
    expect(clock.monotonic() - start).toBe(60_000); // deadlines of answered checks never advance time
    expect(a.calls).toBe(7);
    expect(result.checks[0]).toMatchObject({ name: 'a', runs: 7, failures: 0, lastOk: true });
  });

  it('fails with HEALTH_CHECK_FAILED when a check fails failureThreshold rounds in a row', async () => {
    const flaky = scripted('api', [true, true, false, false, false]);
    const { options } = setup([scripted('unit', [true]), flaky]);
    const error = await runProbation(options).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OtaError);
    expect(error).toMatchObject({ code: 'HEALTH_CHECK_FAILED', details: { check: 'api', round: 5, elapsedMs: 40_000 } });
    expect((error as OtaError).message).toContain('bad answer 5');
    expect((error as OtaError).details?.checks).toEqual([
      expect.objectContaining({ name: 'unit', consecutiveFailures: 0 }),
      expect.objectContaining({ name: 'api', consecutiveFailures: 3, failures: 3 }),
    ]);
  });

  it('tolerates failures that do not reach the threshold in a row', async () => {
    const { options } = setup([scripted('api', [false, true, false, false, true, false, true])]);
    expect((await runProbation(options)).checks[0]).toMatchObject({ failures: 4, lastOk: true });
  });

  it('does not pass on a failing answer at the end of the window: it keeps probing until the check recovers', async () => {
    const late = scripted('api', [true, true, true, true, true, true, false, false, true]);
    const { options } = setup([late]);
    const result = await runProbation(options);
    expect(result.rounds).toBe(9);
    expect(result.elapsedMs).toBe(80_000);
  });

  it('fails at once with HEALTH_CHECK_TIMEOUT when a check hangs past its deadline, and aborts it', async () => {
    const stuck = hanging('http:robot-ai');
    const { options } = setup([scripted('unit', [true]), stuck]);
    const error = await runProbation(options).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'HEALTH_CHECK_TIMEOUT', details: { check: 'http:robot-ai', round: 1, timeoutMs: 5000 } });
    expect(stuck.aborted).toBe(true);
  });

  it('treats a probe that reports its own timeout as a timeout', async () => {
    const probe: HealthProbe = { name: 'slow', kind: 'http', timeoutMs: 1000, run: async () => ({ ok: false, timedOut: true, message: 'no answer' }) };
    await expect(runProbation(setup([probe]).options)).rejects.toMatchObject({ code: 'HEALTH_CHECK_TIMEOUT' });
  });

  it('counts a probe that throws as a failed answer', async () => {
    const probe: HealthProbe = { name: 'buggy', kind: 'command', timeoutMs: 1000, run: () => Promise.reject(new Error('boom')) };
    await expect(runProbation(setup([probe], { failureThreshold: 2 }).options)).rejects.toMatchObject({
      code: 'HEALTH_CHECK_FAILED',
      details: { lastMessage: 'check failed unexpectedly: boom' },
    });
  });

  it('stops with CANCELLED when its signal aborts, even while a check hangs', async () => {
    const controller = new AbortController();
    const stuck = { ...hanging('stuck'), timeoutMs: 10_000_000 };
    const { options } = setup([stuck], { signal: controller.signal });
    const running = runProbation(options);
    controller.abort();
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('reports each round to onRound', async () => {
    const rounds: number[] = [];
    await runProbation(setup([scripted('a', [true])], { windowMs: 20_000, onRound: (r) => rounds.push(r.elapsedMs) }).options);
    expect(rounds).toEqual([0, 10_000, 20_000]);
  });

  it('rejects a nonsensical configuration', async () => {
    await expect(runProbation(setup([], { intervalMs: 0 }).options)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    await expect(runProbation(setup([], { failureThreshold: 0 }).options)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });
});

class FakeServices implements ServiceManager {
  statuses: ServiceStatus[] = [];
  async stop(): Promise<void> {}
  async start(): Promise<void> {}
  async restart(): Promise<void> {}
  async isActive(unit: string): Promise<boolean> {
    return (await this.status(unit)).active;
  }
  async status(_unit?: string): Promise<ServiceStatus> {
    return this.statuses.length > 1 ? (this.statuses.shift() as ServiceStatus) : (this.statuses[0] as ServiceStatus);
  }
}

describe('unit check', () => {
  it('passes while the unit is active and its restart count stays where probation found it', async () => {
    const services = new FakeServices();
    services.statuses = [{ active: true, state: 'active/running', restarts: 4 }];
    const probe = createProbe({ kind: 'unit', unit: 'robot-ai.service' }, { services });
    expect(await probe.run(new AbortController().signal)).toMatchObject({ ok: true });
    expect(await probe.run(new AbortController().signal)).toMatchObject({ ok: true });
  });

  it('fails a unit that systemd restarted during probation, though it is active again', async () => {
    const services = new FakeServices();
    services.statuses = [
      { active: true, state: 'active/running', restarts: 4 },
      { active: true, state: 'active/running', restarts: 5 },
    ];
    const probe = createProbe({ kind: 'unit', unit: 'robot-ai.service' }, { services });
    await probe.run(new AbortController().signal);
    expect(await probe.run(new AbortController().signal)).toMatchObject({ ok: false, message: 'robot-ai.service was restarted 1 time(s) during probation' });
  });

  it('fails an inactive unit', async () => {
    const services = new FakeServices();
    services.statuses = [{ active: false, state: 'failed/failed', restarts: null }];
    const probe = createProbe({ kind: 'unit', unit: 'robot-ai.service' }, { services });
    expect(await probe.run(new AbortController().signal)).toMatchObject({ ok: false, message: 'robot-ai.service is failed/failed, expected active' });
  });
});

describe('check definitions', () => {
  it('accepts only loopback http(s) URLs for HTTP checks', () => {
    for (const ok of ['http://127.0.0.1:8080/health', 'http://localhost/health', 'http://[::1]:9/x', 'https://127.1.2.3/']) expect(() => assertLoopbackUrl(ok, 'x')).not.toThrow();
    for (const bad of ['http://10.0.0.2/health', 'http://example.com/', 'file:///etc/passwd', 'not a url', 'http://127.0.0.1.example.com/']) {
      expect(() => assertLoopbackUrl(bad, 'x')).toThrow(OtaError);
    }
  });

  it('matches a reported version as the whole text or one of its words', () => {
    expect(reportsVersion('2.1.0\n', '2.1.0')).toBe(true);
    expect(reportsVersion('robot-ai v2.1.0 (build 77)', '2.1.0')).toBe(true);
    expect(reportsVersion('{"version": "2.1.0"}', '2.1.0')).toBe(true);
    expect(reportsVersion('robot-ai 2.1.0-rc.1', '2.1.0')).toBe(false);
    expect(reportsVersion('robot-ai 12.1.0', '2.1.0')).toBe(false);
  });

  it('needs an expected version and exactly one source for a version check', () => {
    const services = new FakeServices();
    expect(() => createProbe({ kind: 'version', file: 'VERSION' }, { services })).toThrow(/no expected version/);
    expect(() => createProbe({ kind: 'version', expect: '1.0.0' }, { services })).toThrow(/exactly one/);
    expect(() => createProbe({ kind: 'version', file: 'VERSION' }, { services, expectedVersion: '1.0.0' })).not.toThrow();
  });
});

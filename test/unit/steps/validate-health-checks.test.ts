import { describe, expect, it } from 'vitest';
import { productSchema } from '../../../src/config/schema.js';
import { toHealthChecks } from '../../../src/health/release-probes.js';
import { toCheckResult } from '../../../src/steps/validate.js';

describe('health checks from the product definition', () => {
  it('maps every kind, durations in milliseconds', () => {
    const product = productSchema.parse({
      name: 'robot-ai',
      installPath: '/opt/robot-ai',
      healthChecks: [
        { kind: 'unit', unit: 'robot-ai.service' },
        { kind: 'http', url: 'http://127.0.0.1:8000/health', timeout: '3s' },
        { kind: 'command', command: ['bin/selftest'], timeout: '1m' },
        { kind: 'version', file: 'VERSION' },
      ],
    });
    expect(toHealthChecks(product.healthChecks)).toEqual([
      { kind: 'unit', unit: 'robot-ai.service' },
      { kind: 'http', url: 'http://127.0.0.1:8000/health', expectStatus: 200, timeoutMs: 3000 },
      { kind: 'command', command: ['bin/selftest'], timeoutMs: 60_000 },
      { kind: 'version', file: 'VERSION' },
    ]);
  });
});

describe('validation results', () => {
  it('records each check with its last answer and counts', () => {
    expect(toCheckResult({ name: 'http', kind: 'http', runs: 4, failures: 1, consecutiveFailures: 0, lastOk: true, lastMessage: 'answered 200' })).toEqual({
      name: 'http',
      ok: true,
      detail: 'answered 200 (4 runs, 1 failed)',
    });
    expect(toCheckResult({ name: 'x', kind: 'command', runs: 0, failures: 0, consecutiveFailures: 0, lastOk: null, lastMessage: null }).ok).toBe(false);
  });
});

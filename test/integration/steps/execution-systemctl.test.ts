/**
 * The steps against systemd, through the stub `systemctl` in test/fixtures/bin (first on the PATH
 * handed to the adapter, never on the test process's own PATH): the stop/start order around the
 * switch, a unit health check, a unit that will not stop, and how the service manager is chosen.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { productSchema } from '../../../src/config/schema.js';
import { silentLogger } from '../../../src/core/logger.js';
import { createApply } from '../../../src/steps/apply.js';
import { serviceChooser } from '../../../src/services/choice.js';
import { createRollback } from '../../../src/steps/rollback.js';
import { createValidate } from '../../../src/steps/validate.js';
import { createWorld, offer, type World } from './execution-world.js';

const STUB_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/bin');
const CORE = 'robot-ai-core.service';
const API = 'robot-ai-api.service';
const signal = new AbortController().signal;
let world: World;

beforeEach(async () => {
  world = await createWorld({
    services: [CORE, API],
    processUnits: [],
    healthChecks: [{ kind: 'unit', unit: CORE }],
    probation: { window: 0, interval: 20, failureThreshold: 2 },
  });
});
afterEach(async () => {
  await world.close();
});

function stubEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: `${STUB_BIN}:${process.env.PATH ?? '/usr/bin:/bin'}`, SYSTEMCTL_STUB_DIR: path.join(world.root, 'stub'), ...extra };
}

function calls(): string[] {
  return readFileSync(path.join(world.root, 'stub', 'calls.log'), 'utf8').trim().split('\n');
}

async function plainInstall(): Promise<void> {
  await world.writeRelease(world.installPath, '1.0.0');
}

describe('apply and validate through systemctl', () => {
  it('stops the units in reverse order, switches, starts them in order, and checks the unit through systemctl show', async () => {
    await plainInstall();
    const ports = world.ports({}, { env: stubEnv() });
    const staged = await world.stage('2.0.0', 'r1');
    const out = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    expect(out.version).toBe('2.0.0');
    const validation = await createValidate(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied: out }, signal);
    expect(validation.checks.find((c) => c.name === `unit:${CORE}`)?.ok).toBe(true);

    expect(calls().slice(0, 5)).toEqual(['show -p Version', `stop ${API}`, `stop ${CORE}`, `start ${CORE}`, `start ${API}`]);
    // Every unit is watched through probation (the configured unit check, and the API unit too); probes run concurrently.
    expect(calls().slice(5).sort()).toEqual([`show -p ActiveState,SubState,NRestarts ${API}`, `show -p ActiveState,SubState,NRestarts ${CORE}`].sort());
  });

  it('fails with SERVICE_FAILED before the switch when a unit will not stop, and rollback starts the units again', async () => {
    await plainInstall();
    const failing = world.ports({}, { env: stubEnv({ SYSTEMCTL_STUB_FAIL: `stop:${CORE}` }) });
    const staged = await world.stage('2.0.0', 'r1');
    await expect(createApply(failing)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal)).rejects.toMatchObject({
      code: 'SERVICE_FAILED',
      details: { unit: CORE, stopped: [API] },
    });
    expect(await world.releases().current()).toMatchObject({ version: '1.0.0' });

    const ports = world.ports({ rollbackProbation: { windowMs: 0, intervalMs: 20, failureThreshold: 2 } }, { env: stubEnv() });
    const result = await createRollback(ports)(
      { product: 'robot-ai', runId: 'r1', reason: 'apply failed', cause: 'failure', offer: offer('2.0.0'), applied: null, backup: null, installedVersion: '1.0.0', markBad: false, requestedBy: null, failure: null },
      signal,
    );
    expect(result).toEqual({ restoredVersion: '1.0.0', method: 'previous-release' });
    expect(calls().filter((c) => c.startsWith('start'))).toEqual([`start ${CORE}`, `start ${API}`]);
  });
});

describe('a validation restarted after an interruption, under systemd', () => {
  it('starts the units that are not active (in order), leaves an active one alone, then judges the release and says it restarted', async () => {
    await plainInstall();
    const ports = world.ports({}, { env: stubEnv() });
    const staged = await world.stage('2.0.0', 'r1');
    const applied = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    // otad and the core unit were killed together; the API unit was brought back by systemd.
    writeFileSync(path.join(world.root, 'stub', 'units', CORE), 'inactive\n');
    const before = calls().length;

    const out = await createValidate(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied, resumed: { interruptedIn: 'validate', restoredAt: 1 } }, signal);
    expect(out.restarted).toMatchObject({ interruptedIn: 'validate', restoredAt: 1, startedUnits: [CORE], runningUnits: [API] });
    expect(out.checks.find((c) => c.name === `unit:${CORE}`)?.ok).toBe(true);
    expect(calls().slice(before).filter((c) => c.startsWith('start'))).toEqual([`start ${CORE}`]);
  });

  it('a unit that cannot be started fails the restarted validation with SERVICE_FAILED, and says the validation restarted', async () => {
    await plainInstall();
    const ports = world.ports({}, { env: stubEnv() });
    const staged = await world.stage('2.0.0', 'r1');
    const applied = await createApply(ports)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), staged, installedVersion: '1.0.0' }, signal);
    writeFileSync(path.join(world.root, 'stub', 'units', CORE), 'inactive\n');
    const failing = world.ports({}, { env: stubEnv({ SYSTEMCTL_STUB_FAIL: `start:${CORE}` }) });
    await expect(
      createValidate(failing)({ product: 'robot-ai', runId: 'r1', offer: offer('2.0.0'), applied, resumed: { interruptedIn: 'apply', restoredAt: 1 } }, signal),
    ).rejects.toMatchObject({ code: 'SERVICE_FAILED', message: expect.stringContaining(`validation restarted after otad was interrupted in apply; ${CORE} could not be started`), details: { restarted: { startedUnits: [] } } });
  });
});

describe('choosing the service manager', () => {
  const base = { name: 'robot-ai', installPath: '/opt/robot-ai' };

  it('uses systemd when the product lists services and systemctl answers', async () => {
    const product = productSchema.parse({ ...base, services: [CORE] });
    const chosen = await serviceChooser(product, { stateDir: world.stateDir, logger: silentLogger, env: stubEnv() })();
    expect(chosen).toMatchObject({ kind: 'systemctl', units: [CORE] });
  });

  it('falls back to the process manager for processUnits when systemctl does not work here', async () => {
    const product = productSchema.parse({ ...base, services: [CORE], processUnits: [{ name: CORE, command: ['sleep', '1'] }] });
    const chosen = await serviceChooser(product, { stateDir: world.stateDir, logger: silentLogger, systemctlPath: path.join(world.root, 'no-systemctl') })();
    expect(chosen).toMatchObject({ kind: 'process', units: [CORE] });
  });

  it('refuses with SERVICE_FAILED when systemd services are listed, systemctl does not work and no processUnits exist', async () => {
    const product = productSchema.parse({ ...base, services: [CORE] });
    const choose = serviceChooser(product, { stateDir: world.stateDir, logger: silentLogger, systemctlPath: path.join(world.root, 'no-systemctl') });
    await expect(choose()).rejects.toMatchObject({ code: 'SERVICE_FAILED' });
  });

  it('manages nothing for a product without services', async () => {
    const product = productSchema.parse(base);
    expect(await serviceChooser(product, { stateDir: world.stateDir, logger: silentLogger })()).toMatchObject({ kind: 'none', units: [] });
  });
});

/**
 * The two-way mission lease on every transport: before an install otad sends MaintenanceRequested
 * (D-Bus signal, Socket.IO notification, REST status) and waits; a denial (gdbus) keeps the run
 * waiting with MAINTENANCE_DENIED and nothing is backed up or stopped; a grant (Socket.IO) opens the
 * window: Maintenance is true (PropertiesChanged, REST status, Socket.IO maintenance-started) until
 * the run settles. Answers with nothing waiting are API_NOT_FOUND (REST, busctl). When nobody
 * answers, maintenance.onNoAnswer decides: proceed installs, wait keeps waiting.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dbus from 'dbus-next';
import { io as connect, type Socket } from 'socket.io-client';
import supertest from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, bearer, startHarness, waitFor, type Harness } from './harness.js';
import { hasDbusDaemon, hasTool, startPrivateBus, type PrivateBus } from './private-bus.js';
import type { Invocation } from '../../support/fake-steps.js';

const run = promisify(execFile);
const NAME = 'io.otad.Daemon1';
const PRODUCT = '/io/otad/Product/robot_2dai';

const invocationsOf = (h: Harness) => (h.daemon as unknown as { opts: { stepProvider: { steps: () => { invocations: Invocation[] } } } }).opts.stepProvider.steps().invocations;
const productStatus = (h: Harness) => h.daemon.status().products[0]!;

describe.skipIf(!hasDbusDaemon)('the mission lease over D-Bus, REST and Socket.IO', () => {
  let dir: string;
  let bus: PrivateBus;
  let h: Harness;
  let peer: dbus.MessageBus;
  let product: dbus.ClientInterface;
  let socket: Socket;
  const requested: Array<[string, string, string, bigint]> = [];
  const maintenanceChanges: Array<{ value: boolean; at: number }> = [];
  const notifications: Array<{ kind: string; maintenance?: { requestId: string } }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-maint-'));
    bus = await startPrivateBus(dir);
    h = await startHarness({
      fake: { offerVersion: '2.0.0', delayMs: { apply: 1500 } },
      extra: { dbus: { enabled: true, bus: bus.address, name: NAME }, maintenance: { request: true, answerTimeout: '5m', onNoAnswer: 'wait' } },
    });
    peer = dbus.sessionBus({ busAddress: bus.address });
    const obj = await peer.getProxyObject(NAME, PRODUCT);
    product = obj.getInterface('io.otad.Product1');
    product.on('MaintenanceRequested', (...a: unknown[]) => requested.push(a as [string, string, string, bigint]));
    obj.getInterface('org.freedesktop.DBus.Properties').on('PropertiesChanged', (iface: string, changed: Record<string, dbus.Variant>) => {
      if (iface === 'io.otad.Product1' && 'Maintenance' in changed) maintenanceChanges.push({ value: changed.Maintenance!.value as boolean, at: Date.now() });
    });
    socket = connect(h.url, { path: '/socket.io', auth: { token: CONTROL_TOKEN, topics: ['notification'] }, transports: ['websocket'] });
    socket.on('message', (e: { type: string; payload: { kind: string; maintenance?: { requestId: string } } }) => {
      if (e.type === 'notification') notifications.push(e.payload);
    });
    await new Promise<void>((res, rej) => {
      socket.once('connect', () => res());
      socket.once('connect_error', rej);
    });
  });
  afterAll(async () => {
    socket?.close();
    peer?.disconnect();
    await h?.close();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks before the install; a denial (gdbus) keeps it waiting with MAINTENANCE_DENIED, nothing backed up', async () => {
    await product.CheckNow!();
    await waitFor(() => productStatus(h).state === 'awaitingChoice', 'awaitingChoice');
    await product.UpdateNow!();
    await waitFor(() => requested.length === 1, 'MaintenanceRequested');
    const [requestId, runId, version, timeoutMs] = requested[0]!;
    expect(runId).toBe(productStatus(h).runId);
    expect(version).toBe('2.0.0');
    expect(timeoutMs).toBe(300_000n);
    // Waiting for the answer: in the pre-check, the request in the status, no window yet.
    expect(productStatus(h)).toMatchObject({ state: 'preCheck', maintenance: { active: false, request: { requestId, version: '2.0.0' } } });
    await waitFor(() => notifications.some((n) => n.kind === 'maintenance-requested' && n.maintenance?.requestId === requestId), 'the Socket.IO notification');
    expect(invocationsOf(h).some((i) => i.step === 'backup')).toBe(false);

    if (hasTool('gdbus')) {
      await run('gdbus', ['call', '--address', bus.address, '--dest', NAME, '--object-path', PRODUCT, '--method', 'io.otad.Product1.DenyMaintenance', requestId, 'mission 42 under way']);
    } else {
      await product.DenyMaintenance!(requestId, 'mission 42 under way');
    }
    await waitFor(() => productStatus(h).state === 'preCheckWaiting', 'preCheckWaiting');
    const s = productStatus(h);
    expect(s.preCheckReasons).toEqual([expect.objectContaining({ code: 'MAINTENANCE_DENIED', message: expect.stringContaining('mission 42 under way') })]);
    expect(s.maintenance).toMatchObject({ active: false, request: null, lastAnswer: { requestId, answer: 'denied', reason: 'mission 42 under way' } });
    expect(invocationsOf(h).some((i) => i.step === 'backup')).toBe(false);
    expect(maintenanceChanges).toEqual([]);
    expect(h.daemon.audit(20).some((a) => a.message.includes('maintenance window for robot-ai 2.0.0 denied by dbus (dbus): mission 42 under way'))).toBe(true);
  });

  it('answers with nothing waiting are API_NOT_FOUND on REST and D-Bus (busctl)', async () => {
    const r = await supertest(h.url).post('/api/v1/products/robot-ai/maintenance').set(bearer(CONTROL_TOKEN)).send({ answer: 'grant' });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('API_NOT_FOUND');
    const bad = await supertest(h.url).post('/api/v1/products/robot-ai/maintenance').set(bearer(CONTROL_TOKEN)).send({ answer: 'maybe' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('API_INVALID_REQUEST');
    if (hasTool('busctl')) {
      const refused = (await run('busctl', [`--address=${bus.address}`, 'call', NAME, PRODUCT, 'io.otad.Product1', 'GrantMaintenance', 's', '']).catch((e: unknown) => e)) as { stderr: string };
      expect(refused.stderr).toContain('no maintenance request is waiting');
    }
    const err = (await product.GrantMaintenance!('').catch((e: unknown) => e)) as dbus.DBusError;
    expect(err.type).toBe('io.otad.Error.API_NOT_FOUND');
  });

  it('a grant over Socket.IO opens the window: Maintenance true on D-Bus, REST and Socket.IO until the run settles', async () => {
    await product.UpdateNow!();
    await waitFor(() => requested.length === 2, 'the second MaintenanceRequested');
    const requestId = requested[1]![0];
    const grantAt = Date.now();
    const ack = await socket.timeout(10_000).emitWithAck('maintenance', { product: 'robot-ai', answer: 'grant', requestId, reason: 'docked, no mission' });
    expect(ack).toEqual({ ok: true, result: { product: 'robot-ai', requestId, answer: 'grant' } });
    await waitFor(() => maintenanceChanges.some((c) => c.value), 'PropertiesChanged Maintenance=true');
    const opened = maintenanceChanges.find((c) => c.value)!.at;
    await waitFor(() => productStatus(h).state === 'apply', 'apply');
    expect(productStatus(h).maintenance).toMatchObject({ active: true, lastAnswer: { answer: 'granted', by: 'robot-ai (socket)' } });
    const rest = await supertest(h.url).get('/api/v1/status').set(bearer(CONTROL_TOKEN));
    expect(rest.body.products[0].maintenance.active).toBe(true);
    await waitFor(() => productStatus(h).state === 'idle' && productStatus(h).lastOutcome === 'committed', 'the install', 30_000);
    await waitFor(() => maintenanceChanges.at(-1)?.value === false, 'PropertiesChanged Maintenance=false');
    expect(maintenanceChanges.map((c) => c.value)).toEqual([true, false]);
    expect(productStatus(h).maintenance.active).toBe(false);
    const kinds = notifications.map((n) => n.kind).filter((k) => k.startsWith('maintenance-'));
    expect(kinds.slice(-2)).toEqual(['maintenance-started', 'maintenance-ended']);
    // The backup (the first install step) started only after the grant.
    const backup = invocationsOf(h).find((i) => i.step === 'backup')!;
    expect(backup.at).toBeGreaterThanOrEqual(grantAt);
    console.log(`maintenance window: a D-Bus client saw Maintenance=true ${opened - grantAt} ms after sending the grant (the backup started ${backup.at - grantAt} ms after it)`);
  });
});

describe('the mission lease when nobody answers', () => {
  for (const onNoAnswer of ['proceed', 'wait'] as const) {
    it(`onNoAnswer: ${onNoAnswer}`, async () => {
      const h = await startHarness({ fake: { offerVersion: '2.0.0' }, extra: { maintenance: { request: true, answerTimeout: '1s', onNoAnswer } } });
      try {
        const post = (type: string) => supertest(h.url).post('/api/v1/events').set(bearer(CONTROL_TOKEN)).send({ type });
        await post('CHECK_NOW');
        await waitFor(() => productStatus(h).state === 'awaitingChoice', 'awaitingChoice');
        await post('UPDATE_NOW');
        await waitFor(() => productStatus(h).maintenance.request !== null, 'the maintenance request');
        if (onNoAnswer === 'proceed') {
          await waitFor(() => productStatus(h).state === 'idle' && productStatus(h).lastOutcome === 'committed', 'the install', 30_000);
          expect(productStatus(h).maintenance.lastAnswer).toMatchObject({ answer: 'no-answer', by: null });
          expect(h.daemon.audit(30).some((a) => a.message.includes('no answer to the maintenance request for robot-ai 2.0.0 within 1 s; proceeding'))).toBe(true);
        } else {
          await waitFor(() => productStatus(h).state === 'preCheckWaiting', 'preCheckWaiting', 30_000);
          expect(productStatus(h).preCheckReasons).toEqual([expect.objectContaining({ code: 'MAINTENANCE_NO_ANSWER' })]);
          expect(invocationsOf(h).some((i) => i.step === 'backup')).toBe(false);
        }
      } finally {
        await h.close();
      }
    });
  }
});

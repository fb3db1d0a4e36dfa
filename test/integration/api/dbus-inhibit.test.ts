/**
 * Inhibitors that die with their holder: io.otad.Manager1.Inhibit hands a real child process a
 * file descriptor; while it holds it, an install's pre-check refuses with INHIBITED naming it; a
 * SIGKILL releases it at once (the Inhibited property is polled, no fixed sleep). A REST lease that
 * is not renewed is released at its expiry. A bounded randomized soak (OTAD_SOAK_LONG=1 for a long
 * one): apps take and drop inhibitors and leases, some are SIGKILLed, otad keeps checking and
 * installing; no install passes its pre-check while an inhibit was held throughout; a SIGKILLed
 * holder's fd inhibitor is gone with its fd (it has no expiry), an abandoned lease within 2 s of its
 * TTL; a mission side denies maintenance while a mission runs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROL_TOKEN, bearer, startHarness, waitFor, type Harness } from './harness.js';
import { hasDbusDaemon, startPrivateBus, type PrivateBus } from './private-bus.js';
import { FD_PASSING } from '../../../src/api/dbus.js';
import type { Invocation } from '../../support/fake-steps.js';

const NAME = 'io.otad.Daemon1';
const HOLDER = resolve(import.meta.dirname, '../../support/inhibit-holder.mjs');
const PRODUCT = '/io/otad/Product/robot_2dai';

if (hasDbusDaemon && !FD_PASSING) console.warn('SKIPPED: fd inhibitors need dbus-next\'s optional module usocket built (npm rebuild usocket)');

interface Holder {
  who: string;
  child: ChildProcess;
  /** Date.now() when otad's answer (the fd) reached the child. */
  heldAt: number;
  /** Date.now() when the child was seen gone, or its fd closed. */
  goneAt: number | null;
  exited: Promise<void>;
}

/** One REST request on its own connection (no keep-alive, so closing the server does not wait for it). */
function rest(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: () => Promise<unknown> }> {
  return new Promise((res, rej) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(`${url}${path}`, { method, agent: false, headers: { ...bearer(CONTROL_TOKEN), ...(data ? { 'Content-Type': 'application/json' } : {}) } }, (r) => {
      let text = '';
      r.on('data', (c: Buffer) => (text += c.toString()));
      r.on('end', () => res({ status: r.statusCode ?? 0, json: async () => JSON.parse(text) as unknown }));
    });
    req.on('error', rej);
    req.end(data);
  });
}

function startHolder(address: string, who: string, why: string): Promise<Holder> {
  const child = spawn(process.execPath, [HOLDER, address, who, why], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const h: Holder = { who, child, heldAt: 0, goneAt: null, exited: new Promise((r) => child.once('exit', () => r())) };
  void h.exited.then(() => (h.goneAt ??= Date.now()));
  return new Promise((res, rej) => {
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('held ') && !h.heldAt) {
        h.heldAt = Date.now();
        res(h);
      }
      if (out.includes('dropped')) h.goneAt ??= Date.now();
      if (out.startsWith('error')) rej(new Error(out));
    });
    child.once('exit', (code) => {
      if (!h.heldAt) rej(new Error(`the holder exited with ${code} before holding: ${out}${err}`));
    });
  });
}

describe.skipIf(!hasDbusDaemon || !FD_PASSING)('fd inhibitors and REST leases', () => {
  let dir: string;
  let bus: PrivateBus;
  let h: Harness;
  let peer: dbus.MessageBus;
  let props: dbus.ClientInterface;
  let product: dbus.ClientInterface;
  let invocations: Invocation[];
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'otad-inhibit-'));
    bus = await startPrivateBus(dir);
    h = await startHarness({
      fake: { offerVersion: '2.0.0', honourInhibits: true },
      extra: { api: { controlRateLimit: { window: '1m', max: 100_000 } }, dbus: { enabled: true, bus: bus.address, name: NAME } },
    });
    invocations = (h.daemon as unknown as { opts: { stepProvider: { steps: () => { invocations: Invocation[] } } } }).opts.stepProvider.steps().invocations;
    peer = dbus.sessionBus({ busAddress: bus.address });
    const obj = await peer.getProxyObject(NAME, PRODUCT);
    props = obj.getInterface('org.freedesktop.DBus.Properties');
    product = obj.getInterface('io.otad.Product1');
  });
  afterAll(async () => {
    for (const c of children) c.kill('SIGKILL');
    peer?.disconnect();
    await h?.close();
    await bus?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const state = () => h.daemon.status().products[0]?.state;
  const inhibited = async () => ((await props.Get!('io.otad.Product1', 'Inhibited')) as dbus.Variant).value as boolean;
  const pollInhibited = async (want: boolean, what: string) => {
    const deadline = Date.now() + 10_000;
    while ((await inhibited()) !== want) {
      if (Date.now() > deadline) throw new Error(`Inhibited did not become ${want}: ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };

  it('an fd held by a real child blocks the pre-check with INHIBITED naming it; SIGKILL releases it at once', async () => {
    const holder = await startHolder(bus.address, 'robot-ai.mission', 'delivering to ward 3');
    children.push(holder.child);
    await pollInhibited(true, 'after Inhibit');
    const listed = (await (await peer.getProxyObject(NAME, '/io/otad/Daemon1')).getInterface('io.otad.Manager1').ListInhibitors!()) as unknown[][];
    expect(listed.map((l) => l.slice(0, 3))).toEqual([['robot-ai.mission', 'delivering to ward 3', 'block']]);
    expect(h.daemon.status().inhibits).toEqual([expect.objectContaining({ holder: 'robot-ai.mission', kind: 'fd', expiresAt: null })]);

    await product.CheckNow!();
    await waitFor(() => state() === 'awaitingChoice', 'awaitingChoice');
    await product.UpdateNow!();
    await waitFor(() => state() === 'preCheckWaiting', 'preCheckWaiting');
    const reasons = h.daemon.status().products[0]?.preCheckReasons ?? [];
    expect(reasons).toEqual([expect.objectContaining({ code: 'INHIBITED', message: expect.stringContaining('robot-ai.mission') })]);
    expect(invocations.some((i) => i.step === 'backup')).toBe(false);

    holder.child.kill('SIGKILL');
    await holder.exited;
    await pollInhibited(false, 'after SIGKILL');
    expect(h.daemon.status().inhibits).toEqual([]);
    expect(h.daemon.audit(10).some((a) => a.message.includes('inhibitor of robot-ai.mission released'))).toBe(true);

    await product.UpdateNow!();
    await waitFor(() => state() === 'idle' && h.daemon.status().products[0]?.lastOutcome === 'committed', 'the install');
  });

  it('an inhibitor closed by its holder is released, the holder still running', async () => {
    const holder = await startHolder(bus.address, 'robot-ai.dock', 'charging');
    children.push(holder.child);
    await pollInhibited(true, 'after Inhibit');
    holder.child.stdin?.write('drop\n');
    await pollInhibited(false, 'after the fd was closed');
    expect(holder.child.exitCode).toBe(null);
    holder.child.kill('SIGKILL');
  });

  it('refuses an unknown mode with io.otad.Error.API_INVALID_REQUEST', async () => {
    const manager = (await peer.getProxyObject(NAME, '/io/otad/Daemon1')).getInterface('io.otad.Manager1');
    const err = (await manager.Inhibit!('x', 'y', 'delay').catch((e: unknown) => e)) as dbus.DBusError;
    expect(err.type).toBe('io.otad.Error.API_INVALID_REQUEST');
    expect(err.text).toContain('"block"');
  });

  it('a REST lease is renewed by heartbeat and released at its expiry without one', async () => {
    const post = (path: string, body: unknown) => rest(h.url, 'POST', path, body);
    const taken = await post('/api/v1/inhibit', { holder: 'mission-planner', reason: 'mission 42', durationMs: 30_000 });
    expect(taken.status).toBe(201);
    expect(h.daemon.status().inhibits.map((i) => i.kind)).toEqual(['lease']);
    await pollInhibited(true, 'after the lease');
    h.clock.advance(20_000);
    const renewed = await post('/api/v1/inhibit/mission-planner/heartbeat', { durationMs: 30_000 });
    expect(renewed.status).toBe(200);
    expect(((await renewed.json()) as { expiresAt: number }).expiresAt).toBe(h.clock.now() + 30_000);
    h.clock.advance(20_000);
    expect(h.daemon.status().inhibits.map((i) => i.holder)).toEqual(['mission-planner']);
    // No heartbeat: past its TTL the lease is gone, and a late heartbeat is told so.
    h.clock.advance(10_001);
    expect(h.daemon.status().inhibits).toEqual([]);
    await pollInhibited(false, 'after the lease expired');
    const late = await post('/api/v1/inhibit/mission-planner/heartbeat', {});
    expect(late.status).toBe(404);
    expect(((await late.json()) as { error: { code: string } }).error.code).toBe('API_NOT_FOUND');
  });

  // OTAD_SOAK_LONG=1 runs 400 rounds instead of 60; OTAD_SOAK_SEED picks another sequence.
  it('soak: apps take and drop inhibitors at random, some SIGKILLed, missions deny maintenance; no install passes a pre-check while one was held', { timeout: 600_000 }, async () => {
    const rounds = process.env.OTAD_SOAK_LONG ? 400 : 60;
    let seed = Number(process.env.OTAD_SOAK_SEED ?? 16);
    // mulberry32: 32-bit integer steps (Math.imul), so the sequence is exact and covers [0, 1) evenly.
    const rnd = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
    };
    const held: Holder[] = [];
    const all: Holder[] = [];
    // A crashing holder's lease is short (60 s) and is abandoned: no release, no heartbeat; the others last an hour.
    const leases: Array<{ name: string; from: number; to: number | null; expiresAt: number; crashes: boolean; abandoned?: boolean }> = [];
    const killed: Holder[] = [];
    const del = (holder: string) => rest(h.url, 'DELETE', `/api/v1/inhibit/${holder}`);
    const post = (body: unknown) => rest(h.url, 'POST', '/api/v1/inhibit', body);
    let kills = 0;
    // The mission side: with maintenance.request on (a reload applies it at once), every install
    // asks first; a responder denies while a mission runs and grants otherwise.
    expect(h.daemon.reload({ ...h.config, maintenance: { request: true, answerTimeout: 30_000, onNoAnswer: 'wait' } }).applied).toEqual(expect.arrayContaining(['maintenance.request']));
    const missions: Array<{ from: number; to: number | null }> = [];
    const answers = { granted: 0, denied: 0 };
    const respond = (requestId: string) => {
      const busy = missions.some((m) => m.to === null);
      answers[busy ? 'denied' : 'granted']++;
      void (busy ? product.DenyMaintenance!(requestId, 'mission under way') : product.GrantMaintenance!(requestId)).catch(() => undefined);
    };
    product.on('MaintenanceRequested', respond);
    for (let r = 0; r < rounds; r++) {
      const roll = rnd();
      if (roll < 0.2 && held.length < 2) {
        const hd = await startHolder(bus.address, `app-${r}`, `round ${r}`);
        children.push(hd.child);
        held.push(hd);
        all.push(hd);
      } else if (roll < 0.5 && held.length > 0) {
        const hd = held.splice(Math.floor(rnd() * held.length), 1)[0] as Holder;
        if (rnd() < 0.5) {
          hd.child.kill('SIGKILL');
          killed.push(hd);
          kills++;
        } else hd.child.stdin?.write('drop\n');
      } else if (roll < 0.56 && leases.filter((l) => l.to === null).length < 2) {
        const name = `lease-${r}`;
        const crashes = rnd() < 0.4;
        const res = await post({ holder: name, reason: 'soak', durationMs: crashes ? 60_000 : 3_600_000 });
        if (res.status === 201) leases.push({ name, from: Date.now(), to: null, crashes, expiresAt: ((await res.json()) as { expiresAt: number }).expiresAt });
      } else if (roll < 0.72 && leases.some((l) => l.to === null)) {
        const l = leases.find((x) => x.to === null)!;
        if (l.crashes) {
          // Its holder crashed. Held until its TTL, gone 2 s after it (time moves on the daemon's clock).
          l.abandoned = true;
          h.clock.advance(l.expiresAt - 1000 - h.clock.now());
          expect(h.daemon.status().inhibits.map((i) => i.holder)).toContain(l.name);
          h.clock.advance(3000);
          expect(h.daemon.status().inhibits.map((i) => i.holder)).not.toContain(l.name);
          for (const x of leases) if (x.to === null && x.expiresAt <= h.clock.now()) x.to = Date.now();
        } else {
          l.to = Date.now();
          await del(l.name);
        }
      }
      else if (roll < 0.8) {
        const running = missions.find((m) => m.to === null);
        if (running) running.to = Date.now();
        else missions.push({ from: Date.now(), to: null });
      }
      // Drive the product: check, choose, retry a waiting pre-check.
      const s = state();
      if (s === 'idle' || s === 'failed') await product.CheckNow!().catch(() => undefined);
      else if (s === 'awaitingChoice' || s === 'preCheckWaiting') await product.UpdateNow!().catch(() => undefined);
      await new Promise((res) => setTimeout(res, Math.floor(rnd() * 20)));
    }
    for (const m of missions) m.to ??= Date.now();
    product.removeListener('MaintenanceRequested', respond);
    for (const hd of held) hd.child.kill('SIGKILL');
    killed.push(...held);
    for (const l of leases) if (l.to === null) (l.to = Date.now()), await del(l.name);
    // Holders that closed their fd are still running: end them (stdin closed).
    for (const hd of all) hd.child.stdin?.end();
    await Promise.all(all.map((hd) => hd.exited));
    // An fd inhibitor has no expiry: a SIGKILLed holder's inhibitor went with its fd, not with a timeout.
    const fdHeld = () => h.daemon.status().inhibits.filter((i) => i.kind === 'fd');
    await waitFor(() => fdHeld().length === 0, 'every fd inhibitor to be released once its holder was gone');
    const audit = h.daemon.audit(100_000).map((a) => a.message);
    for (const hd of killed) expect(audit.some((m) => m.startsWith(`inhibitor of ${hd.who} released`))).toBe(true);
    const abandoned = leases.filter((l) => l.abandoned).map((l) => l.name);
    expect(h.daemon.status().inhibits).toEqual([]);
    await pollInhibited(false, 'after the soak');

    // Every pre-check that let an install go on (a backup followed it) ran while no inhibit was held throughout.
    const passes: Array<{ start: number; backup: number }> = [];
    for (let i = 0; i < invocations.length; i++) {
      const b = invocations[i]!;
      if (b.step !== 'backup' || b.phase !== 'start') continue;
      const pre = invocations.slice(0, i).reverse().find((x) => x.step === 'preCheck' && x.phase === 'start' && x.runId === b.runId);
      if (pre) passes.push({ start: pre.at, backup: b.at });
    }
    const intervals = [...all.map((hd) => ({ from: hd.heldAt, to: hd.goneAt ?? Infinity })), ...leases.map((l) => ({ from: l.from, to: l.to ?? Infinity })), ...missions.map((m) => ({ from: m.from, to: m.to ?? Infinity }))];
    const violations = passes.filter((p) => intervals.some((iv) => iv.from <= p.start && p.backup < iv.to));
    const blocked = h.daemon.transitions({ limit: 100_000 }).filter((t) => t.to === 'preCheckWaiting').length;
    console.log(`inhibitor soak: ${rounds} rounds, ${all.length} fd holders (${kills} SIGKILLed), ${leases.length} leases (${abandoned.length} abandoned), ${missions.length} missions (maintenance ${answers.granted} granted, ${answers.denied} denied), ${passes.length} installs went ahead, ${blocked} pre-checks blocked`);
    expect(violations).toEqual([]);
    expect(h.daemon.status().inhibits).toEqual([]);
  });
});

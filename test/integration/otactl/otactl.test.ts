/**
 * The built otactl spawned as a real process against a real otad process (fake steps, real API).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRealOtad, type RealOtad } from '../api/real-otad.js';
import { READ_TOKEN, waitFor } from '../api/harness.js';
import { REPO_ROOT } from '../../support/otad-process.js';
import { spawnOtactl } from './otactl-process.js';

const FIXTURE = join(REPO_ROOT, 'test/fixtures/replay/committed-run.json');

let d: RealOtad;

const otactlProcess = (args: string[], env: Record<string, string> = {}) => spawnOtactl(['--config', d.sandbox.configPath, ...args], { OTA_TOKEN_FILE: d.tokensFile, ...env });

const otactl = (args: string[], env: Record<string, string> = {}) => otactlProcess(args, env).done;

beforeAll(async () => {
  d = await startRealOtad({ fake: { offerVersion: '2.0.0', delayMs: { check: 300, backup: 200, stage: 200 } } });
});
afterAll(async () => d?.stop());

describe('otactl against a running otad', () => {
  it('shows the status readably and as JSON', async () => {
    const r = await otactl(['status']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^robot-ai: idle/m);
    expect(r.stdout).toContain('allowed now: CHECK_NOW');
    const j = await otactl(['--json', 'status']);
    expect(JSON.parse(j.stdout).products[0]).toMatchObject({ product: 'robot-ai', state: 'idle' });
  });

  it('exits 3 with the current state when an event is not allowed now, and 2 on a usage error', async () => {
    const r = await otactl(['update-now']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('API_EVENT_NOT_ALLOWED');
    expect(r.stderr).toContain('current state: idle');
    expect((await otactl(['frobnicate'])).code).toBe(2);
    expect((await otactl(['check', 'vacuum'])).code).toBe(2);
  });

  it('exits 4 when the token is refused or has only the read scope', async () => {
    const wrong = join(d.sandbox.dir, 'wrong-token');
    writeFileSync(wrong, 'wrong-token-0123456789\n', { mode: 0o600 });
    const r = await otactl(['status'], { OTA_TOKEN_FILE: wrong });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('API_UNAUTHORIZED');
    const read = join(d.sandbox.dir, 'read-token');
    writeFileSync(read, `${READ_TOKEN}\n`, { mode: 0o600 });
    expect((await otactl(['status'], { OTA_TOKEN_FILE: read })).code).toBe(0);
    const refused = await otactl(['check'], { OTA_TOKEN_FILE: read });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('API_FORBIDDEN');
  });

  it('watches a whole run live, with its current state first, notifications and transitions, until the awaited state; then exports it and replays it offline', async () => {
    const watchOffer = otactlProcess(['watch', '--until', 'preCheck', '--timeout', '30s']);
    await waitFor(() => watchOffer.err().includes('watching otad'), 'watch to connect', 20_000);
    await waitFor(() => /robot-ai: idle/.test(watchOffer.out()), 'the current state in watch', 20_000);
    const check = await otactl(['check', 'robot-ai']);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/robot-ai: CHECK_NOW accepted; now checking \(run \S+\)/);
    const runId = /\(run (\S+)\)/.exec(check.stdout)?.[1] as string;
    await waitFor(() => watchOffer.out().includes('checking → awaitingChoice'), 'the offer in watch', 20_000);
    // The notification follows its transition on the stream; it may be a moment behind.
    await waitFor(() => watchOffer.out().includes('update-available 2.0.0'), 'the update-available notification in watch', 20_000);

    const watchRun = otactlProcess(['watch', '--until', 'idle', '--timeout', '30s']);
    await waitFor(() => /robot-ai: awaitingChoice\s+installed \S+\s+offered 2\.0\.0/.test(watchRun.out()), 'the current state in the second watch', 20_000);
    expect((await otactl(['update-now'])).code).toBe(0);
    const offered = await watchOffer.done;
    expect(offered.code).toBe(0);
    expect(offered.stdout.split('\n')[0]).toMatch(/robot-ai: idle/);
    for (const step of ['idle → checking', 'checking → awaitingChoice', 'awaitingChoice → preCheck']) expect(offered.stdout).toContain(step);
    expect(offered.stdout).not.toContain('preCheck → backup');
    const w = await watchRun.done;
    expect(w.code).toBe(0);
    expect(w.stdout.split('\n')[0]).toMatch(/robot-ai: awaitingChoice/);
    for (const step of ['awaitingChoice → preCheck', 'backup → staging', 'apply → validate', 'commit → idle']) expect(w.stdout).toContain(step);

    const history = await otactl(['history']);
    expect(history.stdout).toContain(runId);
    expect(history.stdout).toContain('committed');

    const file = join(d.sandbox.dir, 'run.json');
    const exp = await otactl(['export', runId, '-o', file]);
    expect(exp.code).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).run.runId).toBe(runId);
    const replay = await otactl(['replay', file]);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('same state sequence');

    const tampered = JSON.parse(readFileSync(file, 'utf8'));
    tampered.transitions[1].event.output.result.available = false;
    writeFileSync(file, JSON.stringify(tampered));
    const diverged = await otactl(['replay', file]);
    expect(diverged.code).toBe(1);
    expect(diverged.stdout).toContain('DIVERGED at transition 2');
  });

  it('streams the envelopes as JSON lines with --json', async () => {
    const watch = otactlProcess(['--json', 'watch', '--until', 'scheduled', '--timeout', '30s']);
    await waitFor(() => watch.err().includes('watching otad'), 'watch to connect', 20_000);
    await otactl(['check']);
    await waitFor(() => watch.out().includes('"awaitingChoice"'), 'awaitingChoice', 20_000);
    await otactl(['schedule']);
    const w = await watch.done;
    expect(w.code).toBe(0);
    const envelopes = w.stdout.trim().split('\n').map((l) => JSON.parse(l) as { v: number; type: string });
    expect(envelopes.every((e) => e.v === 1)).toBe(true);
    expect(envelopes.at(-1)).toMatchObject({ type: 'transition', payload: { to: 'scheduled' } });
    expect((await otactl(['cancel'])).code).toBe(0);
  });

  it('holds and releases an inhibit, acknowledges a release and tails the logs', async () => {
    const hold = await otactl(['inhibit', 'hold', 'robot-ai.mission', '--reason', 'on a delivery', '--duration', '30m']);
    expect(hold.code).toBe(0);
    expect(hold.stdout).toContain('inhibit held by robot-ai.mission until');
    expect((await otactl(['status'])).stdout).toContain('inhibit: held by robot-ai.mission');
    expect((await otactl(['inhibit', 'release', 'robot-ai.mission'])).code).toBe(0);
    expect((await otactl(['inhibit', 'release', 'robot-ai.mission'])).code).toBe(2);
    expect((await otactl(['ack', 'robot-ai'])).code).toBe(0);
    const logs = await otactl(['logs', '--contains', 'inhibit', '--limit', '5']);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('inhibit');
  });

  it('replays the committed robot fixture without a daemon', async () => {
    const r = await otactl(['--json', 'replay', FIXTURE]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).divergence).toBeNull();
  });
});

describe('otactl without a daemon', () => {
  it('exits 5 when the daemon is unreachable; status still shows the saved state, says so on stderr and exits 5 too', async () => {
    const url = 'http://127.0.0.1:9';
    const r = await otactl(['--url', url, 'check']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('not reachable');
    const s = await otactl(['--url', url, 'status']);
    expect(s.code).toBe(5);
    expect(s.stderr).toContain('otad is not running or not reachable');
    expect(s.stdout).toContain('saved state (otad not reachable)');
    expect(s.stdout).toMatch(/robot-ai: (idle|scheduled)/);
  });
});

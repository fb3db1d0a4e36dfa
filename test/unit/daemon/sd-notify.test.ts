import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createSdNotifier, formatProductStatus, watchdogIntervalMs } from '../../../src/daemon/sd-notify.js';

class RecordingTransport {
  readonly sent: string[] = [];
  send(state: string): void {
    this.sent.push(state);
  }
}

describe('sd_notify messages', () => {
  let now = 0;
  let t: RecordingTransport;
  beforeEach(() => {
    vi.useFakeTimers();
    now = 10_000;
    t = new RecordingTransport();
  });
  afterEach(() => vi.useRealTimers());
  const make = (env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '@x' }) =>
    createSdNotifier({ env, pid: 42, transport: () => t, now: () => now, monotonicUsec: () => 123n, statusIntervalMs: 1000 });

  it('says nothing without NOTIFY_SOCKET and never builds the transport', () => {
    const n = createSdNotifier({ env: {}, pid: 42, transport: () => { throw new Error('built'); } });
    n.ready('x');
    n.status('y');
    n.stopping();
    expect(n.enabled).toBe(false);
  });

  it('sends the first status at once and folds changes within the window into the latest one', () => {
    const n = make();
    n.status('a: idle');
    n.status('a: checking');
    n.status('a: downloading');
    expect(t.sent).toEqual(['STATUS=a: idle']);
    now += 1000;
    vi.advanceTimersByTime(1000);
    expect(t.sent).toEqual(['STATUS=a: idle', 'STATUS=a: downloading']);
  });

  it('does not repeat an unchanged status, and a status cannot inject an assignment', () => {
    const n = make();
    n.ready('a: idle');
    now += 5000;
    n.status('a: idle');
    n.status('a: x\nREADY=1');
    expect(t.sent).toEqual(['READY=1\nSTATUS=a: idle', 'STATUS=a: x READY=1']);
  });

  it('sends RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload needs', () => {
    make().reloading();
    expect(t.sent).toEqual(['RELOADING=1\nMONOTONIC_USEC=123']);
  });

  it('pings the watchdog at half of WATCHDOG_USEC, only when WATCHDOG_PID is unset or ours', () => {
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).toBe(30_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).toBe(30_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '7' }, 42)).toBeNull();
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }, 42)).toBeNull();
    const n = make({ NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '2000000' });
    n.startWatchdog();
    vi.advanceTimersByTime(2000);
    expect(t.sent).toEqual(['WATCHDOG=1', 'WATCHDOG=1', 'WATCHDOG=1']);
    n.close();
    vi.advanceTimersByTime(5000);
    expect(t.sent).toHaveLength(3);
  });

  it('names each product with its state', () => {
    expect(formatProductStatus([{ product: 'robot-ai', state: 'idle' }, { product: 'nav', state: 'downloading' }])).toBe('robot-ai: idle, nav: downloading');
    expect(formatProductStatus([])).toBe('no products configured');
  });
});

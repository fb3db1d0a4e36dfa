/**
 * Talking to the service manager with the sd_notify(3) protocol (Type=notify): READY=1 once every
 * product is restored and the interfaces listen, STATUS= with each product's state, WATCHDOG=1
 * from the main loop, RELOADING=1 / READY=1 around a reload and STOPPING=1 on shutdown.
 *
 * Without NOTIFY_SOCKET (a shell, a test, another service manager) every call does nothing.
 */
import { createRequire } from 'node:module';

/** Sends one datagram of newline-separated assignments to $NOTIFY_SOCKET. */
export interface NotifyTransport {
  send(state: string): void;
}

/**
 * Node's dgram has no AF_UNIX datagram sockets, so the datagram needs native code. We use
 * `sd-notify`, a thin wrapper (kept under the systemd organisation) around libsystemd's own
 * sd_notify(): the socket address (abstract names starting with '@', their exact address length),
 * the credentials and any future change of the protocol are systemd's code, not ours. `unix-dgram`
 * was the other candidate: it copies the socket path with strncpy and passes sizeof(sockaddr_un)
 * as the address length, so it cannot reach an abstract socket at all. The cost is a build-time
 * dependency on libsystemd-dev (.ci/run installs it); libsystemd0 is on every Ubuntu system. It is
 * an optional dependency: `npm ci` on a machine without libsystemd-dev skips it (the demo and the
 * tools need no systemd), and otad under systemd without it says so in an error (onError below).
 */
export function libsystemdTransport(): NotifyTransport {
  const require = createRequire(import.meta.url);
  const binding = require('sd-notify') as { sendState(state: string): void };
  return { send: (state) => binding.sendState(state) };
}

export interface SdNotifierOptions {
  env: NodeJS.ProcessEnv;
  pid: number;
  /** Built on first use, so a process without NOTIFY_SOCKET never loads the native module. */
  transport?: () => NotifyTransport;
  /** CLOCK_MONOTONIC in microseconds, as RELOADING=1 needs it (systemd >= 253). */
  monotonicUsec?: () => bigint;
  now?: () => number;
  /** At most one STATUS= per this many milliseconds; the latest text is sent when the window ends. */
  statusIntervalMs?: number;
  /** Told once when datagrams cannot be sent (the native module is missing); notifying then stops. */
  onError?: (error: Error) => void;
}

export interface SdNotifier {
  readonly enabled: boolean;
  /** The watchdog interval in ms systemd asked us to ping at (WatchdogSec=), or null. */
  readonly watchdogMs: number | null;
  ready(status?: string): void;
  status(text: string): void;
  reloading(): void;
  stopping(): void;
  /** Pings WATCHDOG=1 at half the interval from a main-loop timer: a stuck event loop stops the pings. */
  startWatchdog(): void;
  close(): void;
}

/** Whether WATCHDOG_USEC is meant for this process (WATCHDOG_PID unset or ours), and its interval in ms. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = Number(env['WATCHDOG_USEC']);
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  const forPid = env['WATCHDOG_PID'];
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return null;
  return usec / 1000;
}

const hrtimeUsec = () => process.hrtime.bigint() / 1000n; // libuv's hrtime is CLOCK_MONOTONIC on Linux

export function createSdNotifier(opts: SdNotifierOptions): SdNotifier {
  const socket = opts.env['NOTIFY_SOCKET'];
  const enabled = typeof socket === 'string' && socket.length > 0;
  const watchdogMs = enabled ? watchdogIntervalMs(opts.env, opts.pid) : null;
  const now = opts.now ?? Date.now;
  const monotonicUsec = opts.monotonicUsec ?? hrtimeUsec;
  const statusIntervalMs = opts.statusIntervalMs ?? 1000;
  let transport: NotifyTransport | null = null;
  let lastStatusAt = -Infinity;
  let lastStatus: string | null = null;
  let pendingStatus: string | null = null;
  let statusTimer: NodeJS.Timeout | null = null;
  let watchdogTimer: NodeJS.Timeout | null = null;

  let broken = false;
  const send = (...assignments: string[]) => {
    if (!enabled || broken) return;
    try {
      transport ??= (opts.transport ?? libsystemdTransport)();
      // A newline inside a value would start a new assignment: a status text cannot inject READY=1.
      transport.send(assignments.map((a) => a.replace(/\n/g, ' ')).join('\n'));
    } catch (error) {
      broken = true;
      opts.onError?.(error as Error);
    }
  };

  const sendStatus = (text: string) => {
    lastStatusAt = now();
    lastStatus = text;
    send(`STATUS=${text}`);
  };

  return {
    enabled,
    watchdogMs,
    ready(status) {
      if (status !== undefined) {
        lastStatusAt = now();
        lastStatus = status;
        send('READY=1', `STATUS=${status}`);
      } else send('READY=1');
    },
    status(text) {
      if (!enabled || text === lastStatus) return;
      const wait = lastStatusAt + statusIntervalMs - now();
      if (wait <= 0 && statusTimer === null) return sendStatus(text);
      pendingStatus = text;
      statusTimer ??= setTimeout(() => {
        statusTimer = null;
        const next = pendingStatus;
        pendingStatus = null;
        if (next !== null && next !== lastStatus) sendStatus(next);
      }, Math.max(wait, 0));
      statusTimer.unref();
    },
    reloading() {
      send('RELOADING=1', `MONOTONIC_USEC=${monotonicUsec()}`);
    },
    stopping() {
      send('STOPPING=1');
    },
    startWatchdog() {
      if (watchdogMs === null || watchdogTimer !== null) return;
      send('WATCHDOG=1');
      watchdogTimer = setInterval(() => send('WATCHDOG=1'), Math.max(1, Math.floor(watchdogMs / 2)));
      watchdogTimer.unref();
    },
    close() {
      if (watchdogTimer) clearInterval(watchdogTimer);
      if (statusTimer) clearTimeout(statusTimer);
      watchdogTimer = statusTimer = null;
    },
  };
}

/** "robot-ai: idle, nav-stack: downloading": what `systemctl status otad` shows. */
export function formatProductStatus(products: Array<{ product: string; state: string }>): string {
  return products.length === 0 ? 'no products configured' : products.map((p) => `${p.product}: ${p.state}`).join(', ');
}

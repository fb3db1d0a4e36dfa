/**
 * systemd-timedated (org.freedesktop.timedate1 at /org/freedesktop/timedate1) as the source of the
 * clock gate: its NTPSynchronized property says whether the kernel considers the clock synchronised.
 * The property does not emit PropertiesChanged (systemd marks it EmitsChangedSignal=false), so it is
 * read with Properties.Get at every pre-check.
 */
import { call, withBus } from './upower.js';
import type dbus from 'dbus-next';

export const TIMEDATE_NAME = 'org.freedesktop.timedate1';
export const TIMEDATE_PATH = '/org/freedesktop/timedate1';
export const TIMEDATE_INTERFACE = 'org.freedesktop.timedate1';

export interface TimedatedPort {
  /** NTPSynchronized as timedated reports it, and when otad read it. */
  ntpSynchronized(): Promise<{ value: boolean; readAt: number }>;
}

export function createTimedatedAdapter(options: { bus: string; timeoutMs: number; now?: () => number }): TimedatedPort {
  const now = options.now ?? Date.now;
  return {
    ntpSynchronized: () =>
      withBus(options.bus, options.timeoutMs, 'timedated', async (bus) => {
        const [v] = (await call(bus, TIMEDATE_NAME, TIMEDATE_PATH, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [TIMEDATE_INTERFACE, 'NTPSynchronized'])) as [dbus.Variant];
        if (typeof v?.value !== 'boolean') throw new Error(`timedated answered NTPSynchronized with ${v?.signature ?? 'nothing'}, not a boolean`);
        return { value: v.value, readAt: now() };
      }),
  };
}

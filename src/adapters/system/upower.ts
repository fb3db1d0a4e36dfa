/**
 * UPower (org.freedesktop.UPower on the system bus) as a source of the robot-state gates: the
 * daemon's OnBattery, the composite battery GetDisplayDevice names
 * (/org/freedesktop/UPower/devices/DisplayDevice: Percentage, State, IsPresent, UpdateTime) and the
 * line power devices EnumerateDevices lists (Type 1, Online). Each read opens
 * its own bus connection and closes it, so a restarted UPower or bus never leaves a dead one behind.
 */
import '../../api/usocket-compat.js';
import dbus from 'dbus-next';

export const UPOWER_NAME = 'org.freedesktop.UPower';
export const UPOWER_PATH = '/org/freedesktop/UPower';
export const UPOWER_INTERFACE = 'org.freedesktop.UPower';
export const UPOWER_DEVICE_INTERFACE = 'org.freedesktop.UPower.Device';
export const DISPLAY_DEVICE_PATH = '/org/freedesktop/UPower/devices/DisplayDevice';

/** org.freedesktop.UPower.Device Type values used here. */
export const UPOWER_TYPE = { unknown: 0, linePower: 1, battery: 2 } as const;
/** org.freedesktop.UPower.Device State values. */
export const UPOWER_STATE = { unknown: 0, charging: 1, discharging: 2, empty: 3, fullyCharged: 4, pendingCharge: 5, pendingDischarge: 6 } as const;
const STATE_NAMES = ['unknown', 'charging', 'discharging', 'empty', 'fully-charged', 'pending-charge', 'pending-discharge'];
export const upowerStateName = (s: number): string => STATE_NAMES[s] ?? `state ${s}`;

export interface UPowerDevice {
  path: string;
  type: number;
  online: boolean;
  powerSupply: boolean;
  isPresent: boolean;
  percentage: number;
  state: number;
  /** Seconds since the epoch when UPower last read the device; 0: not set. */
  updateTime: number;
}

export interface UPowerSnapshot {
  /** When otad read it (ms). */
  readAt: number;
  /** The daemon's OnBattery: true when the system runs on battery, not on external power. */
  onBattery: boolean;
  display: UPowerDevice;
  devices: UPowerDevice[];
}

export interface UPowerPort {
  read(): Promise<UPowerSnapshot>;
}

/** 'system', 'session' or a D-Bus address. */
export function connectBus(bus: string): dbus.MessageBus {
  if (bus === 'system') return dbus.systemBus();
  if (bus === 'session') return dbus.sessionBus();
  return dbus.sessionBus({ busAddress: bus });
}

/** Run `fn` on a fresh connection to `bus`, within `timeoutMs`, and close the connection. */
export async function withBus<T>(bus: string, timeoutMs: number, what: string, fn: (b: dbus.MessageBus) => Promise<T>): Promise<T> {
  let conn: dbus.MessageBus | null = null;
  let timer: NodeJS.Timeout | undefined;
  let failed: (e: Error) => void = () => {};
  const broken = new Promise<never>((_, reject) => (failed = reject));
  try {
    conn = connectBus(bus);
    conn.on('error', (e: unknown) => failed(new Error(`${what}: the bus connection failed (${e instanceof Error ? e.message : String(e)})`)));
    return await Promise.race([
      fn(conn),
      broken,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    try {
      conn?.disconnect();
    } catch {
      // already closed
    }
  }
}

export async function call(bus: dbus.MessageBus, destination: string, path: string, iface: string, member: string, signature = '', body: unknown[] = []): Promise<unknown[]> {
  const reply = await bus.call(new dbus.Message({ destination, path, interface: iface, member, ...(signature ? { signature, body } : {}) }));
  return (reply?.body ?? []) as unknown[];
}

/** A D-Bus error as one line: "org.freedesktop.DBus.Error.ServiceUnknown: The name … was not provided". */
export function describeDbusError(error: unknown): string {
  if (error instanceof dbus.DBusError) return `${error.type}: ${error.text}`;
  return error instanceof Error ? error.message : String(error);
}

function unwrap(props: Record<string, dbus.Variant>, name: string): unknown {
  return props[name]?.value;
}

function device(path: string, props: Record<string, dbus.Variant>): UPowerDevice {
  const num = (k: string) => {
    const v = unwrap(props, k);
    return typeof v === 'bigint' ? Number(v) : typeof v === 'number' ? v : 0;
  };
  return {
    path,
    type: num('Type'),
    online: unwrap(props, 'Online') === true,
    powerSupply: unwrap(props, 'PowerSupply') === true,
    isPresent: unwrap(props, 'IsPresent') === true,
    percentage: num('Percentage'),
    state: num('State'),
    updateTime: num('UpdateTime'),
  };
}

export function createUPowerAdapter(options: { bus: string; timeoutMs: number; now?: () => number }): UPowerPort {
  const now = options.now ?? Date.now;
  return {
    read: () =>
      withBus(options.bus, options.timeoutMs, 'UPower', async (bus) => {
        const getAll = async (path: string) => (await call(bus, UPOWER_NAME, path, 'org.freedesktop.DBus.Properties', 'GetAll', 's', [UPOWER_DEVICE_INTERFACE]))[0] as Record<string, dbus.Variant>;
        const [onBattery] = (await call(bus, UPOWER_NAME, UPOWER_PATH, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [UPOWER_INTERFACE, 'OnBattery'])) as [dbus.Variant];
        if (typeof onBattery?.value !== 'boolean') throw new Error(`UPower answered OnBattery with ${onBattery?.signature ?? 'nothing'}, not a boolean`);
        const [displayPath] = (await call(bus, UPOWER_NAME, UPOWER_PATH, UPOWER_INTERFACE, 'GetDisplayDevice')) as [string];
        const [paths] = (await call(bus, UPOWER_NAME, UPOWER_PATH, UPOWER_INTERFACE, 'EnumerateDevices')) as [string[]];
        const display = device(displayPath || DISPLAY_DEVICE_PATH, await getAll(displayPath || DISPLAY_DEVICE_PATH));
        const devices = await Promise.all((paths ?? []).map(async (p) => device(p, await getAll(p))));
        return { readAt: now(), onBattery: onBattery.value, display, devices };
      }),
  };
}

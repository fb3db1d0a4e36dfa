/**
 * Stand-ins for UPower and systemd-timedated on a private dbus-daemon (UPower needs hardware and
 * timedated needs systemd as PID 1, neither of which a test machine has). Each implements the real
 * service's bus name, object paths, interface and property names and types:
 *
 * - org.freedesktop.UPower at /org/freedesktop/UPower (interface org.freedesktop.UPower: OnBattery b,
 *   DaemonVersion s, LidIsClosed b, LidIsPresent b; EnumerateDevices → ao, GetDisplayDevice → o,
 *   GetCriticalAction → s), the display device /org/freedesktop/UPower/devices/DisplayDevice and
 *   the devices EnumerateDevices lists (line_power_AC, battery_BAT0), each with
 *   org.freedesktop.UPower.Device (Type u, PowerSupply b, Online b, IsPresent b, Percentage d,
 *   State u, EnergyRate d, TimeToEmpty x, TimeToFull x, UpdateTime t, NativePath s, IsRechargeable b).
 *   Changes emit org.freedesktop.DBus.Properties.PropertiesChanged, as UPower does.
 * - org.freedesktop.timedate1 at /org/freedesktop/timedate1 (interface org.freedesktop.timedate1:
 *   Timezone s, LocalRTC b, CanNTP b, NTP b, NTPSynchronized b, TimeUSec t, RTCTimeUSec t).
 *   NTPSynchronized, TimeUSec and RTCTimeUSec emit no PropertiesChanged here, as in systemd (which
 *   marks them EmitsChangedSignal=false; dbus-next cannot write that annotation): a client must
 *   read them each time.
 *
 * State values are UPower's enum: 0 unknown, 1 charging, 2 discharging, 3 empty, 4 fully charged,
 * 5 pending charge, 6 pending discharge. Type: 1 line power, 2 battery.
 */
import '../../src/api/usocket-compat.js';
import dbus from 'dbus-next';

const READ = dbus.interface.ACCESS_READ;
const prop = (signature: string): { signature: string; access: dbus.PropertyAccess } => ({ signature, access: READ });

export const UPOWER_DEVICES = {
  display: '/org/freedesktop/UPower/devices/DisplayDevice',
  linePower: '/org/freedesktop/UPower/devices/line_power_AC',
  battery: '/org/freedesktop/UPower/devices/battery_BAT0',
} as const;

export interface DeviceProps {
  Type: number;
  PowerSupply: boolean;
  Online: boolean;
  IsPresent: boolean;
  Percentage: number;
  State: number;
  EnergyRate: number;
  TimeToEmpty: bigint;
  TimeToFull: bigint;
  UpdateTime: bigint;
  NativePath: string;
  IsRechargeable: boolean;
}

class DeviceObject extends dbus.interface.Interface {
  constructor(public props: DeviceProps) {
    super('org.freedesktop.UPower.Device');
  }
  get Type() { return this.props.Type; }
  get PowerSupply() { return this.props.PowerSupply; }
  get Online() { return this.props.Online; }
  get IsPresent() { return this.props.IsPresent; }
  get Percentage() { return this.props.Percentage; }
  get State() { return this.props.State; }
  get EnergyRate() { return this.props.EnergyRate; }
  get TimeToEmpty() { return this.props.TimeToEmpty; }
  get TimeToFull() { return this.props.TimeToFull; }
  get UpdateTime() { return this.props.UpdateTime; }
  get NativePath() { return this.props.NativePath; }
  get IsRechargeable() { return this.props.IsRechargeable; }
  Refresh() {}
}
DeviceObject.configureMembers({
  properties: {
    Type: prop('u'),
    PowerSupply: prop('b'),
    Online: prop('b'),
    IsPresent: prop('b'),
    Percentage: prop('d'),
    State: prop('u'),
    EnergyRate: prop('d'),
    TimeToEmpty: prop('x'),
    TimeToFull: prop('x'),
    UpdateTime: prop('t'),
    NativePath: prop('s'),
    IsRechargeable: prop('b'),
  },
  methods: { Refresh: {} },
});

class UPowerObject extends dbus.interface.Interface {
  onBattery = false;
  constructor() {
    super('org.freedesktop.UPower');
  }
  get OnBattery() { return this.onBattery; }
  get DaemonVersion() { return '1.90.2'; }
  get LidIsClosed() { return false; }
  get LidIsPresent() { return false; }
  EnumerateDevices() { return [UPOWER_DEVICES.linePower, UPOWER_DEVICES.battery]; }
  GetDisplayDevice() { return UPOWER_DEVICES.display; }
  GetCriticalAction() { return 'PowerOff'; }
}
UPowerObject.configureMembers({
  properties: { OnBattery: prop('b'), DaemonVersion: prop('s'), LidIsClosed: prop('b'), LidIsPresent: prop('b') },
  methods: { EnumerateDevices: { outSignature: 'ao' }, GetDisplayDevice: { outSignature: 'o' }, GetCriticalAction: { outSignature: 's' } },
});

/** What a test sets: the power situation, turned into the daemon's and the devices' properties. */
export interface PowerState {
  /** External power connected (line power Online, OnBattery false). */
  pluggedIn: boolean;
  percentage: number;
  /** UPower's State enum (1 charging, 2 discharging, 4 fully charged, …). */
  state: number;
  /** Seconds since the epoch of the last battery update (default: now). */
  updateTime?: number;
  batteryPresent?: boolean;
}

export interface FakeUPower {
  set(state: PowerState): void;
  /** Give up the bus name and close the connection (UPower gone). */
  stop(): Promise<void>;
}

const ENERGY_FULL_WH = 60;

function deviceProps(type: 'display' | 'line' | 'battery', s: PowerState): DeviceProps {
  const now = BigInt(Math.floor((s.updateTime ?? Date.now() / 1000)));
  const charging = s.state === 1;
  const discharging = s.state === 2;
  const rate = charging || discharging ? 12.5 : 0;
  const energy = (s.percentage / 100) * ENERGY_FULL_WH;
  if (type === 'line') {
    return { Type: 1, PowerSupply: true, Online: s.pluggedIn, IsPresent: false, Percentage: 0, State: 0, EnergyRate: 0, TimeToEmpty: 0n, TimeToFull: 0n, UpdateTime: now, NativePath: 'AC', IsRechargeable: false };
  }
  return {
    Type: 2,
    PowerSupply: true,
    Online: false,
    IsPresent: s.batteryPresent ?? true,
    Percentage: s.percentage,
    State: s.state,
    EnergyRate: rate,
    TimeToEmpty: discharging ? BigInt(Math.round((energy / rate) * 3600)) : 0n,
    TimeToFull: charging ? BigInt(Math.round(((ENERGY_FULL_WH - energy) / rate) * 3600)) : 0n,
    UpdateTime: now,
    NativePath: type === 'display' ? '' : 'BAT0',
    IsRechargeable: true,
  };
}

function emitChanged(obj: dbus.interface.Interface, before: object, after: object): void {
  const changed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(after)) if ((before as Record<string, unknown>)[k] !== v) changed[k] = v;
  if (Object.keys(changed).length > 0) dbus.interface.Interface.emitPropertiesChanged(obj, changed, []);
}

/** Start the UPower stand-in on the bus at `address` with the given power situation. */
export async function startFakeUPower(address: string, initial: PowerState): Promise<FakeUPower> {
  const bus = dbus.sessionBus({ busAddress: address });
  const daemon = new UPowerObject();
  daemon.onBattery = !initial.pluggedIn;
  const devices = {
    display: new DeviceObject(deviceProps('display', initial)),
    line: new DeviceObject(deviceProps('line', initial)),
    battery: new DeviceObject(deviceProps('battery', initial)),
  };
  bus.export('/org/freedesktop/UPower', daemon);
  bus.export(UPOWER_DEVICES.display, devices.display);
  bus.export(UPOWER_DEVICES.linePower, devices.line);
  bus.export(UPOWER_DEVICES.battery, devices.battery);
  await bus.requestName('org.freedesktop.UPower', dbus.NameFlag.DO_NOT_QUEUE);
  return {
    set(s) {
      for (const [kind, obj] of [['display', devices.display], ['line', devices.line], ['battery', devices.battery]] as const) {
        const before = obj.props;
        obj.props = deviceProps(kind, s);
        emitChanged(obj, before, obj.props);
      }
      const was = { OnBattery: daemon.onBattery };
      daemon.onBattery = !s.pluggedIn;
      emitChanged(daemon, was, { OnBattery: daemon.onBattery });
    },
    async stop() {
      await bus.releaseName('org.freedesktop.UPower').catch(() => {});
      bus.disconnect();
    },
  };
}

class TimedateObject extends dbus.interface.Interface {
  ntpSynchronized = true;
  ntp = true;
  timezone = 'Etc/UTC';
  constructor() {
    super('org.freedesktop.timedate1');
  }
  get Timezone() { return this.timezone; }
  get LocalRTC() { return false; }
  get CanNTP() { return true; }
  get NTP() { return this.ntp; }
  get NTPSynchronized() { return this.ntpSynchronized; }
  get TimeUSec() { return BigInt(Date.now()) * 1000n; }
  get RTCTimeUSec() { return BigInt(Date.now()) * 1000n; }
}
TimedateObject.configureMembers({
  properties: {
    Timezone: prop('s'),
    LocalRTC: prop('b'),
    CanNTP: prop('b'),
    NTP: prop('b'),
    NTPSynchronized: prop('b'),
    TimeUSec: prop('t'),
    RTCTimeUSec: prop('t'),
  },
});

export interface FakeTimedated {
  setSynchronized(value: boolean): void;
  stop(): Promise<void>;
}

/** Start the timedated stand-in on the bus at `address`. */
export async function startFakeTimedated(address: string, synchronized: boolean): Promise<FakeTimedated> {
  const bus = dbus.sessionBus({ busAddress: address });
  const obj = new TimedateObject();
  obj.ntpSynchronized = synchronized;
  bus.export('/org/freedesktop/timedate1', obj);
  await bus.requestName('org.freedesktop.timedate1', dbus.NameFlag.DO_NOT_QUEUE);
  return {
    setSynchronized(value) {
      // No PropertiesChanged: timedated emits none for NTPSynchronized.
      obj.ntpSynchronized = value;
    },
    async stop() {
      await bus.releaseName('org.freedesktop.timedate1').catch(() => {});
      bus.disconnect();
    },
  };
}

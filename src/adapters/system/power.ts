/**
 * The robot's power supply, read through systeminformation. A machine without a battery runs on
 * mains power: that is reported as `hasBattery: false`, never as an empty battery.
 */
import { battery } from 'systeminformation';

export interface BatteryReading {
  hasBattery: boolean;
  /** 0-100. */
  percent: number;
  isCharging: boolean;
  /** External power is connected (a full battery on its dock is not "charging" but is powered). */
  acConnected: boolean;
}

export interface PowerPort {
  battery(): Promise<BatteryReading>;
}

export function createPowerAdapter(read: typeof battery = battery): PowerPort {
  return {
    async battery() {
      const b = await read();
      return { hasBattery: b.hasBattery, percent: b.percent, isCharging: b.isCharging, acConnected: b.acConnected };
    },
  };
}

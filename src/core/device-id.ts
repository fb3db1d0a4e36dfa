/**
 * Device identity: derived once from the MAC address of the first physical network interface,
 * then stored 0600 in the state folder so it stays stable across restarts and hardware changes.
 * Fallbacks when there is no physical interface: /etc/machine-id, then a generated UUID.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { atomicWriteFile } from './atomic-file.js';

export interface NetInterfaceInfo {
  iface: string;
  mac: string;
  internal: boolean;
  virtual: boolean;
  type?: string;
}

export interface DeviceIdSources {
  /** Interfaces as systeminformation reports them. */
  interfaces(): Promise<NetInterfaceInfo[]>;
  machineId(): string | null;
  uuid(): string;
}

export interface DeviceIdentity {
  deviceId: string;
  source: 'stored' | 'mac' | 'machine-id' | 'generated';
}

const VIRTUAL_NAME = /^(lo|docker|veth|br-|virbr|vnet|tun|tap|wg|zt|tailscale|dummy|bond|team)/;

export function firstPhysicalMac(interfaces: NetInterfaceInfo[]): string | null {
  const candidates = interfaces
    .filter((i) => !i.internal && !i.virtual && !VIRTUAL_NAME.test(i.iface))
    .filter((i) => /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(i.mac) && i.mac !== '00:00:00:00:00:00')
    .sort((a, b) => a.iface.localeCompare(b.iface));
  return candidates[0]?.mac.toLowerCase() ?? null;
}

export async function loadDeviceIdentity(file: string, sources: DeviceIdSources): Promise<DeviceIdentity> {
  try {
    const stored = readFileSync(file, 'utf8').trim();
    if (/^[a-z0-9-]{8,128}$/.test(stored)) return { deviceId: stored, source: 'stored' };
  } catch {
    // Not stored yet (or unreadable): derive it.
  }
  let identity: DeviceIdentity;
  const mac = firstPhysicalMac(await sources.interfaces().catch(() => []));
  if (mac) {
    identity = { deviceId: `mac-${mac.replace(/:/g, '')}`, source: 'mac' };
  } else {
    const machineId = sources.machineId();
    identity = machineId
      ? { deviceId: `mid-${createHash('sha256').update(machineId).digest('hex').slice(0, 24)}`, source: 'machine-id' }
      : { deviceId: `gen-${sources.uuid()}`, source: 'generated' };
  }
  await atomicWriteFile(file, identity.deviceId + '\n', { mode: 0o600 });
  return identity;
}

export function systemDeviceIdSources(): DeviceIdSources {
  return {
    async interfaces() {
      const si = await import('systeminformation');
      const list = await si.networkInterfaces();
      const arr = Array.isArray(list) ? list : [list];
      return arr.map((i) => ({ iface: i.iface, mac: i.mac, internal: i.internal, virtual: i.virtual, type: i.type }));
    },
    machineId() {
      try {
        const id = readFileSync('/etc/machine-id', 'utf8').trim();
        return id || null;
      } catch {
        return null;
      }
    },
    uuid: () => randomUUID(),
  };
}

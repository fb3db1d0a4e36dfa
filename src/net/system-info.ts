/**
 * The small port the network monitor needs from the host, and its real adapter over
 * systeminformation. Tests use FakeSystemInfo (fake-system-info.ts) instead.
 */
import { networkGatewayDefault, networkInterfaces } from 'systeminformation';
import type { Systeminformation } from 'systeminformation';

export interface HostInterface {
  name: string;
  mac: string;
  ip4: string;
  ip6: string;
  /** 'wired', 'wireless', or '' when unknown. */
  type: string;
  /** 'up', 'down', 'unknown'… as the kernel reports it. */
  operstate: string;
  /** Loopback and the like: never a way to the update server. */
  internal: boolean;
}

export interface SystemInfoPort {
  networkInterfaces(): Promise<HostInterface[]>;
  /** The default gateway address, or null when there is no default route. */
  networkGatewayDefault(): Promise<string | null>;
}

export function createSystemInfoAdapter(): SystemInfoPort {
  return {
    async networkInterfaces() {
      // Without arguments systeminformation returns an array; be tolerant of the single-object form.
      const raw: unknown = await networkInterfaces();
      const list = (Array.isArray(raw) ? raw : [raw]) as Systeminformation.NetworkInterfacesData[];
      return list.map((i) => ({
        name: i.iface,
        mac: i.mac,
        ip4: i.ip4,
        ip6: i.ip6,
        type: i.type,
        operstate: i.operstate,
        internal: i.internal,
      }));
    },
    async networkGatewayDefault() {
      const gateway = await networkGatewayDefault();
      return gateway === '' ? null : gateway;
    },
  };
}

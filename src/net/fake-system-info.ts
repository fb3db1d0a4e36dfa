/** A hand-written SystemInfoPort for tests and the demo: interfaces and gateway set by hand. */
import type { HostInterface, SystemInfoPort } from './system-info.js';

export class FakeSystemInfo implements SystemInfoPort {
  interfaces: HostInterface[];
  gateway: string | null;
  calls = 0;

  constructor(state: { interfaces?: HostInterface[]; gateway?: string | null } = {}) {
    this.interfaces = state.interfaces ?? [FakeSystemInfo.ethernet()];
    this.gateway = state.gateway === undefined ? '192.0.2.1' : state.gateway;
  }

  /** A wired interface that is up with an address (documentation range, never contacted). */
  static ethernet(overrides: Partial<HostInterface> = {}): HostInterface {
    return { name: 'eth0', mac: '02:00:00:00:00:01', ip4: '192.0.2.10', ip6: '', type: 'wired', operstate: 'up', internal: false, ...overrides };
  }

  /** The robot loses its link: interface down, no address, no default route. */
  goOffline(): void {
    this.interfaces = this.interfaces.map((i) => (i.internal ? i : { ...i, operstate: 'down', ip4: '', ip6: '' }));
    this.gateway = null;
  }

  goOnline(): void {
    this.interfaces = [FakeSystemInfo.ethernet()];
    this.gateway = '192.0.2.1';
  }

  async networkInterfaces(): Promise<HostInterface[]> {
    this.calls++;
    return this.interfaces.map((i) => ({ ...i }));
  }

  async networkGatewayDefault(): Promise<string | null> {
    return this.gateway;
  }
}

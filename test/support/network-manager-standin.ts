/**
 * A stand-in for NetworkManager's metered reading, for tests: NetworkManager itself cannot run
 * here, so this serves the part of its D-Bus API otad reads, with NetworkManager's own names and
 * types, on a real (private) dbus-daemon:
 *
 * - bus name `org.freedesktop.NetworkManager`, object `/org/freedesktop/NetworkManager`,
 *   interface `org.freedesktop.NetworkManager`;
 * - read-only property `Metered`, type `u` (NMMetered: 0 UNKNOWN, 1 YES, 2 NO, 3 GUESS_YES,
 *   4 GUESS_NO), read with `org.freedesktop.DBus.Properties.Get`/`GetAll`;
 * - `org.freedesktop.DBus.Properties.PropertiesChanged` on that object whenever `set` changes it,
 *   as NetworkManager emits it.
 *
 * `set` is the test's hand on the link (a robot moving from Wi-Fi to a mobile modem); nothing in
 * otad can write the property.
 */
import dbus from 'dbus-next';

export const NM_METERED_UNKNOWN = 0;
export const NM_METERED_YES = 1;
export const NM_METERED_NO = 2;
export const NM_METERED_GUESS_YES = 3;
export const NM_METERED_GUESS_NO = 4;

class NetworkManagerInterface extends dbus.interface.Interface {
  metered: number;
  constructor(metered: number) {
    super('org.freedesktop.NetworkManager');
    this.metered = metered;
  }
  get Metered(): number {
    return this.metered;
  }
}

NetworkManagerInterface.configureMembers({
  properties: {
    Metered: { signature: 'u', access: dbus.interface.ACCESS_READ },
  },
});

export interface NetworkManagerStandIn {
  /** The value served now. */
  readonly metered: number;
  /** Change Metered and emit PropertiesChanged (no signal when the value is the same). */
  set(metered: number): void;
  close(): void;
}

export async function startNetworkManagerStandIn(busAddress: string, metered: number): Promise<NetworkManagerStandIn> {
  const bus = dbus.sessionBus({ busAddress });
  const iface = new NetworkManagerInterface(metered);
  bus.export('/org/freedesktop/NetworkManager', iface);
  const reply = await bus.requestName('org.freedesktop.NetworkManager', dbus.NameFlag.DO_NOT_QUEUE);
  if (reply !== dbus.RequestNameReply.PRIMARY_OWNER) {
    bus.disconnect();
    throw new Error(`could not own org.freedesktop.NetworkManager on ${busAddress} (reply ${reply})`);
  }
  return {
    get metered() {
      return iface.metered;
    },
    set(next) {
      if (next === iface.metered) return;
      iface.metered = next;
      dbus.interface.Interface.emitPropertiesChanged(iface, { Metered: next }, []);
    },
    close() {
      bus.disconnect();
    },
  };
}

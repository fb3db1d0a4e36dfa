// A robot app that takes an otad inhibitor over D-Bus and holds its file descriptor:
//   node inhibit-holder.mjs <bus address> <who> <why>
// prints "held <fd>" once otad answered; on the line "drop" (stdin) it closes the fd and prints
// "dropped"; it stays alive until killed or until stdin ends.
import { closeSync } from 'node:fs';
import util from 'node:util';

// dbus-next passes fds through usocket 0.3.0, which calls util.isError (removed in Node 23): an app
// on Node 24 gives it back first, as otad does (docs/dbus.md).
if (typeof util.isError !== 'function') util.isError = (value) => value instanceof Error;
const { default: dbus } = await import('dbus-next');

const [address, who, why] = process.argv.slice(2);
const bus = dbus.sessionBus({ busAddress: address, negotiateUnixFd: true });
const manager = (await bus.getProxyObject('io.otad.Daemon1', '/io/otad/Daemon1')).getInterface('io.otad.Manager1');
let fd;
try {
  fd = await manager.Inhibit(who, why, 'block');
} catch (error) {
  process.stdout.write(`error ${error.type ?? ''} ${error.text ?? error.message}\n`);
  process.exit(1);
}
process.stdout.write(`held ${fd}\n`);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (line) => {
  if (line.includes('drop') && fd !== undefined) {
    closeSync(fd);
    fd = undefined;
    process.stdout.write('dropped\n');
  }
});
process.stdin.on('end', () => process.exit(0));

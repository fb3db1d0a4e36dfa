/**
 * The file descriptors of D-Bus inhibitors, as logind hands them out: otad makes a connected pair
 * of Unix stream sockets, passes one end to the caller and keeps the other. The inhibitor lasts
 * exactly as long as some process holds the caller's end open: when the holder closes it, exits or
 * is SIGKILLed, the kernel closes it and otad's end reads end-of-file at once.
 *
 * Node has no socketpair(), so the pair comes from a listening socket in the abstract namespace
 * (no file to clean up) that otad connects to itself; a connection must first present the random
 * token of a pending pair, anything else is dropped.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface SocketPair {
  /** The caller's end, to pass over D-Bus: close `theirs` once the message carrying it is sent. */
  fd: number;
  theirs: net.Socket;
  /** otad's end: 'close' fires when every copy of the caller's end is closed. */
  ours: net.Socket;
}

export interface SocketPairFactory {
  pair(): Promise<SocketPair>;
  close(): void;
}

const TOKEN_BYTES = 16;

export async function createSocketPairFactory(): Promise<SocketPairFactory> {
  const address = `\0otad-inhibit-${process.pid}-${randomBytes(8).toString('hex')}`;
  const pending = new Map<string, (s: net.Socket) => void>();
  const server = net.createServer((sock) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), 5000);
    sock.on('error', () => sock.destroy());
    const onData = (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < TOKEN_BYTES) return;
      clearTimeout(timer);
      sock.off('data', onData);
      const take = pending.get(got.subarray(0, TOKEN_BYTES).toString('hex'));
      if (!take) {
        sock.destroy();
        return;
      }
      pending.delete(got.subarray(0, TOKEN_BYTES).toString('hex'));
      take(sock);
    };
    sock.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address, () => resolve());
  });
  server.unref();

  return {
    async pair() {
      const token = randomBytes(TOKEN_BYTES);
      const key = token.toString('hex');
      const oursP = new Promise<net.Socket>((resolve) => pending.set(key, resolve));
      const theirs = net.connect(address);
      theirs.on('error', () => theirs.destroy());
      await new Promise<void>((resolve, reject) => {
        theirs.once('connect', () => resolve());
        theirs.once('error', reject);
      });
      theirs.write(token);
      let timer: NodeJS.Timeout | undefined;
      const ours = await Promise.race([
        oursP,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('the inhibitor socket pair did not connect')), 5000);
        }),
      ]).finally(() => {
        clearTimeout(timer);
        pending.delete(key);
      });
      // What the holder writes is read and dropped; only the end matters.
      ours.on('data', () => undefined);
      ours.on('error', () => ours.destroy());
      const fd = (theirs as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== 'number' || fd < 0) {
        theirs.destroy();
        ours.destroy();
        throw new Error('this platform does not expose socket file descriptors');
      }
      return { fd, theirs, ours };
    },
    close() {
      server.close();
    },
  };
}

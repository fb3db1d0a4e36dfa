/**
 * dbus-next carries file descriptors over its optional native module usocket. usocket 0.3.0 calls
 * `util.isError`, which Node 23 removed: under Node 24 (the runtime otad ships) every write on a bus
 * connection that uses it throws, so the connection never completes its handshake. Importing this
 * module gives `util.isError` its old meaning back, once per process, before any bus connection.
 * Every process that uses dbus-next must import it first (otad does through src/api/dbus.ts, the
 * tests through vitest's setup file).
 */
import { createRequire } from 'node:module';

const nodeUtil = createRequire(import.meta.url)('node:util') as { isError?: (value: unknown) => boolean };
if (typeof nodeUtil.isError !== 'function') nodeUtil.isError = (value: unknown) => value instanceof Error;

export {};

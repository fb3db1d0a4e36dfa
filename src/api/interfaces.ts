/**
 * The interfaces otad starts beside the daemon (REST, Socket.IO, D-Bus), as configuration enables.
 */
import type { InterfaceStarter } from '../daemon/main.js';

export const defaultInterfaces: InterfaceStarter = async () => [];

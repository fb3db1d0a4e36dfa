/** The version of otad, in a module of its own so a client can print it without loading the daemon. */
export const OTAD_VERSION = '0.1.0';

/** The version otad reports (status, user agent, CLIs, OpenAPI). */
export const OTAD_VERSION = '0.1.0';

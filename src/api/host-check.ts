/**
 * Host and Origin allow-lists. A browser page on a foreign site can reach 127.0.0.1 through DNS
 * rebinding, but its requests then carry the foreign name in Host; and a page's WebSocket carries
 * its Origin. Both are refused unless listed.
 */

/** The host part of a Host header, lower-cased, without the port ("[::1]:7780" → "[::1]"). */
export function hostOf(header: string | undefined): string | null {
  if (!header) return null;
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? null : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

export function isAllowedHost(header: string | undefined, allowed: readonly string[]): boolean {
  const host = hostOf(header);
  return host !== null && allowed.some((a) => a.toLowerCase() === host);
}

/**
 * No Origin (a non-browser client such as otactl or robot-ai) is allowed: only browsers send one,
 * and a browser always does on a cross-site WebSocket. A listed origin is allowed exactly.
 */
export function isAllowedOrigin(origin: string | undefined, allowed: readonly string[]): boolean {
  if (origin === undefined) return true;
  const o = origin.trim().toLowerCase().replace(/\/$/, '');
  return allowed.some((a) => a.toLowerCase().replace(/\/$/, '') === o);
}

/** A browser page served by otad itself (same scheme-less host:port as the request) is same-origin. */
export function isSameOrigin(origin: string | undefined, hostHeader: string | undefined): boolean {
  if (origin === undefined || hostHeader === undefined) return false;
  try {
    return new URL(origin).host.toLowerCase() === hostHeader.trim().toLowerCase();
  } catch {
    return false;
  }
}

/**
 * Host and Origin allow-lists. A browser page on a foreign site can reach 127.0.0.1 through DNS
 * rebinding, but its requests then carry the foreign name in Host; and a page's WebSocket carries
 * its Origin. Both are refused unless listed.
 */

/**
 * The host part of a Host header, lower-cased, without the port ("[::1]:7780" → "[::1]"), or null
 * when the header is not a plain authority. The header is parsed as an authority by the WHATWG URL
 * parser, and then must be exactly host[:port]: "localhost:80@evil" (userinfo), "a/b", "a?b",
 * "a#b", an empty or non-numeric port, or anything the parser would normalise differently is
 * refused instead of being cut at the first ':'.
 */
export function hostOf(header: string | undefined): string | null {
  if (!header) return null;
  const h = header.trim().toLowerCase();
  if (h === '' || /[@/\\?#\s]/.test(h)) return null;
  let url: URL;
  try {
    url = new URL(`http://${h}`);
  } catch {
    return null;
  }
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') return null;
  // The parser drops the default port 80 and normalises the host; the header must say the same.
  const port = url.port === '' && /:80$/.test(h) ? '80' : url.port;
  if (`${url.hostname}${port === '' ? '' : `:${port}`}` !== h) return null;
  return url.hostname;
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

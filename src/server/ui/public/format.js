// Pure formatting for the fleet page: no DOM, no clock of its own (the caller passes `now`).

/** "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago"; "in 30 s" for a time ahead. */
export function relativeTime(/** @type {number} */ at, /** @type {number} */ now) {
  const seconds = Math.round((now - at) / 1000);
  const ahead = seconds < 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 5) return 'just now';
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86_400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86_400)} d`;
  return ahead ? `in ${text}` : `${text} ago`;
}

/** Local date and time, to the second, for titles and "last refreshed". */
export function clockTime(/** @type {number} */ at) {
  return new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

export function dateTime(/** @type {number} */ at) {
  return new Date(at).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

/** A share as a percentage with at most one decimal: 0.075 → "7.5 %" (a no-break space: never split). */
export function percent(/** @type {number} */ part, /** @type {number} */ whole) {
  if (whole <= 0) return '0\u00a0%';
  const p = Math.round((part / whole) * 1000) / 10;
  return `${p}\u00a0%`;
}

/** A short span to read at a glance: "0.8 ms", "95 ms", "1.17 s" (a no-break space: never split). */
export function millis(/** @type {number} */ ms) {
  if (ms < 10) return `${ms.toFixed(1)}\u00a0ms`;
  if (ms < 1000) return `${Math.round(ms)}\u00a0ms`;
  return `${(ms / 1000).toFixed(2)}\u00a0s`;
}

/** "30m", "1h 30m", "45 s" from milliseconds. */
export function duration(/** @type {number} */ ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

/**
 * What a batch selects, in words: { percent: 5 } → "5 % of the fleet", { tags: { site: "lab" } } →
 * "site=lab", { all: true } → "all remaining devices".
 * @param {any} selector
 */
export function selectorLabel(selector) {
  if (selector === null || typeof selector !== 'object') return String(selector ?? '');
  if (typeof selector.percent === 'number') return `${selector.percent}\u00a0% of the fleet`;
  if (selector.tags && typeof selector.tags === 'object') {
    return Object.entries(selector.tags)
      .map(([k, v]) => `${k}=${v}`)
      .join(', ');
  }
  if (selector.all === true) return 'all remaining devices';
  return JSON.stringify(selector);
}

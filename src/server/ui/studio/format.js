// Pure formatting for the publisher studio: no DOM.

/** 1536 → "1.5 KiB"; exact bytes below 1 KiB. */
export function formatBytes(/** @type {number} */ n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
}

/** 0o755 → "0755". */
export function modeText(/** @type {number} */ mode) {
  return `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

/**
 * Entries as the rows of an indented tree, parents before children. Entries arrive with full
 * paths (`bin/run`), in any order; the row's name is its last segment.
 * @param {Array<{ path: string, type: string, size: number, mode: number, linkname?: string }>} entries
 */
export function treeRows(entries) {
  return [...entries]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((e) => {
      const parts = e.path.split('/');
      return { ...e, depth: parts.length - 1, name: parts[parts.length - 1] };
    });
}

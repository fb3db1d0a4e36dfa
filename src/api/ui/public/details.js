// Release details in collapsible sections (<details>), the release notes rendered from Markdown
// (marked, then DOMPurify: notes come from the update server and must not bring script or
// markup that acts), and the search that filters them together with the history tables.
import { marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.mjs';
import { formatBytes, formatDuration, formatTime, h } from './render.js';

/**
 * Markdown to a sanitized fragment. Images are dropped (the page's policy loads none from
 * elsewhere), as are style attributes; links open in the same tab without a referrer.
 * @param {string} text
 */
export function renderMarkdown(text) {
  const html = /** @type {string} */ (marked.parse(text, { async: false, gfm: true }));
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ['img', 'style', 'form', 'input', 'button'], FORBID_ATTR: ['style'] });
  for (const a of fragment.querySelectorAll('a')) a.setAttribute('rel', 'noreferrer noopener');
  return fragment;
}

/** @param {Array<[string, any]>} rows */
function facts(rows) {
  return h('dl', { class: 'facts' }, ...rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

const code = (/** @type {string} */ t) => h('code', { class: 'hash' }, t);

/**
 * The sections, from the offer when there is one, else from the release the last successful
 * check verified (GET /api/v1/repositories latestRelease), plus the repository's signatures.
 * @param {any} p the product's status @param {any | null} repo its RepositoryStatus
 * @returns {Array<{ key: string, title: string, open: boolean, body: Node }>}
 */
export function releaseSections(p, repo) {
  const offer = p.offer;
  const latest = repo?.latestRelease ?? null;
  const version = offer?.version ?? latest?.version ?? null;
  if (version === null) return [];
  const released = offer ? formatTime(offer.releasedAt) : latest ? formatTime(Date.parse(latest.releasedAt)) : '—';
  const onlyOffered = 'known only while a release is offered';
  /** @type {Array<{ key: string, title: string, open: boolean, body: Node }>} */
  const sections = [
    {
      key: 'overview',
      title: `Release ${version}${offer ? ' (offered)' : ' (latest verified)'}`,
      open: true,
      body: facts([
        ['Version', version],
        ['Channel', offer?.channel ?? latest?.channel ?? '—'],
        ['Released', released],
        ['Package size', offer?.package ? formatBytes(offer.package.length) : onlyOffered],
        ['Download', offer?.package ? `${formatBytes(offer.downloadBytes ?? offer.package.length)} (${offer.delta ? `delta from ${offer.delta.fromVersion}` : 'full package'})` : onlyOffered],
        ['Manifest size', offer?.manifest ? formatBytes(offer.manifest.length) : onlyOffered],
      ]),
    },
    {
      key: 'checksums',
      title: 'Checksums',
      open: false,
      body: offer
        ? facts([
            [`Package ${offer.package.name.split('/').pop()}`, code(`sha256:${offer.package.sha256}`)],
            [`Manifest ${offer.manifest.name.split('/').pop()}`, code(`sha256:${offer.manifest.sha256}`)],
          ])
        : h('p', null, `Checksums are ${onlyOffered}.`),
    },
    {
      key: 'requirements',
      title: 'Requirements',
      open: false,
      body: offer
        ? facts([['Free disk where it is staged', offer.minFreeBytes ? formatBytes(offer.minFreeBytes) : 'none stated (the pre-check uses its own minimum)']])
        : h('p', null, `Requirements are ${onlyOffered}.`),
    },
    {
      key: 'compatibility',
      title: 'Compatibility',
      open: false,
      body: offer
        ? facts([
            ['Installs over', offer.minFromVersion ? `${offer.minFromVersion} or later` : 'any installed version'],
            ['Installed now', p.installedVersion ?? 'none'],
          ])
        : h('p', null, `Compatibility is ${onlyOffered}.`),
    },
    {
      key: 'rollout',
      title: 'Rollout',
      open: false,
      body: offer
        ? facts([
            ['Devices taking part', `${offer.rolloutPercent ?? 100}%`],
            ['Must be installed by', offer.installBy ? formatTime(offer.installBy) : 'no deadline'],
            ['May be deferred for', offer.maxDeferralMs ? formatDuration(offer.maxDeferralMs) : 'no limit stated'],
          ])
        : h('p', null, `Rollout is ${onlyOffered}.`),
    },
    {
      key: 'signatures',
      title: 'Signed by, metadata expiry',
      open: false,
      body:
        repo && repo.metadata.length > 0
          ? h(
              'div',
              null,
              facts([['Metadata expires', formatTime(repo.metadataExpiresAt)]]),
              h(
                'table',
                { class: 'roles' },
                h('caption', null, 'Trusted metadata otad holds'),
                h('thead', null, h('tr', null, ...['Role', 'Version', 'Signed by (key ids)', 'Expires'].map((t) => h('th', { scope: 'col' }, t)))),
                h(
                  'tbody',
                  null,
                  ...repo.metadata.map((m) => h('tr', null, h('th', { scope: 'row' }, m.role), h('td', null, String(m.version ?? '—')), h('td', { class: 'hash' }, m.signedBy.join(', ') || '—'), h('td', null, formatTime(m.expiresAt)))),
                ),
              ),
            )
          : h('p', null, 'otad holds no trusted metadata for this repository yet (before the first successful check).'),
    },
  ];
  const notes = offer?.notes ?? latest?.notes ?? null;
  sections.push({
    key: 'notes',
    title: `Release notes ${version}`,
    open: true,
    body: notes ? h('div', { class: 'notes-text markdown' }, renderMarkdown(notes)) : h('p', null, 'No release notes.'),
  });
  return sections;
}

/**
 * The search box and the sections. With a query, sections that do not contain it are hidden and
 * those that do are opened; the history and releases tables keep only matching rows.
 * @param {any} p @param {any | null} repo
 * @param {{ query: string, isOpen: (key: string, byDefault: boolean) => boolean, onToggle: (key: string, open: boolean) => void, onSearch: (q: string) => void }} view
 */
export function renderDetails(p, repo, view) {
  const id = `product-${p.product}`;
  const sections = releaseSections(p, repo);
  const q = view.query.trim().toLowerCase();
  const nodes = sections.map((s) => {
    const d = h('details', { class: 'section', 'data-section': s.key }, h('summary', null, s.title), s.body);
    const matches = q === '' || `${s.title} ${d.textContent}`.toLowerCase().includes(q);
    d.open = q !== '' ? matches : view.isOpen(s.key, s.open);
    d.hidden = !matches;
    d.addEventListener('toggle', () => {
      if (q === '') view.onToggle(s.key, d.open);
    });
    return d;
  });
  const search = h('input', {
    id: `${id}-search`,
    type: 'search',
    'data-focus': 'search',
    value: view.query,
    autocomplete: 'off',
    oninput: (/** @type {Event} */ e) => view.onSearch(/** @type {HTMLInputElement} */ (e.target).value),
  });
  return h(
    'div',
    { class: 'details' },
    h('div', { class: 'search' }, h('label', { for: `${id}-search` }, `Search the release details and history of ${p.product}`), search),
    h('p', { class: 'search-count', 'aria-live': 'polite' }),
    ...nodes,
    sections.length === 0 ? h('p', { class: 'muted' }, 'No release known yet: check for updates to see one.') : null,
  );
}

/**
 * Hides the rows of the product's tables that do not contain the query; returns how many matched.
 * @param {HTMLElement} section @param {string} query
 */
export function filterTables(section, query) {
  const q = query.trim().toLowerCase();
  let matched = 0;
  for (const row of section.querySelectorAll('table.history tbody tr, table.releases tbody tr')) {
    const hit = q === '' || (row.textContent ?? '').toLowerCase().includes(q);
    /** @type {HTMLElement} */ (row).hidden = !hit;
    if (hit) matched++;
  }
  for (const d of section.querySelectorAll('details.section')) if (!(/** @type {HTMLElement} */ (d).hidden) && q !== '') matched++;
  return matched;
}

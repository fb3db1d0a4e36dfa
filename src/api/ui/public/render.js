// DOM building for the dashboard. Every datum is set as text (textContent), never as HTML: release
// notes and log lines come from outside and must not become markup.

/** Buttons by event, in display order; the two choices first. */
export const CHOICE_EVENTS = [
  ['UPDATE_NOW', 'Update now'],
  ['SCHEDULE_3AM', 'Update at 3 AM'],
];
export const ACTION_EVENTS = [
  ['CHECK_NOW', 'Check now'],
  ['CONFIRM', 'Confirm'],
  ['CANCEL', 'Cancel'],
  ['ROLLBACK', 'Rollback'],
  ['RESET', 'Reset'],
];

/** States in which a run works on the robot (progress is shown only then). */
const WORKING = new Set(['preCheck', 'backup', 'staging', 'apply', 'validate', 'commit', 'rollback']);

const STATE_LABELS = {
  idle: 'Idle',
  checking: 'Checking for updates',
  awaitingChoice: 'Update available: waiting for a choice',
  confirming: 'Waiting for confirmation',
  scheduled: 'Scheduled',
  preCheck: 'Checking the robot is ready',
  preCheckWaiting: 'Waiting until the robot is ready',
  backup: 'Backing up',
  staging: 'Downloading and unpacking',
  apply: 'Installing',
  validate: 'Checking the new version',
  commit: 'Finishing',
  rollback: 'Rolling back',
  failed: 'Failed',
};

/**
 * h('p', { class: 'x' }, 'text', child): a small element builder. Attributes starting with "on" are
 * listeners; `hidden`/`disabled` are booleans; everything else is set with setAttribute.
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'hidden' || k === 'disabled') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

/** @param {number | null | undefined} ms */
export function formatTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  const pad = (/** @type {number} */ n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** @param {number} n */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** @param {string} state */
export function stateLabel(state) {
  return STATE_LABELS[state] ?? state;
}

/** "CODE (HTTP 409): message" — what an operator reads for an error of the API. */
export function describeError(error) {
  if (error && typeof error.code === 'string') {
    const where = error.status ? ` (HTTP ${error.status})` : '';
    return `${error.code}${where}: ${error.message}`;
  }
  return String(error?.message ?? error);
}

/** The steps that report progress, in run order, with what the page calls them. */
export const PROGRESS_STEPS = [
  ['backup', 'Backup'],
  ['download', 'Download'],
  ['extract', 'Extraction'],
  ['probation', 'Probation'],
];
/** Which steps can be under way in each state: a bar shows only for the current one. */
const STEPS_OF_STATE = { backup: ['backup'], staging: ['download', 'extract'], validate: ['probation'] };

/** @param {{ step: string, bytes: number, total: number | null, rateBps: number | null, etaMs: number | null, message?: string, probation?: any }} p */
export function describeProgress(p) {
  const name = PROGRESS_STEPS.find(([s]) => s === p.step)?.[1] ?? p.step;
  const eta = p.etaMs ? `, about ${formatDuration(p.etaMs)} left` : '';
  if (p.step === 'probation') {
    // bytes/total are the elapsed and whole window, in ms.
    const of = p.total ? `${formatDuration(p.bytes)} of ${formatDuration(p.total)}` : formatDuration(p.bytes);
    return `${name}: ${p.message ?? ''}${p.message ? ' — ' : ''}${of}${eta}`;
  }
  if (p.step === 'extract' && p.total && p.bytes === 0 && p.message) return `${name}: ${p.message} (${formatBytes(p.total)})`;
  const pct = p.total ? ` (${Math.floor((100 * p.bytes) / p.total)}%)` : '';
  const amount = p.total ? `${formatBytes(p.bytes)} of ${formatBytes(p.total)}${pct}` : formatBytes(p.bytes);
  const rate = p.rateBps ? `, ${formatBytes(p.rateBps)}/s` : '';
  return `${name}: ${amount}${rate}${eta}${p.message ? ` — ${p.message}` : ''}`;
}

/**
 * The run's steps: finished ones as one line each, the current one with its bar. A step's bar
 * is shown only while the product is in a state that step belongs to, so a finished extraction
 * never lingers into the probation or a rollback.
 * @param {any} p the product's status @param {Map<string, any>} steps the run's latest message per step
 */
export function renderProgress(p, steps) {
  const id = `product-${p.product}`;
  const current = STEPS_OF_STATE[p.state] ?? [];
  const seen = PROGRESS_STEPS.filter(([s]) => steps.has(s));
  if (seen.length === 0) return null;
  // The current step: the last one seen that belongs to the state (download, then extract).
  const active = [...seen].reverse().find(([s]) => current.includes(s))?.[0] ?? null;
  const items = seen.map(([s, name]) => {
    const m = steps.get(s);
    if (s === active) {
      return h(
        'li',
        { class: 'step step-active', 'data-step': s },
        h('label', { for: `${id}-progress-${s}` }, describeProgress(m)),
        h('progress', { id: `${id}-progress-${s}`, max: m.total ?? null, value: m.total ? Math.min(m.bytes, m.total) : null }),
        s === 'probation' && m.probation?.checks?.length > 0 &&
          h('ul', { class: 'checks', 'aria-label': 'Health checks' }, ...m.probation.checks.map((c) => h('li', { 'data-ok': c.ok === true ? 'yes' : c.ok === false ? 'no' : 'unknown' }, `${c.ok === true ? '✓ passed' : c.ok === false ? '✗ failing' : '… not yet'}: ${c.name}`))),
      );
    }
    const done = active === null || PROGRESS_STEPS.findIndex(([x]) => x === s) < PROGRESS_STEPS.findIndex(([x]) => x === active);
    const summary = s === 'probation' ? m.message ?? '' : m.total ? formatBytes(m.total) : formatBytes(m.bytes);
    return h('li', { class: 'step step-done', 'data-step': s }, `${done ? '✓' : '•'} ${name}${done ? ' done' : ''}${summary ? ` (${summary})` : ''}`);
  });
  return h('div', { class: 'progress' }, h('h3', null, 'Progress'), h('ol', { class: 'steps' }, ...items));
}

/**
 * The rollback buttons say where they go ("Roll back to 1.0.0"); a second one also marks the
 * release left bad. Without a target the daemon does not allow ROLLBACK, so no button shows.
 * @param {any} target the product's rollbackTarget (null: the daemon cannot tell)
 * @returns {Array<[string, string, { markBad?: boolean }]>}
 */
export function rollbackButtons(target) {
  const to = target ? (target.version === null ? 'Undo the first install' : `Roll back to ${target.version}`) : 'Roll back';
  const buttons = /** @type {Array<[string, string, { markBad?: boolean }]>} */ ([['ROLLBACK', to, {}]]);
  if (target?.leaves) buttons.push(['ROLLBACK', `${to} and mark ${target.leaves} bad`, { markBad: true }]);
  return buttons;
}

/**
 * One product's section.
 * @param {any} p the product's status (GET /api/v1/status)
 * @param {{ runs: any[], releases: any | null, details?: Node | null, definition?: any, repository?: any, source?: any, draft?: { channel: string, repository: string } | null, onDraft?: (product: string, draft: { channel: string, repository: string }) => void, onSelectSource?: (product: string, choice: { channel: string, repository: string }) => void, compact?: boolean, steps: Map<string, any> | null, canControl: boolean, busy: boolean, offline: boolean, onEvent: (product: string, type: string, label: string, extra?: { markBad?: boolean }) => void, onUnmark: (product: string, version: string) => void }} view
 */
export function renderProduct(p, view) {
  const id = `product-${p.product}`;
  const allowed = new Set(p.allowedEvents);
  const button = ([type, label, extra = {}]) =>
    h(
      'button',
      { type: 'button', 'data-event': extra.markBad ? `${type}:markBad` : type, class: type === 'UPDATE_NOW' ? 'primary' : null, disabled: view.busy || view.offline, title: view.offline ? 'otad is not connected' : null, onclick: () => view.onEvent(p.product, type, label, extra) },
      label,
    );
  const choices = view.canControl ? CHOICE_EVENTS.filter(([t]) => allowed.has(t)) : [];
  const actions = view.canControl
    ? ACTION_EVENTS.filter(([t]) => allowed.has(t)).flatMap(([t, label]) => (t === 'ROLLBACK' ? rollbackButtons(p.rollbackTarget) : [[t, label]]))
    : [];
  const progress = view.steps && WORKING.has(p.state) ? renderProgress(p, view.steps) : null;

  const facts = [
    ['State', h('span', { class: 'state', 'data-state': p.state }, stateLabel(p.state))],
    ['Installed version', p.installedVersion ?? 'none'],
    ['Offered version', p.offeredVersion ?? '—'],
  ];
  // A deadline stays in the run's context after its state; it is shown only while it applies.
  if (p.state === 'awaitingChoice' && p.deadlines?.choice) facts.push(['Choose before', formatTime(p.deadlines.choice)]);
  if (p.state === 'scheduled' && p.deadlines?.scheduledAt) facts.push(['Scheduled for', formatTime(p.deadlines.scheduledAt)]);
  if (p.state === 'confirming' && p.deadlines?.confirm) facts.push(['Confirm before', formatTime(p.deadlines.confirm)]);
  if (p.lastCheckAt) facts.push(['Last check', formatTime(p.lastCheckAt)]);
  if (p.lastOutcome) facts.push(['Last outcome', p.lastOutcome]);
  // How otad picked this product up at its last start, when it had to decide something.
  if (p.recovery && p.recovery.action !== 'fresh') facts.push(['At last start', `${p.recovery.action} (${p.recovery.reason})`]);

  return h(
    'section',
    { class: 'product', id, 'aria-labelledby': `${id}-title`, 'data-product': p.product },
    h('div', { class: 'product-head' }, h('h2', { id: `${id}-title` }, p.product), view.definition ? renderTypeIndicator(view.definition) : null, view.compact ? h('a', { href: `#product/${encodeURIComponent(p.product)}`, class: 'open-product' }, `Open ${p.product}`) : null),
    h('dl', { class: 'facts' }, ...facts.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    choices.length > 0 && h('div', { class: 'buttons choices', role: 'group', 'aria-label': `Update choice for ${p.product}` }, ...choices.map(button)),
    actions.length > 0 && h('div', { class: 'buttons', role: 'group', 'aria-label': `Actions for ${p.product}` }, ...actions.map(button)),
    progress,
    // A check has no measurable progress: an indeterminate bar while it runs.
    p.state === 'checking' &&
      h('div', { class: 'progress checking' }, h('label', { for: `${id}-checking` }, 'Checking for updates…'), h('progress', { id: `${id}-checking` })),
    p.state === 'preCheckWaiting' &&
      p.preCheckReasons?.length > 0 &&
      h(
        'div',
        { class: 'precheck' },
        h('h3', null, 'Waiting for the robot to be ready'),
        h('ul', null, ...p.preCheckReasons.map((r) => h('li', null, h('code', null, r.code), ` ${r.message}`))),
        p.deadlines?.preCheckRetryAt && h('p', null, `Next try at ${formatTime(p.deadlines.preCheckRetryAt)}`),
      ),
    p.error && h('p', { class: 'run-error' }, `Last error: ${p.error.code}: ${p.error.message}`),
    view.repository ? renderServerStatus(view.repository, p, view) : null,
    !view.compact && (view.details ?? null),
    !view.compact && renderHistory(p.product, view.runs),
    !view.compact && view.releases && renderReleases(p.product, view.releases, view),
  );
}

/** @param {any} b a BadMark */
export function describeBadMark(b) {
  const who = b.by === 'operator' ? `by operator ${b.actor ?? '(unknown)'}` : b.by === 'automatic' ? `automatically by ${b.actor ?? 'otad'}` : 'by an earlier otad';
  return `Marked bad ${formatTime(b.at)} ${who}: ${b.reason}`;
}

/**
 * Every release known for the product (GET /api/v1/products/{product}/releases).
 * @param {string} product @param {any} history
 * @param {{ canControl: boolean, busy: boolean, offline: boolean, onUnmark: (product: string, version: string) => void }} view
 */
function renderReleases(product, history, view) {
  const caption = h('caption', null, `Releases of ${product}`);
  const rows = history.releases.map((r) => {
    const tags = [r.installed && 'installed', r.previous && 'rollback target', r.onDisk && 'on disk', r.backup && 'backup'].filter(Boolean).join(', ');
    return h(
      'tr',
      { 'data-release': r.version },
      h('th', { scope: 'row' }, r.version),
      h('td', null, tags || '—'),
      h(
        'td',
        { class: r.bad ? 'bad' : null },
        r.bad ? describeBadMark(r.bad) : 'not marked bad',
        r.bad &&
          view.canControl &&
          h('button', { type: 'button', 'data-event': `unmark:${r.version}`, disabled: view.busy || view.offline, onclick: () => view.onUnmark(product, r.version) }, `Unmark ${r.version}`),
      ),
    );
  });
  return h(
    'table',
    { class: 'releases' },
    caption,
    h('thead', null, h('tr', null, ...['Version', 'Status', 'Bad?'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, ...(rows.length ? rows : [h('tr', null, h('td', { colspan: '3' }, 'No releases known yet'))])),
  );
}

/** @param {string} product @param {any[]} runs */
function renderHistory(product, runs) {
  const caption = h('caption', null, `Last runs of ${product}`);
  if (runs.length === 0) return h('table', { class: 'history' }, caption, h('tbody', null, h('tr', null, h('td', null, 'No runs yet'))));
  return h(
    'table',
    { class: 'history' },
    caption,
    h('thead', null, h('tr', null, ...['Started', 'Kind', 'Version', 'Outcome'].map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      null,
      ...runs.map((r) =>
        h(
          'tr',
          { 'data-run': r.runId },
          h('td', null, formatTime(r.startedAt)),
          h('td', null, r.kind),
          h('td', null, `${r.fromVersion ?? 'none'} → ${r.toVersion ?? '—'}`),
          h('td', null, r.outcome ?? `running (${r.state})`, r.error ? ` — ${r.error.code}` : ''),
        ),
      ),
    ),
  );
}

/** @param {{ time: number, level: string, message: string, fields: Record<string, unknown> }} line */
export function renderLogLine(line) {
  const product = typeof line.fields?.product === 'string' ? `[${line.fields.product}] ` : '';
  return h('li', { class: `log-${line.level}`, 'data-level': line.level }, h('time', null, formatTime(line.time).slice(11)), ' ', h('span', { class: 'level' }, line.level.toUpperCase()), ` ${product}${line.message}`);
}

/** @param {number} ms */
export function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
}

/** Events that stop or restart the product's services, or commit to doing so: asked twice. */
export const CONFIRMED_EVENTS = new Set(['UPDATE_NOW', 'SCHEDULE_3AM', 'CONFIRM', 'ROLLBACK']);

/**
 * What an action will do, for its confirmation dialog: from the status (offer, rollback target)
 * and the product's definition (GET /api/v1/products). Null: the action needs no confirmation.
 * @param {any} p the product's status @param {any | null} def its definition
 * @param {string} type @param {string} label @param {{ markBad?: boolean }} extra
 * @returns {{ title: string, items: Array<[string, string]>, confirm: string } | null}
 */
export function confirmationFor(p, def, type, label, extra = {}) {
  if (!CONFIRMED_EVENTS.has(type)) return null;
  const services = def ? (def.services.length ? def.services.join(', ') : 'none configured') : 'unknown (product definition not loaded)';
  const probation = def
    ? `${formatDuration(def.probation.windowMs)}, health checks every ${formatDuration(def.probation.intervalMs)}; ${def.probation.failureThreshold} failed round${def.probation.failureThreshold === 1 ? '' : 's'} roll back` +
      (def.healthChecks.length ? ` (${def.healthChecks.map((c) => `${c.kind}: ${c.target}`).join('; ')})` : ' (no health checks configured)')
    : 'unknown';
  if (type === 'ROLLBACK') {
    const t = p.rollbackTarget;
    const to = t ? (t.version === null ? 'no version (the failed first install is undone)' : t.version) : 'the previous version';
    /** @type {Array<[string, string]>} */
    const items = [
      ['From', p.installedVersion ?? 'none'],
      ['To', to],
      ['How', t ? { 'previous-release': 'switch back to the release kept on disk', backup: 'restore the backup', 'undo-first-install': 'remove the first install' }[t.method] ?? t.method : '—'],
      ['Services that stop and restart', services],
      [
        'Afterwards',
        extra.markBad
          ? `${t?.leaves ?? p.installedVersion ?? 'the release left'} is marked bad and will not be offered again`
          : `${t?.leaves ?? p.installedVersion ?? 'the release left'} is not marked bad: a later check may offer it again`,
      ],
    ];
    return { title: `${label}?`, items, confirm: label };
  }
  const offer = p.offer;
  const version = offer?.version ?? p.offeredVersion ?? '?';
  const when = type === 'SCHEDULE_3AM' ? 'at 3 AM' : type === 'CONFIRM' ? 'now, as confirmed' : 'now';
  /** @type {Array<[string, string]>} */
  const items = [
    ['Install', `${p.product} ${version} ${when} (installed: ${p.installedVersion ?? 'none'})`],
    ['Backup first', def ? (def.backup.enabled ? `yes, of ${p.installedVersion ?? 'the current install'} (the last ${def.backup.keep} kept)` : 'no (backups are disabled for this product)') : 'unknown'],
    ['Download', offer?.package ? `${formatBytes(offer.package.length)} (${offer.package.name.split('/').pop()})` : 'unknown'],
    ['Services that stop and restart', services],
    ['Probation', probation],
  ];
  if (offer?.minFreeBytes) items.push(['Free disk needed', formatBytes(offer.minFreeBytes)]);
  items.push(['If it fails', 'otad rolls back to the installed version by itself']);
  return { title: `${label}: ${p.product} ${version}?`, items, confirm: label };
}

/**
 * The product type and, in a tooltip (on hover and on keyboard focus), the product's definition.
 * @param {any} def a ProductDefinition (GET /api/v1/products)
 */
export function renderTypeIndicator(def) {
  const id = `product-${def.product}-definition`;
  const list = (/** @type {string[]} */ xs, none) => (xs.length ? xs.join(', ') : none);
  return h(
    'span',
    { class: 'type-wrap' },
    h('span', { class: 'type-indicator', tabindex: '0', 'aria-describedby': id, 'data-type': def.type ?? '' }, def.type ? `Type: ${def.type}` : 'Type: not set'),
    h(
      'span',
      { role: 'tooltip', id, class: 'tooltip' },
      h('strong', null, `${def.product}${def.type ? ` (${def.type})` : ''}`),
      h(
        'dl',
        null,
        ...[
          ['Install path', def.installPath],
          ['Services', list(def.services, 'none')],
          ['Health checks', list(def.healthChecks.map((c) => `${c.kind}: ${c.target}`), 'none besides the version check')],
          ['Preserved paths', list(def.preservedPaths, 'none')],
          ['Channel', def.channel],
        ].flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
      ),
    ),
  );
}

/**
 * The product's update server as otad sees it: reachability and latency of otad's own probe,
 * the trusted metadata's expiry, the last successful check; and, where the configuration offers
 * more than one channel or repository, the control that switches them (PUT /api/v1/products/{p}/source).
 * @param {any} r a RepositoryStatus (GET /api/v1/repositories)
 * @param {any} [p] the product's status
 * @param {any} [view] renderProduct's view (source, draft, canControl, busy, offline, onDraft, onSelectSource)
 */
/** [data-reachable, text] of one of otad's probes. @param {any} r */
function reachOf(r) {
  return r.reachable === null
    ? ['unknown', 'not probed (no location configured)']
    : r.reachable
      ? ['yes', `reachable, ${r.latencyMs ?? '?'} ms${r.httpStatus ? ` (HTTP ${r.httpStatus})` : ''}`]
      : ['no', `unreachable${r.problem ? `: ${r.problem}` : ''}`];
}

export function renderServerStatus(r, p = null, view = {}) {
  const reach = reachOf(r);
  const expiresIn = r.metadataExpiresAt ? r.metadataExpiresAt - Date.now() : null;
  const src = view.source ?? null;
  // Only where there is a choice: which one is in force, and who made it.
  const multi = src !== null && (src.channels.length > 1 || src.repositories.length > 1);
  const chosen = !multi ? '' : src.selected ? ` (chosen ${formatTime(src.selected.at)}${src.selected.actor ? ` by ${src.selected.actor}` : ''})` : ' (as configured)';
  return h(
    'div',
    { class: 'server', 'data-reachable': reach[0] },
    h('h3', null, 'Update server'),
    h(
      'dl',
      { class: 'facts' },
      ...[
        ['Repository', `${multi && src.repositories.length > 1 ? `${r.repository}: ` : ''}${r.kind === 'local' ? 'local folder' : 'TUF'} ${r.location ?? '(not configured)'}`],
        ['Channel', `${r.channel}${chosen}`],
        ['Connection', h('span', { class: 'reach', 'data-reachable': reach[0] }, reach[1])],
        ['Probed', r.probedAt ? `${formatTime(r.probedAt)} by otad` : '—'],
        ['Metadata expires', r.metadataExpiresAt ? `${formatTime(r.metadataExpiresAt)}${expiresIn !== null && expiresIn < 0 ? ' (expired)' : ''}` : 'no trusted metadata yet'],
        ['Last successful check', formatTime(r.lastSuccessfulCheckAt)],
      ].flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
    ),
    src && p ? renderSourceChoice(src, p, view, r.choices ?? []) : null,
  );
}

/**
 * Where the configuration offers more than one channel or repository: a select for each and a
 * Switch button (a control token, an idle product, a connected page, a policy that allows it).
 * @param {any} src a ProductSource (GET /api/v1/products/{product}/source) @param {any} p the product's status
 */
export function renderSourceChoice(src, p, view, probes = []) {
  if (src.channels.length < 2 && src.repositories.length < 2) return null;
  const id = `product-${p.product}-source`;
  const draft = view.draft ?? { channel: src.channel, repository: src.repository };
  const why = !src.switchAllowed
    ? 'Switching is forbidden by configuration (allowSourceSwitch: false).'
    : !view.canControl
      ? 'This token can read only.'
      : p.state !== 'idle'
        ? 'Switching waits until the product is idle: a run keeps the source it started with.'
        : view.offline
          ? 'otad is not connected.'
          : null;
  const locked = !src.switchAllowed || !view.canControl;
  const changed = draft.channel !== src.channel || draft.repository !== src.repository;
  const pick = (key, label, options) =>
    h(
      'span',
      { class: 'source-field' },
      h('label', { for: `${id}-${key}` }, label),
      h(
        'select',
        {
          id: `${id}-${key}`,
          'data-focus': `source-${key}`,
          disabled: locked || view.busy,
          onchange: (/** @type {Event} */ e) => view.onDraft?.(p.product, { ...draft, [key]: /** @type {HTMLSelectElement} */ (e.target).value }),
        },
        ...options.map(([value, text]) => h('option', { value, selected: value === draft[key] ? true : null }, text)),
      ),
    );
  return h(
    'div',
    { class: 'source', role: 'group', 'aria-labelledby': `${id}-title`, 'aria-describedby': why ? `${id}-why` : null },
    h('h4', { id: `${id}-title` }, 'Channel and repository'),
    h(
      'div',
      { class: 'source-row' },
      src.channels.length > 1 ? pick('channel', 'Channel', src.channels.map((c) => [c, c === src.defaults.channel ? `${c} (default)` : c])) : null,
      src.repositories.length > 1 ? pick('repository', 'Repository', src.repositories.map((x) => [x.name, `${x.name}${x.name === src.defaults.repository && x.name !== 'default' ? ' (default)' : ''} — ${x.location ?? 'the server URL'}`])) : null,
      locked
        ? null
        : h(
            'button',
            {
              type: 'button',
              'data-focus': 'source-switch',
              disabled: !changed || why !== null || view.busy,
              onclick: () => view.onSelectSource?.(p.product, draft),
            },
            'Switch',
          ),
    ),
    why ? h('p', { id: `${id}-why`, class: 'muted source-why' }, why) : null,
    // Each repository as otad reaches it, before anyone switches to it.
    src.repositories.length > 1 && probes.length > 0
      ? h(
          'ul',
          { class: 'repo-choices', 'aria-label': `Connection of each repository of ${p.product}` },
          ...probes.map((c) => {
            const [ok, text] = reachOf(c);
            return h('li', { 'data-repository': c.name }, h('span', { class: 'choice-name' }, `${c.name}${c.inUse ? ' (in use)' : ''}: `), h('span', { class: 'reach', 'data-reachable': ok }, text));
          }),
        )
      : null,
  );
}

// The operator dashboard: asks for a token once (kept in this tab's sessionStorage), then shows
// each product from GET /api/v1/status, kept live by the Socket.IO stream.
import { createApi } from './api.js';
import { confirmationFor, describeError, formatTime, h, renderLogLine, renderProduct, stateLabel } from './render.js';
import { filterTables, renderDetails } from './details.js';
import { openStream } from './stream.js';

const TOKEN_KEY = 'otad.token';
const HISTORY_RUNS = 5;
const LOG_LINES = 200;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const ui = {
  signIn: /** @type {HTMLFormElement} */ ($('sign-in')),
  token: /** @type {HTMLInputElement} */ ($('token')),
  signOut: $('sign-out'),
  device: $('device'),
  connection: $('connection'),
  live: $('live'),
  error: $('error'),
  readOnly: $('read-only'),
  products: $('products'),
  views: $('views'),
  logs: $('logs'),
  logLines: $('log-lines'),
  logLevel: /** @type {HTMLSelectElement} */ ($('log-level')),
  logProduct: /** @type {HTMLSelectElement} */ ($('log-product')),
  logText: /** @type {HTMLInputElement} */ ($('log-text')),
  logCount: $('log-count'),
  dialog: /** @type {HTMLDialogElement} */ ($('confirm')),
  dialogTitle: $('confirm-title'),
  dialogBody: $('confirm-body'),
  dialogOk: /** @type {HTMLButtonElement} */ ($('confirm-ok')),
  dialogCancel: $('confirm-cancel'),
};

/** Everything the page shows; rendering reads only this. */
const model = {
  /** @type {ReturnType<typeof createApi> | null} */ api: null,
  /** @type {{ close(): void } | null} */ stream: null,
  canControl: false,
  /** @type {any} */ status: null,
  /** @type {Map<string, any[]>} */ runs: new Map(),
  /** @type {Map<string, any>} */ releases: new Map(),
  /** Each product's definition (GET /api/v1/products): what an action restarts and checks. */
  /** @type {Map<string, any>} */ definitions: new Map(),
  /** Each product's repository as otad sees it (GET /api/v1/repositories). */
  /** @type {Map<string, any>} */ repositories: new Map(),
  /** Each product's channel and repository and the configured choices (GET /api/v1/products/{p}/source). */
  /** @type {Map<string, any>} */ sources: new Map(),
  /** A choice the operator made in the selects but did not switch to yet (kept across re-renders). */
  /** @type {Map<string, { channel: string, repository: string }>} */ sourceDrafts: new Map(),
  /** The product whose type tooltip Escape dismissed (until focus or the pointer leaves it). */
  /** @type {string | null} */ tooltipDismissed: null,
  /** The search query of each product's details and history. */
  /** @type {Map<string, string>} */ search: new Map(),
  /** Sections the operator opened or closed ("product:key" → open), kept across re-renders. */
  /** @type {Map<string, boolean>} */ sectionOpen: new Map(),
  /** Per product, the latest progress message of each step of its current run. */
  /** @type {Map<string, { runId: string, steps: Map<string, any> }>} */ progress: new Map(),
  /** @type {Set<string>} */ busy: new Set(),
  /** @type {string[]} */ logKeys: [],
  logFilter: { level: 'info', product: '', text: '' },
  /** The stream's connectivity (stream.js); actions are disabled unless it is 'connected'. */
  /** @type {any} */ conn: null,
  /** When the connection was lost (null: connected, or never was). */
  /** @type {number | null} */ downSince: null,
};

const CONN_LABELS = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', disconnected: 'Disconnected' };

/** Actions need the daemon: while the stream is down every action button is disabled. */
function online() {
  return model.conn?.state === 'connected';
}

function announce(text) {
  ui.live.textContent = text;
}

/** @type {any} */
let lastError = null;
function showError(error) {
  lastError = error ?? null;
  ui.error.textContent = error ? describeError(error) : '';
}

function setConnection(text, ok) {
  ui.connection.replaceChildren(Object.assign(document.createElement('span'), { className: 'conn-state', textContent: text }));
  ui.connection.dataset.ok = ok ? 'yes' : 'no';
  ui.connection.dataset.conn = ok ? 'connected' : 'disconnected';
}

/** The header's connectivity line: state, since when, the last event, the next try. */
function renderConnection() {
  const c = model.conn;
  if (!c) return;
  const state = Object.assign(document.createElement('span'), { className: 'conn-state', textContent: CONN_LABELS[c.state] ?? c.state });
  const parts = [];
  if (c.state === 'connected') parts.push(`since ${formatTime(c.since).slice(11)}`);
  else if (model.downSince !== null) parts.push(`since ${formatTime(model.downSince).slice(11)}`);
  if (c.reason && c.state !== 'connected') parts.push(c.reason);
  if (c.state === 'reconnecting' && c.attempt > 0) parts.push(`attempt ${c.attempt}`);
  if (c.state === 'disconnected' && c.retryAt) parts.push(`next try ${formatTime(c.retryAt).slice(11)}`);
  const last = Math.max(c.lastMessageAt ?? 0, c.since);
  parts.push(`last event ${formatTime(last).slice(11)}`);
  const detail = Object.assign(document.createElement('span'), { className: 'conn-detail', textContent: parts.join(' · ') });
  ui.connection.replaceChildren(state, ' ', detail);
  ui.connection.dataset.ok = c.state === 'connected' ? 'yes' : 'no';
  ui.connection.dataset.conn = c.state;
}

function onConnectivity(c) {
  const wasOnline = online();
  if (c.state === 'connected') model.downSince = null;
  else if (model.downSince === null && model.conn) model.downSince = c.since;
  model.conn = c;
  renderConnection();
  ui.dialogOk.disabled = !online();
  if (wasOnline !== online()) {
    if (!online()) announce('Connection to otad lost: actions are disabled until it is back');
    render();
  }
}

/** Keeps the latest message per step of the run; a new run starts an empty list. */
function keepProgress(m) {
  let run = model.progress.get(m.product);
  if (!run || run.runId !== m.runId) {
    run = { runId: m.runId, steps: new Map() };
    model.progress.set(m.product, run);
  }
  run.steps.set(m.step, m);
}

/** The run's steps for rendering (the status's own latest message fills in after a reload). */
function stepsOf(p) {
  if (p.progress && p.progress.runId === p.runId) {
    const run = model.progress.get(p.product);
    if (!run || run.runId !== p.runId || !run.steps.has(p.progress.step)) keepProgress(p.progress);
  }
  const run = model.progress.get(p.product);
  return run && run.runId === p.runId ? run.steps : null;
}

/**
 * The view from the address's fragment: '#overview', or '#product/NAME'. Without one, a robot with
 * one product opens on that product's page, with several on the overview.
 */
function currentView(products) {
  const m = /^#product\/(.+)$/.exec(location.hash);
  if (m) {
    const name = decodeURIComponent(m[1]);
    if (products.some((p) => p.product === name)) return name;
  }
  if (location.hash === '#overview') return null;
  return products.length === 1 ? products[0].product : null;
}

function renderViews(products, view) {
  const link = (href, label, current) => h('a', { href, 'aria-current': current ? 'page' : null }, label);
  ui.views.replaceChildren(link('#overview', 'Overview', view === null), ...products.map((p) => link(`#product/${encodeURIComponent(p.product)}`, p.product, view === p.product)));
  ui.views.hidden = false;
}

function render() {
  const s = model.status;
  if (!s) return;
  const view = currentView(s.products);
  renderViews(s.products, view);
  const shown = view === null ? s.products : s.products.filter((p) => p.product === view);
  ui.device.textContent = `${s.deviceId} · ${s.environment}${s.simulation ? ' · simulation' : ''} · otad ${s.otadVersion}`;
  ui.readOnly.hidden = model.canControl;
  // Keyboard focus survives a re-render: the same product's same button (or search box) gets it back.
  const focused = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  const focusAttr = focused?.dataset.event ? 'data-event' : focused?.dataset.focus ? 'data-focus' : null;
  const focusKey = focusAttr ? [focused?.closest('[data-product]')?.getAttribute('data-product'), focused?.getAttribute(focusAttr) ?? ''] : null;
  const caret = focused instanceof HTMLInputElement ? [focused.selectionStart, focused.selectionEnd] : null;
  ui.products.replaceChildren(
    ...shown.map((p) =>
      renderProduct(p, {
        compact: view === null,
        definition: model.definitions.get(p.product) ?? null,
        repository: model.repositories.get(p.product) ?? null,
        source: model.sources.get(p.product) ?? null,
        draft: model.sourceDrafts.get(p.product) ?? null,
        onDraft: (product, draft) => {
          model.sourceDrafts.set(product, draft);
          render();
        },
        onSelectSource: selectSource,
        runs: model.runs.get(p.product) ?? [],
        releases: model.releases.get(p.product) ?? null,
        onUnmark: unmarkRelease,
        steps: stepsOf(p),
        details: renderDetails(p, model.repositories.get(p.product) ?? null, {
          query: model.search.get(p.product) ?? '',
          isOpen: (key, byDefault) => model.sectionOpen.get(`${p.product}:${key}`) ?? byDefault,
          onToggle: (key, open) => model.sectionOpen.set(`${p.product}:${key}`, open),
          onSearch: (q) => {
            model.search.set(p.product, q);
            render();
          },
        }),
        canControl: model.canControl,
        busy: model.busy.has(p.product),
        offline: !online(),
        onEvent: requestEvent,
      }),
    ),
  );
  if (model.tooltipDismissed !== null) {
    ui.products.querySelector(`[data-product="${CSS.escape(model.tooltipDismissed)}"] .type-wrap`)?.setAttribute('data-dismissed', '');
  }
  for (const section of ui.products.querySelectorAll('[data-product]')) {
    const product = section.getAttribute('data-product') ?? '';
    const q = model.search.get(product) ?? '';
    const matched = filterTables(/** @type {HTMLElement} */ (section), q);
    const count = section.querySelector('.search-count');
    if (count) count.textContent = q.trim() === '' ? '' : `${matched} match${matched === 1 ? '' : 'es'} for “${q.trim()}”`;
  }
  if (focusKey) {
    const again = ui.products.querySelector(`[data-product="${CSS.escape(String(focusKey[0]))}"] [${focusAttr}="${CSS.escape(focusKey[1])}"]`);
    if (again instanceof HTMLElement) again.focus();
    if (again instanceof HTMLInputElement && caret) again.setSelectionRange(caret[0], caret[1]);
  }
}

async function refresh() {
  const api = model.api;
  if (!api) return;
  const status = await api.status();
  const [definitions, repositories, sources, runs, releases] = await Promise.all([
    api.products(),
    api.repositories(),
    Promise.all(status.products.map((p) => api.source(p.product))),
    Promise.all(status.products.map((p) => api.history(p.product, HISTORY_RUNS))),
    Promise.all(status.products.map((p) => api.releases(p.product))),
  ]);
  for (const d of definitions.products) model.definitions.set(d.product, d);
  for (const r of repositories.repositories) model.repositories.set(r.product, r);
  status.products.forEach((p, i) => {
    model.sources.set(p.product, sources[i]);
    model.runs.set(p.product, runs[i].runs);
    model.releases.set(p.product, releases[i]);
  });
  model.status = status;
  fillLogProducts(status.products);
  // A refresh that reached otad: an earlier "did not answer" is no longer true.
  if (lastError?.code === 'NETWORK') showError(null);
  render();
}

/** Reads the log again through the API with the filters (so the limit applies to matching lines). */
async function refreshLogs() {
  if (!model.api) return;
  const f = model.logFilter;
  const { lines } = await model.api.logs({ limit: LOG_LINES, level: f.level, product: f.product, contains: f.text });
  if (f !== model.logFilter) return;
  ui.logLines.replaceChildren();
  model.logKeys = [];
  for (const line of lines) addLogLine(line);
  showLogCount();
}

/** The product list of the log filter follows the status. */
function fillLogProducts(products) {
  const have = new Set([...ui.logProduct.options].map((o) => o.value));
  for (const p of products) if (!have.has(p.product)) ui.logProduct.append(h('option', { value: p.product }, p.product));
}

let logTimer = null;
function onLogFilter() {
  model.logFilter = { level: ui.logLevel.value, product: ui.logProduct.value, text: ui.logText.value };
  if (logTimer) clearTimeout(logTimer);
  logTimer = setTimeout(() => {
    logTimer = null;
    refreshLogs().catch((error) => showError(error));
  }, 200);
}

// One refresh at a time; messages that arrive meanwhile ask for one more after it.
let refreshing = null;
let again = false;
function requestRefresh() {
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = refresh()
    .catch((error) => showError(error))
    .finally(() => {
      refreshing = null;
      if (again) {
        again = false;
        requestRefresh();
      }
    });
}

const LEVEL_RANK = { error: 0, warn: 1, info: 2, debug: 3 };

/** Whether a line passes the log filters (the same rules the API applies to GET /api/v1/logs). */
function passesLogFilter(line) {
  const f = model.logFilter;
  if ((LEVEL_RANK[line.level] ?? 2) > (LEVEL_RANK[f.level] ?? 2)) return false;
  const product = typeof line.fields?.product === 'string' ? line.fields.product : undefined;
  if (f.product === '-' ? product !== undefined : f.product !== '' && product !== f.product) return false;
  return f.text === '' || String(line.message).includes(f.text);
}

function showLogCount() {
  const f = model.logFilter;
  const filtered = f.level !== 'info' || f.product !== '' || f.text !== '';
  ui.logCount.textContent = `${model.logKeys.length} line${model.logKeys.length === 1 ? '' : 's'}${filtered ? ' matching the filters' : ''} (the newest ${LOG_LINES} are kept)`;
}

function addLogLine(line) {
  if (!passesLogFilter(line)) return;
  // The first page of lines and the stream may overlap by a few lines.
  const key = `${line.time}|${line.level}|${line.message}`;
  if (model.logKeys.includes(key)) return;
  model.logKeys.push(key);
  ui.logLines.append(renderLogLine(line));
  while (model.logKeys.length > LOG_LINES) {
    model.logKeys.shift();
    ui.logLines.firstElementChild?.remove();
  }
  ui.logLines.scrollTop = ui.logLines.scrollHeight;
  showLogCount();
}

function onMessage(m) {
  const p = m.payload;
  if (m.type === 'transition') {
    const product = model.status?.products.find((x) => x.product === p.product);
    if (product) {
      // The state is shown at once; the allowed events and the rest follow with the refresh.
      product.state = p.to;
      render();
    }
    announce(`${p.product}: ${stateLabel(p.to)}`);
    requestRefresh();
  } else if (m.type === 'progress') {
    keepProgress(p);
    render();
  } else if (m.type === 'notification') {
    const what = {
      'update-available': `update ${p.version} is available`,
      committed: `version ${p.version} is installed`,
      'rolled-back': `rolled back (${p.version ?? 'previous version'})`,
      failed: `the run failed${p.error ? `: ${p.error.code}` : ''}`,
      'run-ended': `the run ended${p.outcome ? ` (${p.outcome})` : ''}`,
      'releases-changed': 'the releases changed',
      'source-changed': 'its channel or repository was switched',
    }[p.kind];
    announce(`${p.product}: ${what ?? p.kind}`);
    requestRefresh();
  } else if (m.type === 'log') {
    addLogLine(p);
  } else if (m.type === 'resync') {
    // What was missed is no longer in the daemon's history: read the whole state again.
    requestRefresh();
  }
}

async function unmarkRelease(product, version) {
  if (!model.api) return;
  model.busy.add(product);
  render();
  showError(null);
  try {
    await model.api.unmark(product, version);
    announce(`${product}: ${version} is no longer marked bad`);
  } catch (error) {
    showError(error);
  } finally {
    model.busy.delete(product);
    requestRefresh();
  }
}

/** The operator switches a product's channel and/or repository; the next check reads them. */
async function selectSource(product, choice) {
  if (!model.api) return;
  const now = model.sources.get(product);
  const body = {};
  if (!now || choice.channel !== now.channel) body.channel = choice.channel;
  if (!now || choice.repository !== now.repository) body.repository = choice.repository;
  model.busy.add(product);
  render();
  showError(null);
  try {
    const r = await model.api.selectSource(product, body);
    model.sources.set(product, r);
    model.sourceDrafts.delete(product);
    announce(`${product}: follows channel ${r.channel} of repository ${r.repository} from the next check on`);
  } catch (error) {
    showError(error);
  } finally {
    model.busy.delete(product);
    requestRefresh();
  }
}

/** @type {(() => void) | null} */
let onDialogOk = null;
/** What had the focus when the dialog opened: it gets it back when the dialog closes. */
/** @type {{ product: string | null, event: string | null } | null} */
let dialogOpener = null;

/** Opens the confirmation dialog; `ok` runs only if the operator confirms. */
function confirmAction(c, ok) {
  ui.dialogTitle.textContent = c.title;
  ui.dialogBody.replaceChildren(h('dl', { class: 'facts' }, ...c.items.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])));
  ui.dialogOk.textContent = c.confirm;
  ui.dialogOk.disabled = !online();
  onDialogOk = ok;
  const from = document.activeElement instanceof HTMLElement ? document.activeElement : null;
  dialogOpener = from ? { product: from.closest('[data-product]')?.getAttribute('data-product') ?? null, event: from.dataset.event ?? null } : null;
  ui.dialog.showModal();
  ui.dialogCancel.focus();
}

ui.dialogOk.addEventListener('click', () => {
  const ok = onDialogOk;
  onDialogOk = null;
  ui.dialog.close();
  ok?.();
});
ui.dialogCancel.addEventListener('click', () => ui.dialog.close());
ui.dialog.addEventListener('close', () => {
  // The close event comes a task after the dialog closed: if the operator has opened it again
  // meanwhile (Escape, then Enter on the same button), this close belongs to the earlier opening
  // and must not drop the new one's action or move the focus out of it.
  if (ui.dialog.open) return;
  if (onDialogOk) announce('Nothing was changed');
  onDialogOk = null;
  // The page may have been re-rendered meanwhile: the same product's same button gets the focus back.
  const o = dialogOpener;
  dialogOpener = null;
  if (o?.product && o.event) {
    const again = ui.products.querySelector(`[data-product="${CSS.escape(o.product)}"] [data-event="${CSS.escape(o.event)}"]`);
    if (again instanceof HTMLElement && !again.hasAttribute('disabled')) again.focus();
    else ui.products.querySelector(`[data-product="${CSS.escape(o.product)}"] h2`)?.closest('section')?.querySelector('button:not([disabled]), a, [tabindex="0"]')?.focus();
  }
});
// Tab stays inside the dialog: from its last control to its first, and back with Shift+Tab.
ui.dialog.addEventListener('keydown', (e) => {
  if (e.key !== 'Tab') return;
  const controls = [...ui.dialog.querySelectorAll('button:not([disabled]), [href], input, select, [tabindex="0"]')];
  if (controls.length === 0) return;
  const first = /** @type {HTMLElement} */ (controls[0]);
  const last = /** @type {HTMLElement} */ (controls[controls.length - 1]);
  if (e.shiftKey && document.activeElement === first) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && document.activeElement === last) {
    e.preventDefault();
    first.focus();
  }
});

// Escape closes an open type tooltip (it comes back when the indicator is focused or hovered anew).
document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape' || ui.dialog.open) return;
  const wrap = [...document.querySelectorAll('.type-wrap')].find((w) => w.matches(':hover') || w.contains(document.activeElement));
  if (!wrap) return;
  model.tooltipDismissed = wrap.closest('[data-product]')?.getAttribute('data-product') ?? null;
  wrap.setAttribute('data-dismissed', '');
});
function undismissTooltip(/** @type {Event} */ e) {
  const wrap = e.target instanceof Element ? e.target.closest('.type-wrap') : null;
  if (!wrap || !wrap.isConnected || !wrap.hasAttribute('data-dismissed')) return;
  // Still hovered or focused: leaving one of the two does not bring it back.
  if (e.type === 'focusout' && wrap.matches(':hover')) return;
  if (e.type === 'mouseout' && wrap.contains(document.activeElement)) return;
  if (e.type === 'mouseout' && e instanceof MouseEvent && e.relatedTarget instanceof Node && wrap.contains(e.relatedTarget)) return;
  wrap.removeAttribute('data-dismissed');
  model.tooltipDismissed = null;
}
document.addEventListener('focusout', undismissTooltip);
document.addEventListener('mouseout', undismissTooltip);

/** An action button: asks first when the action stops services or commits to an install. */
function requestEvent(product, type, label, extra = {}) {
  const p = model.status?.products.find((x) => x.product === product);
  const c = p ? confirmationFor(p, model.definitions.get(product) ?? null, type, label, extra) : null;
  if (c) confirmAction(c, () => void sendEvent(product, type, label, extra));
  else void sendEvent(product, type, label, extra);
}

async function sendEvent(product, type, label, extra = {}) {
  if (!model.api) return;
  model.busy.add(product);
  render();
  showError(null);
  try {
    const r = await model.api.sendEvent(product, type, extra);
    announce(`${product}: ${label} accepted (${stateLabel(r.state)})`);
  } catch (error) {
    showError(error);
  } finally {
    model.busy.delete(product);
    requestRefresh();
  }
}

function showSignIn(error) {
  if (ui.dialog.open) ui.dialog.close();
  model.stream?.close();
  model.stream = null;
  model.api = null;
  model.conn = null;
  model.downSince = null;
  model.status = null;
  ui.products.replaceChildren();
  ui.views.hidden = true;
  ui.logLines.replaceChildren();
  model.logKeys = [];
  ui.logs.hidden = true;
  ui.readOnly.hidden = true;
  ui.signOut.hidden = true;
  ui.device.textContent = '';
  setConnection('Not connected', false);
  ui.signIn.hidden = false;
  showError(error ?? null);
  ui.token.value = '';
  ui.token.focus();
}

async function connect(token) {
  const api = createApi(token);
  showError(null);
  let session;
  try {
    session = await api.session();
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignIn(error);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  model.api = api;
  model.canControl = session.scope === 'control';
  ui.signIn.hidden = true;
  ui.signOut.hidden = false;
  ui.logs.hidden = false;
  setConnection('Connecting…', false);
  // The stream first, then the first reads: nothing that happens in between is lost.
  let firstConnect = true;
  model.stream = openStream({
    token,
    onMessage: (m) => {
      onMessage(m);
      renderConnection();
    },
    onConnectivity,
    onConnected: () => {
      // After a reconnect (otad restarted, the network came back) everything is read again; the
      // stream itself resumes after the last seq seen.
      requestRefresh();
      if (!firstConnect) {
        announce('Connection to otad restored');
        refreshLogs().catch((error) => showError(error));
      }
      firstConnect = false;
    },
    onRefused: (code, message) => {
      showError({ code, message });
    },
  });
  try {
    await refresh();
    await refreshLogs();
    announce(`Signed in as ${session.name} (${session.scope === 'control' ? 'control' : 'read-only'})`);
  } catch (error) {
    showError(error);
  }
}

window.addEventListener('hashchange', () => render());
ui.logLevel.addEventListener('change', onLogFilter);
ui.logProduct.addEventListener('change', onLogFilter);
ui.logText.addEventListener('input', onLogFilter);

ui.signIn.addEventListener('submit', (e) => {
  // Never let the browser submit the form: the token must not end up in a URL.
  e.preventDefault();
  const token = ui.token.value.trim();
  if (token) void connect(token);
});
ui.signOut.addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn(null);
  announce('Signed out');
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) void connect(saved);
else showSignIn(null);

// The fleet page: asks for the operator token once (kept in this tab's sessionStorage, sent as a
// Bearer header on every call), then polls the REST API every few seconds and renders the devices
// and the rollouts. Rendering reads only `state`; every change goes through `set`.
import { ApiError, createApi } from './api.js';
import { describeError } from '/shared/http.js';
import { DevicesSection } from './devices.js';
import { clockTime, relativeTime } from './format.js';
import { RolloutsSection } from './rollouts.js';
import { html, render } from './view.js';

const TOKEN_KEY = 'ota-server.token';
const POLL_MS = 5000;
const SEARCH_DELAY_MS = 300;

const state = {
  /** @type {ReturnType<typeof createApi> | null} */ api: null,
  signInError: '',
  signingIn: false,
  query: { status: '', q: '', limit: 25, offset: 0 },
  /** @type {{ devices: any[], total: number } | null} */ devices: null,
  /** @type {null | { unavailable: true, message: string } | { unavailable: false, list: any[] }} */ rollouts: null,
  /** @type {any} */ leases: null,
  /** @type {number | null} */ refreshedAt: null,
  /** @type {{ since: number, message: string } | null} */ disconnected: null,
  /** @type {Set<string>} */ busy: new Set(),
  notice: '',
  error: '',
  /** @type {null | { kind: 'reject', device: any } | { kind: 'halt', rollout: any, reason: string }} */ dialog: null,
};

function set(/** @type {Partial<typeof state>} */ patch) {
  Object.assign(state, patch);
  draw();
}

const describe = describeError;

/** What a refused token means, in words an operator can act on. */
function tokenProblem(/** @type {unknown} */ error) {
  if (error instanceof ApiError && error.status === 401) return 'The server refused this token. Use the token in the file ota-server was started with (--token-file).';
  if (error instanceof ApiError && error.status === 403) return 'This ota-server was started without --token-file, so the fleet view is turned off.';
  if (error instanceof ApiError && error.status === 0) return 'ota-server does not answer. Check that it is running and try again.';
  return `The server answered with an error: ${describe(error)}`;
}

// ---- data ----------------------------------------------------------------------------------

/** A 404 in the API's error shape: this server has no such endpoint (rollouts arrived later). */
const missing = (/** @type {unknown} */ e) => e instanceof ApiError && e.status === 404;

let refreshing = /** @type {Promise<void> | null} */ (null);
let again = false;

async function refreshOnce() {
  const api = state.api;
  if (!api) return;
  const q = state.query;
  const [devices, rollouts, leases] = await Promise.allSettled([api.devices(q), api.rollouts(), api.leases()]);
  if (state.api !== api) return;
  const failures = [devices, rollouts, leases].filter((r) => r.status === 'rejected').map((r) => /** @type {PromiseRejectedResult} */ (r).reason);
  if (failures.some((e) => e instanceof ApiError && e.status === 401)) return signOut(tokenProblem(failures.find((e) => e.status === 401)));
  const down = failures.find((e) => e instanceof ApiError && e.status === 0);
  if (down) {
    set({ disconnected: state.disconnected ?? { since: Date.now(), message: down.message } });
    return;
  }
  /** @type {Partial<typeof state>} */
  const patch = { disconnected: null, refreshedAt: Date.now() };
  if (devices.status === 'fulfilled') {
    patch.devices = devices.value;
    // The last page can empty under a filter (devices decided elsewhere): step back to a page with rows.
    if (devices.value.devices.length === 0 && q.offset > 0 && devices.value.total > 0) {
      state.query = { ...q, offset: Math.max(0, Math.floor((devices.value.total - 1) / q.limit) * q.limit) };
      again = true;
    }
  }
  if (rollouts.status === 'fulfilled') patch.rollouts = { unavailable: false, list: rollouts.value.rollouts ?? [] };
  else if (missing(rollouts.reason)) patch.rollouts = { unavailable: true, message: `GET /api/v1/rollouts answered 404` };
  if (leases.status === 'fulfilled') patch.leases = leases.value;
  else if (missing(leases.reason)) patch.leases = { unavailable: true };
  const other = failures.find((e) => !missing(e));
  patch.error = other ? `Refreshing failed: ${describe(other)}` : '';
  set(patch);
}

/** One refresh at a time; a request meanwhile asks for one more after it. */
function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = refreshOnce()
    .catch((error) => set({ error: `Refreshing failed: ${describe(error)}` }))
    .finally(() => {
      refreshing = null;
      if (again) {
        again = false;
        void refresh();
      }
    });
  return refreshing;
}

let pollTimer = /** @type {ReturnType<typeof setInterval> | null} */ (null);
let tickTimer = /** @type {ReturnType<typeof setInterval> | null} */ (null);

function start(/** @type {string} */ token) {
  state.api = createApi(token);
  pollTimer = setInterval(() => void refresh(), POLL_MS);
  // Relative times ("12 s ago") move on between polls.
  tickTimer = setInterval(draw, 1000);
  void refresh();
}

function signOut(/** @type {string} */ message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  if (pollTimer) clearInterval(pollTimer);
  if (tickTimer) clearInterval(tickTimer);
  pollTimer = tickTimer = null;
  set({ api: null, signInError: message, devices: null, rollouts: null, leases: null, refreshedAt: null, disconnected: null, dialog: null, notice: '', error: '' });
}

async function signIn(/** @type {string} */ token) {
  set({ signingIn: true, signInError: '' });
  try {
    // The cheapest call behind the token: answers 401 for a wrong one before anything is shown.
    await createApi(token).devices({ limit: 1, offset: 0 });
  } catch (error) {
    set({ signingIn: false, signInError: tokenProblem(error) });
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  set({ signingIn: false });
  start(token);
}

// ---- actions -------------------------------------------------------------------------------

async function withBusy(/** @type {string} */ key, /** @type {() => Promise<void>} */ fn) {
  state.busy.add(key);
  draw();
  try {
    await fn();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut(tokenProblem(error));
    set({ error: describe(error) });
  } finally {
    state.busy.delete(key);
    draw();
  }
}

async function applyDecision(/** @type {any} */ device, /** @type {'accept' | 'reject'} */ verb) {
  await withBusy(`device:${device.id}`, async () => {
    const answer = await state.api.decide(device.id, verb);
    // In place: the row keeps its products and conflicts, takes the new decision.
    const list = state.devices?.devices.map((d) => (d.id === device.id ? { ...d, ...answer.device } : d)) ?? [];
    set({ devices: state.devices && { ...state.devices, devices: list }, notice: `${device.id} ${verb === 'accept' ? 'accepted' : 'rejected'}.`, error: '' });
    void refresh();
  });
}

let searchTimer = /** @type {ReturnType<typeof setTimeout> | null} */ (null);

const actions = {
  decide(/** @type {any} */ device, /** @type {'accept' | 'reject'} */ verb) {
    if (verb === 'reject') set({ dialog: { kind: 'reject', device } });
    else void applyDecision(device, verb);
  },
  /** @param {Partial<typeof state.query>} patch @param {boolean} [keepOffset] */
  setQuery(patch, keepOffset = false) {
    state.query = { ...state.query, ...(keepOffset ? {} : { offset: 0 }), ...patch };
    draw();
    void refresh();
  },
  setSearch(/** @type {string} */ q) {
    state.query = { ...state.query, q: q.trim(), offset: 0 };
    if (searchTimer) clearTimeout(searchTimer);
    searchTimer = setTimeout(() => void refresh(), SEARCH_DELAY_MS);
  },
  askHalt(/** @type {any} */ rollout) {
    set({ dialog: { kind: 'halt', rollout, reason: '' } });
  },
  resume(/** @type {any} */ rollout) {
    void withBusy(`rollout:${rollout.id}`, async () => {
      await state.api.resume(rollout.id);
      set({ notice: `${rollout.product} ${rollout.version} resumed.`, error: '' });
      await refresh();
    });
  },
};

async function confirmDialog(/** @type {string} */ reason) {
  const d = state.dialog;
  set({ dialog: null });
  if (!d) return;
  if (d.kind === 'reject') return applyDecision(d.device, 'reject');
  await withBusy(`rollout:${d.rollout.id}`, async () => {
    await state.api.halt(d.rollout.id, reason);
    set({ notice: `${d.rollout.product} ${d.rollout.version} halted.`, error: '' });
    await refresh();
  });
}

// ---- view ----------------------------------------------------------------------------------

function SignIn() {
  return html`<form class="card sign-in" onSubmit=${(e) => {
    e.preventDefault();
    const token = /** @type {HTMLInputElement} */ (e.currentTarget.elements.namedItem('token')).value.trim();
    if (token) void signIn(token);
  }}>
    <h2>Sign in</h2>
    <p>Enter the operator token: the contents of the file ota-server was started with (<code>--token-file</code>). It is kept in this browser tab only.</p>
    <label for="token">Operator token</label>
    <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required aria-describedby="sign-in-error" />
    <button type="submit" class="primary" disabled=${state.signingIn}>Connect</button>
    <p id="sign-in-error" class="error" role="alert">${state.signInError}</p>
  </form>`;
}

function Dialog() {
  const d = state.dialog;
  if (!d) return null;
  const close = () => set({ dialog: null });
  const title = d.kind === 'reject' ? `Reject ${d.device.id}?` : `Halt ${d.rollout.product} ${d.rollout.version}?`;
  return html`<dialog class="confirm" aria-labelledby="dialog-title"
      ref=${(/** @type {HTMLDialogElement | null} */ el) => el && !el.open && el.showModal()}
      onCancel=${(e) => { e.preventDefault(); close(); }}>
    <form onSubmit=${(e) => {
      e.preventDefault();
      const field = e.currentTarget.elements.namedItem('reason');
      void confirmDialog(field ? field.value.trim() : '');
    }}>
      <h2 id="dialog-title">${title}</h2>
      ${d.kind === 'reject'
        ? html`<p>Its check-ins will be refused until it is accepted again. Key <code>${d.device.fingerprint}</code>.</p>`
        : html`<p>No robot starts installing this release while it is halted; robots already installing finish or roll back.</p>
            <label for="halt-reason">Reason (recorded with the halt)</label>
            <textarea id="halt-reason" name="reason" rows="3" maxlength="500" required autofocus></textarea>`}
      <div class="buttons">
        <button type="submit" class="danger">${d.kind === 'reject' ? 'Reject' : 'Halt rollout'}</button>
        <button type="button" onClick=${close} autofocus=${d.kind === 'reject'}>Cancel</button>
      </div>
    </form>
  </dialog>`;
}

function Status({ now }) {
  if (state.disconnected) {
    return html`<p class="connection" data-ok="no" role="status">
      Disconnected: ota-server does not answer since ${clockTime(state.disconnected.since)}${state.refreshedAt ? `; data from ${clockTime(state.refreshedAt)}` : ''}
    </p>`;
  }
  if (state.refreshedAt === null) return html`<p class="connection" data-ok="no">Connecting…</p>`;
  return html`<p class="connection" data-ok="yes" title=${`last refreshed at ${clockTime(state.refreshedAt)}`}>
    Refreshed ${relativeTime(state.refreshedAt, now)} (${clockTime(state.refreshedAt)})
  </p>`;
}

function Page() {
  const now = Date.now();
  const signedIn = state.api !== null;
  return html`
    <header class="top">
      <h1>Fleet</h1>
      ${signedIn ? html`<${Status} now=${now} />` : null}
      ${signedIn ? html`<button type="button" class="sign-out" onClick=${() => signOut()}>Sign out</button>` : null}
    </header>
    <main>
      <div class="live" role="status" aria-live="polite">${state.notice}</div>
      <div class="error" role="alert">${state.error}</div>
      ${signedIn
        ? html`<${DevicesSection} state=${state} now=${now} actions=${actions} />
            <${RolloutsSection} state=${state} now=${now} actions=${actions} />`
        : html`<${SignIn} />`}
    </main>
    <${Dialog} />
  `;
}

const root = /** @type {HTMLElement} */ (document.getElementById('root'));
function draw() {
  render(html`<${Page} />`, root);
}

const saved = sessionStorage.getItem(TOKEN_KEY);
draw();
if (saved) start(saved);

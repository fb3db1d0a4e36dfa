// The publisher studio: asks for the upload token once (kept in this tab's sessionStorage, sent as
// a Bearer header on every call), then walks the publisher through three steps: build a package
// from a folder under a source root (the robot's scan decides), describe the release (a product
// type fills what it can; every field is checked by the server), review the exact bytes that will
// be signed, then sign and publish. Rendering reads only `state`; every change goes through `set`.
import { ApiError, createApi } from './api.js';
import { describeError } from '/shared/http.js';
import { formatBytes, modeText, treeRows } from './format.js';
import { html, markdownToSafeHtml, render } from './view.js';

const TOKEN_KEY = 'ota-server.token';

const emptyFields = () => ({ type: '', product: '', channel: 'stable', version: '', minFromVersion: '', rolloutPercent: '', arch: '', os: '', minFreeBytes: '', notes: '' });

const state = {
  /** @type {ReturnType<typeof createApi> | null} */ api: null,
  signInError: '',
  signingIn: false,
  /** @type {any} */ context: null,
  root: '',
  path: '',
  /** How the studio packs a folder ('gzip' or 'zstd'); from the repository's ota-repo.json at sign-in. */
  compression: 'gzip',
  /** @type {string[]} */ folders: [],
  /** @type {any} */ draft: null,
  fields: emptyFields(),
  /** @type {Record<string, string>} */ fieldErrors: {},
  /** @type {any} */ proposals: null,
  /** @type {any} */ review: null,
  /** @type {any} */ published: null,
  /** @type {Set<string>} */ busy: new Set(),
  /** @type {Array<{ product: string, range: string }>} */ deps: [],
  /** @type {any} */ upload: null,
  /** @type {{ name: string, files: Array<{ path: string, file: File }> } | null} */ folderPick: null,
  /** @type {any} */ folderUpload: null,
  publishError: '',
  /** @type {any} */ tpl: null,
  /** @type {any[]} */ tplList: [],
  /** @type {any[]} */ repos: [],
  repo: '',
  /** The configured repository the release is reviewed for and published to ('' = this server's own). */
  publishTo: '',
  /** @type {any} */ repoTest: null,
  error: '',
};

function set(/** @type {Partial<typeof state>} */ patch) {
  Object.assign(state, patch);
  draw();
}

const describe = describeError;

function tokenProblem(/** @type {unknown} */ error) {
  if (error instanceof ApiError && error.status === 401) return 'The server refused this token. Use the upload token in the file ota-server was started with (--token-file).';
  if (error instanceof ApiError && error.status === 403) return 'This ota-server was started without --token-file, so publishing is turned off.';
  if (error instanceof ApiError && error.status === 0) return 'ota-server does not answer. Check that it is running and try again.';
  return `The server answered with an error: ${describe(error)}`;
}

async function withBusy(/** @type {string} */ key, /** @type {() => Promise<void>} */ fn) {
  if (state.busy.has(key)) return;
  state.busy.add(key);
  set({ error: '' });
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

// ---- session -------------------------------------------------------------------------------

async function signIn(/** @type {string} */ token) {
  set({ signingIn: true, signInError: '' });
  const api = createApi(token);
  let context;
  try {
    context = await api.context();
  } catch (error) {
    set({ signingIn: false, signInError: tokenProblem(error) });
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  const root = context.sourceRoots[0]?.name ?? '';
  const type = context.productTypes[0];
  set({ api, context, signingIn: false, root, path: '', compression: context.compression?.compression ?? 'gzip', fields: { ...emptyFields(), ...(type ? { type: type.name, product: type.name, channel: type.channel } : {}) } });
  if (root) await openFolder('');
  void refreshProposals();
  void loadTools();
}

function signOut(/** @type {string} */ message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  set({ api: null, context: null, signInError: message, draft: null, review: null, published: null, folders: [], error: '' });
}

// ---- step 1: the package -------------------------------------------------------------------

async function openFolder(/** @type {string} */ path) {
  await withBusy('folders', async () => {
    const listing = await state.api.folders(state.root, path);
    set({ path: listing.path, folders: listing.folders });
  });
}

async function buildDraft() {
  await withBusy('draft', async () => {
    // The verdict below is this build's: the progress of an earlier upload goes.
    set({ draft: null, review: null, published: null, fieldErrors: {}, upload: null, folderUpload: null, publishError: '' });
    const draft = await state.api.createDraft(state.root, state.path, state.compression);
    const fields = draft.scan.ok && state.fields.minFreeBytes === '' ? { ...state.fields, minFreeBytes: String(draft.scan.totalBytes) } : state.fields;
    set({ draft, fields });
  });
}

const PIECE = 1024 * 1024;
/** Files of a folder upload sent at the same time. */
const FOLDER_STREAMS = 4;
const RETRIES = 5;

/** Words for an upload failure: disk full, token refused and version taken each say what to do. */
function uploadProblem(/** @type {unknown} */ error) {
  if (error instanceof ApiError && error.code === 'DISK_FULL') return `The server's disk is full: ${error.message} (DISK_FULL)`;
  if (error instanceof ApiError && error.status === 401) return 'The server refused the upload token: sign in again with the token in ota-server\'s --token-file.';
  if (error instanceof ApiError && error.code === 'VERSION_TAKEN') return `This version is taken: ${describe(error)}. Choose a greater version.`;
  return describe(error);
}

/**
 * Sends the chosen file in pieces with the resumable upload API. A broken connection or an offset
 * the server disagrees with is answered by asking the server how much it has and resuming there.
 */
async function uploadDraft() {
  const input = /** @type {HTMLInputElement} */ (document.getElementById('archive'));
  const file = input.files?.[0];
  if (!file) return set({ error: 'Choose a .tar.gz or .tar.zst package to upload first.' });
  if (state.busy.has('upload')) return;
  state.busy.add('upload');
  set({ draft: null, review: null, published: null, fieldErrors: {}, error: '', upload: null, folderUpload: null, publishError: '' });
  const started = performance.now();
  let resumedFrom = 0;
  const progress = (/** @type {number} */ done, /** @type {string} */ note = '') => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? (done - resumedFrom) / seconds : 0;
    set({ upload: { name: file.name, size: file.size, done, rate, left: rate > 0 ? (file.size - done) / rate : null, note: note || (state.upload?.note ?? ''), error: '', resumes: state.upload?.resumes ?? 0 } });
  };
  /** @type {string | null} */
  let uploadId = null;
  try {
    const info = await state.api.startUpload(file.name, file.size);
    uploadId = info.id;
    set({ upload: { name: file.name, size: file.size, done: 0, rate: 0, left: null, note: '', error: '', resumes: 0 } });
    let offset = info.received;
    let failures = 0;
    while (offset < file.size) {
      const end = Math.min(file.size, offset + PIECE);
      try {
        const at = offset;
        const r = await state.api.putPiece(info.id, at, file.slice(at, end), (sent) => progress(at + sent));
        offset = r.received;
        failures = 0;
        progress(offset);
      } catch (error) {
        const resumable = error instanceof ApiError && (error.status === 0 || error.code === 'UPLOAD_OFFSET_MISMATCH' || error.status >= 502);
        if (!resumable || failures >= RETRIES) throw error;
        failures += 1;
        await new Promise((r) => setTimeout(r, 300 * failures));
        const status = await state.api.uploadStatus(info.id);
        offset = status.received;
        resumedFrom = offset;
        state.upload.resumes += 1;
        progress(offset, `The connection broke; resumed from byte ${offset.toLocaleString('en')} (what the server has).`);
      }
    }
    const draft = await state.api.finishUpload(info.id);
    uploadId = null;
    const fields = draft.scan.ok && state.fields.minFreeBytes === '' ? { ...state.fields, minFreeBytes: String(draft.scan.totalBytes) } : state.fields;
    set({ draft, fields, upload: { ...state.upload, done: file.size, left: 0, finished: true } });
  } catch (error) {
    // The page cannot go on with this upload: it cancels it, so no half-written file stays on the server.
    let words = uploadProblem(error);
    if (uploadId !== null && !(error instanceof ApiError && error.status === 401)) {
      const cancelled = await state.api.cancelUpload(uploadId).then(() => true, () => false);
      words += cancelled ? ' The page then cancelled the upload on the server, so none of its bytes stay there: upload it again once there is room.' : ' The page could not cancel the upload on the server: its bytes stay there until ota-server restarts or newer uploads replace it.';
    }
    set({ upload: { ...(state.upload ?? { name: file.name, size: file.size, done: 0, rate: 0, left: null }), error: words } });
  } finally {
    state.busy.delete('upload');
    draw();
  }
}

/**
 * The files of a folder the publisher chose (webkitdirectory) or dropped, by their path inside it.
 * A chosen folder's paths start with the folder's own name, which becomes the upload's name.
 * @param {File[]} files
 */
function pickFromInput(files) {
  if (files.length === 0) return null;
  const rel = (/** @type {File} */ f) => /** @type {any} */ (f).webkitRelativePath || f.name;
  const name = rel(files[0]).split('/')[0] ?? 'folder';
  return { name, files: files.map((file) => ({ path: rel(file).split('/').slice(1).join('/') || file.name, file })) };
}

/** Walks a dropped folder (the File and Directory Entries API) into the files under it. */
async function pickFromDrop(/** @type {DataTransfer} */ data) {
  const entry = [...data.items].map((i) => i.webkitGetAsEntry?.()).find((e) => e && e.isDirectory);
  if (!entry) return null;
  /** @type {Array<{ path: string, file: File }>} */
  const out = [];
  const walk = async (/** @type {any} */ dir, /** @type {string} */ prefix) => {
    const reader = dir.createReader();
    for (;;) {
      /** @type {any[]} */
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (batch.length === 0) return;
      for (const e of batch) {
        const rel = prefix ? `${prefix}/${e.name}` : e.name;
        if (e.isDirectory) await walk(e, rel);
        else out.push({ path: rel, file: await new Promise((resolve, reject) => e.file(resolve, reject)) });
      }
    }
  };
  await walk(entry, '');
  return { name: entry.name, files: out };
}

/**
 * Uploads the chosen folder: declares every file (the server refuses unsafe paths, too many files
 * or bytes, and a disk without room before anything is written), sends each file, retrying one
 * whose connection broke, then the server packs and scans the folder like one of its own.
 */
async function uploadFolder() {
  const pick = state.folderPick;
  if (!pick || pick.files.length === 0) return set({ folderUpload: { error: 'Choose a folder (or drop one here) first.' } });
  if (state.busy.has('folder')) return;
  state.busy.add('folder');
  set({ draft: null, review: null, published: null, fieldErrors: {}, error: '', upload: null, folderUpload: null, publishError: '' });
  const size = pick.files.reduce((n, f) => n + f.file.size, 0);
  const started = performance.now();
  const progress = (/** @type {number} */ done, /** @type {number} */ sentFiles) => {
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    set({ folderUpload: { name: pick.name, files: pick.files.length, sentFiles, size, done, rate, left: rate > 0 ? (size - done) / rate : null, error: '' } });
  };
  /** @type {string | null} */
  let uploadId = null;
  try {
    progress(0, 0);
    const info = await state.api.startFolderUpload(pick.name, pick.files.map((f) => ({ path: f.path, size: f.file.size })));
    uploadId = info.id;
    // FOLDER_STREAMS files travel at once (small files are dominated by the round trip); the
    // first failure stops the others from starting new files.
    let done = 0;
    let sentFiles = 0;
    let next = 0;
    /** @type {unknown} */
    let failed = null;
    const inFlight = new Map();
    const shown = () => progress(done + [...inFlight.values()].reduce((a, b) => a + b, 0), sentFiles);
    const worker = async () => {
      while (failed === null && next < pick.files.length) {
        const i = next++;
        const f = pick.files[i];
        for (let failures = 0; ; failures += 1) {
          try {
            await state.api.putFolderFile(info.id, i, f.file, (sent) => { inFlight.set(i, sent); shown(); });
            break;
          } catch (error) {
            const retry = error instanceof ApiError && (error.status === 0 || error.status >= 502) && error.code !== 'DISK_FULL';
            if (!retry || failures >= RETRIES || failed !== null) {
              // A full disk ends the upload on the server, so the other files then fail too: say the cause.
              if (failed === null || (error instanceof ApiError && error.code === 'DISK_FULL')) failed = error;
              inFlight.delete(i);
              return;
            }
            await new Promise((r) => setTimeout(r, 300 * (failures + 1)));
          }
        }
        inFlight.delete(i);
        done += f.file.size;
        sentFiles += 1;
        shown();
      }
    };
    await Promise.all(Array.from({ length: Math.min(FOLDER_STREAMS, pick.files.length) }, worker));
    if (failed !== null) throw failed;
    const draft = await state.api.finishFolderUpload(info.id, state.compression);
    uploadId = null;
    const fields = draft.scan.ok && state.fields.minFreeBytes === '' ? { ...state.fields, minFreeBytes: String(draft.scan.totalBytes) } : state.fields;
    set({ draft, fields, folderUpload: { ...state.folderUpload, done: size, sentFiles: pick.files.length, left: 0, finished: true } });
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut(tokenProblem(error));
    // What arrived of a folder that cannot be finished is removed on the server.
    if (uploadId !== null && !(error instanceof ApiError && error.code === 'DISK_FULL')) await state.api.cancelFolderUpload(uploadId).catch(() => {});
    set({ folderUpload: { ...(state.folderUpload ?? { name: pick.name, files: pick.files.length, size, done: 0 }), error: uploadProblem(error) } });
  } finally {
    state.busy.delete('folder');
    draw();
  }
}

// ---- tools: templates and repositories -----------------------------------------------------

async function loadTools() {
  try {
    const [t, r] = await Promise.all([state.api.templates(), state.api.repositories()]);
    set({ tplList: t.templates, repos: r.repositories, repo: r.repositories.find((/** @type {any} */ x) => x.local)?.name ?? r.repositories[0]?.name ?? '' });
    if (t.templates[0]) await openTemplate(t.templates[0].name);
  } catch (error) {
    set({ error: describe(error) });
  }
}

/** Template loads started; only the latest one is shown (a choice made while another loads wins). */
let templateLoads = 0;

/**
 * Loads a template into the editor. The editor is read-only while it loads, so nothing typed is
 * overwritten by the text arriving; a load that a later choice overtook is dropped.
 */
async function openTemplate(/** @type {string} */ name) {
  const load = ++templateLoads;
  state.busy.add('tpl');
  set({ error: '' });
  try {
    const t = await state.api.template(name);
    if (load !== templateLoads) return;
    set({ tpl: { name, version: t.version, text: t.text, saved: t.text, problems: t.problems, diff: null, message: '', conflict: null } });
  } catch (error) {
    if (load !== templateLoads) return;
    if (error instanceof ApiError && error.status === 401) return signOut(tokenProblem(error));
    set({ error: describe(error) });
  } finally {
    if (load === templateLoads) {
      state.busy.delete('tpl');
      draw();
    }
  }
}

async function checkTemplate() {
  await withBusy('tpl', async () => {
    const t = state.tpl;
    const r = await state.api.checkTemplate(t.name, t.text);
    set({ tpl: { ...state.tpl, problems: r.problems, diff: r.diff, message: r.problems.length === 0 ? `Valid. Differences against version ${r.current} below.` : '' } });
  });
}

async function saveTemplate() {
  await withBusy('tpl', async () => {
    const t = state.tpl;
    const r = await state.api.checkTemplate(t.name, t.text);
    if (r.problems.length > 0) return set({ tpl: { ...t, problems: r.problems, diff: r.diff, message: '' } });
    try {
      const saved = await state.api.saveTemplate(t.name, t.text, t.version);
      set({ tpl: { ...t, version: saved.version, saved: t.text, problems: [], diff: saved.diff, message: `Saved as version ${saved.version}. Differences against version ${saved.version - 1}:`, conflict: null } });
      const list = await state.api.templates();
      set({ tplList: list.templates });
    } catch (error) {
      if (error instanceof ApiError && error.code === 'TEMPLATE_CHANGED') {
        const theirs = await state.api.template(t.name);
        set({ tpl: { ...t, conflict: { version: theirs.version, text: theirs.text, message: error.message, diff: null, seenText: null }, diff: null, message: '' } });
      } else throw error;
    }
  });
}

/**
 * During a conflict: the differences between their version (now the server's current one) and
 * this text. Only once they are seen, and for this very text, is "save mine" offered.
 */
async function showConflictDiff() {
  await withBusy('tpl', async () => {
    const t = state.tpl;
    const r = await state.api.checkTemplate(t.name, t.text);
    // Someone may have saved yet another version meanwhile: the diff is against that one.
    const conflict = r.current !== t.conflict.version ? { ...t.conflict, version: r.current, text: (await state.api.template(t.name)).text } : t.conflict;
    set({ tpl: { ...state.tpl, problems: r.problems, diff: null, conflict: { ...conflict, diff: r.diff, seenText: t.text } } });
  });
}

/** After seeing the differences: save this text as the version after theirs. */
async function saveMineAfterConflict() {
  const t = state.tpl;
  set({ tpl: { ...t, version: t.conflict.version, saved: t.conflict.text } });
  await saveTemplate();
}

async function testRepository() {
  await withBusy('repo', async () => {
    set({ repoTest: null });
    set({ repoTest: await state.api.testRepository(state.repo) });
  });
}

// ---- step 2: the manifest ------------------------------------------------------------------

let proposalsFor = '';
async function refreshProposals() {
  const { product, channel } = state.fields;
  const key = `${product}\n${channel}\n${state.publishTo}`;
  if (!state.api || !product || !channel || key === proposalsFor) return;
  proposalsFor = key;
  try {
    const proposals = await state.api.versions(product, channel, state.publishTo || undefined);
    if (proposalsFor === key) set({ proposals });
  } catch (error) {
    if (proposalsFor === key) set({ proposals: null, error: describe(error) });
  }
}

function setField(/** @type {string} */ name, /** @type {string} */ value) {
  const fields = { ...state.fields, [name]: value };
  const fieldErrors = { ...state.fieldErrors };
  delete fieldErrors[name];
  if (name === 'arch' || name === 'os' || name === 'minFreeBytes') delete fieldErrors[`requirements.${name}`];
  // A review shows the bytes of the fields it was made from: any change needs a new one.
  set({ fields, fieldErrors, review: null, published: null, publishError: '' });
  if (name === 'product' || name === 'channel') void refreshProposals();
}

function chooseType(/** @type {string} */ name) {
  const type = state.context.productTypes.find((/** @type {any} */ t) => t.name === name);
  const known = new Set(state.context.productTypes.map((/** @type {any} */ t) => t.name));
  const fields = { ...state.fields, type: name };
  // The product name follows the type until the publisher writes another one.
  if (type && (fields.product === '' || known.has(fields.product))) fields.product = type.name;
  if (type) fields.channel = type.channel;
  set({ fields, fieldErrors: {}, review: null, published: null });
  void refreshProposals();
}

function fieldsForServer() {
  const f = state.fields;
  return {
    type: f.type,
    product: f.product,
    channel: f.channel,
    version: f.version,
    notes: f.notes,
    minFromVersion: f.minFromVersion,
    rolloutPercent: f.rolloutPercent,
    requirements: { arch: f.arch, os: f.os, minFreeBytes: f.minFreeBytes },
    dependencies: Object.fromEntries(state.deps.filter((d) => d.product.trim() !== '').map((d) => [d.product.trim(), d.range])),
    ...(state.publishTo ? { repository: state.publishTo } : {}),
  };
}

async function validate() {
  await withBusy('review', async () => {
    const result = await state.api.review(state.draft.id, fieldsForServer());
    if (result.ok) set({ review: result, fieldErrors: {}, publishError: '' });
    else {
      set({ review: null, fieldErrors: result.fieldErrors });
      const first = document.querySelector('[aria-invalid="true"]');
      if (first instanceof HTMLElement) first.focus();
    }
  });
}

// ---- step 3: publish -----------------------------------------------------------------------

async function publish() {
  if (state.busy.has('publish')) return;
  state.busy.add('publish');
  set({ error: '', publishError: '' });
  const r = state.review;
  try {
    const published = await state.api.publish(state.draft.id, { packageSha256: r.packageTarget.sha256, manifestSha256: r.manifestTarget.sha256, ...(state.publishTo ? { repository: state.publishTo } : {}) });
    const context = await state.api.context();
    proposalsFor = '';
    set({ published, review: null, draft: null, context, fields: { ...state.fields, version: '', notes: '' } });
    void refreshProposals();
    document.getElementById('published')?.focus();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut(tokenProblem(error));
    // Said next to the button; a version taken meanwhile is also marked at the version field.
    const taken = error instanceof ApiError && error.code === 'VERSION_TAKEN';
    const words = taken ? `Not published: ${describe(error)}` : error instanceof ApiError && error.code === 'DISK_FULL' ? `Not published: the server's disk is full: ${describe(error)}` : `Not published: ${describe(error)}`;
    proposalsFor = '';
    set({ publishError: words, ...(taken ? { fieldErrors: { ...state.fieldErrors, version: `${r.manifest.version} is already published: choose a greater version` }, context: await state.api.context().catch(() => state.context) } : {}) });
    if (taken) void refreshProposals();
    document.getElementById('publish-error')?.focus();
  } finally {
    state.busy.delete('publish');
    draw();
  }
}

// ---- views ---------------------------------------------------------------------------------

function SignIn() {
  return html`<form class="card sign-in" onSubmit=${(/** @type {Event} */ e) => {
    e.preventDefault();
    const token = /** @type {HTMLInputElement} */ (document.getElementById('token')).value.trim();
    if (token) void signIn(token);
  }}>
    <h2>Sign in</h2>
    <p class="muted">The studio publishes with the upload token of this ota-server (the file given with <code>--token-file</code>). It stays in this browser tab only.</p>
    <label for="token">Upload token</label>
    <input id="token" type="password" autocomplete="off" required aria-describedby="sign-in-error" />
    <div class="buttons"><button class="primary" type="submit" disabled=${state.signingIn}>${state.signingIn ? 'Signing in…' : 'Sign in'}</button></div>
    <p id="sign-in-error" class="error" role="alert">${state.signInError}</p>
  </form>`;
}

function Crumbs() {
  const parts = state.path === '' ? [] : state.path.split('/');
  return html`<nav class="crumbs" aria-label="Folder">
    <button type="button" class="link" onClick=${() => openFolder('')}>${state.root}</button>
    ${parts.map((p, i) => html`<span aria-hidden="true">/</span><button type="button" class="link" aria-current=${i === parts.length - 1 ? 'location' : undefined} onClick=${() => openFolder(parts.slice(0, i + 1).join('/'))}>${p}</button>`)}
  </nav>`;
}

function Verdict() {
  const d = state.draft;
  if (!d) return null;
  const modes = d.modes ? html`<p class="modes" id="modes-note">Modes set by the server (${d.modes.rule}): ${d.modes.executables.length === 0 ? 'no file was made executable' : html`${d.modes.executables.length} made executable: ${d.modes.executables.slice(0, 8).map((/** @type {string} */ x, /** @type {number} */ i) => html`${i > 0 ? ' ' : ''}<code class="chip">${x}</code>`)}${d.modes.executables.length > 8 ? ` and ${d.modes.executables.length - 8} more` : ''}`}.</p>` : null;
  if (d.scan.ok) {
    return html`<div class="verdict" data-ok="yes" role="status">
      <strong>Package scan passed</strong>: the robot's checks accept every entry.
      <dl class="facts">
        <dt>Built from</dt><dd>${d.source.root === '(uploaded folder)' ? `the uploaded folder ${d.source.path}/` : d.source.root === '(uploaded archive)' ? `the uploaded package ${d.source.path}` : `${d.source.root}/${d.source.path}`}</dd>
        <dt>Entries</dt><dd>${d.scan.entries}</dd>
        <dt>Unpacked size</dt><dd>${formatBytes(d.scan.totalBytes)}</dd>
        <dt>Package (${d.package.compression === 'zstd' ? '.tar.zst' : '.tar.gz'})</dt><dd>${formatBytes(d.package.length)}</dd>
      </dl>
      ${modes}
    </div>`;
  }
  const entry = d.scan.error.details?.entry;
  const uploaded = d.source.root === '(uploaded archive)';
  const fix = uploaded ? 'Fix the package' : d.source.root === '(uploaded folder)' ? 'Fix the folder on your computer' : 'Fix the folder on the server';
  return html`<div class="verdict" data-ok="no" role="alert">
    <strong>Package scan refused ${uploaded ? 'this package' : 'this folder'}</strong> (<code>${d.scan.error.code}</code>): ${d.scan.error.message}.
    <p>Nothing was kept or signed. ${fix}${entry ? html` (entry <code>${entry}</code>)` : ''}, then ${uploaded || d.source.root === '(uploaded folder)' ? 'upload it' : 'build'} again.</p>
    ${modes}
  </div>`;
}

function Tree() {
  const d = state.draft;
  if (!d) return null;
  const files = d.scan.ok ? d.scan.files : d.scan.tree;
  if (files.length === 0) return null;
  const bad = d.scan.ok ? null : d.scan.error.details?.entry;
  const rows = treeRows(files);
  return html`<details class="section tree" open=${rows.length <= 40}>
    <summary>${d.scan.ok ? 'Files in the package' : 'Files in the folder'} (${files.length}${d.scan.ok ? '' : d.scan.truncated ? '+' : ''})</summary>
    <ul class="tree-list">
      ${rows.map((r) => html`<li style=${`--depth: ${r.depth}`} data-bad=${r.path === bad ? 'yes' : undefined}>
        <span class="tree-name">${r.name}${r.type === 'directory' ? '/' : ''}</span>
        ${r.type === 'symlink' ? html` <span class="muted">→ ${r.linkname}</span>` : null}
        <span class="tree-meta">${r.type === 'file' ? formatBytes(r.size) : r.type}${r.type !== 'symlink' ? ` · ${modeText(r.mode)}` : ''}</span>
      </li>`)}
    </ul>
  </details>`;
}

function SourceStep() {
  const roots = state.context.sourceRoots;
  return html`<section class="card" aria-labelledby="step-source">
    <h2 id="step-source">1 · Package</h2>
    ${roots.length === 0
      ? html`<p class="muted" id="no-roots">This server has no source roots, so it builds only from what you upload below. (Start ota-server with <code>--source-root NAME=DIR</code> to build from folders on the server machine.)</p>`
      : html`<p class="muted">Build the release from a folder on the server. The package is packed and scanned exactly as a robot scans it before it extracts anything.</p>
    <div class="field">
      <label for="root">Source root</label>
      <select id="root" value=${state.root} onChange=${(/** @type {any} */ e) => { set({ root: e.currentTarget.value, draft: null, review: null }); void openFolder(''); }}>
        ${roots.map((/** @type {any} */ r) => html`<option value=${r.name}>${r.name}</option>`)}
      </select>
    </div>
    <${Crumbs} />
    ${state.folders.length > 0
      ? html`<ul class="folders" aria-label="Sub-folders">${state.folders.map((f) => html`<li><button type="button" class="link" onClick=${() => openFolder(state.path ? `${state.path}/${f}` : f)}>${f}/</button></li>`)}</ul>`
      : html`<p class="muted small">No sub-folders.</p>`}
    <${Compression} />
    <div class="buttons">
      <button type="button" class="primary" id="build" disabled=${state.busy.has('draft')} onClick=${buildDraft}>${state.busy.has('draft') ? 'Building and scanning…' : `Build package from ${state.root}/${state.path}`}</button>
    </div>`}
    ${roots.length === 0 ? html`<${Compression} />` : null}
    <${FolderUpload} />
    <div class="upload">
      <label for="archive">Or upload a package (.tar.gz or .tar.zst) from this computer</label>
      <input id="archive" type="file" accept=".tar.gz,.tgz,.tar.zst,.tzst,application/gzip,application/zstd" />
      <div class="buttons"><button type="button" id="upload" disabled=${state.busy.has('upload')} onClick=${uploadDraft}>${state.busy.has('upload') ? 'Uploading and scanning…' : 'Upload and scan'}</button></div>
    </div>
    <${UploadProgress} />
    <${Verdict} />
    <${Tree} />
  </section>`;
}

/** How the studio packs a folder: the repository's ota-repo.json says which by default; the review checks the product's own setting. */
function Compression() {
  const said = state.context.compression;
  const where = said?.setting ? html`This repository's ota-repo.json sets <code>${said.setting}</code> to ${said.compression}` : 'This repository\'s ota-repo.json sets none, so gzip';
  return html`<div class="field compression">
    <label for="compression">Compression of the packages the studio packs (folders on the server or uploaded)</label>
    <p class="hint" id="compression-hint">${where}. zstd is smaller and unpacks faster (robots read it with the Node 24 otad ships with). A product with its own setting must be packed that way; the check in step 2 says so. An uploaded package is published as it is.</p>
    <select id="compression" value=${state.compression} aria-describedby="compression-hint" onChange=${(/** @type {any} */ e) => set({ compression: e.currentTarget.value })}>
      <option value="gzip">gzip (.tar.gz)</option>
      <option value="zstd">zstd (.tar.zst)</option>
    </select>
  </div>`;
}

let dragDepth = 0;
function FolderUpload() {
  const p = state.folderPick;
  const u = state.folderUpload;
  const size = p ? p.files.reduce((n, f) => n + f.file.size, 0) : 0;
  const pct = u && u.size > 0 ? Math.floor((u.done / u.size) * 100) : 0;
  return html`<div class="upload folder-upload" id="folder-upload" data-drag=${state.busy.has('drag') ? 'yes' : undefined}
      onDragEnter=${(/** @type {DragEvent} */ e) => { e.preventDefault(); dragDepth += 1; if (!state.busy.has('drag')) { state.busy.add('drag'); draw(); } }}
      onDragOver=${(/** @type {DragEvent} */ e) => e.preventDefault()}
      onDragLeave=${() => { dragDepth -= 1; if (dragDepth <= 0) { dragDepth = 0; state.busy.delete('drag'); draw(); } }}
      onDrop=${async (/** @type {DragEvent} */ e) => {
        e.preventDefault();
        dragDepth = 0;
        state.busy.delete('drag');
        // One folder upload at a time: a drop while one runs would replace what the page shows of it.
        if (state.busy.has('folder')) { draw(); return; }
        const pick = e.dataTransfer ? await pickFromDrop(e.dataTransfer) : null;
        set(pick ? { folderPick: pick, folderUpload: null } : { folderUpload: { error: 'Drop a folder here (a single file is uploaded as a package below).' } });
      }}>
    <label for="folder">Or upload a folder from this computer</label>
    <p class="hint" id="folder-hint">Choose the release's folder, or drop it here. Browsers do not send file modes, so the server sets them: files under <code>bin/</code> or <code>sbin/</code> and files starting with <code>#!</code> or an ELF header get 0755, every other file 0644. Empty folders are not uploaded.</p>
    <input id="folder" type="file" webkitdirectory multiple aria-describedby="folder-hint" disabled=${state.busy.has('folder')}
      onChange=${(/** @type {any} */ e) => set({ folderPick: pickFromInput([...e.currentTarget.files]), folderUpload: null })} />
    ${p ? html`<p class="small" id="folder-chosen">${p.name}/: ${p.files.length.toLocaleString('en')} file${p.files.length === 1 ? '' : 's'}, ${formatBytes(size)}</p>` : null}
    <div class="buttons"><button type="button" id="upload-folder" disabled=${state.busy.has('folder') || !p} onClick=${uploadFolder}>${state.busy.has('folder') ? 'Uploading and scanning…' : 'Upload folder and scan'}</button></div>
    ${u && u.size !== undefined ? html`<div class="upload-progress">
      <progress max=${u.size || 1} value=${u.done} aria-label=${`Upload of the folder ${u.name}`}></progress>
      <p class="small" role="status" id="folder-status">${u.finished ? `Uploaded ${u.files} files (${formatBytes(u.size)}) of ${u.name}/` : u.error ? `Stopped: ${u.sentFiles} of ${u.files} files sent (${formatBytes(u.done)} of ${formatBytes(u.size)})` : `${pct}% · ${u.sentFiles} of ${u.files} files sent · ${formatBytes(u.done)} of ${formatBytes(u.size)}${u.rate ? ` · ${formatBytes(Math.round(u.rate))}/s · ${formatSeconds(u.left)} left` : ''}`}</p>
    </div>` : null}
    ${u?.error ? html`<p class="error" role="alert" id="folder-error">${u.error}</p>` : null}
  </div>`;
}

/** A labelled input with its error right under it, tied by aria-describedby. */
function Field({ name, label, hint = '', error = '', type = 'text', list = undefined, children = null, inputmode = undefined }) {
  const id = `f-${name}`;
  const described = [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${hint ? html`<p class="hint" id=${`${id}-hint`}>${hint}</p>` : null}
    <input id=${id} name=${name} type=${type} list=${list} inputmode=${inputmode} value=${/** @type {any} */ (state.fields)[name]} aria-invalid=${error ? 'true' : undefined} aria-describedby=${described}
      onInput=${(/** @type {any} */ e) => setField(name, e.currentTarget.value)} />
    ${children}
    ${error ? html`<p class="field-error" id=${`${id}-error`}>${error}</p>` : null}
  </div>`;
}

function TemplateFacts({ type }) {
  if (!type) return null;
  return html`<div class="template">
    <h3>Robots of type ${type.name}</h3>
    <p class="muted small">From <code>config/product-types/${type.file}</code>: what a robot's product entry of this type applies to the release (the robot's own configuration can override it).</p>
    <dl class="facts">
      <dt>Version file</dt><dd><code>${type.versionFile}</code> (must say the version below)</dd>
      <dt>Services restarted</dt><dd>${type.services.length ? type.services.map((s) => html`<code class="chip">${s}</code> `) : 'none'}</dd>
      <dt>Health checks</dt><dd>${type.healthChecks.length ? html`<ul class="plain">${type.healthChecks.map((h) => html`<li>${h.kind}: <code>${h.unit ?? h.url ?? h.command ?? ''}</code></li>`)}</ul>` : 'none'}</dd>
      <dt>Preserved paths</dt><dd>${type.preservedPaths.length ? type.preservedPaths.map((p) => html`<code class="chip">${p}</code> `) : 'none'}</dd>
    </dl>
  </div>`;
}

function VersionProposals() {
  const p = state.proposals;
  if (!p) return null;
  if (p.latest === null) return html`<p class="hint">No release of ${state.fields.product} on channel ${state.fields.channel}${state.publishTo ? ` in ${state.publishTo}` : ''} yet.</p>`;
  return html`<div class="proposals" role="group" aria-label="Proposed versions">
    <span class="hint">Latest on ${state.fields.channel}: <strong>${p.latest}</strong>. Next:</span>
    ${['patch', 'minor', 'major'].map((k) => html`<button type="button" class="chip-button" onClick=${() => setField('version', p[k])}>${p[k]} <span class="muted">(${k})</span></button>`)}
  </div>`;
}

function setDep(/** @type {number} */ i, /** @type {'product' | 'range'} */ key, /** @type {string} */ value) {
  const deps = state.deps.map((d, j) => (j === i ? { ...d, [key]: value } : d));
  const fieldErrors = { ...state.fieldErrors };
  delete fieldErrors[`dependencies.${state.deps[i].product.trim()}`];
  delete fieldErrors.dependencies;
  set({ deps, fieldErrors, review: null, published: null });
}

function Dependencies() {
  const e = state.fieldErrors;
  const known = [...new Set(state.context.releases.map((/** @type {any} */ r) => r.product))].filter((p) => p !== state.fields.product);
  return html`<fieldset class="deps">
    <legend>Dependencies on sibling products</legend>
    <p class="hint" id="deps-hint">Versions of the other products on the same robots this release needs, as semver ranges (${'^1.4.0, >=1.2.0 <2.0.0'}). Checked against what is published; otad reports them on the robot.</p>
    ${state.deps.map((d, i) => {
      const err = e[`dependencies.${d.product.trim()}`];
      const errId = `dep-${i}-error`;
      return html`<div class="dep-row grid" data-dep=${i}>
        <div class="field"><label for=${`dep-${i}-product`}>Sibling product ${i + 1}</label>
          <input id=${`dep-${i}-product`} list="dep-products" value=${d.product} onInput=${(/** @type {any} */ ev) => setDep(i, 'product', ev.currentTarget.value)} /></div>
        <div class="field"><label for=${`dep-${i}-range`}>Version range ${i + 1}</label>
          <div class="dep-range"><input id=${`dep-${i}-range`} value=${d.range} aria-invalid=${err ? 'true' : undefined} aria-describedby=${err ? errId : 'deps-hint'} onInput=${(/** @type {any} */ ev) => setDep(i, 'range', ev.currentTarget.value)} />
          <button type="button" class="small-button" aria-label=${`Remove dependency ${i + 1}`} onClick=${() => set({ deps: state.deps.filter((_, j) => j !== i), review: null })}>Remove</button></div>
          ${err ? html`<p class="field-error" id=${errId}>${err}</p>` : null}</div>
      </div>`;
    })}
    ${e.dependencies ? html`<p class="field-error">${e.dependencies}</p>` : null}
    <datalist id="dep-products">${known.map((p) => html`<option value=${p}></option>`)}</datalist>
    <div class="buttons"><button type="button" id="add-dep" onClick=${() => set({ deps: [...state.deps, { product: '', range: '' }], review: null })}>Add a dependency</button></div>
  </fieldset>`;
}

function formatSeconds(/** @type {number | null} */ s) {
  if (s === null || !Number.isFinite(s)) return 'estimating…';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}

function UploadProgress() {
  const u = state.upload;
  if (!u) return null;
  const pct = u.size > 0 ? Math.floor((u.done / u.size) * 100) : 0;
  return html`<div class="upload-progress" id="upload-progress">
    <progress max=${u.size} value=${u.done} aria-label=${`Upload of ${u.name}`}></progress>
    <p class="small" role="status" id="upload-status">${u.finished ? `Uploaded ${formatBytes(u.size)} of ${u.name}` : u.error ? `Stopped at ${formatBytes(u.done)} of ${formatBytes(u.size)} of ${u.name}` : `${pct}% · ${formatBytes(u.done)} of ${formatBytes(u.size)} · ${formatBytes(Math.round(u.rate))}/s · ${formatSeconds(u.left)} left`}${u.resumes > 0 ? ` · resumed ${u.resumes}×` : ''}</p>
    ${u.note && !u.error ? html`<p class="warn-note small" id="upload-note">${u.note}</p>` : null}
    ${u.error ? html`<p class="error" role="alert" id="upload-error">${u.error}</p>` : null}
  </div>`;
}

/** The changed lines with two unchanged lines around each change; longer unchanged runs become "…". */
function diffContext(/** @type {Array<{ kind: string, text: string }>} */ diff) {
  const near = (/** @type {number} */ i) => diff.slice(Math.max(0, i - 2), i + 3).some((d) => d.kind !== 'same');
  /** @type {Array<{ kind: string, text: string }>} */
  const out = [];
  diff.forEach((d, i) => {
    if (d.kind !== 'same' || near(i)) out.push(d);
    else if (out.at(-1)?.kind !== 'gap') out.push({ kind: 'gap', text: '' });
  });
  return out;
}

function DiffView({ id, diff }) {
  return html`<pre class="diff" id=${id} aria-label="Differences">${diff.filter((/** @type {any} */ d) => d.kind !== 'same').length === 0 ? html`<span>(no differences)</span>` : diffContext(diff).map((/** @type {any} */ d) => d.kind === 'gap' ? html`<span class="diff-same">${'  …\n'}</span>` : html`<span class=${`diff-${d.kind}`}>${`${d.kind === 'add' ? '+ ' : d.kind === 'remove' ? '- ' : '  '}${d.text}\n`}</span>`)}</pre>`;
}

function TemplateEditor() {
  const t = state.tpl;
  return html`<section class="card" aria-labelledby="tool-templates" id="templates">
    <h2 id="tool-templates">Product-type templates</h2>
    <p class="muted small">Templates live in <code>config/product-types/</code>; each save is kept as a version (<code>.history/TYPE/vN.yaml</code>) and checked with the robot's product schema.</p>
    <div class="field">
      <label for="tpl-type">Template</label>
      <select id="tpl-type" value=${t?.name ?? ''} onChange=${(/** @type {any} */ ev) => openTemplate(ev.currentTarget.value)}>
        ${state.tplList.map((x) => html`<option value=${x.name}>${x.name} (version ${x.version})</option>`)}
      </select>
    </div>
    ${!t ? null : html`
      <div class="field">
        <label for="tpl-text">${t.name}.yaml, editing on version ${t.version}</label>
        <textarea id="tpl-text" rows="14" spellcheck="false" value=${t.text} readOnly=${state.busy.has('tpl')} aria-invalid=${t.problems.length > 0 ? 'true' : undefined} aria-describedby=${t.problems.length > 0 ? 'tpl-problems' : undefined}
          onInput=${(/** @type {any} */ ev) => set({ tpl: { ...state.tpl, text: ev.currentTarget.value, message: '' } })}></textarea>
      </div>
      ${t.problems.length > 0 ? html`<ul class="field-error plain" id="tpl-problems" role="alert">${t.problems.map((/** @type {any} */ p) => html`<li>${p.line ? `line ${p.line}, ` : ''}<code>${p.field}</code>: ${p.message}</li>`)}</ul>` : null}
      ${t.conflict ? html`<div class="verdict" data-ok="no" role="alert" id="tpl-conflict">
        <strong>Someone else saved ${t.name} meanwhile (now version ${t.conflict.version})</strong>: your change was not saved (TEMPLATE_CHANGED). Your text is still in the editor; saving it now would replace their change, so first see what differs.
        <details><summary>Their version ${t.conflict.version}</summary><pre class="manifest">${t.conflict.text}</pre></details>
        ${t.conflict.diff ? html`<p class="conflict-diff-label">Your text against their version ${t.conflict.version} (<span class="diff-add">+ yours</span>, <span class="diff-remove">- theirs</span>):</p>
          <${DiffView} id="tpl-conflict-diff" diff=${t.conflict.diff} />` : null}
        <div class="buttons">
          <button type="button" id="tpl-load-theirs" disabled=${state.busy.has('tpl')} onClick=${() => openTemplate(t.name)}>Load their version ${t.conflict.version} (discard mine)</button>
          <button type="button" id="tpl-conflict-diff-button" disabled=${state.busy.has('tpl')} onClick=${showConflictDiff}>${t.conflict.diff && t.conflict.seenText === t.text ? 'Show the differences again' : `See the differences from version ${t.conflict.version}`}</button>
          ${t.conflict.diff && t.conflict.seenText === t.text && t.problems.length === 0
            ? html`<button type="button" class="primary" id="tpl-save-mine" disabled=${state.busy.has('tpl')} onClick=${saveMineAfterConflict}>Save mine as version ${t.conflict.version + 1}, replacing their changes shown above</button>`
            : null}
        </div>
      </div>` : null}
      ${t.message ? html`<p class="ok-text" role="status" id="tpl-message">${t.message}</p>` : null}
      ${t.diff ? html`<${DiffView} id="tpl-diff" diff=${t.diff} />` : null}
      ${t.conflict ? null : html`<div class="buttons">
        <button type="button" id="tpl-check" disabled=${state.busy.has('tpl')} onClick=${checkTemplate}>Validate and show differences</button>
        <button type="button" class="primary" id="tpl-save" disabled=${state.busy.has('tpl') || t.text === t.saved} onClick=${saveTemplate}>Save as version ${t.version + 1}</button>
      </div>`}`}
  </section>`;
}

function Repositories() {
  const r = state.repoTest;
  return html`<section class="card" aria-labelledby="tool-repos" id="repositories">
    <h2 id="tool-repos">Repositories</h2>
    ${state.repos.length === 0 ? html`<p class="muted">No repositories are configured: start ota-server with <code>--studio-config FILE</code> listing them.</p>` : html`
    <div class="field">
      <label for="repo">Repository</label>
      <select id="repo" value=${state.repo} onChange=${(/** @type {any} */ ev) => set({ repo: ev.currentTarget.value, repoTest: null })}>
        ${state.repos.map((x) => html`<option value=${x.name}>${x.name}${x.local ? ' (this server)' : ''} · ${x.url}</option>`)}
      </select>
    </div>
    <div class="buttons"><button type="button" id="repo-test" disabled=${state.busy.has('repo')} onClick=${testRepository}>${state.busy.has('repo') ? 'Testing…' : 'Test connection'}</button></div>
    ${!r ? null : r.ok ? html`<div class="repo-result" id="repo-result" role="status">
        <p class="ok-text">${r.repository}: the timestamp and every role verified with the trusted root (${r.targets} targets), ${new Date(r.checkedAt).toLocaleString('en-GB')}.</p>
        ${r.warnings.map((/** @type {string} */ w) => html`<p class="warn-note" role="alert">⚠ ${w}</p>`)}
        <table class="roles"><thead><tr><th>Role</th><th>Version</th><th>Expires</th><th>Left</th></tr></thead>
        <tbody>${r.roles.map((/** @type {any} */ x) => html`<tr data-warning=${x.warning ? 'yes' : undefined}>
          <td data-label="Role">${x.role}</td><td data-label="Version">${x.version}</td><td data-label="Expires">${x.expires}</td>
          <td data-label="Left"><span>${x.daysLeft < 1 ? `${Math.round(x.daysLeft * 24)} hours` : `${Math.floor(x.daysLeft)} days`}${x.warning ? html` <span class="badge warn-badge">renew soon</span>` : ''}</span></td></tr>`)}</tbody></table>
      </div>` : html`<div class="verdict" data-ok="no" role="alert" id="repo-result"><strong>${r.repository}: ${REPO_PROBLEM[r.problem] ?? r.problem}</strong>: ${r.error.message} (<code>${r.error.code}</code>)</div>`}`}
  </section>`;
}

const REPO_PROBLEM = /** @type {Record<string, string>} */ ({
  unreachable: 'not reachable',
  'bad-signature': 'signatures do not match the trusted root',
  expired: 'metadata expired',
  invalid: 'metadata invalid',
});

function ManifestStep() {
  const ready = state.draft?.scan.ok === true;
  const types = state.context.productTypes;
  const type = types.find((/** @type {any} */ t) => t.name === state.fields.type);
  const e = state.fieldErrors;
  const products = [...new Set(state.context.releases.map((/** @type {any} */ r) => r.product))];
  return html`<section class="card" aria-labelledby="step-manifest">
    <h2 id="step-manifest">2 · Release</h2>
    ${!ready ? html`<p class="muted">Build a package that passes the scan first.</p>` : html`
    <form class="release-form" onSubmit=${(/** @type {Event} */ ev) => { ev.preventDefault(); void validate(); }} novalidate>
      <div class="field">
        <label for="f-type">Product type</label>
        <select id="f-type" value=${state.fields.type} aria-invalid=${e.type ? 'true' : undefined} aria-describedby=${e.type ? 'f-type-error' : undefined} onChange=${(/** @type {any} */ ev) => chooseType(ev.currentTarget.value)}>
          ${types.map((/** @type {any} */ t) => html`<option value=${t.name}>${t.name}</option>`)}
        </select>
        ${e.type ? html`<p class="field-error" id="f-type-error">${e.type}</p>` : null}
      </div>
      <${TemplateFacts} type=${type} />
      <div class="grid">
        <${Field} name="product" label="Product" error=${e.product} list="known-products" />
        <${Field} name="channel" label="Channel" error=${e.channel} />
      </div>
      <datalist id="known-products">${products.map((p) => html`<option value=${p}></option>`)}</datalist>
      ${e.compression ? html`<p class="field-error" id="f-compression-error" role="alert">Package compression: ${e.compression}</p>` : null}
      <${PublishTo} />
      <${Field} name="version" label="Version" hint="Semantic version, greater than the latest on the channel." error=${e.version}>
        <${VersionProposals} />
      </${Field}>
      <div class="grid">
        <${Field} name="minFromVersion" label="Oldest version it updates from (optional)" error=${e.minFromVersion} />
        <${Field} name="rolloutPercent" label="Rollout percentage (optional, 0–100)" inputmode="decimal" error=${e.rolloutPercent} />
      </div>
      <fieldset>
        <legend>Requirements</legend>
        <div class="grid three">
          <${Field} name="arch" label="Architectures" hint="Comma-separated: amd64, arm64" error=${e['requirements.arch']} />
          <${Field} name="os" label="Operating systems" hint="e.g. ubuntu-24.04" error=${e['requirements.os']} />
          <${Field} name="minFreeBytes" label="Free disk space (bytes)" hint=${state.draft ? `Unpacked size: ${formatBytes(state.draft.scan.totalBytes)}` : ''} inputmode="numeric" error=${e['requirements.minFreeBytes']} />
        </div>
      </fieldset>
      <${Dependencies} />
      <div class="notes-editor">
        <div class="field">
          <label for="f-notes">Release notes (Markdown)</label>
          <textarea id="f-notes" rows="8" value=${state.fields.notes} aria-invalid=${e.notes ? 'true' : undefined} aria-describedby=${e.notes ? 'f-notes-error' : undefined} onInput=${(/** @type {any} */ ev) => setField('notes', ev.currentTarget.value)}></textarea>
          ${e.notes ? html`<p class="field-error" id="f-notes-error">${e.notes}</p>` : null}
        </div>
        <div class="field">
          <span class="label" id="preview-label">Preview</span>
          <div class="preview markdown" aria-labelledby="preview-label" dangerouslySetInnerHTML=${{ __html: markdownToSafeHtml(state.fields.notes || '_No notes._') }}></div>
        </div>
      </div>
      ${Object.keys(e).length > 0 ? html`<p class="error" role="alert">The release has ${Object.keys(e).length} problem${Object.keys(e).length === 1 ? '' : 's'}: see the marked fields.</p>` : null}
      <div class="buttons"><button type="submit" class="primary" id="validate" disabled=${state.busy.has('review')}>${state.busy.has('review') ? 'Checking…' : 'Check and show what will be signed'}</button></div>
    </form>`}
  </section>`;
}

function ReviewStep() {
  const r = state.review;
  return html`<section class="card" aria-labelledby="step-review">
    <h2 id="step-review">3 · Sign and publish</h2>
    ${state.published ? Published() : null}
    ${!r ? html`<p class="muted">Check the release to see the exact files that will be signed.</p>` : html`
      <p>${r.derivedTargets.length === 0 ? 'These two files' : `These ${2 + r.derivedTargets.length} files`} become targets of the repository, with exactly these sizes and SHA-256s${r.derivedTargets.length === 0 ? '' : ' (the tree index and any deltas are made from the package, as ota-repo add makes them)'}:</p>
      <table class="checksums">
        <thead><tr><th>Target</th><th class="num">Size</th><th>SHA-256</th></tr></thead>
        <tbody>
          ${[{ ...r.packageTarget, what: 'package' }, { ...r.manifestTarget, what: 'manifest' }, ...r.derivedTargets].map((t) => html`<tr>
            <td data-label="Target"><code>${t.name}</code><br /><span class="muted">${t.what}</span></td>
            <td data-label="Size" class="num">${t.length.toLocaleString('en')} bytes</td>
            <td data-label="SHA-256"><code class="hash">${t.sha256}</code></td></tr>`)}
        </tbody>
      </table>
      ${r.fileVersion ? html`<p class="ok-text">The package's version file says ${r.fileVersion}.</p>` : null}
      ${r.notes.map((n) => html`<p class="warn-note">${n}</p>`)}
      ${r.manifest.dependencies ? html`<p id="review-deps">Needs: ${Object.entries(r.manifest.dependencies).map(([p, range]) => html`<code class="chip">${p} ${range}</code> `)}</p>` : null}
      <details class="section" open=${r.manifest.dependencies !== undefined}><summary>Manifest (${r.manifestTarget.length} bytes)</summary><pre class="manifest">${r.manifestText}</pre></details>
      <h3>Who signs</h3>
      <table class="roles">
        <thead><tr><th>Role</th><th>Signs</th><th>Keys (threshold)</th><th>Expires</th><th>On this server</th></tr></thead>
        <tbody>${r.signing.map((s) => html`<tr>
          <td data-label="Role">${s.role}</td>
          <td data-label="Signs">${signsWhat(s, r.signing, r.manifest.product, r.manifest.channel)}</td>
          <td data-label="Keys"><span>${s.keyids.map((k) => html`<code class="hash">${k.slice(0, 16)}…</code> `)} (${s.threshold})</span></td>
          <td data-label="Expires">${s.expires}</td>
          <td data-label="On this server">${s.held ? html`<span class="badge">key held</span>` : html`<span class="badge muted-badge">offline</span>`}</td></tr>`)}</tbody>
      </table>
      <div class="buttons"><button type="button" class="primary" id="publish" disabled=${state.busy.has('publish') || (state.publishError !== '' && state.fieldErrors.version !== undefined)} aria-describedby=${state.publishError ? 'publish-error' : undefined} onClick=${publish}>${state.busy.has('publish') ? 'Signing and publishing…' : `Sign and publish ${r.manifest.product} ${r.manifest.version}`}</button></div>
      ${state.publishError ? html`<p class="error" role="alert" id="publish-error" tabindex="-1">${state.publishError}</p>` : null}`}
  </section>`;
}

/**
 * What a role signs when this release is published: through the product's delegated role when this
 * server holds its key (the server signs as src/repo/repository.ts signingRoleFor decides).
 * @param {{ role: string, held: boolean, paths?: string[] }} s
 * @param {Array<{ role: string, held: boolean, paths?: string[] }>} all
 * @param {string} product
 * @param {string} channel
 */
function signsWhat(s, all, product, channel) {
  const via = all.find((x) => x.held && x.paths?.includes(`${product}/${channel}/*`)) ?? all.find((x) => x.held && x.paths?.includes(`${product}/*`));
  if (s.paths) return `${via === s ? 'the files above, as ' : ''}targets under ${s.paths.join(', ')} (delegated by the targets role)`;
  if (via !== undefined && s.role === 'targets') return 'the delegations (not changed by this release)';
  if (via !== undefined && s.role === 'snapshot') return `the new ${via.role} version`;
  return ROLE_SIGNS[s.role] ?? '';
}

const ROLE_SIGNS = /** @type {Record<string, string>} */ ({
  targets: 'the files above (a new targets version)',
  snapshot: 'the new targets version',
  timestamp: 'the new snapshot',
  root: 'the keys of every role (not changed by a release)',
});

/** Which configured repository the release goes to; shown only when the studio may write to another than its own. */
function PublishTo() {
  const others = state.repos.filter((/** @type {any} */ x) => x.writable && !x.local);
  if (others.length === 0) return null;
  const own = state.repos.find((/** @type {any} */ x) => x.local);
  return html`<div class="field">
    <label for="f-repository">Publish to</label>
    <select id="f-repository" aria-describedby="f-repository-hint" value=${state.publishTo} onChange=${(/** @type {any} */ ev) => { set({ publishTo: ev.currentTarget.value, review: null, published: null }); void refreshProposals(); }}>
      <option value="">${own ? `${own.name} (this server)` : 'this server\'s repository'}</option>
      ${others.map((/** @type {any} */ x) => html`<option value=${x.name}>${x.name} · ${x.url}</option>`)}
    </select>
    <p class="hint" id="f-repository-hint">Versions, deltas and who signs are those of the chosen repository; it signs with the delegation key this server holds for it.</p>
  </div>`;
}

function Published() {
  const p = state.published;
  return html`<div class="verdict" data-ok="yes" id="published" tabindex="-1" role="status">
    <strong>Published ${p.product} ${p.version}</strong>${p.repository ? ` to ${p.repository}` : ''} on channel ${p.channel}${p.role ? `, signed by ${p.role}` : ''}: targets version ${p.publish.targetsVersion}, snapshot ${p.publish.snapshotVersion}, timestamp ${p.publish.timestampVersion}. Robots see it at their next check.
  </div>`;
}

function Page() {
  const signedIn = state.api !== null && state.context !== null;
  return html`
    <header class="top">
      <h1>ota-server · publisher studio</h1>
      <nav class="page-nav" aria-label="Pages"><a href="/studio/" aria-current="page">Studio</a><a href="/fleet/">Fleet</a></nav>
      ${signedIn ? html`<button type="button" class="sign-out" onClick=${() => signOut()}>Sign out</button>` : null}
    </header>
    <main>
      <p class="error" role="alert">${state.error}</p>
      ${signedIn
        ? html`<div class="steps-layout"><${SourceStep} /><div><${ManifestStep} /><${ReviewStep} /></div></div>
          <div class="steps-layout tools"><${Repositories} /><${TemplateEditor} /></div>`
        : html`<${SignIn} />`}
    </main>`;
}

const root = /** @type {HTMLElement} */ (document.getElementById('root'));
function draw() {
  render(html`<${Page} />`, root);
}

const saved = sessionStorage.getItem(TOKEN_KEY);
draw();
if (saved) void signIn(saved);

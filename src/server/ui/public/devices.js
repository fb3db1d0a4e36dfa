// The devices section: filter, search, one page of the fleet, accept and reject.
import { html } from './view.js';
import { dateTime, millis, relativeTime } from './format.js';

export const STATUSES = ['pending', 'accepted', 'rejected'];
export const PAGE_SIZES = [25, 50, 100];

/** @param {{ at: number | null, now: number }} p */
function When({ at, now }) {
  if (at === null || at === undefined) return html`<span class="muted">never</span>`;
  return html`<time datetime=${new Date(at).toISOString()} title=${dateTime(at)}>${relativeTime(at, now)}</time>`;
}

function Tags({ device }) {
  const others = Object.entries(device.tags ?? {}).filter(([k]) => k !== 'site');
  return html`
    ${device.site ? html`<span class="site">${device.site}</span>` : html`<span class="muted">no site</span>`}
    ${others.length > 0 ? html`<ul class="chips" aria-label="tags">${others.map(([k, v]) => html`<li key=${k}>${k}=${v}</li>`)}</ul>` : null}
  `;
}

/** The product's last measured downtime (first service stop to all health probes green), with its split. */
function Downtime({ d }) {
  if (!d) return null;
  const split = `stop ${millis(d.stopMs)}, switch ${millis(d.switchMs)}, start ${millis(d.startMs)}, first green probe ${millis(d.probeMs)}`;
  return html`<div class="downtime" data-run=${d.runId} title=${`run ${d.runId}: ${split}; green on the ${d.greenOn} release${d.acrossRestart ? ', across an otad restart' : ''}`}>
    <span class="muted">downtime</span> <strong>${millis(d.totalMs)}</strong>${d.greenOn === 'old' ? html`<span class="muted"> (until the old release was green)</span>` : null}
    <span class="muted downtime-split"> · otad ${millis(d.otadMs)} · ${split}</span>
  </div>`;
}

function Products({ products }) {
  if (!products || products.length === 0) return html`<span class="muted">no report yet</span>`;
  return html`<ul class="products">
    ${products.map(
      (p) => html`<li key=${p.product}>
        <span class="product-name">${p.product}</span> <strong>${p.version ?? '(none)'}</strong>
        <span class="state" data-state=${p.state}> ${p.state}</span>
        ${p.targetVersion && p.targetVersion !== p.version ? html`<span class="muted"> → ${p.targetVersion}</span>` : null}
        ${p.lastOutcome ? html`<span class="outcome" data-outcome=${p.lastOutcome}> · last run ${p.lastOutcome}</span>` : null}
        <${Downtime} d=${p.downtime} />
        ${p.error ? html`<div class="run-error">${p.error}</div>` : null}
      </li>`,
    )}
  </ul>`;
}

function Conflicts({ device, now }) {
  if (!device.conflicts || device.conflicts.length === 0) return null;
  return html`<div class="conflict-note" role="note">
    ${device.conflicts.map(
      (c) => html`<span key=${c.fingerprint} class="conflict-key">
        Another key <code>${c.fingerprint}</code> presented ${c.count} ${c.count === 1 ? 'time' : 'times'}${c.source ? ` from ${c.source}` : ''}, last
        ${' '}<${When} at=${c.lastSeen} now=${now} />
      </span>`,
    )}
    <span class="muted">Check-ins signed with it are refused; this record is unchanged (a cloned robot image?)</span>
  </div>`;
}

function Actions({ device, busy, onDecide }) {
  const canAccept = device.status !== 'accepted';
  const canReject = device.status !== 'rejected';
  return html`<div class="row-buttons">
    ${canAccept ? html`<button type="button" class="primary" disabled=${busy} onClick=${() => onDecide(device, 'accept')} aria-label=${`Accept ${device.id}`}>Accept</button>` : null}
    ${canReject ? html`<button type="button" class="danger" disabled=${busy} onClick=${() => onDecide(device, 'reject')} aria-label=${`Reject ${device.id}`}>Reject</button>` : null}
  </div>`;
}

function DeviceRow({ device, now, busy, onDecide }) {
  const conflict = device.conflicts && device.conflicts.length > 0;
  return html`<tr key=${device.id} data-device=${device.id} class=${conflict ? 'has-conflict' : ''}>
    <td data-label="Device"><div class="cell">
      <span class="device-id">${device.id}</span>
      ${conflict ? html` <span class="badge bad">key conflict</span>` : null}
      <${Conflicts} device=${device} now=${now} />
    </div></td>
    <td data-label="Status"><div class="cell"><span class="badge" data-status=${device.status}>${device.status}</span></div></td>
    <td data-label="Key"><div class="cell"><code class="fingerprint" title=${device.publicKey}>${device.fingerprint}</code></div></td>
    <td data-label="Site and tags"><div class="cell"><${Tags} device=${device} /></div></td>
    <td data-label="Products"><div class="cell"><${Products} products=${device.products} /></div></td>
    <td data-label="Last seen"><div class="cell"><${When} at=${device.lastSeen} now=${now} /></div></td>
    <td data-label="Actions"><div class="cell"><${Actions} device=${device} busy=${busy} onDecide=${onDecide} /></div></td>
  </tr>`;
}

/**
 * @param {{ state: any, now: number, actions: any }} p
 */
export function DevicesSection({ state, now, actions }) {
  const { query, devices } = state;
  const total = devices?.total ?? 0;
  const shown = devices?.devices ?? [];
  const first = total === 0 ? 0 : query.offset + 1;
  const last = query.offset + shown.length;
  return html`<section class="card" aria-labelledby="devices-title">
    <h2 id="devices-title">Devices</h2>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <div>
        <label for="status-filter">Status</label>
        <select id="status-filter" value=${query.status} onChange=${(e) => actions.setQuery({ status: e.currentTarget.value })}>
          <option value="">all</option>
          ${STATUSES.map((s) => html`<option value=${s}>${s}</option>`)}
        </select>
      </div>
      <div class="grow">
        <label for="device-search">Search id or site</label>
        <input id="device-search" type="search" value=${query.q} autocomplete="off" spellcheck="false" onInput=${(e) => actions.setSearch(e.currentTarget.value)} />
      </div>
      <div>
        <label for="page-size">Per page</label>
        <select id="page-size" value=${String(query.limit)} onChange=${(e) => actions.setQuery({ limit: Number(e.currentTarget.value) })}>
          ${PAGE_SIZES.map((n) => html`<option value=${String(n)}>${n}</option>`)}
        </select>
      </div>
    </form>
    ${devices === null
      ? html`<p class="muted">Loading devices…</p>`
      : shown.length === 0
        ? html`<p class="muted">${query.status || query.q ? 'No device matches this filter.' : 'No device has checked in yet.'}</p>`
        : html`<div class="table-wrap">
            <table class="devices">
              <caption class="visually-hidden">Devices ${first} to ${last} of ${total}</caption>
              <thead>
                <tr><th scope="col">Device</th><th scope="col">Status</th><th scope="col">Key</th><th scope="col">Site and tags</th><th scope="col">Products</th><th scope="col">Last seen</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr>
              </thead>
              <tbody>
                ${shown.map((d) => html`<${DeviceRow} key=${d.id} device=${d} now=${now} busy=${state.busy.has(`device:${d.id}`)} onDecide=${actions.decide} />`)}
              </tbody>
            </table>
          </div>`}
    <nav class="pager" aria-label="Device pages">
      <span class="pager-range" aria-live="polite">${total === 0 ? 'no devices' : `${first}–${last} of ${total}`}</span>
      <button type="button" disabled=${query.offset === 0} onClick=${() => actions.setQuery({ offset: Math.max(0, query.offset - query.limit) }, true)}>Previous</button>
      <button type="button" disabled=${last >= total} onClick=${() => actions.setQuery({ offset: query.offset + query.limit }, true)}>Next</button>
    </nav>
  </section>`;
}

// The rollouts section: each rollout with its batches, counts and progress, halt and resume; then
// the site budgets and the leases held. A server without rollouts answers 404 on their endpoints:
// that is shown as a note, not an error.
import { html } from './view.js';
import { dateTime, duration, percent, relativeTime, selectorLabel } from './format.js';

function When({ at, now }) {
  if (at === null || at === undefined) return html`<span class="muted">—</span>`;
  return html`<time datetime=${new Date(at).toISOString()} title=${dateTime(at)}>${relativeTime(at, now)}</time>`;
}

/** Committed share and failure share of a batch, drawn as one stacked bar and said in words. */
function BatchProgress({ counts }) {
  const devices = counts.devices ?? 0;
  const failed = (counts.failed ?? 0) + (counts.rolledBack ?? 0);
  const committed = counts.committed ?? 0;
  const running = counts.running ?? 0;
  const share = (n) => (devices > 0 ? `${(n / devices) * 100}%` : '0%');
  return html`<div class="batch-progress">
    <div class="bar" aria-hidden="true">
      <span class="bar-committed" style=${{ width: share(committed) }}></span>
      <span class="bar-failed" style=${{ width: share(failed) }}></span>
      <span class="bar-running" style=${{ width: share(running) }}></span>
    </div>
    <span class="bar-text">
      ${committed} of ${devices} committed (${percent(committed, devices)})${failed > 0 ? html`, <span class="bad-text">${failed} failed or rolled back (${percent(failed, devices)})</span>` : ''}${running > 0 ? `, ${running} running` : ''}
    </span>
  </div>`;
}

function Batches({ rollout, now }) {
  const batches = rollout.batches ?? [];
  if (batches.length === 0) return html`<p class="muted">No batches.</p>`;
  return html`<div class="table-wrap">
    <table class="batches">
      <caption class="visually-hidden">Batches of ${rollout.product} ${rollout.version}</caption>
      <thead>
        <tr>
          <th scope="col">Batch</th><th scope="col">Selects</th><th scope="col">State</th>
          <th scope="col" class="num">Devices</th><th scope="col" class="num">Not started</th><th scope="col" class="num">Running</th>
          <th scope="col" class="num">Committed</th><th scope="col" class="num">Rolled back</th><th scope="col" class="num">Failed</th>
          <th scope="col" class="progress-col">Progress</th>
        </tr>
      </thead>
      <tbody>
        ${batches.map((b) => {
          const c = b.counts ?? {};
          return html`<tr key=${b.index} data-batch=${b.index}>
            <td data-label="Batch"><div class="cell">${b.index}</div></td>
            <td data-label="Selects"><div class="cell">${selectorLabel(b.selector)}</div></td>
            <td data-label="State"><div class="cell"><span class="badge" data-batch-state=${b.state}>${b.state}</span>${b.openedAt ? html` <span class="muted small">opened <${When} at=${b.openedAt} now=${now} /></span>` : null}</div></td>
            <td data-label="Devices" class="num"><div class="cell">${c.devices ?? 0}</div></td>
            <td data-label="Not started" class="num"><div class="cell">${c.notStarted ?? 0}</div></td>
            <td data-label="Running" class="num"><div class="cell">${c.running ?? 0}</div></td>
            <td data-label="Committed" class="num"><div class="cell">${c.committed ?? 0}</div></td>
            <td data-label="Rolled back" class=${`num${c.rolledBack ? ' bad-text' : ''}`}><div class="cell">${c.rolledBack ?? 0}</div></td>
            <td data-label="Failed" class=${`num${c.failed ? ' bad-text' : ''}`}><div class="cell">${c.failed ?? 0}</div></td>
            <td data-label="Progress" class="progress-col"><div class="cell"><${BatchProgress} counts=${c} /></div></td>
          </tr>`;
        })}
      </tbody>
    </table>
  </div>`;
}

function Rollout({ rollout, now, busy, actions }) {
  const halt = rollout.halt;
  return html`<article class="rollout" data-rollout=${rollout.id} aria-labelledby=${`rollout-${rollout.id}`}>
    <header class="rollout-head">
      <h3 id=${`rollout-${rollout.id}`}>${rollout.product} ${rollout.version}</h3>
      <span class="badge" data-rollout-state=${rollout.state}>${rollout.state}</span>
      <div class="row-buttons">
        ${rollout.state === 'active' ? html`<button type="button" class="danger" disabled=${busy} onClick=${() => actions.askHalt(rollout)}>Halt</button>` : null}
        ${rollout.state === 'halted' ? html`<button type="button" class="primary" disabled=${busy} onClick=${() => actions.resume(rollout)}>Resume</button>` : null}
      </div>
    </header>
    <p class="muted small">
      Started <${When} at=${rollout.createdAt} now=${now} />
      ${typeof rollout.soakMs === 'number' ? ` · soak ${duration(rollout.soakMs)}` : ''}
      ${typeof rollout.failureThreshold === 'number' ? ` · halts above ${percent(rollout.failureThreshold, 1)} failures` : ''}
      ${typeof rollout.minReports === 'number' ? ` with at least ${rollout.minReports} reports` : ''}
    </p>
    ${halt
      ? html`<p class="halt-note" role="note">
          <strong>Halted by ${halt.by === 'server' ? 'the server' : halt.by === 'operator' ? 'an operator' : halt.by}</strong>
          ${' '}<${When} at=${halt.at} now=${now} />: ${halt.reason}
        </p>`
      : rollout.resumedAt
        ? html`<p class="muted small">Resumed <${When} at=${rollout.resumedAt} now=${now} />; failures before it no longer count toward a halt.</p>`
        : null}
    <${Batches} rollout=${rollout} now=${now} />
  </article>`;
}

function Leases({ leases, now }) {
  if (leases === null) return null;
  if (leases.unavailable) return null;
  const budgets = Object.entries(leases.budgets ?? {});
  const held = leases.leases ?? [];
  return html`<div class="leases">
    <h3>Site budgets</h3>
    ${budgets.length === 0
      ? html`<p class="muted">No site has a disruption budget.</p>`
      : html`<ul class="budgets">
          ${budgets.map(
            ([site, b]) => html`<li key=${site} data-site=${site}>
              <span class="site">${site}</span>: ${b.held} ${b.held === 1 ? 'lease' : 'leases'} held${b.max === 0 ? ' (no budget)' : ` of ${b.max} allowed`}
              ${b.max > 0 ? html`<div class="bar small-bar" aria-hidden="true"><span class=${b.held >= b.max ? 'bar-failed' : 'bar-running'} style=${{ width: `${Math.min(100, (b.held / b.max) * 100)}%` }}></span></div>` : null}
            </li>`,
          )}
        </ul>`}
    <h3>Leases held</h3>
    ${held.length === 0
      ? html`<p class="muted">No robot holds a lease.</p>`
      : html`<ul class="lease-list">
          ${held.map(
            (l) => html`<li key=${l.id}>
              <span class="device-id">${l.deviceId}</span> at <span class="site">${l.site ?? 'no site'}</span>: ${l.product} ${l.version}, expires <${When} at=${l.expiresAt} now=${now} />
            </li>`,
          )}
        </ul>`}
  </div>`;
}

export function RolloutsSection({ state, now, actions }) {
  const { rollouts, leases } = state;
  let body;
  if (rollouts === null) body = html`<p class="muted">Loading rollouts…</p>`;
  else if (rollouts.unavailable) {
    body = html`<p class="note" data-rollouts="unavailable">Rollouts need a server with rollouts: this ota-server has no rollout endpoints (${rollouts.message}).</p>`;
  } else if (rollouts.list.length === 0) body = html`<p class="muted">No rollouts yet. Start one with <code>ota-server rollouts create</code> or <code>POST /api/v1/rollouts</code>.</p>`;
  else body = rollouts.list.map((r) => html`<${Rollout} key=${r.id} rollout=${r} now=${now} busy=${state.busy.has(`rollout:${r.id}`)} actions=${actions} />`);
  return html`<section class="card" aria-labelledby="rollouts-title">
    <h2 id="rollouts-title">Rollouts</h2>
    ${body}
    <${Leases} leases=${leases} now=${now} />
  </section>`;
}

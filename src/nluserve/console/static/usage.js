// Usage: the caller's own calls and characters per day and model (GET /v1/usage), today's
// quota and the rate-limit policy read from the RateLimit / RateLimit-Policy response headers.

import { call, parseLimits, serverTime, superseded } from './api.js';
import { barChart, lastDays, seriesOf } from './chart.js';
import { alert, fillWith, h, table } from './dom.js';
import { describe } from './errors.js';
import { num, t } from './i18n.js';

const PERIODS = [7, 14, 30];

let root;
let built = false;
let last = null; // {days, data, policy, limits, now}
let ticket = 0; // the latest load(): only its answer is drawn (periods picked quickly, logout)
const el = {};

export function init(section) {
  root = section;
  window.addEventListener('nluserve:lang', () => {
    if (!built) return;
    renderPeriods();
    render();
  });
}

export function reset() {
  ticket += 1;
  built = false;
  last = null;
  fillWith(root);
}

export async function enter() {
  if (!built) build();
  await load();
}

function build() {
  el.days = h('select', { id: 'us-days', name: 'days' });
  renderPeriods();
  el.refresh = h('button', { type: 'button', id: 'us-refresh', class: 'secondary', 'data-i18n': 'refresh' }, t('refresh'));
  el.message = h('div', { id: 'us-message' });
  el.body = h('div', { id: 'us-body' });
  el.days.addEventListener('change', load);
  el.refresh.addEventListener('click', load);
  fillWith(root,
    h('h1', { id: 'usage-title', tabindex: '-1', 'data-i18n': 'us.title' }, t('us.title')),
    h(
      'div',
      { class: 'toolbar' },
      h('label', { for: 'us-days', 'data-i18n': 'us.period' }, t('us.period')),
      el.days,
      el.refresh,
    ),
    el.message,
    el.body,
  );
  built = true;
}

function renderPeriods() {
  const value = el.days.value || String(PERIODS[0]);
  fillWith(el.days, ...PERIODS.map((n) => h('option', { value: n }, t('us.days', { n }))));
  el.days.value = value;
}

async function load() {
  const mine = ++ticket;
  const days = Number(el.days.value) || PERIODS[0];
  const hadFocus = document.activeElement === el.refresh; // disabling drops it to <body>
  el.refresh.disabled = true;
  el.body.setAttribute('aria-busy', 'true');
  try {
    const { data, headers } = await call('GET', `/v1/usage?days=${days}`);
    if (mine !== ticket) return; // a later period (or a new session) has been asked for
    last = {
      days,
      data,
      policy: parseLimits(headers.get('RateLimit-Policy')),
      limits: parseLimits(headers.get('RateLimit')),
      now: serverTime(headers),
    };
    fillWith(el.message);
    render();
  } catch (err) {
    if (mine !== ticket || superseded(err)) return;
    // What is drawn belongs to another period than the one now selected: take it away.
    last = null;
    fillWith(el.body);
    fillWith(el.message, alert(describe(err)));
  } finally {
    if (mine === ticket) {
      el.refresh.disabled = false;
      el.body.removeAttribute('aria-busy');
      if (hadFocus && (document.activeElement === document.body || !document.activeElement)) el.refresh.focus();
    }
  }
}

function duration(seconds) {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  return hours ? t('dur.hm', { h: hours, m: minutes }) : t('dur.m', { m: minutes });
}

function quotaCard(rows, today) {
  const { policy, limits } = last;
  const parts = [];
  if (policy.daily) {
    const limit = policy.daily.q;
    const todayCalls = rows.filter((r) => r.day === today).reduce((sum, r) => sum + r.calls, 0);
    const used = limits.daily && Number.isFinite(limits.daily.r) ? Math.max(0, limit - limits.daily.r) : todayCalls;
    parts.push(
      h('h2', {}, t('us.quota')),
      h('progress', { id: 'us-quota', max: Math.max(1, limit), value: Math.min(used, limit), 'data-used': used, 'data-limit': limit, 'aria-label': t('us.quota') }),
      h('p', {}, t('us.quotaUsed', { used: num(used), limit: num(limit) })),
      limits.daily && Number.isFinite(limits.daily.t) ? h('p', { class: 'muted' }, t('us.quotaReset', { time: duration(limits.daily.t) })) : null,
    );
  }
  if (policy.burst) {
    parts.push(
      h('h2', {}, t('us.rate')),
      h('p', { id: 'us-rate', 'data-burst': policy.burst.q, 'data-window': policy.burst.w }, t('us.rateText', { burst: num(policy.burst.q), w: num(policy.burst.w) })),
      limits.burst && Number.isFinite(limits.burst.r) ? h('p', { class: 'muted' }, t('us.rateNow', { r: num(limits.burst.r) })) : null,
    );
  }
  if (!parts.length) parts.push(h('p', { class: 'muted' }, t('us.noheaders')));
  return h('div', { class: 'card quota' }, parts);
}

function render() {
  if (!last) return;
  // The server's UTC days, whatever the browser's time zone or clock: the rows are keyed by them.
  const days = lastDays(last.days, last.now);
  const inWindow = new Set(days);
  const rows = last.data.rows.filter((r) => inWindow.has(r.day));
  const today = days[days.length - 1];
  const byModel = (r) => r.model;
  const totals = new Map();
  for (const r of rows) {
    const acc = totals.get(r.model) ?? { calls: 0, texts: 0, chars: 0, errors: 0 };
    for (const field of Object.keys(acc)) acc[field] += r[field];
    totals.set(r.model, acc);
  }
  const errors = rows.filter((r) => r.errors > 0).sort((a, b) => b.day.localeCompare(a.day));
  fillWith(el.body,
    quotaCard(rows, today),
    h(
      'div',
      { class: 'charts' },
      barChart({ id: 'calls', title: t('us.calls'), days, series: seriesOf(rows, days, byModel, 'calls') }),
      barChart({ id: 'chars', title: t('us.chars'), days, series: seriesOf(rows, days, byModel, 'chars') }),
    ),
    h('p', { class: 'muted', id: 'us-utc' }, t('us.utc')),
    rows.length ? null : h('p', { class: 'muted' }, t('us.empty')),
    h('h2', {}, t('us.byModel')),
    table(
      [t('col.model'), t('col.calls'), t('col.texts'), t('col.chars'), t('col.errors')],
      [...totals.entries()].map(([model, acc]) => [model, num(acc.calls), num(acc.texts), num(acc.chars), num(acc.errors)]),
      { id: 'us-models' },
    ),
    h('h2', { id: 'us-errors-title' }, t('us.errors')),
    h('p', { class: 'muted', id: 'us-errors-note' }, t('us.errorsNote')),
    errors.length
      ? table(
          [t('col.day'), t('col.model'), t('col.errors'), t('col.status'), t('col.calls')],
          errors.map((r) => [r.day, r.model, num(r.errors), statusText(r.error_statuses), num(r.calls)]),
          { id: 'us-errors' },
        )
      : h('p', { class: 'muted' }, t('us.noerrors')),
  );
}

// "429 ×3, 504 ×1": which statuses the errors of a row had, most frequent first.
function statusText(statuses) {
  return Object.entries(statuses ?? {})
    .sort((a, b) => b[1] - a[1])
    .map(([status, count]) => `${status} ×${count}`)
    .join(', ');
}

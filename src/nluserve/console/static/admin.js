// Admin: tenants (status, quota, today's calls), create/disable tenants, create/revoke keys,
// calls per tenant per day. Nothing is drawn until the API has answered /admin/tenants with
// 200: a tenant key gets the API's 403 and sees only "admin only".

import { call, serverTime, session, superseded } from './api.js';
import { barChart, lastDays, seriesOf } from './chart.js';
import { alert, announce, copyButton, fillWith, h, table } from './dom.js';
import { describe } from './errors.js';
import { lang, num, t } from './i18n.js';

const CHART_DAYS = 14;

let root;
let state = null; // {tenants, usage, now}
let openKeys = null; // tenant id whose keys are shown
let keys = [];
let revealed = null; // {name, key}: a new key, shown once
let ticket = 0; // the latest load(): an older answer, or one from an ended session, is dropped
const el = {};

export function init(section) {
  root = section;
  window.addEventListener('nluserve:lang', () => {
    if (state) render();
    else if (root.querySelector('[data-admin-only]')) denied();
  });
}

export function reset() {
  ticket += 1;
  state = null;
  keys = [];
  openKeys = null;
  revealed = null;
  fillWith(root);
}

export async function enter() {
  state = null;
  openKeys = null;
  revealed = null;
  fillWith(root,
    h('h1', { id: 'admin-title', tabindex: '-1', 'data-i18n': 'ad.title' }, t('ad.title')),
    h('p', { class: 'muted' }, t('loading')),
  );
  await load();
}

function denied() {
  fillWith(root,
    h('h1', { id: 'admin-title', tabindex: '-1', 'data-i18n': 'ad.title' }, t('ad.title')),
    h('p', { class: 'alert warning', role: 'alert', id: 'ad-denied', 'data-admin-only': '' }, t('ad.only')),
  );
}

async function load(epoch = session.epoch()) {
  const mine = ++ticket;
  let tenants;
  let usage = null;
  let usageError = null;
  let now;
  try {
    ({ data: tenants } = await call('GET', '/admin/tenants', { epoch }));
  } catch (err) {
    if (mine !== ticket || superseded(err)) return;
    state = null;
    if (err.status === 403 && err.slug === 'forbidden') denied();
    else {
      // A key just made is shown once: it stays on the page whatever failed after it.
      fillWith(root,
        h('h1', { id: 'admin-title', tabindex: '-1' }, t('ad.title')),
        alert(describe(err)),
        revealedBox(),
      );
    }
    return;
  }
  try {
    // The usage report costs a burst token; when it is refused (429) or its store is away
    // (503), the tenants are still shown, with the chart's error in its place.
    const answer = await call('GET', `/admin/usage?days=${CHART_DAYS}`, { epoch });
    usage = answer.data;
    now = serverTime(answer.headers);
  } catch (err) {
    if (mine !== ticket || superseded(err)) return;
    usageError = describe(err);
  }
  if (mine !== ticket) return;
  state = { tenants, usage, usageError, now };
  if (openKeys && !(await loadKeys(openKeys, false, epoch))) return;
  if (mine !== ticket) return;
  render();
}

/** Fetch a tenant's keys; false when the answer belongs to an ended session. */
async function loadKeys(tenantId, redraw = true, epoch = session.epoch()) {
  try {
    ({ data: keys } = await call('GET', `/admin/tenants/${encodeURIComponent(tenantId)}/keys`, { epoch }));
    openKeys = tenantId;
  } catch (err) {
    if (superseded(err)) return false;
    flash(describe(err), 'error');
    openKeys = null;
  }
  if (redraw && state) render();
  return true;
}

function flash(text, kind = 'ok') {
  fillWith(el.message, kind === 'ok' ? h('p', { class: 'alert ok' }, text) : alert(text));
  announce(text);
}

function statusName(status) {
  return t(`status.${status}`);
}

/**
 * Ask before a destructive action. `typed`: the action can lock the user out, so a click on
 * OK is not enough: the name (or key id) has to be typed. False when the user backs out.
 */
function confirmed(question, typed) {
  const ok = typed === undefined ? window.confirm(question) : (window.prompt(question) ?? '').trim() === typed;
  if (!ok) flash(t('ad.cancelled'), 'ok');
  return ok;
}

async function setStatus(tenant, status) {
  if (status === 'disabled') {
    const ok = tenant.admin
      ? confirmed(t('ad.confirmDisableAdmin', { name: tenant.name }), tenant.name)
      : confirmed(t('ad.confirmDisable', { name: tenant.name }));
    if (!ok) return;
  }
  const epoch = session.epoch();
  try {
    await call('PATCH', `/admin/tenants/${encodeURIComponent(tenant.id)}`, { body: { status }, epoch });
    await load(epoch);
    if (epoch === session.epoch()) flash(t('ad.statusChanged', { name: tenant.name, status: statusName(status) }));
  } catch (err) {
    if (!superseded(err)) flash(describe(err), 'error');
  }
}

/** The create form's own checks (the form is novalidate so that messages are the console's):
 * a typo in the quota is refused, never sent as "no quota" (which means the default). */
function formProblem(form) {
  const { name, quota } = form.elements;
  for (const field of [name, quota]) field.removeAttribute('aria-invalid');
  let problem = null;
  // \p{L}\p{N}: the server's Python \w takes Chinese names (测试公司); JavaScript's \w is ASCII.
  if (!name.value.trim() || !/^[\p{L}\p{N}\p{M}_.-]+$/u.test(name.value.trim())) problem = [name, t('ad.badName')];
  else if (!quota.checkValidity() || (quota.value.trim() && !Number.isSafeInteger(Number(quota.value)))) {
    problem = [quota, t('ad.badQuota')];
  }
  if (!problem) return null;
  problem[0].setAttribute('aria-invalid', 'true');
  return problem;
}

async function createTenant(form) {
  const problem = formProblem(form);
  if (problem) {
    flash(problem[1], 'error');
    problem[0].focus();
    return;
  }
  const name = form.elements.name.value.trim();
  const quota = form.elements.quota.value.trim();
  const body = { name };
  if (quota) body.quota_daily = Number(quota);
  const epoch = session.epoch();
  try {
    const { data } = await call('POST', '/admin/tenants', { body, epoch });
    revealed = { name: data.tenant.name, key: data.api_key };
    form.reset();
    await load(epoch);
    if (epoch === session.epoch()) {
      flash(t('ad.createdTenant', { name: data.tenant.name }));
      focusNewKey();
    }
  } catch (err) {
    if (!superseded(err)) flash(describe(err), 'error');
  }
}

async function createKey(tenant, form) {
  const name = form.elements.keyname.value.trim();
  const epoch = session.epoch();
  try {
    const { data } = await call('POST', `/admin/tenants/${encodeURIComponent(tenant.id)}/keys`, { body: { name }, epoch });
    revealed = { name: tenant.name, key: data.api_key };
    if (await loadKeys(tenant.id, true, epoch)) focusNewKey();
  } catch (err) {
    if (!superseded(err)) flash(describe(err), 'error');
  }
}

async function revokeKey(tenant, key) {
  const ok = key.id === session.keyId()
    ? confirmed(t('ad.confirmRevokeSelf', { id: key.id }), key.id)
    : confirmed(t('ad.confirmRevoke', { id: key.id, name: tenant.name }));
  if (!ok) return;
  const epoch = session.epoch();
  try {
    await call('DELETE', `/admin/tenants/${encodeURIComponent(tenant.id)}/keys/${encodeURIComponent(key.id)}`, { epoch });
    if (await loadKeys(tenant.id, true, epoch)) {
      flash(t('ad.keyRevoked', { id: key.id }));
      // The Revoke button became a badge: focus the next key's Revoke, else the panel heading.
      const panel = root.querySelector('#ad-keys');
      const next = panel?.querySelector('button[data-action=revoke]') ?? panel?.querySelector('#ad-keys-title');
      next?.focus();
    }
  } catch (err) {
    if (!superseded(err)) flash(describe(err), 'error');
  }
}

/** After a key is made, focus (and select) the box that shows it once, ready for Ctrl+C. */
function focusNewKey() {
  const input = root.querySelector('#ad-new-key');
  if (!input) return;
  input.focus();
  input.select();
}

/** An API time as "2026-11-24 14:16:27 UTC": the API sends UTC, and the page says so. */
function when(value) {
  if (!value) return '';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return value;
  return `${date.toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

function expired(key) {
  return !key.revoked_at && Boolean(key.expires_at) && Date.parse(key.expires_at) <= Date.now();
}

function revealedBox() {
  if (!revealed) return null;
  const input = h('input', { id: 'ad-new-key', type: 'text', readonly: true, value: revealed.key, spellcheck: 'false', autocomplete: 'off' });
  const dismiss = h('button', { type: 'button', class: 'secondary small' }, t('ad.dismiss'));
  dismiss.addEventListener('click', () => {
    revealed = null;
    render();
  });
  return h(
    'div',
    { class: 'card reveal', role: 'region', 'aria-labelledby': 'ad-new-key-label' },
    h('p', { id: 'ad-new-key-label' }, h('strong', {}, t('ad.newKey', { name: revealed.name }))),
    h('label', { for: 'ad-new-key', class: 'visually-hidden' }, t('ad.newKeyLabel')),
    h('div', { class: 'inline' }, input, copyButton(() => input.value, { copy: t('copy'), copied: t('copied'), manual: t('copy.manual'), name: t('copy.of', { what: t('ad.newKeyLabel') }) }, input), dismiss),
  );
}

/** A rate per second with 3 significant digits: 0.01/s stays 0.01/s, never "0.0/s". */
function rate(value) {
  return new Intl.NumberFormat(lang() === 'zh' ? 'zh-CN' : 'en', { maximumSignificantDigits: 3 }).format(value);
}

function tenantRow(tenant, today) {
  const toggle = h(
    'button',
    {
      type: 'button',
      class: 'secondary small',
      'data-action': 'status',
      'data-tenant': tenant.name,
      'aria-label': t(tenant.status === 'active' ? 'ad.disableOf' : 'ad.enableOf', { name: tenant.name }),
    },
    tenant.status === 'active' ? t('ad.disable') : t('ad.enable'),
  );
  toggle.addEventListener('click', () => setStatus(tenant, tenant.status === 'active' ? 'disabled' : 'active'));
  const showKeys = h(
    'button',
    {
      type: 'button',
      class: 'secondary small',
      'data-action': 'keys',
      'data-tenant': tenant.name,
      'aria-expanded': String(openKeys === tenant.id),
      'aria-label': t(openKeys === tenant.id ? 'ad.hideKeysOf' : 'ad.keysOf', { name: tenant.name }),
    },
    openKeys === tenant.id ? t('ad.hideKeys') : t('ad.keys'),
  );
  showKeys.addEventListener('click', () => {
    if (openKeys === tenant.id) {
      openKeys = null;
      render();
    } else loadKeys(tenant.id);
  });
  return [
    h('span', { 'data-tenant-name': tenant.name }, tenant.name),
    h('span', { class: `badge ${tenant.status}`, 'data-status': tenant.status }, statusName(tenant.status)),
    tenant.admin ? t('role.admin') : t('role.tenant'),
    num(tenant.quota_daily),
    t('rate.value', { rate: rate(tenant.rate_per_s), burst: num(tenant.burst) }),
    num(today.get(tenant.id) ?? 0),
    h('span', { class: 'inline' }, toggle, showKeys),
  ];
}

function keysPanel(tenant) {
  const form = h(
    'form',
    { class: 'inline', id: 'ad-key-form', novalidate: true },
    h('label', { for: 'ad-key-name' }, t('ad.keyName')),
    h('input', { id: 'ad-key-name', name: 'keyname', type: 'text', maxlength: 100, autocomplete: 'off' }),
    h('button', { type: 'submit', class: 'small' }, t('ad.createKey')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    createKey(tenant, form);
  });
  const own = session.keyId();
  const rows = keys.map((key) => {
    const revoke = h(
      'button',
      { type: 'button', class: 'danger small', 'data-action': 'revoke', 'data-key': key.id, 'aria-label': t('ad.revokeKey', { id: key.id }) },
      t('ad.revoke'),
    );
    revoke.addEventListener('click', () => revokeKey(tenant, key));
    return [
      h(
        'span',
        {},
        h('code', {}, key.id),
        key.id === own ? [' ', h('span', { class: 'badge self', 'data-this-session': '' }, t('ad.thisSession'))] : null,
      ),
      key.name,
      when(key.created_at),
      key.last_used_at ? when(key.last_used_at) : t('ad.never'),
      when(key.expires_at),
      key.revoked_at
        ? h('span', { class: 'badge disabled' }, `${t('ad.revoked')} ${when(key.revoked_at)}`)
        : expired(key)
          ? h('span', { class: 'badge disabled', 'data-expired': '' }, t('ad.expired'))
          : revoke,
    ];
  });
  return h(
    'section',
    { class: 'card', id: 'ad-keys', 'aria-labelledby': 'ad-keys-title' },
    h('h3', { id: 'ad-keys-title', tabindex: '-1' }, t('ad.keysOf', { name: tenant.name })),
    rows.length
      ? table([t('col.keyId'), t('col.name'), t('col.created'), t('col.lastUsed'), t('col.expires'), t('col.actions')], rows)
      : h('p', { class: 'muted' }, t('ad.nokeys')),
    form,
  );
}

function createForm() {
  const form = h(
    'form',
    { class: 'card', id: 'ad-create', novalidate: true },
    h('h2', {}, t('ad.create')),
    h(
      'div',
      { class: 'grid2' },
      h('div', { class: 'field' }, h('label', { for: 'ad-name' }, t('ad.name')), h('input', { id: 'ad-name', name: 'name', type: 'text', required: true, maxlength: 100, autocomplete: 'off' })),
      h('div', { class: 'field' }, h('label', { for: 'ad-quota' }, t('ad.quotaOpt')), h('input', { id: 'ad-quota', name: 'quota', type: 'number', min: 0, step: 1, inputmode: 'numeric', 'aria-describedby': 'ad-message' })),
    ),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'ad-create-submit' }, t('ad.createBtn'))),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    createTenant(form);
  });
  return form;
}

/** A selector for the focused control, so a re-render can give focus back to its twin. */
function focusedSelector() {
  const active = document.activeElement;
  if (!active || !root.contains(active)) return null;
  if (active.id) return `#${CSS.escape(active.id)}`;
  const { action, tenant, key } = active.dataset;
  if (!action) return null;
  let selector = `[data-action="${CSS.escape(action)}"]`;
  if (tenant) selector += `[data-tenant="${CSS.escape(tenant)}"]`;
  if (key) selector += `[data-key="${CSS.escape(key)}"]`;
  return selector;
}

function render() {
  const { tenants, usage, usageError, now } = state;
  const refocus = focusedSelector();
  const days = lastDays(CHART_DAYS, now);
  const today = new Map();
  for (const row of usage?.rows ?? []) {
    if (row.day === days[days.length - 1]) today.set(row.tenant_id, (today.get(row.tenant_id) ?? 0) + row.calls);
  }
  const names = new Map(tenants.map((tenant) => [tenant.id, tenant.name]));
  const open = tenants.find((tenant) => tenant.id === openKeys);
  el.message = el.message && root.contains(el.message) ? el.message : h('div', { id: 'ad-message' });
  fillWith(root,
    h('h1', { id: 'admin-title', tabindex: '-1', 'data-i18n': 'ad.title' }, t('ad.title')),
    el.message,
    revealedBox(),
    h('h2', {}, t('ad.tenants')),
    table(
      [t('col.name'), t('col.status'), t('col.role'), t('col.quota'), t('col.rate'), t('ad.today'), t('col.actions')],
      tenants.map((tenant) => tenantRow(tenant, today)),
      { id: 'ad-tenants' },
    ),
    open ? keysPanel(open) : null,
    createForm(),
    usage
      ? barChart({
          id: 'tenants',
          title: t('ad.chart'),
          days,
          series: seriesOf(usage.rows, days, (row) => names.get(row.tenant_id) ?? row.tenant_id.slice(0, 8), 'calls'),
        })
      : h('section', { class: 'card', id: 'ad-usage-error' }, h('h2', {}, t('ad.chart')), alert(usageError)),
  );
  if (refocus) root.querySelector(refocus)?.focus();
}

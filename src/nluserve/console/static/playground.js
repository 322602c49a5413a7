// Playground: pick a model, type texts (one per line), optionally pick entity types by their
// Chinese names, and see the answer highlighted, tabulated, timed and as curl/Python snippets.

import { apiBase, call, superseded } from './api.js';
import { alert, announce, copyButton, fillWith, h, table } from './dom.js';
import { describe } from './errors.js';
import { lang, num, t } from './i18n.js';

const SAMPLE = '张三在北京大学读书。\n谷爱凌在北京冬奥会获得金牌。';
const COLOURS = 10;

let root;
let built = false;
let models = [];
let last = null; // {model, path, body, texts, data, ms}
// The latest run and the latest model list: an older answer, or one from before a logout or
// login, is dropped.
let ticket = 0;
let listing = 0;
const el = {};

export function init(section) {
  root = section;
  window.addEventListener('nluserve:lang', () => {
    if (!built) return;
    renderLabels();
    renderOutput();
  });
}

export function reset() {
  ticket += 1;
  listing += 1;
  built = false;
  models = [];
  last = null;
  fillWith(root);
}

export async function enter() {
  if (!built) build();
  fillWith(el.message);
  const mine = ++listing;
  try {
    const { data } = await call('GET', '/v1/models');
    if (mine !== listing) return;
    models = data.models;
  } catch (err) {
    if (mine !== listing || superseded(err)) return;
    fillWith(el.message, alert(describe(err)));
    return;
  }
  const previous = el.model.value;
  fillWith(el.model,
    ...models.map((m) => h('option', { value: m.name }, `${m.name} (${m.task})`)),
  );
  if (models.some((m) => m.name === previous)) el.model.value = previous;
  if (!models.length) fillWith(el.message, alert(t('pg.nomodels')));
  renderLabels();
}

function build() {
  el.model = h('select', { id: 'pg-model', name: 'model' });
  el.text = h('textarea', { id: 'pg-text', name: 'text', rows: 5, lang: 'zh', spellcheck: 'false' });
  el.text.value = SAMPLE;
  el.checks = h('div', { class: 'checks' });
  el.labels = h(
    'fieldset',
    { id: 'pg-labels' },
    h('legend', { 'data-i18n': 'pg.labels' }, t('pg.labels')),
    el.checks,
  );
  el.run = h('button', { type: 'submit', id: 'pg-run', 'data-i18n': 'pg.run' }, t('pg.run'));
  el.message = h('div', { id: 'pg-message' });
  el.output = h('div', { id: 'pg-output' });
  const form = h(
    'form',
    { id: 'pg-form', class: 'card', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'pg-model', 'data-i18n': 'pg.model' }, t('pg.model')), el.model),
    h('div', { class: 'field' }, h('label', { for: 'pg-text', 'data-i18n': 'pg.text' }, t('pg.text')), el.text),
    el.labels,
    h('div', { class: 'actions' }, el.run),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    run();
  });
  el.model.addEventListener('change', renderLabels);
  fillWith(root,
    h('h1', { id: 'playground-title', tabindex: '-1', 'data-i18n': 'pg.title' }, t('pg.title')),
    form,
    el.message,
    el.output,
  );
  built = true;
}

function selected() {
  return models.find((m) => m.name === el.model.value);
}

function renderLabels() {
  const model = selected();
  const checked = new Set(
    [...el.checks.querySelectorAll('input:checked')].map((input) => input.value),
  );
  el.labels.hidden = !model || model.task !== 'ner' || !model.labels.length;
  if (!model) return;
  fillWith(el.checks,
    ...model.labels.map((label, i) => {
      const id = `pg-label-${label.code}`;
      return h(
        'div',
        { class: 'check' },
        h('input', {
          type: 'checkbox',
          id,
          value: label.name_zh,
          'data-code': label.code,
          checked: checked.has(label.name_zh),
        }),
        h(
          'label',
          { for: id },
          h('span', { class: `swatch ent-${i % COLOURS}`, 'aria-hidden': 'true' }),
          h('span', { lang: 'zh' }, label.name_zh),
          lang() === 'en' ? h('span', { class: 'muted' }, ` ${label.name_en}`) : null,
        ),
      );
    }),
  );
}

async function run() {
  const model = selected();
  const texts = el.text.value.split('\n').filter((line) => line.trim());
  if (!model) return;
  if (!texts.length) {
    fillWith(el.message, alert(t('pg.notext')));
    el.text.focus();
    return;
  }
  const body = texts.length === 1 ? { text: texts[0] } : { texts };
  const labels = [...el.checks.querySelectorAll('input:checked')].map((input) => input.value);
  if (model.task === 'ner' && labels.length) body.labels = labels;
  const path = `/v1/models/${encodeURIComponent(model.name)}/predict`;
  fillWith(el.message);
  const mine = ++ticket;
  // A disabled button loses focus to <body>: give it back afterwards, so a keyboard user can
  // run again without tabbing through the header.
  const hadFocus = document.activeElement === el.run;
  el.run.disabled = true;
  el.run.textContent = t('pg.running');
  el.output.setAttribute('aria-busy', 'true');
  try {
    const { data, ms } = await call('POST', path, { body });
    if (mine !== ticket) return;
    last = { model, path, body, texts, data, ms };
    renderOutput();
    announce(`${t('pg.latency', { ms: num(last.ms) })} · ${summary()}`);
  } catch (err) {
    if (mine !== ticket || superseded(err)) return;
    // The previous result belongs to other input: do not leave it under this error.
    last = null;
    fillWith(el.output);
    fillWith(el.message, alert(describe(err)));
  } finally {
    if (mine === ticket) {
      el.run.disabled = false;
      el.run.textContent = t('pg.run');
      el.output.removeAttribute('aria-busy');
      if (hadFocus && (document.activeElement === document.body || !document.activeElement)) el.run.focus();
    }
  }
}

function summary() {
  return t('pg.summary', {
    model: last.data.model,
    version: last.data.version,
    n: last.texts.length,
  });
}

function colourOf(model) {
  const index = new Map(model.labels.map((label, i) => [label.code, i % COLOURS]));
  return (code) => index.get(code) ?? 0;
}

/**
 * The text as DOM nodes with a <mark> per entity. Offsets are Python (code point) indices, so
 * the text is split into code points, not UTF-16 units, before slicing.
 *
 * Entities may overlap (`medical` is nested: a symptom containing a body part), and every one
 * must show without a character of the text repeated or moved. A span inside another becomes a
 * mark inside its mark; a span that crosses the end of another (a partial overlap) is drawn in
 * consecutive parts, each a mark with the entity's own data-start/end and data-part="k/n".
 */
function highlighted(text, entities, colour) {
  const chars = Array.from(text);
  const line = h('p', { class: 'hl', lang: 'zh' });
  // Offsets outside the text cannot be drawn; the table below still lists such an entity.
  const spans = entities
    .map((ent, index) => ({ ent, index }))
    .filter(({ ent }) => ent.start >= 0 && ent.start < ent.end && ent.end <= chars.length);
  const cuts = [...new Set([0, chars.length, ...spans.flatMap(({ ent }) => [ent.start, ent.end])])].sort((a, b) => a - b);
  // A span that ends later is opened outside one that ends sooner, so that only partial
  // overlaps have to be split; ties keep the API's order.
  const outerFirst = (a, b) => b.ent.end - a.ent.end || a.ent.start - b.ent.start || a.index - b.index;
  const stack = []; // the open marks [{span, node}], outermost first
  const drawn = new Map(); // span -> its marks, in text order
  for (let c = 0; c + 1 < cuts.length; c += 1) {
    const from = cuts[c];
    const to = cuts[c + 1];
    const here = spans.filter(({ ent }) => ent.start <= from && to <= ent.end);
    // Keep the open marks from the outermost down to the first that does not cover this piece;
    // those above it that still cover it are closed too, and continue in a new part below.
    let keep = 0;
    while (keep < stack.length && here.includes(stack[keep].span)) keep += 1;
    stack.length = keep;
    const kept = new Set(stack.map(({ span }) => span));
    for (const span of here.filter((one) => !kept.has(one)).sort(outerFirst)) {
      const { ent } = span;
      const node = h('mark', {
        class: `ent ent-${colour(ent.label)}`,
        'data-start': ent.start,
        'data-end': ent.end,
        'data-label': ent.label,
        'data-name': ent.label_name,
        'data-entity': span.index,
        title: `${ent.label_name} · ${num(ent.score, 3)}`,
      });
      (stack.length ? stack[stack.length - 1].node : line).append(node);
      stack.push({ span, node });
      drawn.set(span, [...(drawn.get(span) ?? []), node]);
    }
    (stack.length ? stack[stack.length - 1].node : line).append(chars.slice(from, to).join(''));
  }
  for (const nodes of drawn.values()) {
    if (nodes.length < 2) continue;
    nodes.forEach((node, k) => {
      node.setAttribute('data-part', `${k + 1}/${nodes.length}`);
      // The type name is shown once, after the last part.
      if (k + 1 < nodes.length) node.setAttribute('data-more', '');
    });
  }
  return line;
}

function nerOutput(model, results) {
  const colour = colourOf(model);
  const seen = new Map();
  const blocks = results.map((result, i) => {
    for (const ent of result.entities) seen.set(ent.label, ent.label_name);
    return h(
      'div',
      { class: 'result', 'data-index': i },
      h('h3', {}, t('pg.textN', { n: i + 1 })),
      highlighted(last.texts[i], result.entities, colour),
    );
  });
  const legend = h(
    'ul',
    { class: 'legend', 'aria-label': t('pg.legend') },
    [...seen.entries()].map(([code, name]) =>
      h('li', {}, h('span', { class: `swatch ent-${colour(code)}`, 'aria-hidden': 'true' }), h('span', { lang: 'zh' }, name), ` (${code})`),
    ),
  );
  const rows = results.flatMap((result, i) =>
    result.entities.map((ent) => [
      String(i + 1),
      h('span', { lang: 'zh' }, ent.text),
      h('span', {}, h('span', { class: `swatch ent-${colour(ent.label)}`, 'aria-hidden': 'true' }), ent.label_name),
      String(ent.start),
      String(ent.end),
      num(ent.score, 3),
    ]),
  );
  return [
    ...blocks,
    seen.size ? legend : null,
    h('h3', {}, t('pg.entities')),
    rows.length
      ? table(
          [t('col.index'), t('col.text'), t('col.type'), t('col.start'), t('col.end'), t('col.score')],
          rows,
          { id: 'pg-entities' },
        )
      : h('p', { class: 'muted' }, t('pg.noentities')),
  ];
}

function classOutput(model, results) {
  const names = new Map(model.labels.map((label) => [label.code, lang() === 'zh' ? label.name_zh : label.name_en]));
  const rows = results.map((result, i) => [
    String(i + 1),
    h('span', { lang: 'zh', class: 'clip', title: last.texts[i] }, last.texts[i]),
    h('strong', {}, result.label_name),
    num(result.score, 3),
    h(
      'ul',
      { class: 'scores' },
      Object.entries(result.scores).map(([code, score]) =>
        h(
          'li',
          {},
          h('span', {}, names.get(code) ?? code),
          h('meter', { min: 0, max: 1, value: score, 'aria-label': names.get(code) ?? code }),
          h('span', {}, num(score, 3)),
        ),
      ),
    ),
  ]);
  return [
    h('h3', {}, t('pg.sentiment')),
    table([t('col.index'), t('col.text'), t('col.label'), t('col.score'), t('pg.sentiment')], rows, { id: 'pg-classes' }),
  ];
}

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

/** curl and Python reproducing the call; the key is always the $NLUSERVE_KEY variable. */
export function snippets(url, body) {
  const curl = [
    `curl -sS -X POST ${shellQuote(url)} \\`,
    '  -H "Authorization: Bearer $NLUSERVE_KEY" \\',
    "  -H 'Content-Type: application/json' \\",
    `  --data-raw ${shellQuote(JSON.stringify(body))}`,
  ].join('\n');
  // JSON of strings and lists is also a valid Python literal (same escapes, no true/false/null).
  const literal = JSON.stringify(body, null, 4).replace(/\n/g, '\n    ');
  const python = [
    'import os',
    '',
    'import httpx',
    '',
    'response = httpx.post(',
    `    ${JSON.stringify(url)},`,
    '    headers={"Authorization": f"Bearer {os.environ[\'NLUSERVE_KEY\']}"},',
    `    json=${literal},`,
    ')',
    'response.raise_for_status()',
    'print(response.json())',
  ].join('\n');
  return { curl, python };
}

function snippetBlock(id, title, code) {
  const pre = h('pre', { id, tabindex: '0' }, h('code', {}, code));
  return h(
    'div',
    { class: 'snippet' },
    h('div', { class: 'snippet-head' }, h('h4', {}, title), copyButton(() => code, { copy: t('copy'), copied: t('copied'), manual: t('copy.manual'), name: t('copy.of', { what: title }) }, pre)),
    pre,
  );
}

function renderOutput() {
  if (!last) return;
  const { model, data } = last;
  const isNer = data.results.length && 'entities' in data.results[0];
  const url = `${window.location.origin}${apiBase}${last.path}`;
  const { curl, python } = snippets(url, last.body);
  fillWith(el.output,
    h('h2', {}, t('pg.results')),
    h(
      'p',
      { class: 'summary', id: 'pg-summary', 'data-latency-ms': Math.round(last.ms) },
      h('strong', {}, t('pg.latency', { ms: num(last.ms) })),
      ' · ',
      summary(),
    ),
    ...(isNer ? nerOutput(model, data.results) : classOutput(model, data.results)),
    h('h3', {}, t('pg.reproduce')),
    h('p', { class: 'note' }, t('pg.keynote')),
    snippetBlock('pg-curl', 'curl', curl),
    snippetBlock('pg-python', 'Python', python),
  );
}

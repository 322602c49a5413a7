// A small hand-written SVG stacked bar chart: days on x, one colour per series, with a legend
// and the same numbers as a table for screen readers and for copying.

import { h, s, table } from './dom.js';
import { compact, num, t } from './i18n.js';

const WIDTH = 640;
const HEIGHT = 240;
// The SVG is scaled to its box, so a label of 20 units reads as 13 px or more only while the
// chart is 420 px wide or more; in a phone's column (about 310 px) it would be under 10 px.
// Each chart therefore carries two sets of tick labels, laid out for their own size, and a
// container query (console.css) shows the large, sparser set when the chart is narrow.
const SETS = [
  { cls: 'tick', size: 20 },
  { cls: 'tick-narrow', size: 28 },
];
const BIGGEST = Math.max(...SETS.map((set) => set.size));
const SERIES_COLOURS = 10;

let chartIds = 0;

/**
 * The last `days` UTC days as YYYY-MM-DD, oldest first, ending on the UTC day of `now`. The
 * server buckets usage by its own UTC day: pass its time (serverTime() of the answer), not the
 * browser's clock, which may be minutes or days off.
 */
export function lastDays(days, now = Date.now()) {
  const out = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    out.push(new Date(now - i * 86_400_000).toISOString().slice(0, 10));
  }
  return out;
}

/** Sum `field` of rows into series keyed by `by(row)`, aligned on `days`. */
export function seriesOf(rows, days, by, field) {
  const index = new Map(days.map((day, i) => [day, i]));
  const series = new Map();
  for (const row of rows) {
    const i = index.get(row.day);
    if (i === undefined) continue;
    const name = by(row);
    if (!series.has(name)) series.set(name, new Array(days.length).fill(0));
    series.get(name)[i] += Number(row[field]) || 0;
  }
  return [...series.entries()]
    .sort((a, b) => a[0].localeCompare(b[0]))
    .map(([name, values]) => ({ name, values }));
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

// Advance widths in em, on the wide side (DejaVu Sans digits are 0.64 em): labels are spaced
// and margins sized from this, and an estimate too large only costs a little room.
function textWidth(text, size) {
  let em = 0;
  for (const ch of text) em += /[0-9]/.test(ch) ? 0.64 : /[-.,:/ ]/.test(ch) ? 0.42 : 1;
  return em * size;
}

// A text's line box, which is what overlaps, is about 1.2 to 1.4 em: taller than its digits.
const LINE = 1.4;

/**
 * A <figure> with a stacked bar chart. `id` names it for tests (data-chart); data-total holds
 * the sum of every bar so a change in the data is visible without reading pixels.
 */
export function barChart({ id, title, days, series }) {
  chartIds += 1;
  const titleId = `chart-${chartIds}-title`;
  const n = Math.max(1, days.length);
  const totals = days.map((_, i) => series.reduce((sum, one) => sum + one.values[i], 0));
  const grand = totals.reduce((a, b) => a + b, 0);
  const ceiling = niceMax(Math.max(0, ...totals));
  // Counts are whole numbers: pick a gridline count that keeps every tick whole, five first,
  // since its steps (2, 4, 5 or 10 times a power of ten) stay exact in compact form (1.2K).
  const intervals = [5, 4, 2, 1].find((k) => Number.isInteger(ceiling / k)) ?? 4;
  const values = [];
  for (let k = 0; k <= intervals; k += 1) values.push((ceiling * k) / intervals);
  const valueText = values.map((value) => compact(value));
  const dayText = days.map((day) => day.slice(5));

  // Margins fit the largest labels: the value labels on the left, a line of labels above the
  // top one and under the axis, half of today's label (centred on the last bar) on the right.
  const widest = (texts, size) => Math.max(0, ...texts.map((text) => textWidth(text, size)));
  const pad = {
    left: Math.max(40, ...SETS.map(({ size }) => widest(valueText, size) + 0.4 * size)),
    right: 12,
    top: Math.ceil(0.75 * BIGGEST),
    bottom: Math.ceil(1.5 * BIGGEST + 2),
  };
  const half = Math.max(...SETS.map(({ size }) => widest(dayText.slice(-1), size) / 2)) + 2;
  const overhang = half - pad.right - (WIDTH - pad.left - pad.right) / (2 * n);
  if (overhang > 0) pad.right += overhang / (1 - 1 / (2 * n));
  const plotW = WIDTH - pad.left - pad.right;
  const plotH = HEIGHT - pad.top - pad.bottom;
  const step = plotW / n;
  const barW = Math.max(2, Math.min(40, step * 0.7));
  const y = (value) => pad.top + plotH - (value / ceiling) * plotH;
  const centre = (i) => pad.left + i * step + step / 2;

  const grid = values.map((value) =>
    s('line', { class: 'grid', x1: pad.left, x2: WIDTH - pad.right, y1: y(value), y2: y(value) }),
  );
  const ticks = [];
  for (const { cls, size } of SETS) {
    // Value labels, from the top one down, as many as fit one line apart.
    const every = Math.ceil((LINE * size + 2) / (plotH / intervals));
    values.forEach((value, k) => {
      if ((intervals - k) % every) return;
      ticks.push(
        s('text', { class: cls, 'font-size': size, x: pad.left - 0.4 * size, y: y(value) + 0.35 * size, 'text-anchor': 'end' }, valueText[k]),
      );
    });
    // Day labels, counted back from today so that today always has one, spaced by a label's
    // width, and none reaching left of the plot into the value labels.
    const width = widest(dayText, size);
    const gap = Math.max(1, Math.ceil((width + 0.5 * size) / step));
    for (let i = days.length - 1; i >= 0; i -= gap) {
      if (centre(i) - width / 2 < pad.left - 0.2 * size) break;
      ticks.push(
        s('text', { class: cls, 'font-size': size, x: centre(i), y: y(0) + 1.2 * size, 'text-anchor': 'middle' }, dayText[i]),
      );
    }
  }

  const bars = [];
  days.forEach((day, i) => {
    const x = centre(i) - barW / 2;
    let base = 0;
    series.forEach((one, k) => {
      const value = one.values[i];
      if (!value) return;
      const rect = s(
        'rect',
        {
          class: `bar c${k % SERIES_COLOURS}`,
          x,
          y: y(base + value),
          width: barW,
          height: Math.max(1, y(base) - y(base + value)),
          'data-day': day,
          'data-series': one.name,
          'data-value': value,
        },
        s('title', {}, `${one.name} · ${day}: ${num(value)}`),
      );
      bars.push(rect);
      base += value;
    });
  });

  const svg = s(
    'svg',
    {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: 'img',
      'aria-labelledby': titleId,
      preserveAspectRatio: 'xMidYMid meet',
      class: 'chart',
    },
    s('title', { id: titleId }, `${title}: ${t('col.total')} ${num(grand)}`),
    grid,
    s('line', { class: 'axis', x1: pad.left, x2: WIDTH - pad.right, y1: y(0), y2: y(0) }),
    bars,
    ticks,
  );
  const legend = h(
    'ul',
    { class: 'legend' },
    series.map((one, k) =>
      h('li', {}, h('span', { class: `swatch c${k % SERIES_COLOURS}`, 'aria-hidden': 'true' }), one.name),
    ),
  );
  const data = h(
    'details',
    { class: 'chart-data' },
    h('summary', {}, t('data.table')),
    table(
      [t('col.day'), ...series.map((one) => one.name), t('col.total')],
      days.map((day, i) => [day, ...series.map((one) => num(one.values[i])), num(totals[i])]),
    ),
  );
  return h(
    'figure',
    { class: 'chart-figure', 'data-chart': id, 'data-total': grand },
    h('figcaption', {}, title),
    svg,
    legend,
    data,
  );
}

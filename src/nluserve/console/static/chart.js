// A small hand-written SVG stacked bar chart: days on x, one colour per series, with a legend
// and the same numbers as a table for screen readers and for copying.

import { h, s, table } from './dom.js';
import { num, t } from './i18n.js';

const WIDTH = 640;
const HEIGHT = 240;
// Tick labels are 20 units in a 640-unit-wide viewBox (console.css), so they stay readable when
// the chart is scaled down to its column or to a phone; hence the wide left and bottom margins.
const PAD = { left: 76, right: 12, top: 14, bottom: 40 };
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

/**
 * A <figure> with a stacked bar chart. `id` names it for tests (data-chart); data-total holds
 * the sum of every bar so a change in the data is visible without reading pixels.
 */
export function barChart({ id, title, days, series }) {
  chartIds += 1;
  const titleId = `chart-${chartIds}-title`;
  const totals = days.map((_, i) => series.reduce((sum, one) => sum + one.values[i], 0));
  const grand = totals.reduce((a, b) => a + b, 0);
  const top = niceMax(Math.max(0, ...totals));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, days.length);
  const barW = Math.max(2, Math.min(40, step * 0.7));
  const y = (value) => PAD.top + plotH - (value / top) * plotH;

  // Counts are whole numbers: pick a gridline count that keeps every tick label whole.
  const intervals = [4, 5, 2, 1].find((n) => Number.isInteger(top / n)) ?? 4;
  const grid = [];
  for (let k = 0; k <= intervals; k += 1) {
    const value = (top * k) / intervals;
    grid.push(
      s('line', { class: 'grid', x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }),
      s('text', { class: 'tick', x: PAD.left - 8, y: y(value) + 7, 'text-anchor': 'end' }, num(value, value % 1 ? 1 : 0)),
    );
  }
  const every = Math.ceil(days.length / 7); // at most 7 or 8 day labels: they must not overlap
  const bars = [];
  days.forEach((day, i) => {
    const x = PAD.left + i * step + (step - barW) / 2;
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
    if (i % every === 0 || i === days.length - 1) {
      bars.push(
        s('text', { class: 'tick', x: x + barW / 2, y: HEIGHT - PAD.bottom + 24, 'text-anchor': 'middle' }, day.slice(5)),
      );
    }
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
    s('line', { class: 'axis', x1: PAD.left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0) }),
    bars,
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

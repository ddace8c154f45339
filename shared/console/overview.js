// Overview: today's requests, model calls, cache hit rate, tokens and cost
// (from /api/v1/stats), the last seven days (from /api/v1/usage), and what
// this process has served since the page opened (from /metrics).

import { call, metrics, total } from './api.js';
import { fill, fmtInt, fmtPct, fmtUsd, h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
};

/** Bars, one per value, scaled to the largest; `label` describes them. */
function bars(values, label) {
  const el = svg('svg', { viewBox: '0 0 100 40', preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  const max = Math.max(...values, 0) || 1;
  const w = 100 / Math.max(values.length, 1);
  values.forEach((v, i) => {
    const height = (v / max) * 38;
    el.append(svg('rect', { class: 'bar', x: i * w + w * 0.15, y: 40 - height, width: w * 0.7, height: Math.max(height, 0.5) }));
  });
  return el;
}

/** A line through `values`, scaled to the largest. */
function spark(values, label) {
  const el = svg('svg', { viewBox: '0 0 100 40', preserveAspectRatio: 'none', role: 'img', 'aria-label': label });
  const max = Math.max(...values, 0) || 1;
  const step = 100 / Math.max(values.length - 1, 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(39 - (v / max) * 37).toFixed(1)}`).join(' ');
  el.append(svg('polyline', { class: 'spark', points }));
  return el;
}

const tile = (title, value, chart, note) => h('div', { class: 'panel tile' },
  h('div', { class: 'muted small' }, title), h('div', { class: 'value' }, value), chart,
  note ? h('div', { class: 'muted small' }, note) : null);

const day = (offset) => new Date(Date.now() - offset * 86400000).toISOString().slice(0, 10);

export async function render(root, { caps, notify }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const today = h('div', { class: 'tiles', id: 'today' });
  const week = h('div', { class: 'tiles' });
  const live = h('div', { class: 'tiles' });
  const models = h('div');
  const cache = h('div');
  const samples = [];
  let timer = null;

  fill(root, h('h2', {}, 'Overview'),
    h('h3', {}, 'Today (UTC), for this caller'), today,
    h('h3', {}, 'The last seven days'), week,
    h('h3', {}, 'This process, since the page opened'), live,
    models, cache,
    h('p', {}, h('a', { href: '#api' }, 'The API, readably'), ' · ', h('a', { href: '/openapi.json' }, 'OpenAPI document (JSON)'),
      ' · ', h('a', { href: '/metrics' }, 'Prometheus metrics')));

  async function figures() {
    if (!caps.has('/api/v1/stats')) return;
    const from = day(6);
    const to = day(0);
    const [stats, usage] = await Promise.all([
      call('/api/v1/stats', { signal }),
      caps.has('/api/v1/usage') ? call(`/api/v1/usage?from=${from}&to=${to}`, { signal }) : { records: [] },
    ]);
    const days = Array.from({ length: 7 }, (_, i) => day(6 - i));
    const per = (pick) => days.map((d) => usage.records.filter((r) => r.date === d).reduce((s, r) => s + pick(r), 0));
    const t = stats.today;
    fill(today,
      tile('Requests', fmtInt(t.requests)),
      tile('Model calls', fmtInt(t.model_calls)),
      tile('Cache hit rate', fmtPct(t.cache_hit_rate), null, `${fmtInt(t.cache_hits)} hits · ${fmtUsd(t.saved_usd)} saved`),
      tile('Tokens', fmtInt(t.input_tokens + t.output_tokens), null, `${fmtInt(t.input_tokens)} in · ${fmtInt(t.output_tokens)} out`),
      tile('Cost', fmtUsd(t.cost_usd)));
    const tokens = per((r) => r.input_tokens + r.output_tokens);
    const cost = per((r) => r.cost_usd);
    const calls = per((r) => r.model_calls);
    fill(week,
      tile('Model calls per day', fmtInt(calls.reduce((a, b) => a + b, 0)), bars(calls, `model calls per day, ${days[0]} to ${to}`)),
      tile('Tokens per day', fmtInt(tokens.reduce((a, b) => a + b, 0)), bars(tokens, `tokens per day, ${days[0]} to ${to}`)),
      tile('Cost per day', fmtUsd(cost.reduce((a, b) => a + b, 0)), bars(cost, `cost per day, ${days[0]} to ${to}`)));
    fill(models, stats.by_model.length ? [h('h3', {}, 'By model, today'), h('table', {},
      h('thead', {}, h('tr', {}, ['Model', 'Requests', 'Calls', 'Tokens', 'Cache hit rate', 'Cost'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, stats.by_model.map((m) => h('tr', {}, h('td', {}, m.model), h('td', {}, fmtInt(m.requests)),
        h('td', {}, fmtInt(m.model_calls)), h('td', {}, fmtInt(m.input_tokens + m.output_tokens)),
        h('td', {}, fmtPct(m.cache_hit_rate)), h('td', {}, fmtUsd(m.cost_usd))))))] : []);
  }

  async function cacheStats() {
    if (!caps.has('/api/v1/cache/stats')) return;
    const c = await call('/api/v1/cache/stats', { signal });
    fill(cache, h('h3', {}, 'Response cache'), h('p', {}, `mode ${c.mode}, scope ${c.scope}: ${fmtInt(c.hits)} hits, `
      + `${fmtInt(c.misses)} misses (${fmtPct(c.hit_rate)}) on this instance since it started`));
  }

  async function sample() {
    const s = await metrics();
    samples.push({
      requests: total(s, 'http_requests_total'),
      calls: total(s, 'model_calls_total'),
      tokens: total(s, 'model_tokens_total', (l) => l.kind === 'input' || l.kind === 'output'),
      store: total(s, 'store_operations_total'),
    });
    if (samples.length > 60) samples.shift();
    const deltas = (k) => samples.slice(1).map((x, i) => Math.max(x[k] - samples[i][k], 0));
    const last = samples[samples.length - 1];
    fill(live,
      tile('Requests served', fmtInt(last.requests), spark(deltas('requests'), 'requests per 5 seconds'), 'per 5 s, live'),
      tile('Model calls', fmtInt(last.calls), spark(deltas('calls'), 'model calls per 5 seconds')),
      tile('Tokens', fmtInt(last.tokens), spark(deltas('tokens'), 'tokens per 5 seconds')),
      tile('Store operations', fmtInt(last.store), spark(deltas('store'), 'store operations per 5 seconds')));
    timer = setTimeout(() => sample().catch(notify), 5000);
  }

  await Promise.all([figures(), cacheStats(), sample()]);
  return () => {
    clearTimeout(timer);
    controller.abort();
  };
}

// Small DOM helpers. Everything the server or a model says is set as text,
// never as HTML, so an answer cannot script the page.

/** h('button', {class: 'primary', onclick}, 'Send'): an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A unique id, for label/for pairs. */
export const uid = (prefix) => `${prefix}-${++ids}`;

/** A labelled control: `field('Message', h('textarea'))`. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid('f');
  const hintEl = hint ? h('span', { class: 'muted small', id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl);
}

/** A select of `[value, label]` pairs. */
export function select(options, value) {
  const el = h('select');
  for (const [v, label] of options) el.append(h('option', { value: v, selected: v === value }, label));
  return el;
}

export const badge = (status) => h('span', { class: `badge ${status}` }, status);

const number = new Intl.NumberFormat('en-US');
export const fmtInt = (n) => number.format(n || 0);
export function fmtUsd(n) {
  if (!n) return '$0';
  return n < 0.01 ? `$${n.toFixed(6)}` : `$${n.toFixed(4)}`;
}
export const fmtPct = (r) => `${((r || 0) * 100).toFixed(1)}%`;
export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
export const fmtMs = (ms) => (ms === undefined || ms === null ? '' : `${Number(ms).toFixed(ms < 10 ? 2 : 0)} ms`);

/** Tokens and cost of a `usage` object, as one line. */
export function usageLine(usage) {
  if (!usage) return '';
  const tokens = (usage.input_tokens || 0) + (usage.output_tokens || 0);
  const calls = usage.model_calls !== undefined ? ` · ${fmtInt(usage.model_calls)} model calls` : '';
  const cached = usage.cache_hits ? ` · ${fmtInt(usage.cache_hits)} from cache` : '';
  return `${fmtInt(tokens)} tokens (${fmtInt(usage.input_tokens)} in, ${fmtInt(usage.output_tokens)} out) · ${fmtUsd(usage.cost_usd)}${calls}${cached}`;
}

export const json = (value) => h('pre', {}, JSON.stringify(value, null, 2));

/**
 * Markdown as the research writer produces it (headings, lists, paragraphs,
 * **bold**, `code`, links), built as elements: no HTML from the text is
 * ever parsed.
 */
export function markdown(text) {
  const root = h('div', { class: 'report' });
  let list = null;
  let para = [];
  const flush = () => {
    if (para.length) root.append(h('p', {}, inline(para.join(' '))));
    para = [];
  };
  for (const raw of String(text || '').split('\n')) {
    const line = raw.trimEnd();
    const heading = /^(#{1,4})\s+(.*)$/.exec(line);
    const item = /^\s*(?:[-*]|\d+\.)\s+(.*)$/.exec(line);
    if (heading) {
      flush(); list = null;
      root.append(h(`h${Math.min(heading[1].length + 1, 5)}`, {}, inline(heading[2])));
    } else if (item) {
      flush();
      if (!list) { list = h('ul'); root.append(list); }
      list.append(h('li', {}, inline(item[1])));
    } else if (!line.trim()) {
      flush(); list = null;
    } else {
      list = null;
      para.push(line.trim());
    }
  }
  flush();
  return root;
}

function inline(text) {
  const out = [];
  const re = /\*\*([^*]+)\*\*|`([^`]+)`|\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    out.push(text.slice(last, m.index));
    if (m[1] !== undefined) out.push(h('strong', {}, m[1]));
    else if (m[2] !== undefined) out.push(h('code', {}, m[2]));
    else out.push(h('a', { href: m[4], rel: 'noreferrer noopener', target: '_blank' }, m[3]));
    last = re.lastIndex;
  }
  out.push(text.slice(last));
  return out;
}

/**
 * A table over a paged listing route (`{…, next_cursor}`): `page(cursor)`
 * fetches one page as `{items, next}`, `row(item)` draws one; a More button
 * asks for the next page. `load(append)` (re)fills it and gives the page's
 * items.
 */
export function listing({ label, columns, empty, page, row, onError }) {
  const rows = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  let cursor = null;
  const table = h('table', { 'aria-label': label },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))), rows);
  async function load(append) {
    const { items, next } = await page(append ? cursor : null);
    if (!append) rows.replaceChildren();
    rows.append(...items.map(row));
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, empty)));
    cursor = next;
    more.hidden = !cursor;
    return items;
  }
  more.addEventListener('click', () => load(true).catch(onError));
  return { table, more, load };
}

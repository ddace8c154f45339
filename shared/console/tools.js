// Tools: the calculator and the search on their own, and the MCP and A2A
// endpoints when this runner serves them.

import { call } from './api.js';
import { field, fill, h, json, select } from './dom.js';

const uniqueId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

function panel(title, ...children) {
  return h('section', { class: 'panel', 'aria-label': title }, h('h3', {}, title), ...children);
}

/** A form whose submit runs `action` with errors shown in the notice line. */
function form(label, controls, button, action, notify) {
  const submit = h('button', { type: 'submit', class: 'primary' }, button);
  const el = h('form', { 'aria-label': label }, controls, h('div', { class: 'row' }, submit));
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    notify(null);
    submit.disabled = true;
    try {
      await action();
    } catch (err) {
      notify(err);
    } finally {
      submit.disabled = false;
    }
  });
  return el;
}

async function rpc(path, method, params, headers = {}) {
  const body = { jsonrpc: '2.0', id: uniqueId(), method };
  if (params !== undefined) body.params = params;
  const answer = await call(path, { method: 'POST', body, headers });
  if (answer && answer.error) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
  return answer.result;
}

function calculator(notify) {
  const expression = h('input', { type: 'text', name: 'expression', value: '15 * 23', required: true });
  const out = h('div', { 'aria-live': 'polite' });
  return panel('Calculator', form('Calculate', field('Expression', expression), 'Calculate', async () => {
    const r = await call('/api/v1/tools/calculate', { method: 'POST', body: { expression: expression.value } });
    fill(out, h('p', {}, h('code', {}, r.expression), ' = ', h('strong', { id: 'calc-result' }, String(r.result))));
  }, notify), out);
}

function search(notify) {
  const query = h('input', { type: 'text', name: 'query', value: 'cold start', required: true });
  const max = h('input', { type: 'number', min: 1, max: 10, value: 3 });
  const out = h('ol', { 'aria-live': 'polite' });
  return panel('Search', form('Search', h('div', { class: 'row' }, field('Query', query), field('Results', max)), 'Search', async () => {
    const r = await call('/api/v1/tools/search', { method: 'POST', body: { query: query.value, max_results: Number(max.value) || 3 } });
    fill(out, r.results.length ? r.results.map((x) => h('li', {}, h('strong', {}, x.title), ' ',
      h('span', { class: 'muted small' }, `${x.source} · score ${x.score}`), h('div', { class: 'small' }, x.snippet)))
      : h('li', { class: 'muted' }, 'Nothing found.'));
  }, notify), out);
}

function mcp(notify) {
  const tool = select([], '');
  const argsBox = h('textarea', { rows: 3, name: 'arguments' }, '{}');
  const out = h('div', { 'aria-live': 'polite' });
  const listed = h('ul', { class: 'small' });
  let tools = [];
  const example = (schema) => {
    const props = (schema && schema.properties) || {};
    const args = {};
    for (const [name, p] of Object.entries(props)) {
      if ((schema.required || []).includes(name)) args[name] = p.type === 'number' || p.type === 'integer' ? 1 : '';
    }
    return JSON.stringify(args, null, 1);
  };
  tool.addEventListener('change', () => {
    const t = tools.find((x) => x.name === tool.value);
    if (t) argsBox.value = t.name === 'calculate' ? '{"expression": "2 + 2"}' : example(t.inputSchema);
  });
  const list = async () => {
    tools = (await rpc('/mcp', 'tools/list')).tools;
    fill(tool, tools.map((t) => h('option', { value: t.name }, t.name)));
    fill(listed, tools.map((t) => h('li', {}, h('code', {}, t.name), ` ${(t.description || '').split('. ')[0]}`)));
    tool.dispatchEvent(new Event('change'));
  };
  const callForm = form('Call an MCP tool', [field('Tool', tool), field('Arguments (JSON)', argsBox)], 'Call', async () => {
    let args;
    try {
      args = JSON.parse(argsBox.value || '{}');
    } catch (err) {
      throw new Error(`The arguments are not JSON: ${err.message}`);
    }
    const r = await rpc('/mcp', 'tools/call', { name: tool.value, arguments: args });
    fill(out, r.isError ? h('p', { class: 'badge failed' }, 'the tool failed') : null,
      (r.content || []).map((c) => (c.type === 'text' ? h('pre', {}, c.text) : json(c))));
  }, notify);
  const root = panel('MCP (POST /mcp)', h('p', { class: 'muted small' },
    'The same tools over the Model Context Protocol, as an MCP client sees them.'), listed, callForm, out);
  list().catch(notify);
  return root;
}

function a2a(notify) {
  const card = h('div', { class: 'small' });
  const text = h('input', { type: 'text', value: 'Calcula 2 * 21', required: true });
  const out = h('div', { 'aria-live': 'polite' });
  call('/.well-known/agent-card.json').then((c) => fill(card,
    h('p', {}, h('strong', {}, c.name), ` ${c.version || ''}: ${c.description || ''}`),
    h('p', {}, 'Skills: ', (c.skills || []).map((s) => s.name || s.id).join(', ')),
    h('p', {}, h('a', { href: '/.well-known/agent-card.json' }, 'The agent card')))).catch(notify);
  return panel('A2A (POST /a2a)', card, form('Send an A2A message', field('Message', text), 'Send', async () => {
    const message = { messageId: uniqueId(), role: 'ROLE_USER', parts: [{ text: text.value }] };
    const { task } = await rpc('/a2a', 'SendMessage', { message }, { 'A2A-Version': '1.0' });
    const answer = (task.artifacts || []).flatMap((a) => a.parts || []).map((p) => p.text).filter(Boolean).join('\n');
    fill(out, h('p', {}, 'Task ', h('code', {}, task.id), ` ${task.status.state}`), answer ? h('div', { class: 'answer' }, answer) : null);
  }, notify), out);
}

export async function render(root, { caps, notify }) {
  const panels = [];
  if (caps.has('/api/v1/tools/calculate')) panels.push(calculator(notify));
  if (caps.has('/api/v1/tools/search')) panels.push(search(notify));
  if (caps.has('/mcp')) panels.push(mcp(notify));
  if (caps.has('/a2a') && caps.has('/.well-known/agent-card.json')) panels.push(a2a(notify));
  fill(root, h('h2', {}, 'Tools'), panels.length ? h('div', { class: 'panels' }, panels)
    : h('p', { class: 'muted' }, 'This runner serves no tools.'));
}

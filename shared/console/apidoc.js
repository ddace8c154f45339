// The runner's OpenAPI document, readably: each operation by tag, with its
// parameters, body and answers; the JSON itself is one link away.

import { fill, h } from './dom.js';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** A schema in a line: its type, or its fields with their types. */
function shape(schema, doc, depth = 0) {
  if (!schema) return '';
  if (schema.$ref) {
    const name = schema.$ref.split('/').pop();
    const target = ((doc.components || {}).schemas || {})[name];
    return depth > 1 || !target ? name : shape(target, doc, depth + 1);
  }
  if (schema.properties) {
    const required = new Set(schema.required || []);
    const fields = Object.entries(schema.properties).map(([k, v]) => `${k}${required.has(k) ? '' : '?'}: ${shape(v, doc, depth + 2)}`);
    return depth > 2 ? 'object' : `{${fields.join(', ')}}`;
  }
  if (schema.type === 'array') return `[${shape(schema.items, doc, depth + 1)}]`;
  const alt = schema.oneOf || schema.anyOf;
  if (alt) return alt.map((s) => shape(s, doc, depth + 1)).join(' | ');
  if (schema.enum) return schema.enum.map((e) => JSON.stringify(e)).join(' | ');
  return Array.isArray(schema.type) ? schema.type.join(' | ') : schema.type || 'any';
}

export async function render(root, { caps }) {
  const doc = caps.document || { paths: {} };
  const groups = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags || ['other'])[0];
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push({ path, method, op });
    }
  }
  const sections = [...groups].map(([tag, ops]) => h('section', { 'aria-label': tag }, h('h3', {}, tag),
    ops.map(({ path, method, op }) => {
      const body = op.requestBody && op.requestBody.content
        ? Object.entries(op.requestBody.content).map(([type, c]) => h('p', { class: 'small' }, `body (${type}): `, h('code', {}, shape(c.schema, doc)))) : [];
      const params = (op.parameters || []).map((p) => h('li', { class: 'small' }, h('code', {}, p.name), ` (${p.in}${p.required ? ', required' : ''}) `, p.description || ''));
      const answers = Object.entries(op.responses || {}).map(([status, r]) => h('li', { class: 'small' }, h('strong', {}, status), ' ', r.description || ''));
      return h('details', { class: 'op' },
        h('summary', {}, h('span', { class: 'method' }, method.toUpperCase()), h('code', {}, path), ' ', op.summary || ''),
        op.description ? h('p', { class: 'small' }, op.description) : null,
        params.length ? h('ul', {}, params) : null, body, h('ul', {}, answers));
    })));
  fill(root, h('h2', {}, `API: ${doc.info ? doc.info.title : ''} ${doc.info ? doc.info.version : ''}`),
    h('p', {}, doc.info ? doc.info.description : '', ' ', h('a', { href: '/openapi.json' }, 'The document as JSON.')),
    sections);
}

// Sessions: the caller's sessions, most recently written first, what each
// cost, its history, and delete.

import { call } from './api.js';
import { fill, fmtTime, h, usageLine } from './dom.js';

export async function render(root, { notify }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const rows = h('tbody');
  const more = h('button', { type: 'button', hidden: true }, 'More');
  const detail = h('div', { id: 'session-detail' });
  let cursor = null;

  async function remove(id, button) {
    // Two presses, so a stray Enter deletes nothing.
    if (button.dataset.armed !== 'yes') {
      button.dataset.armed = 'yes';
      button.textContent = 'Press again to delete';
      return;
    }
    await call(`/api/v1/sessions/${encodeURIComponent(id)}`, { method: 'DELETE', signal });
    notify(`Session ${id} deleted.`, 'info');
    detail.replaceChildren();
    await load(false);
  }

  async function show(id) {
    const data = await call(`/api/v1/sessions/${encodeURIComponent(id)}?limit=100`, { signal });
    fill(detail, h('div', { class: 'panel' },
      h('h3', {}, 'Session ', h('code', {}, id)),
      h('p', { class: 'meta' }, usageLine(data.usage)),
      h('ol', { class: 'steps' }, data.messages.map((m) => h('li', { class: 'step' },
        h('strong', {}, m.role), ' ', h('span', { class: 'muted small' }, fmtTime(m.created_at)),
        h('div', { class: 'msg-text' }, m.content)))),
      data.next_cursor ? h('p', { class: 'muted small' }, 'Older messages follow: open it in the chat to read them all.') : null));
  }

  function row(s) {
    const del = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete session ${s.session_id}` }, 'Delete');
    del.addEventListener('click', () => remove(s.session_id, del).catch(notify));
    return h('tr', { 'data-session': s.session_id },
      h('td', {}, h('code', {}, s.session_id)),
      h('td', {}, String(s.message_count)),
      h('td', { class: 'small' }, fmtTime(s.updated_at)),
      h('td', { class: 'small' }, usageLine(s.usage)),
      h('td', {}, h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => show(s.session_id).catch(notify) }, 'Details'),
        h('a', { href: `#chat/${encodeURIComponent(s.session_id)}` }, 'Continue'),
        del)));
  }

  async function load(append) {
    const q = new URLSearchParams({ limit: '25' });
    if (append && cursor) q.set('cursor', cursor);
    const page = await call(`/api/v1/sessions?${q}`, { signal });
    if (!append) rows.replaceChildren();
    rows.append(...page.sessions.map(row));
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No sessions.')));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }

  more.addEventListener('click', () => load(true).catch(notify));
  fill(root, h('h2', {}, 'Sessions'),
    h('table', { 'aria-label': 'Sessions, most recent first' },
      h('thead', {}, h('tr', {}, ['Session', 'Messages', 'Updated', 'Spent', ''].map((c) => h('th', { scope: 'col' }, c)))),
      rows),
    more, detail);
  await load(false);
  return () => controller.abort();
}

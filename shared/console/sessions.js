// Sessions: the caller's sessions, most recently written first, what each
// cost, its history, and delete.

import { call } from './api.js';
import { fill, fmtTime, h, listing, usageLine } from './dom.js';

export async function render(root, { notify }) {
  const controller = new AbortController();
  const signal = controller.signal;
  const detail = h('div', { id: 'session-detail' });

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
    await list.load(false);
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

  const list = listing({
    label: 'Sessions, most recent first',
    columns: ['Session', 'Messages', 'Updated', 'Spent', ''],
    empty: 'No sessions.',
    row,
    onError: notify,
    page: async (cursor) => {
      const q = new URLSearchParams({ limit: '25' });
      if (cursor) q.set('cursor', cursor);
      const page = await call(`/api/v1/sessions?${q}`, { signal });
      return { items: page.sessions, next: page.next_cursor };
    },
  });

  fill(root, h('h2', {}, 'Sessions'), list.table, list.more, detail);
  await list.load(false);
  return () => controller.abort();
}

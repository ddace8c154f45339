// Tasks: the caller's tasks, newest first, by status; one task's details
// (its steps, plan or report, its children), and cancel.

import { call } from './api.js';
import { badge, field, fill, fmtTime, h, json, listing, select } from './dom.js';
import { RunView } from './run.js';

const STATUSES = ['', 'queued', 'running', 'completed', 'failed', 'cancelled'];
const ENDED = new Set(['completed', 'failed', 'cancelled']);

export async function render(root, { notify, args }) {
  const controller = new AbortController();
  const signal = controller.signal;
  if (args[0]) return details(root, args[0], notify, controller);

  const status = select(STATUSES.map((s) => [s, s || 'any status']), '');
  let timer = null;

  const cancel = (id) => call(`/api/v1/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST', signal })
    .then(() => load()).catch(notify);

  function row(t) {
    return h('tr', { 'data-task': t.task_id },
      h('td', { class: 'small' }, fmtTime(t.created_at)),
      h('td', {}, t.kind),
      h('td', {}, h('a', { href: `#tasks/${encodeURIComponent(t.task_id)}` }, (t.task || t.task_id).slice(0, 90))),
      h('td', {}, badge(t.status)),
      h('td', {}, h('div', { class: 'row' },
        ENDED.has(t.status) ? null : h('a', { href: `#agent/${encodeURIComponent(t.task_id)}` }, 'Follow'),
        ENDED.has(t.status) ? null : h('button', { type: 'button', class: 'danger', onclick: () => cancel(t.task_id) }, 'Cancel'))));
  }

  const list = listing({
    label: 'Tasks, newest first',
    columns: ['Created', 'Kind', 'Task', 'Status', ''],
    empty: 'No tasks.',
    row,
    onError: notify,
    page: async (cursor) => {
      const q = new URLSearchParams({ limit: '25' });
      if (status.value) q.set('status', status.value);
      if (cursor) q.set('cursor', cursor);
      const page = await call(`/api/v1/tasks?${q}`, { signal });
      return { items: page.tasks, next: page.next_cursor };
    },
  });

  async function load() {
    const tasks = await list.load(false);
    clearTimeout(timer);
    // Refreshed while something still runs, so statuses change in place.
    if (tasks.some((t) => !ENDED.has(t.status))) timer = setTimeout(() => load().catch(notify), 2000);
  }

  status.addEventListener('change', () => load().catch(notify));
  fill(root, h('h2', {}, 'Tasks'),
    h('div', { class: 'row' }, field('Status', status),
      h('button', { type: 'button', onclick: () => load().catch(notify) }, 'Refresh')),
    list.table, list.more);
  await load();
  return () => {
    clearTimeout(timer);
    controller.abort();
  };
}

async function details(root, id, notify, controller) {
  const signal = controller.signal;
  const view = new RunView();
  const children = h('div');
  const raw = h('details', {}, h('summary', {}, 'The task as JSON'));
  fill(root, h('p', {}, h('a', { href: '#tasks' }, '← All tasks')), h('h2', {}, 'Task'), view.el, children, raw);
  const show = (task) => {
    const cancel = () => call(`/api/v1/tasks/${encodeURIComponent(id)}/cancel`, { method: 'POST', signal })
      .then(show).catch(notify);
    view.task(task, cancel);
    if (!ENDED.has(task.status)) {
      view.head.append(h('a', { href: `#agent/${encodeURIComponent(id)}` }, 'Follow live'));
    }
    fill(children, task.children && task.children.length ? [h('h3', {}, 'Children'),
      h('ul', {}, task.children.map((c) => h('li', {}, badge(c.status), ' ',
        h('a', { href: `#tasks/${encodeURIComponent(c.task_id)}` }, c.subtask || c.task_id))))] : []);
    fill(raw, h('summary', {}, 'The task as JSON'), json(task));
  };
  show(await call(`/api/v1/tasks/${encodeURIComponent(id)}`, { signal }));
  return () => controller.abort();
}

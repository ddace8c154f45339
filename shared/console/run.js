// One run as it unfolds: its status, its steps (tool, arguments, result,
// duration), a multi-agent plan or a research's subtopics as a tree whose
// nodes change state, the writing stages, and the answer or report. Fed by
// a task's events, or by a finished task or a synchronous answer.

import { call, stream } from './api.js';
import { badge, fill, fmtMs, h, json, markdown, usageLine } from './dom.js';

const ENDED = new Set(['completed', 'failed', 'cancelled']);

export class RunView {
  constructor() {
    this.head = h('div', { class: 'row', id: 'run-status' });
    this.steps = h('ol', { class: 'steps', 'aria-label': 'Steps' });
    this.tree = h('ul', { class: 'tree', 'aria-label': 'Plan' });
    this.stages = h('p', { class: 'muted small' });
    this.answer = h('div', { id: 'run-answer', 'aria-live': 'polite' });
    this.nodes = new Map();
    this.status = null;
    this.stepsHead = h('h3', {}, 'Steps');
    this.planHead = h('h3', {}, 'Plan');
    this.el = h('div', { class: 'panel run' }, this.head,
      this.stepsHead, this.steps, this.planHead, this.tree, this.stages, this.answer);
    this.tree.hidden = true;
    this.planHead.hidden = true;
  }

  /** The task's id and status line; `onCancel` adds a Cancel button while it runs. */
  header(taskId, status, attempts, onCancel) {
    this.status = status;
    const cancel = onCancel && !ENDED.has(status)
      ? h('button', { type: 'button', class: 'danger', onclick: onCancel }, 'Cancel') : null;
    fill(this.head, h('span', {}, 'Task '), h('code', {}, taskId), badge(status),
      attempts ? h('span', { class: 'muted small' }, `attempt ${attempts}`) : null, cancel);
  }

  /** A step; `live` when it came from the events stream as it happened. */
  step(step, live = false) {
    const node = step.subtask !== undefined ? this.nodes.get(step.subtask) : null;
    const list = node ? node.steps : this.steps;
    list.append(h('li', { class: 'step', 'data-from': live ? 'events' : 'result' },
      h('header', {}, h('strong', {}, step.tool), h('span', { class: 'muted small' }, fmtMs(step.duration_ms)),
        step.error ? h('span', { class: 'badge failed' }, 'error') : null),
      h('div', { class: 'small' }, 'arguments ', h('code', {}, JSON.stringify(step.args))),
      h('details', {}, h('summary', { class: 'small' }, 'result'), json(step.result))));
  }

  plan(items, key) {
    this.tree.hidden = false;
    this.planHead.hidden = false;
    // A planned run's steps belong to its subtasks.
    this.stepsHead.hidden = true;
    fill(this.tree);
    this.nodes.clear();
    for (const item of items) {
      const id = item[key];
      const state = h('span', {}, badge('pending'));
      const steps = h('ol', { class: 'steps' });
      const outcome = h('div', { class: 'small' });
      const deps = item.depends_on && item.depends_on.length ? ` (after ${item.depends_on.join(', ')})` : '';
      const tools = item.tools ? ` · tools: ${item.tools.join(', ')}` : '';
      const li = h('li', { 'data-node': id }, state, ' ', h('strong', {}, item.id ? `${item.id}: ` : ''),
        item.description || item.title, h('span', { class: 'muted small' }, `${deps}${tools}`), steps, outcome);
      this.tree.append(li);
      const node = { state, steps, outcome };
      this.nodes.set(id, node);
      if (item.title) this.nodes.set(item.title, node);
    }
  }

  mark(id, status, text) {
    const node = this.nodes.get(id);
    if (!node) return;
    fill(node.state, badge(status));
    if (text) fill(node.outcome, text);
  }

  /** One event of `/api/v1/tasks/{id}/events`. */
  event(name, data, taskId, onCancel) {
    switch (name) {
      case 'status': return this.header(taskId, data.status, data.attempts, onCancel);
      case 'step': return this.step(data, true);
      case 'plan': return this.plan(data.subtasks, 'id');
      case 'subtopics': return this.plan(data.subtopics, 'title');
      case 'subtask_started': return this.mark(data.id, 'running');
      case 'subtask_finished': return this.mark(data.id, data.status, data.response || data.error);
      case 'subtopic_started': return this.mark(data.title, 'running');
      case 'subtopic_finished': return this.mark(data.title, data.status, data.error || '');
      case 'synthesis': return fill(this.stages, `Synthesis of ${data.subtasks} subtasks`);
      case 'stage': return fill(this.stages, `Writing: ${data.stage}`);
      case 'item': return this.steps.append(h('li', { class: 'step' }, `item ${data.index}: `,
        data.error ? data.error.message : data.response));
      case 'done': return this.task(data, onCancel);
      default: return undefined;
    }
  }

  /** A task as `GET /api/v1/tasks/{id}` shows it (ended or not). */
  task(task, onCancel) {
    this.header(task.task_id, task.status, task.attempts, onCancel);
    if (task.result) this.result(task.result, true);
    if (task.error) fill(this.answer, h('p', { class: 'badge failed' }, 'failed'), ' ', task.error.message || String(task.error));
  }

  /** A run's answer: an agent's, a multi-agent run's or a research's. */
  result(result, fromTask) {
    const fresh = !this.steps.children.length && !this.nodes.size;
    if (fresh || !fromTask) {
      if (result.plan && !this.nodes.size) this.plan(result.plan.subtasks, 'id');
      if (result.subtopics && !this.nodes.size) this.plan(result.subtopics, 'title');
      for (const sub of result.subtasks || []) {
        for (const s of sub.steps || []) this.step({ ...s, subtask: sub.id });
        this.mark(sub.id, sub.status, sub.response || sub.error);
      }
      for (const sub of result.subtopics || []) this.mark(sub.title, sub.status, sub.error || '');
      if (!this.steps.children.length) for (const s of result.steps || []) this.step(s);
    }
    const parts = [];
    if (result.report) parts.push(h('h3', {}, 'Report'), markdown(result.report));
    if (result.sources && result.sources.length) {
      parts.push(h('h3', {}, 'Sources'), h('ol', { class: 'small' }, result.sources.map((src) => h('li', { value: src.id },
        h('strong', {}, src.title), ` (${src.source})`))));
    }
    else if (result.response !== undefined) parts.push(h('h3', {}, 'Answer'), h('div', { class: 'answer' }, result.response));
    if (result.results) parts.push(h('h3', {}, 'Results'), json(result.results));
    const meta = [result.model, result.finish_reason, usageLine(result.usage)].filter(Boolean).join(' · ');
    parts.push(h('p', { class: 'meta' }, meta));
    fill(this.answer, parts);
    if (!this.steps.children.length && !this.nodes.size) this.steps.append(h('li', { class: 'muted small' }, 'No tool calls.'));
  }
}

/**
 * Follows a task's events into `view` until it ends; if the stream drops
 * before the end, the task is read once more.
 */
export async function follow(taskId, view, signal, notify) {
  const cancel = () => call(`/api/v1/tasks/${encodeURIComponent(taskId)}/cancel`, { method: 'POST', signal })
    .then((task) => view.task(task)).catch(notify);
  view.header(taskId, 'queued', 0, cancel);
  let ended = false;
  await stream(`/api/v1/tasks/${encodeURIComponent(taskId)}/events`, { signal }, (name, data) => {
    view.event(name, data, taskId, cancel);
    if (name === 'done') ended = true;
  });
  if (!ended) view.task(await call(`/api/v1/tasks/${encodeURIComponent(taskId)}`, { signal }), cancel);
}

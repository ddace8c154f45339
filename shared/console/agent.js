// The agent: run a task (one agent, several agents, or a research) and
// watch it, waiting for the answer or queued and followed step by step.

import { call } from './api.js';
import { field, fill, h, select } from './dom.js';
import { RunView, follow } from './run.js';

const KINDS = [
  ['agent', 'Agent', '/api/v1/agent'],
  ['multi', 'Several agents (planner, executors, synthesis)', '/api/v1/multi-agent'],
  ['research', 'Research (always queued)', '/api/v1/research'],
];

export async function render(root, { caps, notify, args }) {
  const controller = new AbortController();
  const kinds = KINDS.filter(([, , path]) => caps.has(path));
  const task = h('textarea', { name: 'task', rows: 3, required: true, placeholder: 'Calcula 15 * 23' });
  const kind = select(kinds.map(([v, label]) => [v, label]), 'agent');
  const wait = h('input', { type: 'radio', name: 'mode', id: 'mode-wait', value: 'wait' });
  const queue = h('input', { type: 'radio', name: 'mode', id: 'mode-queue', value: 'queue', checked: true });
  const maxSteps = h('input', { type: 'number', min: 1, max: 20, placeholder: '10' });
  const maxSubtasks = h('input', { type: 'number', min: 1, max: 10, placeholder: '5' });
  const depth = select([['quick', 'quick'], ['standard', 'standard'], ['deep', 'deep']], 'quick');
  const session = h('input', { type: 'text', placeholder: 'a new one' });
  const model = select([['', 'default'], ['fast', 'fast tier'], ['strong', 'strong tier']], '');
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const stepsField = field('Most steps', maxSteps);
  const subtasksField = field('Most subtasks', maxSubtasks);
  const depthField = field('Depth', depth);
  const sessionField = field('Session id', session, 'Memory is per session.');
  const modes = h('fieldset', {}, h('legend', {}, 'How'),
    h('div', { class: 'row' }, wait, h('label', { for: 'mode-wait' }, 'Wait for the answer'),
      queue, h('label', { for: 'mode-queue' }, 'Queue it and follow its steps')));
  const out = h('div', { id: 'run' });
  const form = h('form', { 'aria-label': 'Run a task' },
    field('Task', task), field('Kind', kind), modes,
    h('div', { class: 'row' }, stepsField, subtasksField, depthField, sessionField, field('Model', model)),
    h('div', { class: 'row' }, run));

  const shape = () => {
    stepsField.hidden = kind.value !== 'agent';
    subtasksField.hidden = kind.value !== 'multi';
    depthField.hidden = kind.value !== 'research';
    sessionField.hidden = kind.value === 'research';
    modes.hidden = kind.value === 'research';
    task.placeholder = kind.value === 'research' ? 'serverless cold start'
      : kind.value === 'multi' ? 'Calcula 25*4 y busca información sobre cold start' : 'Calcula 15 * 23';
  };
  kind.addEventListener('change', shape);
  shape();
  fill(root, h('h2', {}, 'Agent'), h('div', { class: 'panel' }, form), out);

  async function watch(taskId) {
    const view = new RunView();
    fill(out, view.el);
    await follow(taskId, view, controller.signal, notify);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = task.value.trim();
    if (!text) return;
    notify(null);
    run.disabled = true;
    const [, , path] = kinds.find(([v]) => v === kind.value);
    const body = kind.value === 'research' ? { topic: text, depth: depth.value } : { task: text };
    if (kind.value === 'agent' && maxSteps.value) body.max_steps = Number(maxSteps.value);
    if (kind.value === 'multi' && maxSubtasks.value) body.max_subtasks = Number(maxSubtasks.value);
    if (kind.value !== 'research' && session.value.trim()) body.session_id = session.value.trim();
    if (model.value) body.model = model.value;
    const queued = kind.value === 'research' || queue.checked;
    if (queued && kind.value !== 'research') body.async = true;
    try {
      if (queued) {
        const accepted = await call(path, { method: 'POST', body, signal: controller.signal });
        const id = accepted.task_id || accepted.research_id;
        history.replaceState(null, '', `#agent/${encodeURIComponent(id)}`);
        await watch(id);
      } else {
        const view = new RunView();
        fill(out, view.el);
        fill(view.head, h('span', { 'aria-busy': 'true' }, 'Running…'));
        const answer = await call(path, { method: 'POST', body, signal: controller.signal });
        view.header(answer.task_id, 'completed');
        view.result(answer, false);
      }
    } catch (err) {
      notify(err);
    } finally {
      run.disabled = false;
    }
  });

  if (args[0]) watch(args[0]).catch(notify);
  else task.focus();
  return () => controller.abort();
}

// The console's shell: what the runner serves (read from its OpenAPI
// document, so each view appears only where its routes exist), the key
// prompt, the notice line and the views behind the #hash.

import { ApiError, call, key, whenUnauthenticated } from './api.js';
import { fill, h } from './dom.js';

const VIEWS = {
  chat: () => import('./chat.js'),
  agent: () => import('./agent.js'),
  tasks: () => import('./tasks.js'),
  sessions: () => import('./sessions.js'),
  tools: () => import('./tools.js'),
  overview: () => import('./overview.js'),
  api: () => import('./apidoc.js'),
};

const view = document.getElementById('view');
const noticeEl = document.getElementById('notice');
const dialog = document.getElementById('key-dialog');
const keyButton = document.getElementById('key-button');

/** What this runner serves. */
const caps = { paths: new Set(), document: null, needsKey: false };
caps.has = (path) => caps.paths.has(path);

/** Shows an error (the envelope's message) or a note in the notice line. */
export function notify(what, kind = 'error') {
  if (!what) {
    noticeEl.hidden = true;
    return;
  }
  let text = String(what.message || what);
  if (what.name === 'AbortError') return;
  if (what.code) text += ` (${what.code}${what instanceof ApiError && what.status ? `, HTTP ${what.status}` : ''})`;
  if (what.retryAfter) text += `: retry in ${what.retryAfter} s`;
  noticeEl.className = kind === 'info' ? 'info' : '';
  fill(noticeEl, text, ' ', h('button', { type: 'button', onclick: () => notify(null), 'aria-label': 'Dismiss' }, '×'));
  noticeEl.hidden = false;
}

function askKey(reason) {
  if (dialog.open) return;
  const why = document.getElementById('key-why');
  if (reason) why.textContent = reason;
  document.getElementById('key-input').value = key.get();
  dialog.showModal();
}

dialog.addEventListener('close', () => {
  if (dialog.returnValue === 'save') {
    key.set(document.getElementById('key-input').value.trim());
    keyButton.hidden = false;
    notify('Key saved for this tab.', 'info');
  }
  route();
});
document.getElementById('key-forget').addEventListener('click', () => {
  key.set('');
  dialog.close('forget');
  notify('Key forgotten.', 'info');
});
keyButton.addEventListener('click', () => askKey());
whenUnauthenticated((err) => {
  keyButton.hidden = false;
  askKey(`The runner refused the call: ${err.message}. Enter a key from API_KEYS.`);
});

let leave = null;

async function route() {
  if (leave) leave();
  leave = null;
  const [name, ...rest] = location.hash.replace(/^#/, '').split('/');
  const available = [...document.querySelectorAll('#nav li')].filter((li) => !li.hidden);
  const fallback = available.length ? available[0].querySelector('a').hash.slice(1) : 'api';
  const chosen = VIEWS[name] && isShown(name) ? name : fallback;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.hash === `#${chosen}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const module = await VIEWS[chosen]();
  const container = h('section', { 'aria-label': chosen });
  fill(view, container);
  document.title = `${chosen[0].toUpperCase()}${chosen.slice(1)} · serverless-agent console`;
  try {
    leave = (await module.render(container, { caps, notify, args: rest.map(decodeURIComponent) })) || null;
  } catch (err) {
    notify(err);
  }
}

function isShown(name) {
  const link = document.querySelector(`#nav a[href="#${name}"]`);
  return link && !link.parentElement.hidden;
}

async function boot() {
  try {
    caps.document = await call('/openapi.json');
  } catch (err) {
    notify(err);
    caps.document = { paths: {} };
  }
  caps.paths = new Set(Object.keys(caps.document.paths || {}));
  document.getElementById('function-name').textContent = caps.document.info ? caps.document.info.title : '';
  for (const li of document.querySelectorAll('#nav li[data-needs]')) li.hidden = !caps.has(li.dataset.needs);
  // A key is needed when every operation asks for one (the document's
  // global requirement names no empty alternative).
  const security = caps.document.security || [];
  caps.needsKey = security.length > 0 && security.every((s) => Object.keys(s).length > 0) && 'apiKey' in
    ((caps.document.components || {}).securitySchemes || {});
  keyButton.hidden = !caps.needsKey;
  window.addEventListener('hashchange', () => {
    notify(null);
    route();
  });
  if (caps.needsKey && !key.get()) askKey();
  else route();
}

boot();

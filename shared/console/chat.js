// Chat: sessions, their history, and turns that stream in as they are
// written, with what each turn and each session cost.

import { call, stream } from './api.js';
import { field, fill, fmtTime, h, select, usageLine } from './dom.js';

export async function render(root, { caps, notify, args }) {
  let session = args[0] || null;
  const controller = new AbortController();

  const sessionList = h('ul', { class: 'list', 'aria-label': 'Sessions' });
  const transcript = h('div', { class: 'transcript', role: 'log', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const sessionInfo = h('p', { class: 'muted small', id: 'session-info' });
  const message = h('textarea', { name: 'message', rows: 3, required: true, placeholder: 'Ask something. Enter sends, Shift+Enter starts a new line.' });
  const system = h('input', { name: 'system_instruction', type: 'text', placeholder: 'e.g. Answer in Spanish.' });
  const model = select([['', 'default (routing decides)'], ['fast', 'fast tier'], ['strong', 'strong tier']], '');
  const streamBox = h('input', { type: 'checkbox', id: 'chat-stream', checked: true });
  const cacheBox = h('input', { type: 'checkbox', id: 'chat-cache', checked: true });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');

  const form = h('form', { 'aria-label': 'Send a message' },
    field('Message', message),
    h('details', {},
      h('summary', {}, 'Options'),
      field('System instruction', system),
      field('Model', model),
      h('div', { class: 'row' },
        streamBox, h('label', { for: 'chat-stream' }, 'Stream the answer'),
        cacheBox, h('label', { for: 'chat-cache' }, 'Use the response cache'))),
    h('div', { class: 'row' }, send));

  fill(root,
    h('h2', {}, 'Chat'),
    h('div', { class: 'split' },
      h('div', { class: 'panel' },
        h('div', { class: 'row' },
          h('h3', {}, 'Sessions'),
          h('button', { type: 'button', onclick: () => open(null) }, 'New session')),
        sessionList),
      h('div', { class: 'panel' }, sessionInfo, transcript, form)));

  if (caps.has('/api/v1/models')) {
    call('/api/v1/models', { signal: controller.signal }).then((m) => {
      for (const name of m.allowed || []) {
        if (name !== 'fast' && name !== 'strong') model.append(h('option', { value: name }, name));
      }
    }).catch(notify);
  }

  async function listSessions() {
    if (!caps.has('/api/v1/sessions')) return;
    const { sessions } = await call('/api/v1/sessions?limit=50', { signal: controller.signal });
    fill(sessionList, sessions.length ? sessions.map((s) => h('li', {},
      h('button', {
        type: 'button', class: 'item', 'aria-current': String(s.session_id === session),
        onclick: () => open(s.session_id),
      }, h('div', {}, s.session_id), h('div', { class: 'meta' }, `${s.message_count} messages · ${fmtTime(s.updated_at)}`))))
      : h('li', { class: 'muted small' }, 'No sessions yet.'));
  }

  function bubble(role, text, meta) {
    const el = h('div', { class: `msg ${role}` }, h('span', { class: 'text' }, text));
    if (meta) el.append(h('div', { class: 'meta' }, meta));
    transcript.append(el);
    transcript.scrollTop = transcript.scrollHeight;
    return el;
  }

  function describe(id, usage) {
    fill(sessionInfo, id ? [h('span', {}, 'Session '), h('code', {}, id), usage ? ` · this session: ${usageLine(usage)}` : '']
      : 'A new session: its id comes with the first answer.');
  }

  async function open(id) {
    session = id;
    history.replaceState(null, '', id ? `#chat/${encodeURIComponent(id)}` : '#chat');
    transcript.replaceChildren();
    describe(id);
    await listSessions().catch(notify);
    if (!id) return message.focus();
    let cursor = null;
    let usage = null;
    for (let page = 0; page < 10; page++) {
      const q = `limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const data = await call(`/api/v1/sessions/${encodeURIComponent(id)}?${q}`, { signal: controller.signal });
      for (const m of data.messages) bubble(m.role === 'user' ? 'user' : 'model', m.content, fmtTime(m.created_at));
      usage = data.usage;
      cursor = data.next_cursor;
      if (!cursor) break;
    }
    describe(id, usage);
  }

  async function refreshUsage() {
    if (!session) return;
    const data = await call(`/api/v1/sessions/${encodeURIComponent(session)}?limit=1`, { signal: controller.signal });
    describe(session, data.usage);
  }

  function turnMeta(answer) {
    const parts = [answer.model, usageLine(answer.usage)];
    if (answer.cached) parts.push('from the cache');
    if (answer.fallback_from) parts.push(`fallback from ${answer.fallback_from}`);
    return parts.filter(Boolean).join(' · ');
  }

  async function submit(event) {
    event.preventDefault();
    const text = message.value.trim();
    if (!text) return;
    const body = { message: text };
    if (session) body.session_id = session;
    if (system.value.trim()) body.system_instruction = system.value.trim();
    if (model.value) body.model = model.value;
    if (!cacheBox.checked) body.cache = false;
    send.disabled = true;
    notify(null);
    bubble('user', text);
    message.value = '';
    const reply = bubble('model', '');
    reply.setAttribute('aria-busy', 'true');
    const out = reply.querySelector('.text');
    try {
      let answer = null;
      if (streamBox.checked) {
        body.stream = true;
        await stream('/api/v1/chat', { method: 'POST', body, signal: controller.signal }, (name, data) => {
          if (name === 'delta') {
            out.textContent += data.text;
            transcript.scrollTop = transcript.scrollHeight;
          } else if (name === 'done') {
            answer = data;
          } else if (name === 'error') {
            throw Object.assign(new Error(data.error ? data.error.message : 'the stream failed'), data.error || {});
          }
        });
      } else {
        answer = await call('/api/v1/chat', { method: 'POST', body, signal: controller.signal });
        out.textContent = answer.response;
      }
      if (answer) {
        out.textContent = answer.response;
        reply.append(h('div', { class: 'meta' }, turnMeta(answer)));
        const isNew = session !== answer.session_id;
        session = answer.session_id;
        if (isNew) history.replaceState(null, '', `#chat/${encodeURIComponent(session)}`);
        await listSessions();
        await refreshUsage();
      }
    } catch (err) {
      reply.classList.add('failed');
      if (!out.textContent) reply.remove();
      notify(err);
    } finally {
      reply.removeAttribute('aria-busy');
      send.disabled = false;
      message.focus();
    }
  }

  form.addEventListener('submit', submit);
  message.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  await open(session);
  return () => controller.abort();
}

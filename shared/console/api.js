// Calls to the runner's own API: the key it asks for, the error envelope,
// and server-sent events read from fetch (EventSource can neither POST nor
// send a key header).

const KEY = 'serverless-agent.key';

/** An answer other than 2xx, read from the error envelope. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export const key = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

/** Called with the error when a call is refused for want of a key. */
let onUnauthenticated = () => {};
export function whenUnauthenticated(handler) {
  onUnauthenticated = handler;
}

function headers(extra, body) {
  const out = { Accept: 'application/json', ...extra };
  if (body !== undefined) out['Content-Type'] = 'application/json';
  const k = key.get();
  if (k) out['X-API-Key'] = k;
  return out;
}

async function refusal(response) {
  let code = 'http_' + response.status;
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not the envelope (a proxy's page): the status line says enough.
  }
  const err = new ApiError(response.status, code, message, response.headers.get('Retry-After'));
  if (response.status === 401) onUnauthenticated(err);
  return err;
}

/** A JSON call: the parsed answer, `null` for a 204, or an ApiError. */
export async function call(path, { method = 'GET', body, signal, accept, headers: extra = {} } = {}) {
  const response = await fetch(path, {
    method,
    signal,
    headers: headers({ ...(accept ? { Accept: accept } : {}), ...extra }, body),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await refusal(response);
  if (response.status === 204 || response.status === 202 && !response.headers.get('content-type')) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

/**
 * A server-sent event stream: `onEvent(event, data, id)` for each event,
 * `data` parsed as JSON when it is. Resolves when the stream ends.
 */
export async function stream(path, { method = 'GET', body, signal } = {}, onEvent) {
  const response = await fetch(path, {
    method,
    signal,
    headers: headers({ Accept: 'text/event-stream' }, body),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) throw await refusal(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = 'message';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* plain text data */ }
          onEvent(event, parsed, id);
        }
        event = 'message';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id') id = val;
      }
    }
  }
}

/** `/metrics` as samples: `[{name, labels, value}]`. */
export async function metrics() {
  const text = await call('/metrics', { accept: 'text/plain' });
  const samples = [];
  for (const line of String(text).split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of a metric's samples, optionally filtered by label. */
export function total(samples, name, where = () => true) {
  return samples.filter((s) => s.name === name && where(s.labels)).reduce((sum, s) => sum + s.value, 0);
}

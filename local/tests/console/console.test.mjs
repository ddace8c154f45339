// The console in a real browser: headless Chromium (the system's, never a
// download) driven by playwright-core, against two `local` processes that
// local/tests/console.rs starts:
//
//   OPEN_URL   no key, the offline model: chat, an async agent run, a
//              multi-agent run, tasks, sessions, tools, overview, the API
//   KEYED_URL  API_KEYS=KEY, its model a gated double of OpenAI's stream:
//              the key prompt, a refused key's message, a chat reply that
//              is on screen before the model has finished it, and a queued
//              run cancelled while the double holds its model call
//
// When the first words of the gated reply are on screen it prints RELEASE
// and waits for a line on stdin: the Rust test then lets the model finish.
// Screenshots go to SHOTS. Any console error or page error the steps did
// not expect fails the run. Exit 0 when every check held.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import readline from 'node:readline';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (local/tests/console.rs sets it)`);
  return value;
};
const require = createRequire(join(env('CONSOLE_NODE_MODULES'), 'playwright-core', 'package.json'));
const { chromium } = require('playwright-core');

const OPEN = env('OPEN_URL');
const KEYED = env('KEYED_URL');
const KEY = env('KEY');
const SHOTS = env('SHOTS');
mkdirSync(SHOTS, { recursive: true });

const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

function check(ok, what) {
  if (!ok) throw new Error(`failed: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--no-first-run', '--disable-sync', '--disable-quic'],
});

/** A page whose console errors are collected; `expected` ones are allowed. */
async function open(url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  page.errors = [];
  page.expected = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !page.expected.some((re) => re.test(m.text()))) page.errors.push(m.text());
  });
  page.on('pageerror', (e) => page.errors.push(`page error: ${e.message}`));
  page.setDefaultTimeout(20000);
  await page.goto(url);
  return page;
}

const shot = (page, name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const go = async (page, name) => {
  await page.getByRole('link', { name, exact: true }).click();
  await page.waitForSelector(`section[aria-label="${name.toLowerCase()}"]`);
};

try {
  // ---- The open runner -------------------------------------------------
  const page = await open(`${OPEN}/`);
  await page.waitForSelector('nav a[aria-current="page"]');
  check(await page.getByRole('link', { name: 'Agent', exact: true }).isVisible(), 'the views whose routes local serves are in the menu');
  check(!(await page.locator('#key-button').isVisible()), 'no key is asked where API_KEYS is unset');

  // Chat: a turn on the offline model, with its tokens and cost.
  await go(page, 'Chat');
  await page.getByLabel('Message', { exact: true }).fill('hello from the browser');
  await page.getByLabel('Message', { exact: true }).press('Enter');
  const reply = page.locator('.msg.model').last();
  await reply.locator('.meta').waitFor();
  check((await reply.textContent()).includes('You said: "hello from the browser"'), 'the chat reply arrives in full');
  check(/tokens .* \$0/.test(await reply.locator('.meta').textContent()), 'the turn shows its tokens and cost');
  const sessionId = decodeURIComponent(new URL(page.url()).hash.split('/')[1] || '');
  check(sessionId.length > 0, `the new session is named in the address (${sessionId})`);
  await page.locator('#session-info').filter({ hasText: 'this session' }).waitFor();
  await page.getByLabel('Sessions', { exact: true }).getByText(sessionId).waitFor();
  check(true, 'the session is listed beside the chat with what it spent');
  await page.getByLabel('Message', { exact: true }).fill('and a second turn');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.msg.model').nth(1).locator('.meta').waitFor();
  check((await page.locator('.msg.model').nth(1).textContent()).includes('Earlier in this conversation'), 'the session keeps its history');
  await shot(page, 'chat');

  // Agent, queued: steps come from the events stream before the answer.
  await go(page, 'Agent');
  await page.getByLabel('Task', { exact: true }).fill('Calcula 15 * 23');
  await page.getByLabel('Queue it and follow its steps', { exact: true }).check();
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('#run-answer .answer').waitFor();
  check((await page.locator('#run .step[data-from="events"]').count()) === 1, 'the step came from the events stream');
  check((await page.locator('#run-answer .answer').textContent()).includes('345'), 'the async agent run answers 345');
  const step = page.locator('#run .step').first();
  check((await step.textContent()).includes('calculate') && (await step.textContent()).includes('15 * 23'),
    'the step shows the tool and its arguments');
  check((await page.locator('#run-status .badge').textContent()) === 'completed', 'the run is completed');
  const taskId = await page.locator('#run-status code').textContent();
  await shot(page, 'agent');

  // Several agents: the plan as a tree whose subtasks end completed.
  await page.getByLabel('Kind', { exact: true }).selectOption('multi');
  await page.getByLabel('Task', { exact: true }).fill('Calcula 25*4 y busca información sobre cold start');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.waitForFunction((id) => {
    const shown = document.querySelector('#run-status code');
    return shown && shown.textContent !== id && document.querySelector('#run-answer .answer');
  }, taskId);
  const nodes = page.locator('#run .tree > li');
  check((await nodes.count()) === 2, 'the plan has two subtasks');
  for (let i = 0; i < 2; i++) check((await nodes.nth(i).locator('.badge').first().textContent()) === 'completed', `subtask ${i + 1} completed`);
  await shot(page, 'multi-agent');
  const multiId = await page.locator('#run-status code').textContent();

  // A research: its subtopics as a tree, then the report rendered.
  await page.getByLabel('Kind', { exact: true }).selectOption('research');
  await page.getByLabel('Task', { exact: true }).fill('serverless cold start');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.waitForFunction((id) => {
    const shown = document.querySelector('#run-status code');
    return shown && shown.textContent !== id && document.querySelector('#run-answer .report h2');
  }, multiId);
  check((await page.locator('#run .tree > li').count()) >= 1, 'the research shows its subtopics');
  check((await page.locator('#run-answer .report h2').first().textContent()) === 'serverless cold start', 'the report is rendered');
  check((await page.locator('#run .tree .badge').first().textContent()) === 'completed', 'the subtopics end completed');
  await shot(page, 'research');

  // Tasks: newest first, by status, and one task's details.
  await go(page, 'Tasks');
  const rows = page.locator('tbody tr[data-task]');
  await rows.first().waitFor();
  check((await rows.count()) >= 2, 'both runs are listed');
  check((await page.locator(`tr[data-task="${taskId}"] .badge`).textContent()) === 'completed', 'the agent run is listed as completed');
  await page.getByLabel('Status', { exact: true }).selectOption('failed');
  await page.getByText('No tasks.').waitFor();
  check(true, 'a status with no tasks lists none');
  await page.getByLabel('Status', { exact: true }).selectOption('completed');
  await page.locator(`tr[data-task="${taskId}"]`).waitFor();
  await shot(page, 'tasks');
  await page.locator(`tr[data-task="${taskId}"] a`).first().click();
  await page.locator('#run-answer .answer').waitFor();
  check((await page.locator('#run-answer').textContent()).includes('345'), 'the task details show the answer');

  // Sessions: listed, then deleted with two presses.
  await go(page, 'Sessions');
  const row = page.locator(`tr[data-session="${sessionId}"]`);
  await row.waitFor();
  check((await row.locator('td').nth(1).textContent()) === '4', 'the session is listed with its four messages');
  await row.getByRole('button', { name: 'Details' }).click();
  await page.locator('#session-detail').getByText('hello from the browser', { exact: true }).waitFor();
  const del = row.getByRole('button', { name: `Delete session ${sessionId}` });
  await del.click();
  check((await del.textContent()) === 'Press again to delete', 'delete asks to be pressed again');
  await del.click();
  await row.waitFor({ state: 'detached' });
  check((await page.locator('#notice').textContent()).includes('deleted'), 'the session is deleted');
  page.expected.push(/status of 404/);
  const gone = await page.evaluate(async (id) => (await fetch(`/api/v1/sessions/${encodeURIComponent(id)}`)).status, sessionId);
  check(gone === 404, 'the runner no longer has the session');

  // Tools: the calculator, MCP and A2A.
  await go(page, 'Tools');
  await page.getByRole('button', { name: 'Calculate' }).click();
  await page.locator('#calc-result').waitFor();
  check((await page.locator('#calc-result').textContent()) === '345', 'the calculator answers');
  const mcp = page.getByRole('region', { name: 'MCP (POST /mcp)' });
  await mcp.getByLabel('Tool', { exact: true }).locator('option[value="calculate"]').waitFor({ state: 'attached' });
  await mcp.getByRole('button', { name: 'Call' }).click();
  await mcp.locator('pre').filter({ hasText: '"result":4' }).waitFor();
  check(true, 'an MCP tools/call answers');
  const a2a = page.getByRole('region', { name: 'A2A (POST /a2a)' });
  await a2a.getByRole('button', { name: 'Send' }).click();
  await a2a.locator('.answer').waitFor();
  check((await a2a.locator('.answer').textContent()).includes('42'), 'an A2A message is answered');

  // Overview and the API.
  await go(page, 'Overview');
  await page.locator('#today .tile').first().waitFor();
  check((await page.locator('#today').textContent()).includes('Model calls'), "today's figures are shown");
  check((await page.locator('section[aria-label="overview"] svg').count()) >= 3, 'the charts are drawn');
  await shot(page, 'overview');
  await go(page, 'API');
  check(await page.getByText('/api/v1/agent', { exact: true }).first().isVisible(), 'the API lists the agent route');

  check(page.errors.length === 0, `no console errors on the open runner ${JSON.stringify(page.errors)}`);

  // ---- The runner with API_KEYS ----------------------------------------
  const keyed = await open(`${KEYED}/`);
  const dialog = keyed.getByRole('dialog', { name: 'API key' });
  await dialog.waitFor();
  check(true, 'the key is asked for at once');
  await shot(keyed, 'key-prompt');
  // A wrong key: the runner's own message is shown, and the prompt returns.
  keyed.expected.push(/status of 401/);
  await dialog.getByLabel('Key', { exact: true }).fill('not-the-key');
  await dialog.getByRole('button', { name: 'Use key' }).click();
  await keyed.locator('#notice').filter({ hasText: 'unauthenticated' }).waitFor();
  check((await keyed.locator('#notice').textContent()).includes('X-API-Key'), "a refusal shows the envelope's message");
  await dialog.waitFor();
  await dialog.getByLabel('Key', { exact: true }).fill(KEY);
  await dialog.getByRole('button', { name: 'Use key' }).click();
  await keyed.getByLabel('Sessions', { exact: true }).getByText('No sessions yet.').waitFor();
  check(true, 'with the key the chat opens');
  keyed.expected = [];

  // A streamed reply: its first words on screen while the model still holds the rest.
  await keyed.getByLabel('Message', { exact: true }).fill('stream to me');
  await keyed.getByLabel('Message', { exact: true }).press('Enter');
  const streaming = keyed.locator('.msg.model[aria-busy="true"]');
  await streaming.filter({ hasText: 'done' }).waitFor();
  check((await streaming.textContent()).trim() === 'done', 'the first delta is on screen before the model finished');
  await shot(keyed, 'chat-streaming');
  console.log('RELEASE');
  await nextLine();
  const done = keyed.locator('.msg.model').last();
  await done.locator('.meta').waitFor();
  check((await done.locator('.text').textContent()) === 'done at last', 'the rest of the reply follows');

  // A queued run whose model call the double holds: cancelled from its view.
  await go(keyed, 'Agent');
  await keyed.getByLabel('Task', { exact: true }).fill('wait for me');
  await keyed.getByRole('button', { name: 'Run' }).click();
  const cancel = keyed.locator('#run-status').getByRole('button', { name: 'Cancel' });
  await cancel.waitFor();
  await keyed.locator('#run-status .badge').filter({ hasText: 'running' }).waitFor();
  await cancel.click();
  await keyed.locator('#run-status .badge').filter({ hasText: 'cancelled' }).waitFor();
  check(!(await cancel.isVisible()), 'a running task is cancelled from its view');
  await go(keyed, 'Tasks');
  await keyed.locator('tbody tr[data-task] .badge').filter({ hasText: 'cancelled' }).waitFor();
  check(true, 'the tasks list shows it cancelled');
  check(keyed.errors.length === 0, `no console errors on the keyed runner ${JSON.stringify(keyed.errors)}`);
  console.log('all checks passed');
} catch (err) {
  console.error(err.stack || String(err));
  process.exitCode = 1;
} finally {
  lines.close();
  await browser.close();
}

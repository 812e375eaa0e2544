// The dashboard in a real browser (Debian's chromium, headless) against a
// real nornd doing real deploys of the example app. Started by
// tests/integration/test_dashboard.py, which owns nornd and the fixtures:
//   NORN_DASH_URL, NORN_DASH_TOKEN  the dashboard and the API token
//   NORN_DASH_GATE                  the test step's gate dir (dashboard_env.py)
//   NORN_DASH_SHOTS                 where screenshots go
// What only the Python side can do (restart nornd, commit to the app's repo)
// is asked for with a line "@@control {...}" on stdout, answered with one
// JSON line on stdin.
//
// Every wait is for a DOM state or an event, with generous timeouts: this
// runs on a busy 2-core machine.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, unlinkSync, mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, signIn } from './lib.js';

const URL_ = process.env.NORN_DASH_URL;
const TOKEN = process.env.NORN_DASH_TOKEN;
const GATE = process.env.NORN_DASH_GATE;
const SHOTS = process.env.NORN_DASH_SHOTS;
const T = 120_000;
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const STEPS = ['clone', 'build', 'test', 'snapshot', 'migrate', 'deploy', 'cleanup'];

assert.ok(URL_ && TOKEN && GATE && SHOTS, 'NORN_DASH_URL, _TOKEN, _GATE and _SHOTS must be set');
mkdirSync(SHOTS, { recursive: true });

// --- control channel to the Python side ---
const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function control(action, args = {}) {
  process.stdout.write(`@@control ${JSON.stringify({ action, ...args })}\n`);
  const { value } = await stdinLines.next();
  const answer = JSON.parse(value);
  assert.ok(answer.ok, `control ${action} failed: ${value}`);
  return answer;
}

function gate(name, present = true) {
  const p = join(GATE, name);
  if (present) writeFileSync(p, '');
  else if (existsSync(p)) unlinkSync(p);
}

async function api(path, opts = {}) {
  const res = await fetch(new URL(path, URL_), {
    ...opts, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
  });
  return { status: res.status, body: await res.json() };
}

let browser;
let context;
let page;
const problems = []; // CSP violations, page errors
let wsBlocked = false;
let wsRoutes = [];

function watch(p) {
  p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  p.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
}

before(async () => {
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(T);
  watch(page);
  // The page's WebSocket goes through here, so a test can cut it (a
  // network blip) and keep it from reconnecting for a while.
  await page.routeWebSocket(/\/ws(\?.*)?$/, (ws) => {
    if (wsBlocked) {
      ws.close({ code: 4000, reason: 'blip' });
      return;
    }
    ws.connectToServer();
    wsRoutes.push(ws);
  });
});

after(async () => {
  if (browser) await browser.close();
  // stdin stays open (the Python side waits for our end): let go of it.
  process.stdin.destroy();
});

// Records every change of a step's state in the page from now on.
async function recordSteps(p = page) {
  await p.evaluate(() => {
    window.__steps = [];
    const record = (li, from) => window.__steps.push({ step: li.dataset.step, from, to: li.dataset.state });
    window.__stepObserver?.disconnect();
    window.__stepObserver = new MutationObserver((ms) => {
      for (const m of ms) {
        if (m.type === 'attributes' && m.target.matches('li.step')) record(m.target, m.oldValue);
        for (const n of m.addedNodes || [])
          if (n.nodeType === 1) n.querySelectorAll?.('li.step').forEach((li) => record(li, null));
      }
    });
    window.__stepObserver.observe(document.body, {
      subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true,
    });
  });
}

const stepsSeen = (p = page) => p.evaluate(() => window.__steps);
const stepLocator = (name, p = page) => p.locator(`li.step[data-step="${name}"]`);

async function waitStatus(status, p = page) {
  await p.locator(`main[data-status="${status}"]`).waitFor({ timeout: T });
}

async function deployFromPage(ref = '') {
  await page.goto(`${URL_}#/apps/hello`);
  await page.locator('main[data-loaded="true"]').waitFor();
  if (ref) await page.getByLabel('Branch, tag or commit').fill(ref);
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  await page.waitForURL(/#\/deployments\/\d+$/);
  await page.locator('main[data-loaded="true"][data-view="live"]').waitFor();
  return Number(page.url().match(/deployments\/(\d+)/)[1]);
}

async function checkAxe(p, label) {
  await p.evaluate(axeSource);
  const result = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [],
    `axe found serious or critical violations on ${label}`);
}

test('a wrong token gets a clear message, and no API call works without a token', async () => {
  await page.goto(URL_);
  await page.getByLabel('API token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.textContent(), /Wrong token.*401/);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('norn.token')), null);
  await page.screenshot({ path: join(SHOTS, 'signin-wrong-token.png') });
  await checkAxe(page, 'the sign-in page');
});

test('sign-in; the overview lists the app and the health of the components', async () => {
  await signIn(page, URL_, TOKEN);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('norn.token')), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  const card = page.locator('li.app[data-app="hello"]');
  await card.waitFor();
  assert.match(await card.textContent(), /webserver/);
  for (const c of ['database', 'systemd', 'kubernetes'])
    await page.locator('#health li', { hasText: `${c} up` }).waitFor();
  await page.locator('body[data-conn="live"]').waitFor();
});

test('a deploy started from the page shows every step go running → succeeded live, and log lines while its step runs', async () => {
  // A first deploy holds in its test step, so the second one, started from
  // the page, is still queued when its page opens: all of it happens live.
  gate('hold');
  gate('open', false);
  const first = await api('/api/apps/hello/deploy', { method: 'POST', body: '{}' });
  assert.equal(first.status, 202);
  const id = await deployFromPage();
  assert.ok(id > first.body.id);
  await waitStatus('queued');
  await recordSteps();

  gate('open'); // the first one goes on; the second holds in its test step
  await stepLocator('test').and(page.locator('[data-state="running"]')).waitFor();
  await page.locator('.log li', { hasText: 'test output line 3' }).waitFor();
  assert.equal(await stepLocator('test').getAttribute('data-state'), 'running', 'log lines appear while the step runs');
  assert.match(await stepLocator('test').locator('.step-time').textContent(), /\d/);
  await page.locator('.states li.current[data-state="testing"]').waitFor();
  await page.screenshot({ path: join(SHOTS, 'deployment-live-running.png') });

  gate('open');
  await waitStatus('deployed');
  const seen = await stepsSeen();
  for (const s of STEPS) {
    const path = seen.filter((x) => x.step === s).map((x) => x.to);
    assert.deepEqual(path, ['running', 'succeeded'], `step ${s} went ${path.join(' → ')}`);
  }
  await page.locator('.states li.current[data-state="deployed"]').waitFor();
  await page.screenshot({ path: join(SHOTS, 'deployment-live-deployed.png'), fullPage: true });
  gate('hold', false);
});

test('a failing test command shows the failed step and its output first', async () => {
  gate('fail');
  const id = await deployFromPage();
  await waitStatus('failed');
  gate('fail', false);
  const failure = page.locator('section.failure');
  await failure.waitFor();
  assert.match(await failure.locator('h2').textContent(), /Failed at step test/);
  assert.match(await failure.textContent(), /assertion failed: greeting is wrong/);
  assert.equal(await stepLocator('test').getAttribute('data-state'), 'failed');
  // The failure comes before the pipeline and the log.
  const order = await page.evaluate(() => {
    const f = document.querySelector('section.failure');
    const p = document.querySelector('.pipeline');
    return f.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING;
  });
  assert.ok(order, 'the failure box is above the pipeline');
  assert.equal(await page.locator('#log-step').inputValue(), 'test');
  await page.locator('.log li', { hasText: 'assertion failed: greeting is wrong' }).waitFor();
  const d = await api(`/api/deployments/${id}`);
  assert.equal(d.body.status, 'failed');
});

test('cancel from the page', async () => {
  gate('hold');
  gate('open', false);
  const id = await deployFromPage();
  await stepLocator('test').and(page.locator('[data-state="running"]')).waitFor();
  await page.getByRole('button', { name: 'Cancel deployment' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /Stops the running test step/);
  await dialog.getByRole('button', { name: 'Cancel deployment' }).click();
  await waitStatus('failed');
  gate('hold', false);
  const d = await api(`/api/deployments/${id}`);
  assert.equal(d.body.status, 'failed');
  assert.match(d.body.error, /cancel/i);
  assert.match(await page.locator('section.failure').textContent(), /cancel/i);
});

test('rollback from the page, with a confirmation that says what will happen', async () => {
  const before = (await api('/api/deployments?app=hello&status=deployed&limit=1')).body.deployments[0];
  await control('commit');
  const id = await deployFromPage();
  await waitStatus('deployed');
  const now = (await api(`/api/deployments/${id}`)).body;
  assert.notEqual(now.imageTag, before.imageTag);

  await page.goto(`${URL_}#/apps/hello`);
  await page.locator('main[data-loaded="true"]').waitFor();
  await page.getByRole('button', { name: 'Roll back…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  const text = await dialog.textContent();
  assert.ok(text.includes(before.imageTag), text);
  assert.ok(text.includes(`#${before.id}`) && text.includes(`#${id}`), text);
  assert.match(text, /Leaves the database as it is/);
  await page.screenshot({ path: join(SHOTS, 'rollback-confirm.png') });
  await dialog.getByRole('button', { name: `Roll back to #${before.id}` }).click();
  await page.waitForURL(/#\/deployments\/\d+$/);
  const rb = Number(page.url().match(/deployments\/(\d+)/)[1]);
  assert.ok(rb > id);
  await waitStatus('deployed');
  const d = (await api(`/api/deployments/${rb}`)).body;
  assert.equal(d.rollbackOf, id);
  assert.equal(d.imageTag, before.imageTag);
  // The replaced one is marked rolled back once the rollback is deployed.
  await page.goto(`${URL_}#/apps/hello`);
  await page.locator(`tr[data-id="${id}"] .s-rolled_back`).waitFor();
  assert.equal((await api(`/api/deployments/${id}`)).body.status, 'rolled_back');
});

test('restore of a database snapshot from the page', async () => {
  await page.goto(`${URL_}#/apps/hello`);
  await page.locator('main[data-loaded="true"]').waitFor();
  const snap = (await api('/api/apps/hello/snapshots')).body.snapshots[0];
  assert.ok(snap, 'a snapshot to restore');
  await page.getByRole('button', { name: `Restore ${snap.name}` }).click();
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  const text = await dialog.textContent();
  assert.ok(text.includes(snap.name) && text.includes(`database ${snap.database}`), text);
  await dialog.getByRole('button', { name: 'Restore', exact: true }).click();
  await page.waitForURL(/#\/deployments\/\d+$/);
  await waitStatus('deployed');
});

test('a network blip: the page resumes after the last seq and misses no step', async () => {
  gate('hold');
  gate('open', false);
  const id = await deployFromPage();
  await stepLocator('test').and(page.locator('[data-state="running"]')).waitFor();
  await recordSteps();
  wsBlocked = true;
  for (const ws of wsRoutes.splice(0)) await ws.close({ code: 4000, reason: 'blip' });
  await page.locator('body[data-conn="disconnected"]').waitFor();
  assert.match(await page.locator('#conn').textContent(), /Disconnected/);
  // While the page is cut off the deploy goes on to its end.
  gate('open');
  await new Promise((resolve, reject) => {
    const deadline = Date.now() + T;
    const poll = async () => {
      const d = (await api(`/api/deployments/${id}`)).body;
      if (d.status === 'deployed') return resolve();
      if (Date.now() > deadline) return reject(new Error(`deployment ${id} not deployed: ${d.status}`));
      setTimeout(poll, 200);
    };
    poll();
  });
  assert.equal(await stepLocator('test').getAttribute('data-state'), 'running', 'nothing reached the page while cut off');
  wsBlocked = false;
  await page.locator('body[data-conn="live"]').waitFor();
  await waitStatus('deployed');
  // Resumed from the stream, not reloaded: the events are replayed in order.
  const seen = await stepsSeen();
  assert.deepEqual(seen.filter((x) => x.step === 'test').map((x) => x.to), ['succeeded']);
  for (const s of ['snapshot', 'migrate', 'deploy', 'cleanup'])
    assert.deepEqual(seen.filter((x) => x.step === s).map((x) => x.to), ['running', 'succeeded'], `step ${s}`);
  await page.locator('.log li', { hasText: 'all example tests passed' }).waitFor();
  assert.equal(await page.locator('#conn').textContent(), '');
  gate('hold', false);
});

test('a restart of nornd in the middle of a deploy: the open page shows what happened and goes on live', async () => {
  gate('hold');
  gate('open', false);
  const id = await deployFromPage();
  await stepLocator('test').and(page.locator('[data-state="running"]')).waitFor();
  await page.locator('.log li', { hasText: 'test output line 2' }).waitFor();
  const restarted = control('restart');
  await page.locator('body[data-conn="disconnected"]').waitFor();
  await page.screenshot({ path: join(SHOTS, 'deployment-disconnected.png') });
  await restarted;
  gate('hold', false);
  await page.locator('body[data-conn="live"]').waitFor();
  // nornd marked the interrupted deployment failed when it came back; the
  // page reloaded it (resync) and shows every step as recorded.
  await waitStatus('failed');
  const d = (await api(`/api/deployments/${id}`)).body;
  assert.equal(d.status, 'failed');
  for (const s of d.steps)
    assert.equal(await stepLocator(s.step).getAttribute('data-state'), s.status, `step ${s.step}`);
  assert.ok((await page.locator('section.failure').textContent()).includes(d.error));
  // The same page, no reload: the next deploy shows live.
  await page.goto(`${URL_}#/apps/hello`);
  await page.locator('main[data-loaded="true"]').waitFor();
  await recordSteps();
  await page.getByRole('button', { name: 'Deploy', exact: true }).click();
  await page.waitForURL(/#\/deployments\/\d+$/);
  await waitStatus('deployed');
  const seen = await stepsSeen();
  for (const s of ['test', 'snapshot', 'migrate', 'deploy', 'cleanup'])
    assert.ok(seen.some((x) => x.step === s && x.to === 'succeeded'), `step ${s} seen succeeded`);
});

test('replay of a past deployment with the scrubber, keyboard only', async () => {
  const d = (await api('/api/deployments?app=hello&status=failed&limit=50')).body.deployments
    .find((x) => x.error && /exited/.test(x.error));
  assert.ok(d, 'a failed deployment to replay');
  await page.goto(`${URL_}#/deployments/${d.id}`);
  await page.locator('main[data-loaded="true"]').waitFor();
  await page.getByRole('link', { name: 'Replay' }).focus();
  await page.keyboard.press('Enter');
  await page.locator('main[data-view="replay"][data-loaded="true"]').waitFor();
  await page.locator('main[data-replay-status="queued"]').waitFor();
  for (const s of STEPS) assert.equal(await stepLocator(s).getAttribute('data-state'), 'pending');
  // Step through the recorded transitions with the keyboard.
  const next = page.getByRole('button', { name: 'Next transition' });
  await next.focus();
  const states = [];
  for (let i = 0; i < 40; i++) {
    await page.keyboard.press('Enter');
    states.push(await page.locator('main').getAttribute('data-replay-status'));
    if (await stepLocator('test').getAttribute('data-state') === 'failed') break;
  }
  assert.ok(states.includes('building'), states.join(' '));
  assert.equal(await stepLocator('test').getAttribute('data-state'), 'failed');
  await page.screenshot({ path: join(SHOTS, 'replay.png'), fullPage: true });
  // The scrubber is a labelled slider: End goes to the end.
  const scrub = page.getByRole('slider', { name: 'Time' });
  await scrub.focus();
  await page.keyboard.press('Home');
  await page.locator('main[data-replay-status="queued"]').waitFor();
  await page.keyboard.press('End');
  await page.locator('main[data-replay-status="failed"]').waitFor();
});

test('keyboard only: sign-in to a deploy page by Tab and Enter', async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  p.setDefaultTimeout(T);
  watch(p);
  await p.goto(URL_);
  // The token field has the focus at once.
  await p.keyboard.type(TOKEN);
  await p.keyboard.press('Enter');
  await p.getByRole('heading', { name: 'Apps', level: 1 }).waitFor();
  await p.locator('main[data-loaded="true"]').waitFor();
  let found = false;
  for (let i = 0; i < 20 && !found; i++) {
    await p.keyboard.press('Tab');
    found = await p.evaluate(() => document.activeElement?.textContent === 'hello');
  }
  assert.ok(found, 'the app link is reachable with Tab');
  await p.keyboard.press('Enter');
  await p.locator('main[data-loaded="true"]').waitFor();
  assert.match(p.url(), /#\/apps\/hello$/);
  await ctx.close();
});

test('the first page transfers less than 150 KB', async () => {
  const ctx = await browser.newContext();
  await ctx.addInitScript((t) => sessionStorage.setItem('norn.token', t), TOKEN);
  const p = await ctx.newPage();
  p.setDefaultTimeout(T);
  const cdp = await ctx.newCDPSession(p);
  await cdp.send('Network.enable');
  let bytes = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  await p.goto(URL_);
  await p.locator('main[data-loaded="true"]').waitFor();
  await p.waitForLoadState('networkidle');
  assert.ok(bytes > 20 * 1024 && bytes < 150 * 1024, `${bytes} bytes`);
  await ctx.close();
});

test('screenshots and accessibility: light and dark, wide and narrow', async () => {
  const failed = (await api('/api/deployments?app=hello&status=failed&limit=1')).body.deployments[0];
  const ok = (await api('/api/deployments?app=hello&status=deployed&limit=1')).body.deployments[0];
  const pages = [
    ['overview', ''],
    ['app', '#/apps/hello'],
    ['deployment-failed', `#/deployments/${failed.id}`],
    ['deployment-deployed', `#/deployments/${ok.id}`],
    ['replay', `#/deployments/${ok.id}/replay`],
  ];
  for (const scheme of ['light', 'dark']) {
    for (const [width, height, label] of [[1280, 900, 'wide'], [390, 844, 'narrow']]) {
      const ctx = await browser.newContext({ viewport: { width, height }, colorScheme: scheme, reducedMotion: 'reduce' });
      const p = await ctx.newPage();
      p.setDefaultTimeout(T);
      watch(p);
      await signIn(p, URL_, TOKEN);
      for (const [name, hash] of pages) {
        if (hash) await p.goto(URL_ + hash);
        await p.locator('main[data-loaded="true"]').waitFor();
        await p.locator('#health li').first().waitFor();
        if (name === 'replay') // halfway through, not at the start
          for (let i = 0; i < 4; i++) await p.getByRole('button', { name: 'Next transition' }).click();
        if (label === 'narrow') {
          const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
          assert.ok(overflow <= 1, `${name} is ${overflow}px wider than a ${width}px screen`);
        }
        await p.screenshot({ path: join(SHOTS, `${name}-${scheme}-${label}.png`), fullPage: true });
        await checkAxe(p, `${name} (${scheme}, ${label})`);
      }
      await ctx.close();
    }
  }
});

test('no Content-Security-Policy violation and no page error anywhere', () => {
  assert.deepEqual(problems, []);
});

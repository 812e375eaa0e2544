// One deployment: live (steps, state, log, cancel; failures first) or as a
// replay of its recorded timings with a scrubber.
import { api, enc } from './api.js';
import { badge, clear, confirmDialog, duration, errorText, h, keepFocus, setTitle, shortSha, time } from './ui.js';
import { LogView } from './logs.js';
import { FINAL, PipelineView, deploymentAt, finishedOf, startOf, statusFromSteps } from './pipeline.js';

const LOG_PAGE = 1000;
const LOG_MAX_PAGES = 20;
const RANK = { pending: 0, running: 1, succeeded: 2, failed: 2, skipped: 2, cancelled: 2 };

function logLine(l) {
  return { step: l.step, stream: l.stream, message: l.message, t: Date.parse(l.timestamp) };
}

export function deploymentView(ctx, id, replay) {
  const { main, stream } = ctx;
  setTitle(`Deployment #${id}${replay ? ' replay' : ''}`);
  let alive = true;
  let d = null;
  let loading = null;
  let pending = []; // live log events that came while the log was read over HTTP
  let pendingSteps = []; // and step events
  let failedStepShown = false; // the log was switched to the failed step once

  const heading = h('h1', { tabindex: '-1' }, `Deployment #${id}`);
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Apps'));
  const message = h('div', { class: 'message', role: 'alert' });
  const failure = h('section', { class: 'failure', 'aria-labelledby': 'failure-h', hidden: true });
  const summary = h('dl', { class: 'facts wide summary' });
  const actions = h('div', { class: 'toolbar' });
  const replayBar = h('div', { class: 'replay card', hidden: !replay });
  const pipeline = new PipelineView();
  const logs = new LogView();

  clear(main, crumbs, heading, message, failure, actions, replayBar, summary, pipeline.el, logs.el);
  main.dataset.view = replay ? 'replay' : 'live';
  heading.focus({ preventScroll: true });

  function say(text) {
    message.className = 'message error';
    message.textContent = text;
  }

  async function readLogs() {
    const out = [];
    let cursor = null;
    for (let i = 0; i < LOG_MAX_PAGES; i++) {
      const q = `limit=${LOG_PAGE}` + (cursor ? `&after=${enc(cursor)}` : '');
      const r = await api(`/api/deployments/${id}/logs?${q}`);
      out.push(...r.lines.map(logLine));
      cursor = r.cursor;
      if (!r.more || !cursor) break;
    }
    return out;
  }

  // The deployment and its log over HTTP: at start and after a resync.
  function load() {
    if (loading) return loading;
    pending = [];
    pendingSteps = [];
    loading = (async () => {
      try {
        const [dep, lines] = await Promise.all([api(`/api/deployments/${id}`), readLogs()]);
        if (!alive) return;
        d = dep;
        // Live lines read twice (over HTTP and the stream) are dropped.
        const tail = lines.slice(-pending.length - 50).map((l) => `${l.step}\u0000${l.message}`);
        const extra = pending.filter((l) => {
          const k = `${l.step}\u0000${l.message}`;
          const i = tail.indexOf(k);
          if (i < 0) return true;
          tail.splice(i, 1);
          return false;
        });
        logs.reset(lines.concat(extra));
        pendingSteps.forEach(applyStep);
        keepFocus(main, render);
        if (replay) startReplay();
        main.dataset.loaded = 'true';
      } catch (e) {
        if (alive) say(e.status === 404 ? `There is no deployment #${id}.` : `Cannot load deployment #${id}: ${errorText(e)}`);
      } finally {
        loading = null;
        pending = [];
        pendingSteps = [];
      }
    })();
    return loading;
  }

  // A step event; never back to an earlier state (an event read again
  // after the same state came over HTTP).
  function applyStep(p) {
    const i = d.steps.findIndex((s) => s.step === p.step);
    if (i < 0 || RANK[p.status] < RANK[d.steps[i].status]) return;
    d.steps[i] = { ...d.steps[i], ...p };
    if (!FINAL.includes(d.status)) d.status = statusFromSteps(d.steps, d.status);
  }

  async function refreshSummary() {
    try {
      const dep = await api(`/api/deployments/${id}`);
      if (!alive || !d || loading) return;
      d = { ...d, commitSha: dep.commitSha, imageTag: dep.imageTag, startedAt: dep.startedAt };
      keepFocus(main, render);
    } catch {
      /* the next event or resync brings it */
    }
  }

  function failedStep() {
    return d.steps.find((s) => s.status === 'failed') || (d.status === 'failed' ? d.steps.find((s) => s.step === d.step) : null);
  }

  function render() {
    setTitle(`Deployment #${id} of ${d.app}${replay ? ' replay' : ''}`);
    clear(crumbs, h('a', { href: '#/' }, 'Apps'), ' / ', h('a', { href: `#/apps/${enc(d.app)}` }, d.app), ' / ', `#${id}`);
    clear(heading, `Deployment #${id} of ${d.app}`, replay ? ' — replay' : '');
    main.dataset.status = d.status;

    const end = d.finishedAt ? Date.parse(d.finishedAt) : null;
    clear(summary,
      h('dt', {}, replay ? 'Outcome' : 'Status'), h('dd', { class: 'status' }, badge(d.status)),
      h('dt', {}, 'Ref'), h('dd', { class: 'mono' }, d.ref),
      h('dt', {}, 'Commit'), h('dd', { class: 'mono' }, shortSha(d.commitSha)),
      h('dt', {}, 'Image'), h('dd', { class: 'mono' }, d.imageTag || '—'),
      h('dt', {}, 'Triggered by'), h('dd', {}, d.requestedBy || '—', d.rollbackOf ? ` (rollback of #${d.rollbackOf})` : ''),
      h('dt', {}, 'Queued'), h('dd', {}, time(d.queuedAt)),
      h('dt', {}, 'Finished'), h('dd', {}, d.finishedAt ? time(d.finishedAt) : '—'),
      h('dt', {}, 'Duration'), h('dd', {}, end && d.startedAt ? duration(end - Date.parse(d.startedAt)) : '—'));

    // A failed deploy: the failing step and its error first.
    const fs = d.status === 'failed' ? failedStep() : null;
    failure.hidden = d.status !== 'failed';
    if (d.status === 'failed') {
      clear(failure,
        h('h2', { id: 'failure-h' }, fs ? `Failed at step ${fs.step}` : 'Failed'),
        h('p', { class: 'error-text' }, d.error || 'no error recorded'),
        fs && fs.exitCode !== null && fs.exitCode !== undefined ? h('p', { class: 'muted' }, `exit status ${fs.exitCode}`) : null,
        fs && fs.outputTail ? [h('h3', {}, `Last output of ${fs.step}`), h('pre', { class: 'tail', tabindex: '0' }, fs.outputTail)] : null);
      if (fs && !replay && !failedStepShown) {
        failedStepShown = true;
        logs.setStep(fs.step);
      }
    }

    const final = FINAL.includes(d.status);
    clear(actions,
      !final && !replay ? h('button', { type: 'button', class: 'danger', onclick: onCancel }, 'Cancel deployment') : null,
      final && !replay ? h('a', { class: 'button', href: `#/deployments/${id}/replay` }, 'Replay') : null,
      replay ? h('a', { class: 'button', href: `#/deployments/${id}` }, 'Back to the deployment') : null);

    if (!replay) pipeline.update(d.steps, d.status, Date.now());
  }

  async function onCancel() {
    const running = d.steps.find((s) => s.status === 'running');
    const ok = await confirmDialog({
      title: `Cancel deployment #${id}?`,
      confirm: 'Cancel deployment',
      dismiss: 'Keep it running',
      body: h('p', {}, running ? `Stops the running ${running.step} step (every process of it is killed). ` : 'Stops the deployment before its next step. ',
        'The deployment ends failed; the app keeps running what it ran before.'),
    });
    if (!ok) return;
    try {
      await api(`/api/deployments/${id}/cancel`, { method: 'POST', body: {} });
    } catch (e) {
      say(`Cancel refused: ${errorText(e)}`);
    }
  }

  function onEvent(ev) {
    const p = ev.payload || {};
    if (ev.type === 'deploy.log') {
      if (p.deploymentId !== id) return;
      const l = { step: p.step, stream: p.stream, message: p.line, t: Date.parse(ev.time) };
      if (loading) pending.push(l);
      else if (!replay) logs.add([l]);
      return;
    }
    if (ev.type === 'deploy.step' && p.deploymentId === id) {
      if (loading) pendingSteps.push(p);
      if (!d || loading) return;
      applyStep(p);
      // The commit is known after clone, the image after build.
      if ((p.step === 'clone' || p.step === 'build') && p.status === 'succeeded') refreshSummary();
      if (!replay) {
        pipeline.update(d.steps, d.status, Date.now());
        main.dataset.status = d.status;
        summary.querySelector('.status').replaceChildren(badge(d.status));
      }
      return;
    }
    if ((ev.type === 'deploy.completed' || ev.type === 'deploy.failed' || ev.type === 'deploy.queued') && p.id === id) {
      // The whole deployment; the HTTP one also has each step's last output.
      load();
      return;
    }
    if (ev.type === 'deploy.rolled_back' && p.deploymentId === id) load();
  }

  // --- replay ---
  let replayT = 0;
  let playing = false;
  let raf = null;
  let lastFrame = 0;
  const scrub = h('input', { type: 'range', id: 'scrub', min: '0', step: '10', oninput: () => seek(Number(scrub.value)) });
  const playBtn = h('button', { type: 'button', class: 'primary', onclick: () => (playing ? pause() : play()) }, 'Play');
  const speed = h('select', { id: 'speed' }, [0.5, 1, 2, 5, 10].map((s) => h('option', { value: String(s), selected: s === 1 }, `${s}×`)));
  const clockOut = h('output', { for: 'scrub', class: 'mono' });

  function marks() {
    // Every recorded transition: where "step" jumps to.
    const t0 = startOf(d);
    const ts = new Set([0, finishedOf(d) - t0]);
    for (const s of d.steps) {
      if (s.startedAt) ts.add(Date.parse(s.startedAt) - t0);
      if (s.finishedAt) ts.add(Date.parse(s.finishedAt) - t0);
    }
    return [...ts].filter((x) => x >= 0).sort((a, b) => a - b);
  }

  function startReplay() {
    // A whole number of the slider's steps, so that End reaches the end.
    const total = Math.ceil(Math.max(0, finishedOf(d) - startOf(d)) / 10) * 10;
    scrub.max = String(total);
    clear(replayBar,
      h('h2', { class: 'sub' }, 'Replay'),
      h('div', { class: 'replay-controls' },
        h('button', { type: 'button', onclick: () => jump(-1) }, '← Previous transition'),
        playBtn,
        h('button', { type: 'button', onclick: () => jump(1) }, 'Next transition →'),
        h('span', { class: 'field' }, h('label', { for: 'speed' }, 'Speed'), speed)),
      h('div', { class: 'scrubber' }, h('label', { for: 'scrub' }, 'Time'), scrub, clockOut));
    seek(0);
  }

  function seek(t) {
    replayT = Math.max(0, Math.min(t, Number(scrub.max)));
    scrub.value = String(replayT);
    const abs = startOf(d) + replayT;
    const at = deploymentAt(d, abs);
    pipeline.update(at.steps, at.status, abs);
    logs.setLimit(abs);
    const text = `+${duration(replayT) || '0 ms'} · ${new Date(abs).toLocaleTimeString()}`;
    clockOut.textContent = text;
    scrub.setAttribute('aria-valuetext', `${text}, state ${at.status}`);
    main.dataset.replayStatus = at.status;
  }

  function jump(dir) {
    const ms = marks();
    const next = dir > 0 ? ms.find((x) => x > replayT + 1) : [...ms].reverse().find((x) => x < replayT - 1);
    pause();
    seek(next ?? (dir > 0 ? Number(scrub.max) : 0));
  }

  function play() {
    if (replayT >= Number(scrub.max)) seek(0);
    playing = true;
    playBtn.textContent = 'Pause';
    lastFrame = performance.now();
    const frame = (now) => {
      if (!playing) return;
      seek(replayT + (now - lastFrame) * Number(speed.value));
      lastFrame = now;
      if (replayT >= Number(scrub.max)) return pause();
      raf = requestAnimationFrame(frame);
    };
    raf = requestAnimationFrame(frame);
  }

  function pause() {
    playing = false;
    playBtn.textContent = 'Play';
    cancelAnimationFrame(raf);
  }

  // Elapsed time of the running step.
  const ticker = setInterval(() => {
    if (d && !replay && !FINAL.includes(d.status)) pipeline.update(d.steps, d.status, Date.now());
  }, 250);

  const offs = [
    stream.on('event', onEvent),
    stream.on('resync', () => { if (!replay || !d) load(); }),
  ];
  load();

  return {
    destroy() {
      alive = false;
      pause();
      clearInterval(ticker);
      offs.forEach((off) => off());
    },
  };
}

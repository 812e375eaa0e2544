// The pipeline view shared by the live page and the replay: the seven steps
// with their state and elapsed time, and the deployment's state machine with
// the current state highlighted.
import { duration, h } from './ui.js';

export const STEPS = ['clone', 'build', 'test', 'snapshot', 'migrate', 'deploy', 'cleanup'];
export const STATES = ['queued', 'building', 'testing', 'snapshotting', 'migrating', 'deploying', 'deployed'];
export const FINAL = ['deployed', 'failed', 'rolled_back'];

// The deployment status while a step runs (DESIGN: clone+build = building).
const STEP_STATE = {
  clone: 'building', build: 'building', test: 'testing', snapshot: 'snapshotting',
  migrate: 'migrating', deploy: 'deploying',
};

export function stateOfStep(step) {
  return STEP_STATE[step];
}

const STEP_WORDS = {
  pending: 'pending', running: 'running', succeeded: 'succeeded', failed: 'failed',
  skipped: 'skipped', cancelled: 'cancelled',
};
const SYMBOL = { pending: '○', running: '◐', succeeded: '✓', failed: '✗', skipped: '–', cancelled: '✗' };

export class PipelineView {
  constructor() {
    this.stepItems = new Map();
    this.stateItems = new Map();
    this.steps = h('ol', { class: 'pipeline', 'aria-label': 'Pipeline steps' },
      STEPS.map((s, i) => {
        const state = h('span', { class: 'step-state' }, 'pending');
        const time = h('span', { class: 'step-time' });
        const li = h('li', { class: 'step', 'data-step': s, 'data-state': 'pending' },
          h('span', { class: 'step-icon', 'aria-hidden': 'true' }, SYMBOL.pending),
          h('span', { class: 'step-name' }, h('span', { class: 'step-no' }, `${i + 1}`), ' ', s),
          state, time);
        this.stepItems.set(s, { li, state, time, icon: li.firstChild });
        return li;
      }));
    const states = [...STATES, 'failed', 'rolled_back'];
    this.machine = h('ol', { class: 'states', 'aria-label': 'Deployment state' },
      states.map((s) => {
        const li = h('li', { 'data-state': s, class: FINAL.includes(s) && s !== 'deployed' ? 'state terminal' : 'state' },
          s.replace('_', ' '));
        this.stateItems.set(s, li);
        return li;
      }));
    this.el = h('div', { class: 'pipeline-view' },
      h('h2', { class: 'sr-only' }, 'Pipeline'), this.steps,
      h('h2', { class: 'sub' }, 'State'), this.machine);
  }

  // steps: [{step, status, startedAt, finishedAt, durationMs}], status: the
  // deployment's; now: ms since the epoch (the wall clock, or the replay's).
  update(steps, status, now) {
    for (const s of steps || []) {
      const item = this.stepItems.get(s.step);
      if (!item) continue;
      const st = s.status || 'pending';
      if (item.li.dataset.state !== st) {
        item.li.dataset.state = st;
        item.state.textContent = STEP_WORDS[st] || st;
        item.icon.textContent = SYMBOL[st] || '•';
      }
      let text = '';
      if (st === 'running' && s.startedAt) text = duration(Math.max(0, now - Date.parse(s.startedAt)));
      else if (st === 'pending') text = '';
      else if (s.durationMs !== undefined && s.durationMs !== null) text = duration(s.durationMs);
      else if (s.startedAt && s.finishedAt) text = duration(Date.parse(s.finishedAt) - Date.parse(s.startedAt));
      if (item.time.textContent !== text) item.time.textContent = text;
      if (st === 'running') item.li.setAttribute('aria-current', 'step');
      else item.li.removeAttribute('aria-current');
    }
    for (const [s, li] of this.stateItems) {
      const current = s === status;
      li.classList.toggle('current', current);
      if (current) li.setAttribute('aria-current', 'step');
      else li.removeAttribute('aria-current');
      const idx = STATES.indexOf(s);
      const at = STATES.indexOf(status === 'failed' || status === 'rolled_back' ? 'deployed' : status);
      li.classList.toggle('past', idx >= 0 && at >= 0 && idx < at && status !== 'failed');
    }
    this.el.dataset.status = status;
  }
}

// The deployment status implied by its steps (for the live page between
// events, and for the replay).
export function statusFromSteps(steps, fallback) {
  const running = steps.find((s) => s.status === 'running');
  if (running) return stateOfStep(running.step) || fallback;
  return fallback;
}

// A deployment as it was at time t (ms), from its recorded timings: the
// replay. Step states from startedAt/finishedAt, the status from the step
// running then; the final status once finishedAt is reached.
export function deploymentAt(d, t) {
  const steps = d.steps.map((s) => {
    const start = s.startedAt ? Date.parse(s.startedAt) : null;
    const end = s.finishedAt ? Date.parse(s.finishedAt) : null;
    let status = 'pending';
    if (s.status === 'skipped') {
      const at = end ?? start ?? finishedOf(d);
      status = t >= at ? 'skipped' : 'pending';
    } else if (start !== null && t >= start) status = end !== null && t >= end ? s.status : 'running';
    return { ...s, status, durationMs: status === 'running' ? null : s.durationMs };
  });
  let status = 'queued';
  const fin = finishedOf(d);
  if (t >= fin) status = d.status;
  else {
    let last = null;
    for (const s of steps) if (s.status !== 'pending' && s.status !== 'skipped' && stateOfStep(s.step)) last = s;
    if (last) status = stateOfStep(last.step);
    if (last && last.step === 'deploy' && last.status === 'succeeded' && d.status === 'deployed') status = 'deployed';
  }
  return { steps, status };
}

export function startOf(d) {
  return Date.parse(d.queuedAt || d.startedAt);
}

export function finishedOf(d) {
  if (d.finishedAt) return Date.parse(d.finishedAt);
  const ends = d.steps.map((s) => Date.parse(s.finishedAt || s.startedAt || 0));
  return Math.max(startOf(d), ...ends);
}

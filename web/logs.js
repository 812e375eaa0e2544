// A deployment's log: lines of every step, filtered by step and search,
// following the end while new lines arrive (unless paused).
import { clear, h } from './ui.js';
import { STEPS } from './pipeline.js';

const MAX_LINES = 20000;

export class LogView {
  constructor() {
    this.lines = []; // {step, stream, message, t}
    this.limitT = Infinity; // the replay shows lines up to its time
    this.stepSel = h('select', { id: 'log-step', onchange: () => this.rerender() },
      h('option', { value: '' }, 'All steps'), STEPS.map((s) => h('option', { value: s }, s)));
    this.search = h('input', { id: 'log-search', type: 'search', autocomplete: 'off', spellcheck: 'false', oninput: () => this.rerender() });
    this.follow = h('input', { id: 'log-follow', type: 'checkbox', checked: true, onchange: () => this.follow.checked && this.scrollEnd() });
    this.count = h('span', { class: 'muted', role: 'status', 'aria-live': 'polite' });
    this.list = h('ol', { class: 'log', tabindex: '0', 'aria-label': 'Log output', onscroll: () => this.onScroll() });
    this.el = h('section', { class: 'logs', 'aria-labelledby': 'logs-h' },
      h('h2', { id: 'logs-h' }, 'Log'),
      h('div', { class: 'log-tools' },
        h('span', { class: 'field' }, h('label', { for: 'log-step' }, 'Step'), this.stepSel),
        h('span', { class: 'field grow' }, h('label', { for: 'log-search' }, 'Search'), this.search),
        h('span', { class: 'field' }, this.follow, h('label', { for: 'log-follow' }, 'Follow')),
        this.count),
      this.list);
  }

  setStep(step) {
    this.stepSel.value = step || '';
    this.rerender();
  }

  matches(l) {
    if (l.t > this.limitT) return false;
    const step = this.stepSel.value;
    if (step && l.step !== step) return false;
    const q = this.search.value.trim().toLowerCase();
    return !q || l.message.toLowerCase().includes(q);
  }

  lineEl(l) {
    const q = this.search.value.trim();
    let text = [l.message];
    if (q) {
      const i = l.message.toLowerCase().indexOf(q.toLowerCase());
      if (i >= 0) text = [l.message.slice(0, i), h('mark', {}, l.message.slice(i, i + q.length)), l.message.slice(i + q.length)];
    }
    return h('li', { class: `line ${l.stream || 'meta'}`, 'data-step': l.step || '' },
      h('span', { class: 'line-step' }, l.step || 'norn'), h('span', { class: 'line-text' }, text));
  }

  // lines: [{step, stream, message, t}]
  add(lines) {
    const frag = document.createDocumentFragment();
    for (const l of lines) {
      this.lines.push(l);
      if (this.matches(l)) frag.append(this.lineEl(l));
    }
    if (this.lines.length > MAX_LINES) {
      this.lines.splice(0, this.lines.length - MAX_LINES);
      this.rerender();
      return;
    }
    this.list.append(frag);
    this.updateCount();
    if (this.follow.checked) this.scrollEnd();
  }

  reset(lines) {
    this.lines = [];
    clear(this.list);
    this.add(lines);
  }

  setLimit(t) {
    if (t === this.limitT) return;
    this.limitT = t;
    this.rerender();
  }

  rerender() {
    clear(this.list, this.lines.filter((l) => this.matches(l)).map((l) => this.lineEl(l)));
    this.updateCount();
    if (this.follow.checked) this.scrollEnd();
  }

  updateCount() {
    const shown = this.list.childElementCount;
    const q = this.search.value.trim();
    this.count.textContent = q ? `${shown} matching line${shown === 1 ? '' : 's'}` : `${shown} line${shown === 1 ? '' : 's'}`;
  }

  scrollEnd() {
    this.autoScrolling = true;
    this.list.scrollTop = this.list.scrollHeight;
  }

  // Scrolling up pauses following; back at the end resumes it.
  onScroll() {
    if (this.autoScrolling) {
      this.autoScrolling = false;
      return;
    }
    const atEnd = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 4;
    this.follow.checked = atEnd;
  }
}

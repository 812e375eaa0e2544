// Small DOM and formatting helpers shared by the views.

// h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child...)
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k in e && typeof v !== 'string') e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : String(c));
  }
}

export function clear(e, ...children) {
  e.replaceChildren();
  append(e, children);
  return e;
}

// Times are shown in the browser's time zone; <time> keeps the exact value.
const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function time(iso, short = false) {
  if (!iso) return '—';
  const d = new Date(iso);
  return h('time', { datetime: iso, title: dateTime.format(d) }, short ? clock.format(d) : dateTime.format(d));
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function age(iso) {
  if (!iso) return '—';
  const s = (Date.parse(iso) - Date.now()) / 1000;
  const abs = Math.abs(s);
  const text = abs < 60 ? rtf.format(Math.round(s), 'second')
    : abs < 3600 ? rtf.format(Math.round(s / 60), 'minute')
    : abs < 86400 ? rtf.format(Math.round(s / 3600), 'hour')
    : rtf.format(Math.round(s / 86400), 'day');
  return h('time', { datetime: iso, title: dateTime.format(new Date(iso)) }, text);
}

export function shortSha(sha) {
  return sha ? sha.slice(0, 12) : '—';
}

// A status as a word with a symbol, never by colour alone.
const SYMBOLS = {
  pending: '○', queued: '○', running: '◐', succeeded: '✓', deployed: '✓', failed: '✗',
  skipped: '–', cancelled: '✗', rolled_back: '↶',
  building: '◐', testing: '◐', snapshotting: '◐', migrating: '◐', deploying: '◐',
};

export function badge(status) {
  return h('span', { class: `badge s-${status}` },
    h('span', { 'aria-hidden': 'true' }, SYMBOLS[status] || '•'), ' ', String(status).replace('_', ' '));
}

export function setTitle(text) {
  document.title = text ? `${text} · Norn` : 'Norn';
}

// An error from the API, for a role="alert" box.
export function errorText(err) {
  if (err && err.status) return `${err.message} (HTTP ${err.status}${err.code ? `, ${err.code}` : ''})`;
  return err && err.message ? err.message : String(err);
}

// A modal confirmation with the exact consequences; resolves true or false.
export function confirmDialog({ title, body, confirm, dismiss = 'Cancel', danger = true }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' });
    const ok = h('button', { type: 'submit', value: 'ok', class: danger ? 'danger' : 'primary' }, confirm);
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'confirm-title' }, title),
      body,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', value: 'cancel', autofocus: true }, dismiss),
        ok));
    dialog.append(form);
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok');
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Runs render(), which replaces elements inside container, and gives the
// focus back to the element that now stands where the focused one stood
// (same tag, link, label and text), so a keyboard user keeps their place
// when live updates arrive.
export function keepFocus(container, render) {
  const a = document.activeElement;
  const key = a && a !== container && container.contains(a)
    ? [a.tagName, a.getAttribute('href'), a.getAttribute('aria-label'), a.textContent] : null;
  render();
  if (!key || container.contains(a)) return;
  for (const e of container.querySelectorAll(key[0])) {
    if (e.getAttribute('href') === key[1] && e.getAttribute('aria-label') === key[2] && e.textContent === key[3]) {
      e.focus({ preventScroll: true });
      return;
    }
  }
}

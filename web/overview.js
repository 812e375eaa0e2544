// Apps overview: every app with role, branch, current image and commit, and
// its last deployment's status and age. Refreshed by the event stream.
import { api, enc } from './api.js';
import { age, badge, clear, errorText, h, keepFocus, setTitle, shortSha } from './ui.js';

export function overviewView(ctx) {
  const { main, stream } = ctx;
  setTitle('Apps');
  const list = h('ul', { class: 'apps', 'aria-label': 'Apps' });
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading apps…');
  const heading = h('h1', { tabindex: '-1' }, 'Apps');
  clear(main, heading, status, list);
  heading.focus({ preventScroll: true });

  let timer = null;
  let alive = true;

  const current = new Map(); // app -> its deployed deployment, once known

  async function load() {
    try {
      const { apps } = await api('/api/apps');
      if (!alive) return;
      // The apps at once; their running image as soon as it is known.
      keepFocus(list, () => clear(list, apps.map((a) => appCard(a, current.get(a.id)))));
      status.textContent = apps.length ? '' : 'No apps: nornd found no infraspec.yaml with deploy: true in its apps directory.';
      if (!main.dataset.shown) requestAnimationFrame(() => performance.mark('norn-apps-rendered')); // tools/bench-dashboard
      main.dataset.shown = 'true';
      await Promise.all(apps.map((a) =>
        api(`/api/deployments?app=${enc(a.id)}&status=deployed&limit=1`)
          .then((r) => current.set(a.id, r.deployments[0] || null)).catch(() => {})));
      if (!alive) return;
      keepFocus(list, () => clear(list, apps.map((a) => appCard(a, current.get(a.id)))));
      main.dataset.loaded = 'true';
    } catch (e) {
      if (alive) status.textContent = `Cannot load the apps: ${errorText(e)}`;
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(load, 150);
  }

  const offs = [
    stream.on('event', soon),
    stream.on('resync', soon),
  ];
  load();
  const ticker = setInterval(() => list.querySelectorAll('[data-age]').forEach((e) => e.replaceWith(ageOf(e.dataset.age))), 30000);

  return {
    destroy() {
      alive = false;
      clearTimeout(timer);
      clearInterval(ticker);
      offs.forEach((off) => off());
    },
  };
}

function ageOf(iso) {
  const t = age(iso);
  t.dataset.age = iso;
  return t;
}

function appCard(a, current) {
  const spec = a.spec || {};
  const last = a.lastDeployment;
  const branch = spec.repo && spec.repo.branch ? spec.repo.branch : (spec.repo ? 'main' : 'local directory');
  return h('li', { class: 'card app', 'data-app': a.id },
    h('h2', {}, h('a', { href: `#/apps/${enc(a.id)}` }, a.id)),
    a.valid === false ? h('p', { class: 'error' }, 'infraspec.yaml has errors') : null,
    h('dl', { class: 'facts' },
      h('dt', {}, 'Role'), h('dd', {}, spec.role || '—'),
      h('dt', {}, 'Branch'), h('dd', {}, branch),
      h('dt', {}, 'Image'), h('dd', { class: 'mono' }, current === undefined ? '…' : current ? current.imageTag || '—' : 'not deployed'),
      h('dt', {}, 'Commit'), h('dd', { class: 'mono' }, current ? shortSha(current.commitSha) : '—'),
      h('dt', {}, 'Last deployment'),
      h('dd', { class: 'last' }, last
        ? [h('a', { href: `#/deployments/${last.id}` }, `#${last.id}`), ' ', badge(last.status), ' ', ageOf(last.finishedAt || last.queuedAt)]
        : 'none yet')));
}

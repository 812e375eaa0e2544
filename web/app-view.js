// One app: deploy a ref, roll back (to the last good deployment or a chosen
// one, optionally restoring the database), its database snapshots with
// restore, and its deployment history.
import { api, enc } from './api.js';
import { age, badge, clear, confirmDialog, duration, errorText, h, keepFocus, setTitle, shortSha, time } from './ui.js';

const FINAL = ['deployed', 'failed', 'rolled_back'];

export function appView(ctx, appId) {
  const { main, stream } = ctx;
  setTitle(appId);
  let alive = true;
  let timer = null;
  let app = null;
  let history = [];
  let snapshots = [];

  const heading = h('h1', { tabindex: '-1' }, h('span', { class: 'muted' }, 'App '), appId);
  const facts = h('dl', { class: 'facts wide' });
  const message = h('div', { class: 'message', role: 'alert' });

  // Deploy
  const refInput = h('input', { id: 'deploy-ref', name: 'ref', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'deploy-ref-help' });
  const deployForm = h('form', { class: 'card action', 'aria-labelledby': 'deploy-h', onsubmit: onDeploy },
    h('h2', { id: 'deploy-h' }, 'Deploy'),
    h('label', { for: 'deploy-ref' }, 'Branch, tag or commit'),
    h('div', { class: 'row' }, refInput, h('button', { type: 'submit', class: 'primary' }, 'Deploy')),
    h('p', { id: 'deploy-ref-help', class: 'muted' }, 'Empty: the tip of the app\'s branch.'));

  // Rollback
  const rbTarget = h('select', { id: 'rb-target', name: 'to' });
  const rbRestore = h('input', { type: 'checkbox', id: 'rb-restore', name: 'restoreDb' });
  const rbButton = h('button', { type: 'submit', class: 'danger' }, 'Roll back…');
  const rbNote = h('p', { class: 'muted', id: 'rb-note' });
  const rollbackForm = h('form', { class: 'card action', 'aria-labelledby': 'rb-h', onsubmit: onRollback },
    h('h2', { id: 'rb-h' }, 'Roll back'),
    h('label', { for: 'rb-target' }, 'Go back to'),
    rbTarget,
    h('div', { class: 'check' }, rbRestore, h('label', { for: 'rb-restore' }, 'Also restore the database from the snapshot taken before the migrations that followed it')),
    rbNote,
    rbButton);

  const snapList = h('ul', { class: 'snapshots', 'aria-label': 'Database snapshots' });
  const snapSection = h('section', { class: 'card', 'aria-labelledby': 'snap-h' },
    h('h2', { id: 'snap-h' }, 'Database snapshots'), snapList);

  const histBody = h('tbody');
  const histSection = h('section', { 'aria-labelledby': 'hist-h' },
    h('h2', { id: 'hist-h' }, 'Deployment history'),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'history' },
        h('thead', {}, h('tr', {},
          ['Deployment', 'Status', 'Ref', 'Commit', 'Triggered by', 'Queued', 'Duration'].map((c) => h('th', { scope: 'col' }, c)))),
        histBody)));

  clear(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Apps'), ' / ', appId),
    heading, message, facts,
    h('div', { class: 'actions-grid' }, deployForm, rollbackForm, snapSection),
    histSection);
  heading.focus({ preventScroll: true });

  function say(text, kind = 'error') {
    message.className = `message ${kind}`;
    message.textContent = text;
  }

  async function load() {
    try {
      const [a, d, s] = await Promise.all([
        api(`/api/apps/${enc(appId)}`),
        api(`/api/deployments?app=${enc(appId)}&limit=50`),
        api(`/api/apps/${enc(appId)}/snapshots`).catch(() => ({ snapshots: [] })),
      ]);
      if (!alive) return;
      app = a;
      history = d.deployments;
      snapshots = s.snapshots;
      keepFocus(main, render);
      main.dataset.loaded = 'true';
    } catch (e) {
      if (alive) say(e.status === 404 ? `There is no app ${appId}.` : `Cannot load ${appId}: ${errorText(e)}`);
    }
  }

  function current() {
    return history.find((d) => d.status === 'deployed') || null;
  }

  // What nornd picks for "last good": the last deployed deployment before
  // the current one whose image differs (rollback.h).
  function lastGood() {
    const cur = current();
    if (!cur) return null;
    return history.find((d) => d.id < cur.id && (d.status === 'deployed' || d.status === 'rolled_back') &&
      d.imageTag && d.imageTag !== cur.imageTag) || null;
  }

  function render() {
    const spec = app.spec || {};
    const cur = current();
    refInput.placeholder = spec.repo ? (spec.repo.branch || 'main') : 'HEAD';
    clear(facts,
      h('dt', {}, 'Role'), h('dd', {}, spec.role || '—'),
      h('dt', {}, 'Branch'), h('dd', {}, spec.repo ? spec.repo.branch || 'main' : 'local directory'),
      h('dt', {}, 'Repository'), h('dd', { class: 'mono' }, spec.repo ? spec.repo.url : '—'),
      h('dt', {}, 'Running image'), h('dd', { class: 'mono' }, cur ? cur.imageTag : 'not deployed'),
      h('dt', {}, 'Commit'), h('dd', { class: 'mono' }, cur ? shortSha(cur.commitSha) : '—'),
      h('dt', {}, 'Database'), h('dd', {}, spec.services && spec.services.postgres ? spec.services.postgres.database : 'none'));

    // Rollback targets: last good, or any deployed one older than the current.
    const good = lastGood();
    const choices = cur ? history.filter((d) => d.id < cur.id && d.imageTag && (d.status === 'deployed' || d.status === 'rolled_back')) : [];
    const chosen = rbTarget.value; // kept across live updates
    clear(rbTarget,
      h('option', { value: '' }, good ? `Last good: #${good.id} (${shortSha(good.commitSha)})` : 'Last good: none'),
      choices.map((d) => h('option', { value: String(d.id) }, `#${d.id} ${d.ref} (${shortSha(d.commitSha)}) — ${d.status}`)));
    if (choices.some((d) => String(d.id) === chosen)) rbTarget.value = chosen;
    const can = !!cur && choices.length > 0;
    rbButton.disabled = !can;
    rbTarget.disabled = !can;
    rbRestore.disabled = !can || !(spec.services && spec.services.postgres);
    rbNote.textContent = !cur ? 'Nothing is deployed yet.' : !can ? 'There is no earlier deployment with another image to go back to.' : '';

    clear(snapList, snapshots.length ? snapshots.map((s) => h('li', {},
      h('div', {}, h('span', { class: 'mono' }, s.name)),
      h('div', { class: 'muted' }, time(s.createdAt), ` · ${(s.sizeBytes / 1024).toFixed(1)} KiB · before deployment `,
        h('a', { href: `#/deployments/${s.deploymentId}` }, `#${s.deploymentId}`)),
      h('button', { type: 'button', onclick: () => onRestore(s) , 'aria-label': `Restore ${s.name}` }, 'Restore…'))) :
      h('li', { class: 'muted' }, 'No snapshots.'));

    clear(histBody, history.length ? history.map((d) => h('tr', { 'data-id': d.id },
      h('td', {}, h('a', { href: `#/deployments/${d.id}` }, `#${d.id}`)),
      h('td', {}, badge(d.status)),
      h('td', { class: 'mono' }, d.ref),
      h('td', { class: 'mono' }, shortSha(d.commitSha)),
      h('td', {}, triggeredBy(d)),
      h('td', {}, age(d.queuedAt)),
      h('td', {}, d.finishedAt && d.startedAt ? duration(Date.parse(d.finishedAt) - Date.parse(d.startedAt)) : FINAL.includes(d.status) ? '—' : 'running'))) :
      h('tr', {}, h('td', { colspan: '7', class: 'muted' }, 'No deployments yet.')));
  }

  async function onDeploy(e) {
    e.preventDefault();
    const ref = refInput.value.trim();
    const body = ref ? { ref } : {}; // nornd tells a commit SHA from a branch name
    try {
      const d = await api(`/api/apps/${enc(appId)}/deploy`, { method: 'POST', body });
      location.hash = `#/deployments/${d.id}`;
    } catch (err) {
      say(`Deploy refused: ${errorText(err)}`);
    }
  }

  async function onRollback(e) {
    e.preventDefault();
    const cur = current();
    const to = rbTarget.value ? history.find((d) => d.id === Number(rbTarget.value)) : lastGood();
    if (!cur || !to) return say('There is nothing to roll back to.');
    const restore = rbRestore.checked;
    const ok = await confirmDialog({
      title: `Roll back ${appId}?`,
      confirm: `Roll back to #${to.id}`,
      body: h('ul', { class: 'consequences' },
        h('li', {}, `Deploys image `, h('code', {}, to.imageTag), ` of deployment #${to.id} (commit `, h('code', {}, shortSha(to.commitSha)), `) again, without rebuilding.`),
        h('li', {}, `Replaces deployment #${cur.id} (image `, h('code', {}, cur.imageTag), `), which becomes rolled back.`),
        h('li', {}, restore
          ? `Restores the database ${(app.spec.services || {}).postgres ? app.spec.services.postgres.database : ''} from the snapshot taken before the first migration after #${to.id}: everything written to it since is lost.`
          : 'Leaves the database as it is.')),
    });
    if (!ok) return;
    try {
      const d = await api(`/api/apps/${enc(appId)}/rollback`, { method: 'POST', body: { to: rbTarget.value ? to.id : null, restoreDb: restore } });
      location.hash = `#/deployments/${d.id}`;
    } catch (err) {
      say(`Rollback refused: ${errorText(err)}`);
    }
  }

  async function onRestore(s) {
    const cur = current();
    const ok = await confirmDialog({
      title: `Restore the database of ${appId}?`,
      confirm: 'Restore',
      body: h('ul', { class: 'consequences' },
        h('li', {}, `Replaces the contents of database ${s.database} with snapshot `, h('code', {}, s.name), ' taken ', time(s.createdAt), ': everything written since is lost.'),
        h('li', {}, cur ? ['Then deploys the image it runs now again (', h('code', {}, cur.imageTag), ').'] : 'Then deploys the app\'s current image again.')),
    });
    if (!ok) return;
    try {
      const d = await api(`/api/apps/${enc(appId)}/snapshots/${enc(s.name)}/restore`, { method: 'POST', body: {} });
      location.hash = `#/deployments/${d.id}`;
    } catch (err) {
      say(`Restore refused: ${errorText(err)}`);
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  }
  const offs = [
    stream.on('event', (ev) => { if (ev.appId === appId && ev.type !== 'deploy.log') soon(); }),
    stream.on('resync', soon),
  ];
  load();

  return {
    destroy() {
      alive = false;
      clearTimeout(timer);
      offs.forEach((off) => off());
    },
  };
}

function triggeredBy(d) {
  const parts = [d.requestedBy || '—'];
  if (d.rollbackOf) parts.push(`rollback of #${d.rollbackOf}`);
  else if (d.source && d.source !== 'git') parts.push(d.source);
  return parts.join(', ');
}

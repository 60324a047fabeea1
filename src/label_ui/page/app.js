'use strict';
// The labeling page. All item text is put in with textContent: never as markup.
(function () {
  const TOKEN_KEY = 'streamsift-label-token';
  const WORKER_KEY = 'streamsift-label-worker';
  const $ = (id) => document.getElementById(id);

  // The token arrives in the URL fragment (never sent to the server by the
  // browser); keep it for this tab and take it out of the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  let token = fragment.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname);
  } else {
    token = sessionStorage.getItem(TOKEN_KEY) || '';
  }

  // Who is labeling: a name typed once, kept in this browser.
  let worker = localStorage.getItem(WORKER_KEY) || '';

  // Where the name box is: keep in step with index.html and app.css.
  const NAME_HINT = 'Type your name in the box at the top left and press Enter to answer.';

  let labels = [];
  let current = null; // the item shown, or null
  let queue = Promise.resolve(); // actions run one after another, in key order

  function setStatus(text) { $('status').textContent = text; }

  async function call(path, body) {
    const response = await fetch('/api/' + path, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const why = data && typeof data.error === 'string' ? data.error : 'HTTP ' + response.status;
      throw new Error(why);
    }
    return data;
  }

  function askName() {
    setStatus(NAME_HINT);
    $('worker').focus();
  }

  function renderButtons() {
    const box = $('buttons');
    box.replaceChildren();
    labels.forEach((label, i) => {
      const button = document.createElement('button');
      button.type = 'button';
      if (i < 9) {
        const key = document.createElement('kbd');
        key.textContent = String(i + 1);
        button.appendChild(key);
      }
      button.appendChild(document.createTextNode(label));
      button.dataset.label = label;
      button.addEventListener('click', () => enqueue(() => answer(label)));
      box.appendChild(button);
    });
  }

  function render(view) {
    const fresh = JSON.stringify(view.labels) !== JSON.stringify(labels);
    labels = view.labels;
    if (fresh) renderButtons();
    current = view.item;
    const item = $('item');
    if (current) {
      item.textContent = current.text;
      item.classList.remove('empty');
      item.dataset.id = current.id;
    } else {
      item.textContent = 'Nothing left to label for now.';
      item.classList.add('empty');
      delete item.dataset.id;
    }
    const suggested = current && current.suggestion ? current.suggestion : null;
    $('suggestion').hidden = !suggested;
    $('suggested-label').textContent = suggested ? suggested.label : '';
    $('suggested-confidence').textContent =
      suggested && typeof suggested.confidence === 'number'
        ? '(' + Math.round(suggested.confidence * 100) + '% sure)' : '';
    for (const button of $('buttons').children) {
      button.classList.toggle('suggested', !!suggested && button.dataset.label === suggested.label);
    }
    const p = view.progress;
    $('progress').textContent = p.done + ' / ' + p.total + ' done \u00b7 ' + p.mine +
      ' by you \u00b7 ' + p.per_minute.toFixed(1) + ' labels/min';
    $('undo').disabled = !view.can_undo;
    // 'name': the item is shown and the person's name is still needed.
    document.body.dataset.ready = worker ? 'yes' : 'name';
  }

  // Without a name, the page shows the item (held for no one) and asks
  // for the name only when the person wants to answer.
  async function refresh() {
    render(worker ? await call('state', { worker }) : await call('peek', {}));
  }
  async function answer(label) {
    if (!worker) { askName(); return; }
    if (!current) return;
    render(await call('answer', { worker, item: current.id, label }));
  }
  async function accept() {
    if (current && current.suggestion) await answer(current.suggestion.label);
  }
  async function skip() {
    if (!worker) { askName(); return; }
    if (!current) return;
    render(await call('skip', { worker, item: current.id }));
  }
  async function undo() {
    if (!worker) { askName(); return; }
    render(await call('undo', { worker }));
  }

  function enqueue(action) {
    queue = queue.then(async () => {
      try {
        await action();
        setStatus(worker ? '' : NAME_HINT);
      } catch (e) {
        setStatus(e.message);
        try { await refresh(); } catch (ignored) { /* keep the first message */ }
      }
    });
    return queue;
  }

  document.addEventListener('keydown', (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (key === 'Enter' || key === 'a' || key === 'A') {
      if (current && current.suggestion) { event.preventDefault(); enqueue(accept); }
    } else if (key >= '1' && key <= '9') {
      const label = labels[Number(key) - 1];
      if (label !== undefined) { event.preventDefault(); enqueue(() => answer(label)); }
    } else if (key === 'u' || key === 'U') {
      event.preventDefault(); enqueue(undo);
    } else if (key === 's' || key === 'S') {
      event.preventDefault(); enqueue(skip);
    }
  });

  document.addEventListener('DOMContentLoaded', () => {
    const input = $('worker');
    input.value = worker;
    input.addEventListener('change', () => {
      const name = input.value.trim();
      if (!name) { input.value = worker; return; }
      const previous = worker;
      worker = name;
      localStorage.setItem(WORKER_KEY, worker);
      input.blur();
      enqueue(async () => {
        // Give back the item held for the previous name, so others get it.
        if (previous && previous !== worker) await call('release', { worker: previous });
        await refresh();
      });
    });
    input.addEventListener('keydown', (event) => { if (event.key === 'Enter') input.blur(); });
    $('undo').addEventListener('click', () => enqueue(undo));
    $('skip').addEventListener('click', () => enqueue(skip));
    if (!token) {
      setStatus('This page needs the link with the token printed when the labeler started.');
      return;
    }
    if (!worker) askName();
    enqueue(refresh);
  });
})();

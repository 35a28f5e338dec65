// The history page: this browser's own past messages, from the `mine` op.

import { Client } from './client.js';
import { bindIndicator } from './connection.js';
import { byId, h, setChildren, show } from './dom.js';
import { describeError } from './errors.js';
import { format } from './markdown.js';
import { nameProblem, suggestName } from './names.js';
import { setupThemeToggle } from './prefs.js';
import { store } from './store.js';

const LIMIT = 200;
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

const container = byId('history');
const status = byId('history-status');
const list = byId('history-list');

setupThemeToggle(byId('theme-toggle'));

const client = new Client(nameProblem(store.name) ? suggestName() : store.name);
bindIndicator(client, byId('conn'), byId('conn-label'));
client.on('ready', load);
client.start();

async function load() {
  try {
    const { messages } = await client.request('mine', { limit: LIMIT });
    render(messages);
  } catch (error) {
    if (error.code === 'disconnected') return;
    showError(error);
  } finally {
    container.setAttribute('aria-busy', 'false');
  }
}

function render(messages) {
  show(list, messages.length > 0);
  show(status, messages.length === 0);
  status.textContent = 'Nothing yet. Messages you post in persistent rooms will appear here.';
  list.replaceChildren(...messages.map((message) => {
    const date = new Date(message.ts);
    return h('li', { class: 'history-item' },
      h('div', { class: 'history-meta' },
        h('a', { href: `/r/${encodeURIComponent(message.room)}`, class: 'badge accent code room-link' }, message.room),
        h('span', {}, `#${message.seq}`),
        h('time', { datetime: date.toISOString() }, dateFormat.format(date))),
      h('div', { class: 'history-body' },
        message.subject ? h('strong', { class: 'msg-subject' }, message.subject) : null,
        h('div', {}, format(message.body))));
  }));
}

function showError(error) {
  show(list, false);
  show(status, false);
  container.querySelector('.history-error')?.remove();
  const box = h('div', { class: 'history-error', role: 'alert' });
  setChildren(box,
    h('h2', {}, 'Your message history is not available'),
    h('p', {}, describeError(error)),
    h('p', {}, 'Your messages in the rooms themselves are not affected.'));
  container.append(box);
}

// The owner's outgoing webhooks of a persistent room or board: URLs the
// server POSTs the room's events to, signed. The owner gives a URL and
// picks the events; the signing secret is shown once with a way to copy
// it and a line on checking a signature; the list has each webhook with
// Remove, after a confirmation.

import { byId, h, show } from './dom.js';
import { describeError } from './errors.js';
import { secret } from './integrations.js';

/** The events a webhook may be sent, in the order the form shows them, with their short names. */
const EVENT_NAMES = {
  'message.created': 'Messages',
  'message.updated': 'Edits',
  'message.deleted': 'Deletions',
  'member.joined': 'Joins',
  'member.left': 'Leaves',
  'message.reported': 'Reports',
  'room.ended': 'Room closed',
};
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

export class Webhooks {
  /** `request(op, args)` sends an op of the protocol and resolves to the reply (rejects with its error). */
  constructor({ request }) {
    this.request = request;
    this.section = byId('webhooks');
    this.body = byId('webhooks-body');
    this.form = byId('webhook-form');
    this.url = byId('webhook-url');
    this.error = byId('webhook-error');
    this.made = byId('webhook-made');
    this.list = byId('webhook-list');
    this.room = null;
    // The webhook whose secret is shown.
    this.madeId = null;
    // The room and role the list was last loaded for: loaded again when either changes.
    this.loadedFor = null;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.add();
    });
    // Nothing tells this page of a webhook added or removed elsewhere (the
    // owner's other tab, the operator): the list is loaded again when it is looked at.
    window.addEventListener('focus', () => this.reload());
    document.addEventListener('visibilitychange', () => { if (!document.hidden) this.reload(); });
  }

  /** Loads the list again if it is shown. */
  reload() {
    if (this.loadedFor && !this.section.hidden && !this.body.hidden) this.load();
  }

  /** Shows the section to the owner of `room` (a note instead for an ephemeral one), and hides it from the others. */
  render(room, owner) {
    this.room = room;
    show(this.section, Boolean(room) && owner);
    if (!room || !owner) {
      this.loadedFor = null;
      this.forget();
      return;
    }
    const persistent = room.retention !== 'ephemeral';
    show(byId('webhooks-ephemeral'), !persistent);
    show(this.body, persistent);
    const key = `${room.code}:${persistent}`;
    if (persistent && this.loadedFor !== key) {
      this.loadedFor = key;
      this.load();
    }
  }

  /** Has the next `render` load the list again (after a rejoin: it may have changed meanwhile). */
  refresh() {
    this.loadedFor = null;
  }

  /** Takes a shown secret off the page. */
  forget() {
    this.madeId = null;
    this.made.replaceChildren();
    show(this.made, false);
  }

  setError(text) {
    this.error.textContent = text;
    show(this.error, Boolean(text));
    this.url.setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async load() {
    let webhooks;
    try {
      ({ webhooks } = await this.request('webhooks', { room: this.room.code }));
    } catch (error) {
      this.loadedFor = null;
      this.list.replaceChildren(h('li', { class: 'integration-empty failed', role: 'status' },
        `Could not load the webhooks: ${describeError(error)}`));
      return;
    }
    this.list.replaceChildren(...webhooks.map((w) => this.entry(w)));
  }

  async add() {
    const url = this.url.value.trim();
    const boxes = [...this.form.querySelectorAll('input[type="checkbox"]')];
    const events = boxes.filter((box) => box.checked).map((box) => box.value);
    if (!url) {
      this.setError('Give the URL to send the events to first.');
      this.url.focus();
      return;
    }
    if (events.length === 0) {
      this.setError('Choose at least one event to send.');
      return;
    }
    this.setError('');
    const submit = byId('webhook-submit');
    submit.disabled = true;
    try {
      // Every box ticked is every event: said by leaving them out, so a
      // webhook made so gets the events a later server adds as well.
      const args = { room: this.room.code, url };
      if (events.length < boxes.length) args.events = events;
      const made = await this.request('webhook', args);
      this.url.value = '';
      this.showMade(made);
      this.load();
    } catch (error) {
      // The server names what is wrong with the URL after "url: ".
      const aboutUrl = error.code === 'bad_request' && /^url: /.test(error.message ?? '');
      this.setError(aboutUrl ? `Could not add that URL: ${error.message.slice(5)}` : `Could not add it: ${describeError(error)}`);
      this.url.focus();
    } finally {
      submit.disabled = false;
    }
  }

  /** The signing secret of a new webhook, this once, and how a receiver checks it. */
  showMade({ webhook, secret: key }) {
    const done = h('button', { type: 'button', class: 'btn small' }, 'Done: I have copied it');
    done.addEventListener('click', () => {
      this.forget();
      this.url.focus();
    });
    this.madeId = webhook.id;
    this.made.replaceChildren(
      h('h4', { class: 'made-title', id: 'webhook-made-title' }, 'Webhook added'),
      h('p', { class: 'made-warning' }, 'Shown once — copy it now.'),
      h('p', { class: 'room-controls-note webhook-made-url' }, `Events go to ${webhook.url}`),
      secret('Signing secret', key, 'webhook-secret', 'Copy the signing secret'),
      h('p', { class: 'room-controls-note', id: 'webhook-verify' },
        'Each delivery is signed: ', h('code', { class: 'code' }, 'webhook-signature'),
        ' is an HMAC-SHA256 of ', h('code', { class: 'code' }, 'id.timestamp.body'),
        ' under the secret (the base64 after ', h('code', { class: 'code' }, 'whsec_'),
        '). Check it before trusting a delivery: see docs/integrations.md.'),
      done);
    show(this.made, true);
    this.made.querySelector('button')?.focus();
  }

  /** One webhook in the list: its URL, its events, when it was added, and Remove. */
  entry(webhook) {
    const created = new Date(webhook.created);
    const actions = h('div', { class: 'integration-actions' });
    const item = h('li', { class: 'integration', 'data-id': webhook.id },
      h('div', { class: 'integration-what' },
        h('span', { class: 'webhook-url', title: webhook.url }, webhook.url),
        h('small', {}, `${eventsText(webhook.events)} · added `,
          h('time', { datetime: created.toISOString() }, dateFormat.format(created)))),
      actions);
    const ask = () => {
      const remove = h('button', { type: 'button', class: 'btn danger' }, 'Remove');
      const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
      const question = h('p', { class: 'integration-confirm' },
        'Remove this webhook? Nothing more is sent to it, not even what is still waiting.');
      cancel.addEventListener('click', () => {
        question.remove();
        actions.replaceChildren(open);
        open.focus();
      });
      remove.addEventListener('click', async () => {
        remove.disabled = true;
        cancel.disabled = true;
        try {
          await this.request('unhook', { room: this.room.code, webhook: webhook.id });
          item.remove();
          if (this.madeId === webhook.id) this.forget();
          this.load();
        } catch (error) {
          question.textContent = `Could not remove it: ${describeError(error)}`;
          question.classList.add('failed');
          remove.disabled = false;
          cancel.disabled = false;
        }
      });
      actions.before(question);
      actions.replaceChildren(remove, cancel);
      cancel.focus();
    };
    const open = h('button', { type: 'button', class: 'btn', 'aria-label': `Remove the webhook to ${webhook.url}` }, 'Remove');
    open.addEventListener('click', ask);
    actions.append(open);
    return item;
  }
}

/** "All events", or the short names of those chosen. */
function eventsText(events) {
  const known = Object.keys(EVENT_NAMES);
  if (known.every((e) => events.includes(e))) return 'All events';
  return known.filter((e) => events.includes(e)).map((e) => EVENT_NAMES[e])
    .concat(events.filter((e) => !known.includes(e)))
    .join(', ');
}

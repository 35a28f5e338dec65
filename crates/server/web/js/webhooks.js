// The owner's outgoing webhooks of a persistent room or board: URLs the
// server POSTs the room's events to, signed. The owner gives a URL and
// picks the events; the signing secret is shown once with a way to copy
// it and a line on checking a signature; the list has each webhook with
// Remove, after a confirmation.

import { h } from './dom.js';
import { describeError } from './errors.js';
import { OwnerPanel, dateFormat, secret } from './owner-panel.js';

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

export class Webhooks extends OwnerPanel {
  /** `request(op, args)` sends an op of the protocol and resolves to the reply (rejects with its error). */
  constructor({ request }) {
    super({
      request,
      ids: {
        section: 'webhooks', body: 'webhooks-body', ephemeral: 'webhooks-ephemeral',
        form: 'webhook-form', field: 'webhook-url', error: 'webhook-error',
        made: 'webhook-made', list: 'webhook-list', submit: 'webhook-submit',
      },
      list: 'webhooks',
      noun: 'webhooks',
    });
  }

  async submit() {
    const url = this.field.value.trim();
    const boxes = [...this.form.querySelectorAll('input[type="checkbox"]')];
    const events = boxes.filter((box) => box.checked).map((box) => box.value);
    if (!url) {
      this.setError('Give the URL to send the events to first.');
      this.field.focus();
      return;
    }
    if (events.length === 0) {
      this.setError('Choose at least one event to send.');
      return;
    }
    // Every box ticked is every event: said by leaving them out, so a
    // webhook made so gets the events a later server adds as well.
    const args = { room: this.room.code, url };
    if (events.length < boxes.length) args.events = events;
    const made = await this.send('webhook', args, (error) => {
      // The server names what is wrong with the URL after "url: ".
      const aboutUrl = error.code === 'bad_request' && /^url: /.test(error.message ?? '');
      return aboutUrl ? `Could not add that URL: ${error.message.slice(5)}` : `Could not add it: ${describeError(error)}`;
    });
    if (made) this.showSecret(made);
    else this.field.focus();
  }

  /** The signing secret of a new webhook, this once, and how a receiver checks it. */
  showSecret({ webhook, secret: key }) {
    this.showMade(webhook.id, 'Done: I have copied it',
      h('h4', { class: 'made-title', id: 'webhook-made-title' }, 'Webhook added'),
      h('p', { class: 'made-warning' }, 'Shown once — copy it now.'),
      h('p', { class: 'room-controls-note webhook-made-url' }, `Events go to ${webhook.url}`),
      secret('Signing secret', key, 'webhook-secret', 'Copy the signing secret'),
      h('p', { class: 'room-controls-note', id: 'webhook-verify' },
        'Each delivery is signed: ', h('code', { class: 'code' }, 'webhook-signature'),
        ' is an HMAC-SHA256 of ', h('code', { class: 'code' }, 'id.timestamp.body'),
        ' under the secret (the base64 after ', h('code', { class: 'code' }, 'whsec_'),
        '). Check it before trusting a delivery: see docs/integrations.md.'));
  }

  /** One webhook in the list: its URL, its events, when it was added, and Remove. */
  entry(webhook) {
    const created = new Date(webhook.created);
    return this.removable({
      id: webhook.id,
      what: [
        h('span', { class: 'webhook-url', title: webhook.url }, webhook.url),
        h('small', {}, `${eventsText(webhook.events)} · added `,
          h('time', { datetime: created.toISOString() }, dateFormat.format(created))),
      ],
      verb: 'Remove',
      label: `Remove the webhook to ${webhook.url}`,
      question: 'Remove this webhook? Nothing more is sent to it, not even what is still waiting.',
      remove: () => this.request('unhook', { room: this.room.code, webhook: webhook.id }),
    });
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

// The owner's integrations of a persistent room or board: programs that
// post and read as a bot, through the HTTP API or an incoming webhook.
// The owner names one and picks what it may do; its token, and the
// webhook URL made of it, are shown once (the server keeps only a digest)
// with a way to copy each; the list has each integration with Revoke.

import { h } from './dom.js';
import { describeError } from './errors.js';
import { nameProblem } from './names.js';
import { OwnerPanel, dateFormat, secret } from './owner-panel.js';

const SCOPE_NAMES = { post: 'Post', read: 'Read' };

export class Integrations extends OwnerPanel {
  /**
   * `request(op, args)` sends an op of the protocol and resolves to the
   * reply (rejects with its error); `onBots(users)` is told of the bots
   * this room's integrations post as.
   */
  constructor({ request, onBots = () => {} }) {
    super({
      request,
      ids: {
        section: 'integrations', body: 'integrations-body', ephemeral: 'integrations-ephemeral',
        form: 'integrate-form', field: 'integrate-name', error: 'integrate-error',
        made: 'integration-made', list: 'integration-list', submit: 'integrate-submit',
      },
      list: 'integrations',
      noun: 'integrations',
    });
    this.onBots = onBots;
  }

  loaded(integrations) {
    this.onBots(integrations.map((i) => i.user));
  }

  async submit() {
    const name = this.field.value.trim();
    const scopes = [...this.form.querySelectorAll('input[type="checkbox"]:checked')].map((box) => box.value);
    const problem = name ? nameProblem(name) : 'Give the bot a name first.';
    if (problem) {
      this.setError(problem);
      this.field.focus();
      return;
    }
    if (scopes.length === 0) {
      this.setError('Choose what it may do: post, read, or both.');
      return;
    }
    const made = await this.send('integrate', { room: this.room.code, name, scopes },
      (error) => `Could not make it: ${describeError(error)}`);
    if (made) this.showToken(made);
  }

  /** The token and the webhook URL of a new integration, this once. */
  showToken({ integration, token, hook }) {
    const url = `${location.origin}${hook}`;
    const curl = `curl -X POST -H 'Content-Type: application/json' -d '{"text":"hello"}' ${url}`;
    this.showMade(integration.id, 'Done: I have copied them',
      h('h4', { class: 'made-title', id: 'integration-made-title' }, `${integration.user.name} is ready`),
      h('p', { class: 'made-warning' }, 'Shown once — copy it now.'),
      h('p', { class: 'room-controls-note' }, 'The server keeps only a fingerprint of the token: it cannot show it again.'),
      secret('Token', token, 'integration-token', 'Copy the token'),
      secret('Webhook URL', url, 'integration-hook', 'Copy the webhook URL'),
      secret('Try it', curl, 'integration-curl', 'Copy the curl command'),
      h('p', { class: 'room-controls-note' }, 'Programs may also post and read through ',
        h('code', { class: 'code' }, `/api/v1/rooms/${this.room.code}/messages`),
        ' with the header ', h('code', { class: 'code' }, 'Authorization: Bearer <token>'), '.'));
  }

  /** One integration in the list: its name, what it may do, when it was made, and Revoke. */
  entry(integration) {
    const scopes = integration.scopes.map((s) => SCOPE_NAMES[s] ?? s).join(', ');
    const created = new Date(integration.created);
    const name = integration.user.name;
    return this.removable({
      id: integration.id,
      what: [
        h('span', { class: 'integration-name' }, name),
        h('small', {}, `${scopes} · made `, h('time', { datetime: created.toISOString() }, dateFormat.format(created))),
      ],
      verb: 'Revoke',
      label: `Revoke ${name}`,
      question: `Revoke ${name}? Programs using its token stop working at once.`,
      remove: () => this.request('revoke', { room: this.room.code, integration: integration.id }),
    });
  }
}

// The owner's integrations of a persistent room or board: programs that
// post and read as a bot, through the HTTP API or an incoming webhook.
// The owner names one and picks what it may do; its token, and the
// webhook URL made of it, are shown once (the server keeps only a digest)
// with a way to copy each; the list has each integration with Revoke.

import { byId, h, show } from './dom.js';
import { describeError } from './errors.js';
import { nameProblem } from './names.js';

const SCOPE_NAMES = { post: 'Post', read: 'Read' };
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

export class Integrations {
  /**
   * `request(op, args)` sends an op of the protocol and resolves to the
   * reply (rejects with its error); `onBots(users)` is told of the bots
   * this room's integrations post as.
   */
  constructor({ request, onBots = () => {} }) {
    this.request = request;
    this.onBots = onBots;
    this.section = byId('integrations');
    this.body = byId('integrations-body');
    this.form = byId('integrate-form');
    this.name = byId('integrate-name');
    this.error = byId('integrate-error');
    this.made = byId('integration-made');
    this.list = byId('integration-list');
    this.room = null;
    // The integration whose token is shown.
    this.madeId = null;
    // The room and role the list was last loaded for: loaded again when either changes.
    this.loadedFor = null;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.make();
    });
    // Nothing tells this page of an integration made or revoked elsewhere
    // (the owner's other tab): the list is loaded again when it is looked at.
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
    show(byId('integrations-ephemeral'), !persistent);
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

  /** Takes a shown token off the page. */
  forget() {
    this.madeId = null;
    this.made.replaceChildren();
    show(this.made, false);
  }

  setError(text) {
    this.error.textContent = text;
    show(this.error, Boolean(text));
    this.name.setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async load() {
    let integrations;
    try {
      ({ integrations } = await this.request('integrations', { room: this.room.code }));
    } catch (error) {
      this.loadedFor = null;
      this.list.replaceChildren(h('li', { class: 'integration-empty failed', role: 'status' },
        `Could not load the integrations: ${describeError(error)}`));
      return;
    }
    this.onBots(integrations.map((i) => i.user));
    this.list.replaceChildren(...integrations.map((i) => this.entry(i)));
  }

  async make() {
    const name = this.name.value.trim();
    const scopes = [...this.form.querySelectorAll('input[type="checkbox"]:checked')].map((box) => box.value);
    const problem = name ? nameProblem(name) : 'Give the bot a name first.';
    if (problem) {
      this.setError(problem);
      this.name.focus();
      return;
    }
    if (scopes.length === 0) {
      this.setError('Choose what it may do: post, read, or both.');
      return;
    }
    this.setError('');
    const submit = byId('integrate-submit');
    submit.disabled = true;
    try {
      const made = await this.request('integrate', { room: this.room.code, name, scopes });
      this.name.value = '';
      this.showMade(made);
      this.load();
    } catch (error) {
      this.setError(`Could not make it: ${describeError(error)}`);
    } finally {
      submit.disabled = false;
    }
  }

  /** The token and the webhook URL of a new integration, this once. */
  showMade({ integration, token, hook }) {
    const url = `${location.origin}${hook}`;
    const curl = `curl -X POST -H 'Content-Type: application/json' -d '{"text":"hello"}' ${url}`;
    const done = h('button', { type: 'button', class: 'btn small' }, 'Done: I have copied them');
    done.addEventListener('click', () => {
      this.forget();
      this.name.focus();
    });
    this.madeId = integration.id;
    this.made.replaceChildren(
      h('h4', { class: 'made-title', id: 'integration-made-title' }, `${integration.user.name} is ready`),
      h('p', { class: 'made-warning' }, 'Shown once — copy it now.'),
      h('p', { class: 'room-controls-note' }, 'The server keeps only a fingerprint of the token: it cannot show it again.'),
      secret('Token', token, 'integration-token', 'Copy the token'),
      secret('Webhook URL', url, 'integration-hook', 'Copy the webhook URL'),
      secret('Try it', curl, 'integration-curl', 'Copy the curl command'),
      h('p', { class: 'room-controls-note' }, 'Programs may also post and read through ',
        h('code', { class: 'code' }, `/api/v1/rooms/${this.room.code}/messages`),
        ' with the header ', h('code', { class: 'code' }, 'Authorization: Bearer <token>'), '.'),
      done);
    show(this.made, true);
    this.made.querySelector('button')?.focus();
  }

  /** One integration in the list: its name, what it may do, when it was made, and Revoke. */
  entry(integration) {
    const scopes = integration.scopes.map((s) => SCOPE_NAMES[s] ?? s).join(', ');
    const created = new Date(integration.created);
    const actions = h('div', { class: 'integration-actions' });
    const item = h('li', { class: 'integration', 'data-id': integration.id },
      h('div', { class: 'integration-what' },
        h('span', { class: 'integration-name' }, integration.user.name),
        h('small', {}, `${scopes} · made `, h('time', { datetime: created.toISOString() }, dateFormat.format(created)))),
      actions);
    const ask = () => {
      const revoke = h('button', { type: 'button', class: 'btn danger' }, 'Revoke');
      const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
      const question = h('p', { class: 'integration-confirm' },
        `Revoke ${integration.user.name}? Programs using its token stop working at once.`);
      cancel.addEventListener('click', () => {
        question.remove();
        actions.replaceChildren(open);
        open.focus();
      });
      revoke.addEventListener('click', async () => {
        revoke.disabled = true;
        cancel.disabled = true;
        try {
          await this.request('revoke', { room: this.room.code, integration: integration.id });
          item.remove();
          if (this.madeId === integration.id) this.forget();
          this.load();
        } catch (error) {
          question.textContent = `Could not revoke it: ${describeError(error)}`;
          question.classList.add('failed');
          revoke.disabled = false;
          cancel.disabled = false;
        }
      });
      actions.before(question);
      actions.replaceChildren(revoke, cancel);
      cancel.focus();
    };
    const open = h('button', { type: 'button', class: 'btn', 'aria-label': `Revoke ${integration.user.name}` }, 'Revoke');
    open.addEventListener('click', ask);
    actions.append(open);
    return item;
  }
}

/** A value shown once, with its label and a Copy button (`copyLabel` for a screen reader). */
export function secret(label, value, id, copyLabel) {
  const copy = h('button', { type: 'button', class: 'btn copy', 'aria-label': copyLabel }, 'Copy');
  const text = h('code', { class: 'secret', id }, value);
  const say = (shown, told) => {
    copy.textContent = shown;
    copy.setAttribute('aria-label', told);
  };
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(value);
      say('Copied', `${copyLabel}: copied`);
    } catch {
      // No clipboard (an insecure origin, a refusal): selected, for the keyboard.
      getSelection().selectAllChildren(text);
      say('Selected', `${copyLabel}: selected, copy it with the keyboard`);
    }
    setTimeout(() => say('Copy', copyLabel), 2500);
  });
  return h('div', { class: 'secret-field' },
    h('div', { class: 'secret-head' }, h('span', { class: 'control-label' }, label), copy),
    text);
}

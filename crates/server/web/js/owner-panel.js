// What the owner's panels of a persistent room or board share (its
// integrations, its webhooks): a section only the owner sees, a note
// instead of a form in an ephemeral room, a list loaded from the server
// (again when the page is looked at: nothing tells it of a change made
// elsewhere), a form whose answer is a secret shown once, and entries
// removed after a confirmation.

import { byId, h, show } from './dom.js';
import { describeError } from './errors.js';

export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

export class OwnerPanel {
  /**
   * `request(op, args)` sends an op of the protocol and resolves to the
   * reply (rejects with its error). `ids` names the panel's elements:
   * `section`, `body`, `ephemeral` (the note), `form`, `field` (the input
   * an error is about), `error`, `made` (where the secret is shown), `list`
   * and `submit`. `list` is the op that lists the entries and the reply's
   * field that holds them; `noun` is what the list holds, for its failure.
   */
  constructor({ request, ids, list, noun }) {
    this.request = request;
    this.ids = ids;
    this.section = byId(ids.section);
    this.body = byId(ids.body);
    this.form = byId(ids.form);
    this.field = byId(ids.field);
    this.error = byId(ids.error);
    this.made = byId(ids.made);
    this.list = byId(ids.list);
    this.listOp = list;
    this.noun = noun;
    this.room = null;
    // The entry whose secret is shown.
    this.madeId = null;
    // The room and role the list was last loaded for: loaded again when either changes.
    this.loadedFor = null;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
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
    show(byId(this.ids.ephemeral), !persistent);
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
    this.field.setAttribute('aria-invalid', text ? 'true' : 'false');
  }

  async load() {
    let entries;
    try {
      ({ [this.listOp]: entries } = await this.request(this.listOp, { room: this.room.code }));
    } catch (error) {
      this.loadedFor = null;
      this.list.replaceChildren(h('li', { class: 'integration-empty failed', role: 'status' },
        `Could not load the ${this.noun}: ${describeError(error)}`));
      return;
    }
    this.loaded(entries);
    this.list.replaceChildren(...entries.map((entry) => this.entry(entry)));
  }

  /** Told of the entries each time the list is loaded. */
  loaded() {}

  /** Sends the form as `op` with `args`, the submit button off meanwhile; the reply, or null after showing `failed(error)`. */
  async send(op, args, failed) {
    this.setError('');
    const submit = byId(this.ids.submit);
    submit.disabled = true;
    try {
      const made = await this.request(op, args);
      this.field.value = '';
      this.load();
      return made;
    } catch (error) {
      this.setError(failed(error));
      return null;
    } finally {
      submit.disabled = false;
    }
  }

  /** Shows what was made, with `id`, this once: `children`, then a button to put it away. */
  showMade(id, done, ...children) {
    const button = h('button', { type: 'button', class: 'btn small' }, done);
    button.addEventListener('click', () => {
      this.forget();
      this.field.focus();
    });
    this.madeId = id;
    this.made.replaceChildren(...children, button);
    show(this.made, true);
    this.made.querySelector('button')?.focus();
  }

  /**
   * One entry of the list: `what` (its description) and a button,
   * `verb`, that asks `question` and then runs `remove()`; the item.
   */
  removable({ id, what, verb, label, question, remove }) {
    const actions = h('div', { class: 'integration-actions' });
    const item = h('li', { class: 'integration', 'data-id': id },
      h('div', { class: 'integration-what' }, ...what), actions);
    const open = h('button', { type: 'button', class: 'btn', 'aria-label': label }, verb);
    open.addEventListener('click', () => {
      const yes = h('button', { type: 'button', class: 'btn danger' }, verb);
      const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
      const asked = h('p', { class: 'integration-confirm' }, question);
      cancel.addEventListener('click', () => {
        asked.remove();
        actions.replaceChildren(open);
        open.focus();
      });
      yes.addEventListener('click', async () => {
        yes.disabled = true;
        cancel.disabled = true;
        try {
          await remove();
          item.remove();
          if (this.madeId === id) this.forget();
          this.load();
        } catch (error) {
          asked.textContent = `Could not ${verb.toLowerCase()} it: ${describeError(error)}`;
          asked.classList.add('failed');
          yes.disabled = false;
          cancel.disabled = false;
        }
      });
      actions.before(asked);
      actions.replaceChildren(yes, cancel);
      cancel.focus();
    });
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

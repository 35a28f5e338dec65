// What a reader does to one message, from the actions under it: reply,
// react (a picker of common emoji), edit in place (one's own, within the
// edit window), report, delete. A form or a note takes the actions' place
// and puts them back when it is done, with the focus where it was.

import { h } from './dom.js';

/** How long a note in place of a message's actions stays (a failed reaction). */
const NOTE_MS = 5000;

/** The reactions offered by the picker: the emoji and its name for a screen reader. */
const REACTIONS = [
  ['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'laughing'], ['🎉', 'party'],
  ['😮', 'surprised'], ['😢', 'sad'], ['👀', 'eyes'], ['🙏', 'thank you'],
];

export class MessageActions {
  /** `timeline`: the list the messages are in, with their latest state and the callbacks. */
  constructor(timeline) {
    this.timeline = timeline;
  }

  /** Whether our own `message` may still be edited. */
  editable(message) {
    return this.timeline.editSeconds > 0 && !message.deleted && message.from.id === this.timeline.self?.id
      && Date.now() - Date.parse(message.ts) < this.timeline.editSeconds * 1000;
  }

  /**
   * The actions under a message: Reply and React for every message; Edit
   * (within the edit window) and Delete for one's own; Report for someone
   * else's, and Delete for the owner and moderators.
   */
  row(message) {
    const seq = message.seq;
    const own = message.from.id === this.timeline.self?.id;
    const latest = () => this.timeline.messages.get(seq) ?? message;
    const actions = h('div', { class: 'msg-actions' });
    const action = (label, ariaLabel, onClick, className = 'msg-action') => {
      const button = h('button', { type: 'button', class: className, 'aria-label': ariaLabel }, label);
      button.addEventListener('click', onClick);
      actions.append(button);
    };
    const whose = own ? 'your message' : `this message from ${message.from.name}`;
    action('Reply', own ? 'Reply to your message' : `Reply to ${message.from.name}`, () => this.timeline.onReply(latest()));
    action('React', `React to ${whose}`, () => this.openPicker(actions, latest()));
    if (own && this.editable(message)) {
      action('Edit', 'Edit your message', () => this.openEdit(actions, latest()), 'msg-action edit');
    }
    if (!own) action('Report', `Report ${whose}`, () => this.openReport(actions, latest()));
    action('Delete', `Delete ${whose}`, () => this.openDelete(actions, latest(), own),
      own ? 'msg-action' : 'msg-action mod-only');
    return actions;
  }

  /**
   * Puts a message's actions back in place of a form or a note; the focus
   * goes to the action named `focus` (the one that opened the form), if any.
   */
  restore(actions, seq, focus = null) {
    const message = this.timeline.messages.get(seq);
    if (!message || message.deleted || !actions.isConnected) return;
    const fresh = this.row(message);
    actions.replaceWith(fresh);
    if (!focus) return;
    const buttons = [...fresh.querySelectorAll('button')];
    (buttons.find((b) => b.textContent === focus) ?? buttons[0])?.focus();
  }

  /** A short note in place of a message's actions, for a moment. */
  note(item, text) {
    const actions = item.querySelector('.msg-actions');
    if (!actions) return;
    actions.replaceChildren(h('span', { class: 'report-note failed', role: 'status' }, text));
    setTimeout(() => this.restore(actions, Number(item.dataset.seq)), NOTE_MS);
  }

  /** Takes away the Edit buttons whose window has passed. */
  sweep() {
    for (const button of this.timeline.list.querySelectorAll('.msg-action.edit')) {
      const seq = Number(button.closest('.msg').dataset.seq);
      const message = this.timeline.messages.get(seq);
      if (!message || !this.editable(message)) button.remove();
    }
  }

  /**
   * Puts a small form in place of a message's actions: `fields`, the
   * `submit` button and Cancel (or Escape), which puts the actions back
   * with the focus on the one named `opener`. On submit the controls are
   * disabled and `act` runs; what it returns (a note) takes the form's
   * place, unless it returns nothing.
   */
  inlineForm(actions, message, opener, fields, submit, act) {
    const cancel = h('button', { type: 'button', class: 'msg-action' }, 'Cancel');
    const form = h('form', { class: 'report-form' }, ...fields, submit, cancel);
    const restore = () => this.restore(actions, message.seq, opener);
    cancel.addEventListener('click', restore);
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') restore();
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      for (const control of form.elements) control.disabled = true;
      const note = await act();
      if (note) actions.replaceChildren(note);
    });
    actions.replaceChildren(form);
  }

  /** Asks to be sure, then deletes; says so if it fails. */
  openDelete(actions, message, own) {
    const confirm = h('button', { type: 'submit', class: 'msg-action strong danger' }, 'Delete');
    const question = h('span', {}, own ? 'Delete your message for everyone?' : 'Delete this message for everyone?');
    this.inlineForm(actions, message, 'Delete', [question], confirm, async () => {
      try {
        await this.timeline.onDelete(message.seq);
        return null;
      } catch (error) {
        return h('span', { class: 'report-note failed', role: 'status' }, `Not deleted: ${error.message}`);
      }
    });
    confirm.focus();
  }

  /** Asks why (optional), then reports; says how it went in place of the form. */
  openReport(actions, message) {
    const reason = h('input', {
      type: 'text',
      class: 'report-reason',
      maxlength: '200',
      placeholder: 'Why? (optional)',
      'aria-label': 'Why you report this message (optional)',
    });
    const submit = h('button', { type: 'submit', class: 'msg-action strong' }, 'Report');
    this.inlineForm(actions, message, 'Report', [reason], submit, async () => {
      const note = h('span', { class: 'report-note', role: 'status' });
      try {
        await this.timeline.onReport(message.seq, reason.value.trim());
        note.textContent = 'Reported to the operator. Thank you.';
      } catch (error) {
        note.classList.add('failed');
        note.textContent = `Not reported: ${error.message}`;
      }
      return note;
    });
    reason.focus();
  }

  /** The common reactions, in place of the actions; one click puts one on (or takes it off). */
  openPicker(actions, message) {
    const item = actions.closest('.msg');
    const restore = () => this.restore(actions, message.seq, 'React');
    const mine = new Set((message.reactions ?? [])
      .filter((r) => r.users.some((u) => u.id === this.timeline.self?.id)).map((r) => r.emoji));
    const choices = REACTIONS.map(([emoji, name]) => {
      const button = h('button', {
        type: 'button',
        class: 'emoji-choice',
        'aria-label': mine.has(emoji) ? `Take back your ${name}` : `React with ${name}`,
        'aria-pressed': String(mine.has(emoji)),
        title: name,
      }, emoji);
      button.addEventListener('click', () => {
        restore();
        this.timeline.toggleReaction(item, message.seq, emoji);
      });
      return button;
    });
    const cancel = h('button', { type: 'button', class: 'msg-action' }, 'Cancel');
    cancel.addEventListener('click', restore);
    const picker = h('div', { class: 'reaction-picker', role: 'group', 'aria-label': 'Pick a reaction' }, ...choices, cancel);
    picker.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') restore();
    });
    actions.replaceChildren(picker);
    choices[0].focus();
  }

  /** Edits our own message in place: Enter saves, Shift+Enter breaks the line, Escape cancels. */
  openEdit(actions, message) {
    const item = actions.closest('.msg');
    if (!this.editable(message)) {
      this.note(item, 'The time to edit this message has passed.');
      return;
    }
    const field = h('textarea', { class: 'edit-body', rows: '1', 'aria-label': 'Edit your message' });
    field.value = message.body;
    const note = h('span', { class: 'edit-note', role: 'status' });
    const cancel = h('button', { type: 'button', class: 'msg-action' }, 'Cancel');
    const save = h('button', { type: 'submit', class: 'msg-action strong' }, 'Save');
    const form = h('form', { class: 'edit-form' }, field,
      h('div', { class: 'edit-row' },
        h('span', { class: 'edit-hint' }, h('kbd', {}, 'Enter'), ' to save · ', h('kbd', {}, 'Esc'), ' to cancel'),
        note, cancel, save));
    const close = () => {
      item.classList.remove('editing');
      form.remove();
      this.timeline.draw(item, this.timeline.messages.get(message.seq));
      this.restore(item.querySelector('.msg-actions'), message.seq, 'Edit');
    };
    const fit = () => {
      field.style.height = 'auto';
      field.style.height = `${field.scrollHeight}px`;
    };
    field.addEventListener('input', fit);
    field.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      } else if (event.key === 'Escape') {
        event.preventDefault();
        close();
      }
    });
    cancel.addEventListener('click', close);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = field.value;
      if (body === this.timeline.messages.get(message.seq)?.body) {
        close();
        return;
      }
      if (body.trim() === '') {
        note.textContent = 'A message cannot be empty: delete it instead.';
        return;
      }
      for (const control of form.elements) control.disabled = true;
      note.textContent = 'Saving…';
      try {
        await this.timeline.onEdit(message.seq, body);
      } catch (error) {
        for (const control of form.elements) control.disabled = false;
        note.textContent = `Not saved: ${error.message}`;
        field.focus();
        return;
      }
      // Shown at once; the `edited` event brings the server's own time.
      const now = this.timeline.messages.get(message.seq);
      if (now && !now.deleted && now.body !== body) {
        this.timeline.messages.set(message.seq, { ...now, body, edited: new Date().toISOString() });
      }
      close();
    });
    item.classList.add('editing');
    // The bubble stays, hidden, until the editor closes.
    const bubble = item.querySelector('.msg-content .bubble');
    bubble.hidden = true;
    bubble.after(form);
    actions.replaceChildren();
    fit();
    field.focus();
    field.setSelectionRange(field.value.length, field.value.length);
  }
}

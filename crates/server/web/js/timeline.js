// The message list. Confirmed messages are kept in `seq` order and shown at
// most once; our own unconfirmed messages (pending or failed) stay at the
// bottom until the server gives them a `seq`. Consecutive messages from one
// sender are grouped under one name and time.

import { avatar, h, linkify } from './dom.js';
import { store } from './store.js';

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 80;
const ANNOUNCEMENTS_KEPT = 5;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayTimeFormat = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function formatTime(date) {
  const today = new Date();
  return date.toDateString() === today.toDateString() ? timeFormat.format(date) : dayTimeFormat.format(date);
}

function isUnconfirmed(el) {
  return el.classList.contains('msg') && !el.dataset.seq;
}

export class Timeline {
  constructor({ list, scroller, pill, pillText, announcer }, onRetry, onReport = async () => {}, onDelete = async () => {}) {
    this.list = list;
    this.scroller = scroller;
    this.pill = pill;
    this.pillText = pillText;
    this.announcer = announcer;
    this.onRetry = onRetry;
    // Sends a report of message `seq` with an optional reason; rejects
    // with the error to show.
    this.onReport = onReport;
    // Deletes message `seq`; rejects with the error to show.
    this.onDelete = onDelete;
    this.self = null;
    this.bySeq = new Map();
    this.byCid = new Map();
    this.unread = 0;
    this.introItem = null;

    // Whether the reader is following the newest messages. When the
    // scroller shrinks (a growing composer, a phone keyboard) they keep
    // following.
    this.following = true;
    scroller.addEventListener('scroll', () => {
      this.following = this.atBottom();
      if (this.following) this.clearUnread();
    });
    new ResizeObserver(() => {
      if (this.following) this.scrollToBottom();
    }).observe(scroller);
    // A node that is moved restarts its animation: drop it once it has run.
    list.addEventListener('animationend', (event) => event.target.classList.remove('enter'));
    pill.addEventListener('click', () => {
      this.scrollToBottom();
      this.clearUnread();
    });
  }

  setSelf(user) {
    this.self = user;
  }

  /** Whether this user may delete anyone's message (owner, moderator). */
  setModerating(moderating) {
    this.list.classList.toggle('moderating', moderating);
  }

  /** Every message of `userId` was deleted. */
  markDeletedFrom(userId) {
    for (const [seq, item] of this.bySeq) {
      if (item.dataset.from === userId) this.markDeleted(seq);
    }
  }

  /** Message `seq` was deleted: a tombstone in its place. */
  markDeleted(seq) {
    const item = this.bySeq.get(seq);
    if (!item) return;
    const bubble = item.querySelector('.bubble');
    bubble.replaceChildren(h('span', { class: 'msg-body tombstone' }, 'This message was deleted'));
    item.dataset.deleted = 'true';
    item.querySelector('.msg-actions')?.remove();
  }

  /** The card at the top of the conversation. */
  intro(room, fromStart) {
    const title = room.title || `Room ${room.code}`;
    const text = fromStart
      ? `This is the start of the conversation. Share the invite link to bring people in.`
      : 'Earlier messages are not shown here.';
    const item = h('li', { class: 'intro' },
      h('div', { class: 'room-glyph', 'aria-hidden': 'true' }, '#'),
      h('h2', {}, `Welcome to ${title}`),
      h('p', {}, text));
    if (this.introItem) this.introItem.replaceWith(item);
    else this.list.prepend(item);
    this.introItem = item;
  }

  /**
   * Shows a message from the server. Returns true when it is new to the
   * reader: not already shown, and not one of our own pending messages that
   * this merely confirms (as after a reconnect, when the reply was lost).
   */
  add(message, { live = false } = {}) {
    if (this.bySeq.has(message.seq)) return false;
    if (message.cid && this.byCid.has(message.cid) && message.from.id === this.self?.id) {
      this.confirm(message.cid, message);
      return false;
    }
    const own = message.from.id === this.self?.id;
    const item = this.render(message, own ? 'sent' : null);
    if (own && !message.deleted) item.querySelector('.msg-main').append(this.actions(message, true));
    item.dataset.seq = String(message.seq);
    this.bySeq.set(message.seq, item);
    this.insert(item, message.seq, live);
    if (own) this.markLatest();
    if (live && !own && !store.hidden.has(message.from.id)) this.announce(message);
    return true;
  }

  /** Shows one of our own messages before the server has confirmed it. */
  addPending({ cid, body, subject }) {
    const item = this.render({ from: this.self, body, subject, ts: new Date().toISOString() }, 'pending');
    item.dataset.cid = cid;
    this.byCid.set(cid, item);
    this.insert(item, Infinity, true, true);
  }

  confirm(cid, message) {
    const item = this.byCid.get(cid);
    if (!item) return;
    this.byCid.delete(cid);
    if (this.bySeq.has(message.seq)) {
      item.remove();
      return;
    }
    item.dataset.seq = String(message.seq);
    this.bySeq.set(message.seq, item);
    this.setTime(item, message.ts);
    this.setState(item, 'sent');
    if (message.deleted) this.markDeleted(message.seq);
    else item.querySelector('.msg-main').append(this.actions(message, true));
    const next = item.nextElementSibling;
    item.remove();
    this.regroup(next);
    this.insert(item, message.seq, false);
    this.markLatest();
  }

  fail(cid, reason) {
    const item = this.byCid.get(cid);
    if (item) this.setState(item, 'failed', reason);
  }

  retrying(cid) {
    const item = this.byCid.get(cid);
    if (item) this.setState(item, 'pending');
  }

  /** A small centred line: joins, leaves, gaps. */
  system(text, { live = true } = {}) {
    const item = h('li', { class: live ? 'system enter' : 'system' }, text);
    this.insert(item, Infinity, live);
    if (live) this.announce(null, text);
  }

  /**
   * The actions under a message: Delete for one's own; Report for
   * someone else's, and Delete for the owner and moderators.
   */
  actions(message, own) {
    const actions = h('div', { class: 'msg-actions' });
    if (!own) {
      const report = h('button', {
        type: 'button',
        class: 'msg-action',
        'aria-label': `Report this message from ${message.from.name}`,
      }, 'Report');
      report.addEventListener('click', () => this.openReport(actions, message));
      actions.append(report);
    }
    const remove = h('button', {
      type: 'button',
      class: own ? 'msg-action' : 'msg-action mod-only',
      'aria-label': own ? 'Delete your message' : `Delete this message from ${message.from.name}`,
    }, 'Delete');
    remove.addEventListener('click', () => this.openDelete(actions, message, own));
    actions.append(remove);
    return actions;
  }

  /**
   * Puts a small form in place of a message's actions: `fields`, the
   * `submit` button and Cancel (or Escape), which puts the actions back.
   * On submit the controls are disabled and `act` runs; what it returns
   * (a note) takes the form's place, unless it returns nothing.
   */
  inlineForm(actions, message, own, fields, submit, act) {
    const cancel = h('button', { type: 'button', class: 'msg-action' }, 'Cancel');
    const form = h('form', { class: 'report-form' }, ...fields, submit, cancel);
    const restore = () => {
      const fresh = this.actions(message, own);
      actions.replaceWith(fresh);
      fresh.querySelector('button')?.focus();
    };
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
    this.inlineForm(actions, message, own, [question], confirm, async () => {
      try {
        await this.onDelete(message.seq);
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
    this.inlineForm(actions, message, false, [reason], submit, async () => {
      const note = h('span', { class: 'report-note', role: 'status' });
      try {
        await this.onReport(message.seq, reason.value.trim());
        note.textContent = 'Reported to the operator. Thank you.';
      } catch (error) {
        note.classList.add('failed');
        note.textContent = `Not reported: ${error.message}`;
      }
      return note;
    });
    reason.focus();
  }

  /** Hides the messages of the users hidden on this device, and shows the others'. */
  applyHidden() {
    const hidden = store.hidden;
    for (const item of this.list.querySelectorAll('.msg[data-from]')) {
      item.classList.toggle('hidden-user', hidden.has(item.dataset.from));
    }
    for (const item of this.list.querySelectorAll('.msg')) this.regroup(item);
  }

  render(message, state) {
    const date = new Date(message.ts);
    const hidden = !state && store.hidden.has(message.from.id);
    const classes = ['msg', state ? 'own' : null, hidden ? 'hidden-user' : null].filter(Boolean).join(' ');
    const item = h('li', { class: classes, 'data-from': message.from.id, 'data-ts': String(date.getTime()) },
      avatar(message.from),
      h('div', { class: 'msg-main' },
        h('div', { class: 'msg-head' },
          h('span', { class: 'msg-from' }, message.from.name),
          h('time', {})),
        message.deleted
          ? h('div', { class: 'bubble' }, h('span', { class: 'msg-body tombstone' }, 'This message was deleted'))
          : h('div', { class: 'bubble' },
            message.subject ? h('strong', { class: 'msg-subject' }, message.subject) : null,
            h('span', { class: 'msg-body' }, linkify(message.body))),
        state ? h('div', { class: 'msg-status' }) : null,
        state || message.deleted ? null : this.actions(message, false)));
    if (message.deleted) item.dataset.deleted = 'true';
    this.setTime(item, message.ts);
    if (state) this.setState(item, state);
    return item;
  }

  setTime(item, ts) {
    const date = new Date(ts);
    const time = item.querySelector('time');
    time.dateTime = date.toISOString();
    time.title = fullFormat.format(date);
    time.textContent = formatTime(date);
    item.dataset.ts = String(date.getTime());
  }

  setState(item, state, reason) {
    item.dataset.state = state;
    const status = item.querySelector('.msg-status');
    if (state === 'pending') {
      status.replaceChildren('Sending…');
    } else if (state === 'sent') {
      status.replaceChildren('Sent ✓');
    } else {
      const retry = h('button', { type: 'button', class: 'retry' }, 'Retry');
      retry.addEventListener('click', () => this.onRetry(item.dataset.cid));
      status.replaceChildren(`Not sent${reason ? `: ${reason}` : ''}`, retry);
    }
  }

  /**
   * Inserts after the last element that comes before `seq`: scanning up
   * from the bottom, past unconfirmed messages and later messages.
   */
  insert(item, seq, live, own = false) {
    const stick = own || this.atBottom();
    let before = this.list.lastElementChild;
    while (before && (isUnconfirmed(before) || Number(before.dataset.seq) > seq)) {
      before = before.previousElementSibling;
    }
    if (seq === Infinity && isUnconfirmed(item)) before = this.list.lastElementChild;
    if (before) before.after(item);
    else this.list.prepend(item);
    if (live) item.classList.add('enter');
    this.regroup(item);
    this.regroup(item.nextElementSibling);
    if (stick) {
      this.scrollToBottom();
    } else if (live && item.classList.contains('msg') && !item.classList.contains('hidden-user')) {
      this.unread++;
      this.pillText.textContent = this.unread === 1 ? '1 new message' : `${this.unread} new messages`;
      this.pill.hidden = false;
    }
  }

  regroup(item) {
    if (!item || !item.classList.contains('msg')) return;
    // A hidden message is not there for the grouping either.
    let prev = item.previousElementSibling;
    while (prev?.classList.contains('hidden-user')) prev = prev.previousElementSibling;
    const continued = Boolean(prev)
      && prev.classList.contains('msg')
      && prev.dataset.from === item.dataset.from
      && prev.dataset.state !== 'failed'
      && Number(item.dataset.ts) - Number(prev.dataset.ts) < GROUP_WINDOW_MS;
    item.classList.toggle('continued', continued);
  }

  /** "Sent ✓" shows under our latest confirmed message only. */
  markLatest() {
    for (const el of this.list.querySelectorAll('.msg.latest')) el.classList.remove('latest');
    const sent = this.list.querySelectorAll('.msg.own[data-state="sent"]');
    sent[sent.length - 1]?.classList.add('latest');
  }

  announce(message, text) {
    const line = message
      ? `${message.from.name}: ${message.subject ? `${message.subject}. ` : ''}${message.body}`
      : text;
    this.announcer.append(h('p', {}, line.length > 300 ? `${line.slice(0, 300)}…` : line));
    while (this.announcer.childElementCount > ANNOUNCEMENTS_KEPT) this.announcer.firstElementChild.remove();
  }

  atBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  clearUnread() {
    this.unread = 0;
    this.pill.hidden = true;
  }
}

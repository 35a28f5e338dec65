// The message list. Confirmed messages are kept in `seq` order and shown at
// most once; our own unconfirmed messages (pending or failed) stay at the
// bottom until the server gives them a `seq`. Consecutive messages from one
// sender are grouped under one name and time. Older messages are paged in
// at the top when the reader scrolls there.
//
// A message item is laid out as:
//   li.msg > avatar, .msg-main > .msg-head, .msg-content (quote, bubble),
//   .reactions, .msg-status (our own), .msg-actions
// `.msg-content` and `.reactions` are drawn again from the message's latest
// state whenever it changes (an edit, a reaction, a delete). The actions
// under a message, and the forms they open, are in actions.js.

import { MessageActions } from './actions.js';
import { avatar, h, setChildren } from './dom.js';
import { format } from './markdown.js';
import { store } from './store.js';

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const NEAR_BOTTOM_PX = 80;
const NEAR_TOP_PX = 120;
const ANNOUNCEMENTS_KEPT = 5;
/** Messages asked for per page when scrolling back. */
const PAGE = 50;
/** How often the Edit buttons whose window has passed are taken away. */
const EDIT_SWEEP_MS = 15_000;

const touch = window.matchMedia('(hover: none)');

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

/** "Ann", "Ann and Bob", "Ann, Bob and Cleo". */
function listNames(names) {
  if (names.length <= 1) return names.join('');
  return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
}

/** One line of a message's text, at most `max` characters. */
export function preview(text, max = 100) {
  const line = text.replace(/\s+/g, ' ').trim();
  const chars = [...line];
  return chars.length > max ? `${chars.slice(0, max).join('')}…` : line;
}

export class Timeline {
  /**
   * `people()` gives the names a mention may name and the reader's own.
   * The callbacks act on message `seq` and reject with the error to show:
   * `onReport(seq, reason)`, `onDelete(seq)`, `onEdit(seq, body)`,
   * `onReact(seq, emoji)` (resolves to whether the reaction is on now);
   * `onReply(message)` starts a reply; `onOlder(before, limit)` resolves
   * to the messages before `before`; `onRetry(cid)` posts again;
   * `onRead()` is called when the reader has caught up.
   */
  constructor({ list, scroller, pill, pillText, announcer }, {
    people = () => ({ names: [], self: null }),
    onRetry = () => {},
    onReport = async () => {},
    onDelete = async () => {},
    onEdit = async () => {},
    onReact = async () => {},
    onReply = () => {},
    onOlder = async () => [],
    onRead = () => {},
  } = {}) {
    this.list = list;
    this.scroller = scroller;
    this.pill = pill;
    this.pillText = pillText;
    this.announcer = announcer;
    Object.assign(this, { people, onRetry, onReport, onDelete, onEdit, onReact, onReply, onOlder, onRead });
    this.self = null;
    this.bySeq = new Map();
    this.byCid = new Map();
    // The latest state of each shown message, by seq.
    this.messages = new Map();
    this.unread = 0;
    this.editSeconds = 0;
    this.room = null;
    // The top of the list: where older messages load, or the room's start.
    this.edgeItem = null;
    this.edge = null;
    this.latestSeq = 0;
    this.actions = new MessageActions(this);

    // Whether the reader is following the newest messages. When the
    // scroller shrinks (a growing composer, a phone keyboard) they keep
    // following.
    this.following = true;
    scroller.addEventListener('scroll', () => {
      this.following = this.atBottom();
      if (this.following) this.clearUnread();
      if (scroller.scrollTop < NEAR_TOP_PX && scroller.scrollHeight > scroller.clientHeight) this.loadOlder();
    });
    new ResizeObserver(() => {
      if (this.following) this.scrollToBottom();
    }).observe(scroller);
    // A node that is moved restarts its animation: drop it once it has run.
    list.addEventListener('animationend', (event) => event.target.classList.remove('enter', 'flash'));
    pill.addEventListener('click', () => {
      this.scrollToBottom();
      this.clearUnread();
    });
    // On touch there is no hover: a tap on a message shows its actions.
    list.addEventListener('click', (event) => {
      const item = event.target.closest('.msg');
      if (!touch.matches || !item || event.target.closest('a, button, form')) return;
      for (const other of list.querySelectorAll('.msg.show-actions')) if (other !== item) other.classList.remove('show-actions');
      item.classList.toggle('show-actions');
    });
    setInterval(() => this.actions.sweep(), EDIT_SWEEP_MS);
  }

  setSelf(user) {
    this.self = user;
  }

  /** How long after posting a message its author may edit it; 0: not at all. */
  setEditWindow(seconds) {
    this.editSeconds = seconds;
  }

  /** Whether this user may delete anyone's message (owner, moderator). */
  setModerating(moderating) {
    this.list.classList.toggle('moderating', moderating);
  }

  /** Whether message `seq` is shown and mentions the reader. */
  mentionsMe(seq) {
    return Boolean(this.bySeq.get(seq)?.classList.contains('mentions-me'));
  }

  // ---------- The top of the list ----------

  /**
   * Starts the list for `room` (a first join): `latestSeq` is the room's
   * newest message, and `first` the first one shown.
   */
  begin(room, latestSeq, first) {
    this.room = room;
    this.latestSeq = latestSeq;
    const fromStart = first ? first.seq === 1 : latestSeq === 0;
    this.setEdge(fromStart ? 'start' : 'more');
  }

  /**
   * The line at the top: `more` (a button to load earlier messages, which
   * scrolling there presses too), `loading`, `error` (with Retry), `start`
   * (the room's first message is shown: the welcome card) or `limit` (what
   * is earlier may not be seen).
   */
  setEdge(state) {
    this.edge = state;
    let item;
    if (state === 'start') {
      const title = this.room?.title || `Room ${this.room?.code ?? ''}`;
      item = h('li', { class: 'intro edge' },
        h('div', { class: 'room-glyph', 'aria-hidden': 'true' }, '#'),
        h('h2', {}, `Welcome to ${title}`),
        h('p', {}, 'This is the start of the conversation. Share the invite link to bring people in.'));
    } else if (state === 'limit') {
      item = h('li', { class: 'edge edge-line' }, 'Earlier messages are not available to you.');
    } else if (state === 'loading') {
      item = h('li', { class: 'edge edge-line', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), 'Loading earlier messages…');
    } else {
      const button = h('button', { type: 'button', class: 'btn small quiet' },
        state === 'error' ? 'Could not load earlier messages. Try again' : 'Load earlier messages');
      button.addEventListener('click', () => this.loadOlder(true));
      item = h('li', { class: 'edge edge-line' }, button);
    }
    if (this.edgeItem) this.edgeItem.replaceWith(item);
    else this.list.prepend(item);
    this.edgeItem = item;
  }

  /** Loads the page of messages before the oldest one shown (on a scroll, only once per state). */
  async loadOlder(asked = false) {
    if (this.edge !== 'more' && !(asked && this.edge === 'error')) return;
    const hadFocus = this.edgeItem.contains(document.activeElement);
    const before = this.bySeq.size ? Math.min(...this.bySeq.keys()) : this.latestSeq + 1;
    this.setEdge('loading');
    let messages;
    try {
      messages = await this.onOlder(before, PAGE);
    } catch {
      this.setEdge('error');
      return;
    }
    this.prependOlder(messages, () => {
      const oldest = this.bySeq.size ? Math.min(...this.bySeq.keys()) : before;
      if (oldest === 1) this.setEdge('start');
      else this.setEdge(messages.length < PAGE ? 'limit' : 'more');
    });
    if (hadFocus) this.edgeItem.querySelector('button')?.focus({ preventScroll: true });
  }

  /**
   * Puts older messages (oldest first, all older than those shown) above
   * the others, then runs `andThen`; what the reader was looking at stays
   * where it was.
   */
  prependOlder(messages, andThen) {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    let cursor = this.edgeItem;
    for (const message of messages) {
      if (this.bySeq.has(message.seq)) continue;
      const item = this.render(message);
      cursor.after(item);
      cursor = item;
      this.regroup(item);
    }
    this.regroup(cursor.nextElementSibling);
    andThen();
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  // ---------- Messages ----------

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
    const item = this.render(message);
    this.insert(item, message.seq, live);
    if (own) this.markLatest();
    if (live && !own && !store.hidden.has(message.from.id)) this.announce(message);
    return true;
  }

  /** Shows one of our own messages before the server has confirmed it. */
  addPending({ cid, body, subject, reply }) {
    const message = { from: this.self, body, subject, reply, ts: new Date().toISOString() };
    const item = this.render(message, 'pending');
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
    this.track(item, message);
    this.setTime(item, message.ts);
    this.setState(item, 'sent');
    this.draw(item, message);
    if (!message.deleted) item.querySelector('.msg-main').append(this.actions.row(message));
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

  /** A message changed (an edit, or the `changed` of a resume): shows it as it is now. */
  update(message) {
    const item = this.bySeq.get(message.seq);
    if (!item) return;
    if (message.deleted) {
      this.markDeleted(message.seq);
      return;
    }
    this.messages.set(message.seq, message);
    this.draw(item, message);
  }

  /** Every message of `userId` was deleted. */
  markDeletedFrom(userId) {
    for (const [seq, item] of this.bySeq) {
      if (item.dataset.from === userId) this.markDeleted(seq);
    }
  }

  /** Message `seq` was deleted: a tombstone in its place, and in the quotes of it. */
  markDeleted(seq) {
    for (const [other, message] of this.messages) {
      if (message.reply?.seq !== seq || message.reply.deleted) continue;
      const reply = { ...message.reply, body: '', deleted: true };
      this.messages.set(other, { ...message, reply });
      this.bySeq.get(other).querySelector('.reply-quote')?.replaceWith(this.quote(reply));
    }
    const item = this.bySeq.get(seq);
    const message = this.messages.get(seq);
    if (!item || !message) return;
    const { subject, reply, reactions, edited, ...rest } = message;
    const tombstone = { ...rest, body: '', deleted: true };
    this.messages.set(seq, tombstone);
    item.classList.remove('editing');
    item.querySelector('.edit-form')?.remove();
    this.draw(item, tombstone);
    item.querySelector('.msg-actions')?.remove();
  }

  /** Someone put a reaction on message `seq`, or took it off. */
  react(seq, emoji, user, on) {
    const message = this.messages.get(seq);
    if (!message || message.deleted) return;
    const reactions = (message.reactions ?? []).map((r) => ({ ...r, users: [...r.users] }));
    let entry = reactions.find((r) => r.emoji === emoji);
    const has = Boolean(entry?.users.some((u) => u.id === user.id));
    // The same change twice (our reply, then the event) counts once.
    if (on === has) return;
    if (on) {
      if (!entry) {
        entry = { emoji, count: 0, users: [] };
        reactions.push(entry);
      }
      entry.count++;
      entry.users.push(user);
    } else {
      entry.count--;
      entry.users = entry.users.filter((u) => u.id !== user.id);
    }
    const kept = reactions.filter((r) => r.count > 0);
    this.messages.set(seq, { ...message, reactions: kept });
    this.drawReactions(this.bySeq.get(seq), this.messages.get(seq));
  }

  /** Brings message `seq` into view and marks it for a moment; false if it is not shown. */
  reveal(seq) {
    const item = this.bySeq.get(seq);
    if (!item) {
      // Further back than what is shown: to the place where it can be loaded.
      this.edgeItem?.scrollIntoView({ block: 'start' });
      this.edgeItem?.querySelector('button')?.focus({ preventScroll: true });
      return false;
    }
    item.scrollIntoView({ block: 'center' });
    item.classList.remove('flash');
    // Restart the animation.
    void item.offsetWidth;
    item.classList.add('flash');
    item.tabIndex = -1;
    item.focus({ preventScroll: true });
    return true;
  }

  /** A small centred line: joins, leaves, gaps. */
  system(text, { live = true } = {}) {
    const item = h('li', { class: live ? 'system enter' : 'system' }, text);
    this.insert(item, Infinity, live);
    if (live) this.announce(null, text);
  }

  // ---------- Drawing a message ----------

  /** Notes `item` as the one showing confirmed `message`. */
  track(item, message) {
    item.dataset.seq = String(message.seq);
    this.bySeq.set(message.seq, item);
    this.messages.set(message.seq, message);
  }

  /** A new item for `message`; `state` is set for our own unconfirmed ones. */
  render(message, state) {
    const own = Boolean(state) || message.from.id === this.self?.id;
    const hidden = !own && store.hidden.has(message.from.id);
    const classes = ['msg', own ? 'own' : null, message.bot ? 'bot' : null, hidden ? 'hidden-user' : null].filter(Boolean).join(' ');
    const item = h('li', { class: classes, 'data-from': message.from.id },
      avatar(message.from),
      h('div', { class: 'msg-main' },
        h('div', { class: 'msg-head' },
          h('span', { class: 'msg-from' }, message.from.name),
          message.bot ? botBadge() : null,
          h('time', {})),
        h('div', { class: 'msg-content' }),
        h('div', { class: 'reactions' }),
        own ? h('div', { class: 'msg-status' }) : null,
        state || message.deleted ? null : this.actions.row(message)));
    this.setTime(item, message.ts);
    if (own && !state) this.setState(item, 'sent');
    else if (state) this.setState(item, state);
    if (!state) this.track(item, message);
    this.draw(item, message);
    return item;
  }

  /** Draws the quote, the bubble and the reactions of `item` from `message`. */
  draw(item, message) {
    this.drawReactions(item, message);
    if (message.deleted) item.dataset.deleted = 'true';
    else delete item.dataset.deleted;
    // An open editor stays; it draws the message again when it closes.
    if (item.classList.contains('editing')) return;
    const content = item.querySelector('.msg-content');
    if (message.deleted) {
      content.replaceChildren(h('div', { class: 'bubble' }, h('div', { class: 'msg-body tombstone' }, 'This message was deleted')));
      item.classList.remove('mentions-me');
      return;
    }
    const edited = message.edited ? new Date(message.edited) : null;
    setChildren(content,
      message.reply ? this.quote(message.reply) : null,
      h('div', { class: 'bubble' },
        message.subject ? h('strong', { class: 'msg-subject' }, message.subject) : null,
        h('div', { class: 'msg-body' }, format(message.body, this.people())),
        edited ? h('span', {
          class: 'msg-edited',
          title: `Edited ${fullFormat.format(edited)}`,
        }, h('time', { datetime: edited.toISOString() }, '(edited)')) : null));
    const own = item.classList.contains('own');
    item.classList.toggle('mentions-me', !own && content.querySelector('.bubble .mention.self') !== null);
  }

  /** The quote of the message a reply answers; a click shows that message. */
  quote(reply) {
    const text = reply.deleted ? 'Message deleted' : preview(reply.body);
    const button = h('button', {
      type: 'button',
      class: 'reply-quote',
      'data-seq': String(reply.seq),
      'aria-label': `In reply to ${reply.from.name}: ${text}. Show that message`,
    },
    replyIcon(),
    h('span', { class: 'reply-from' }, reply.from.name),
    h('span', { class: reply.deleted ? 'reply-body tombstone' : 'reply-body' }, text));
    button.addEventListener('click', () => this.reveal(reply.seq));
    return button;
  }

  /** The reactions under a message: one toggle button per emoji. */
  drawReactions(item, message) {
    const row = item.querySelector('.reactions');
    const selfId = this.self?.id;
    row.replaceChildren(...(message.deleted ? [] : message.reactions ?? []).map(({ emoji, count, users }) => {
      const mine = users.some((u) => u.id === selfId);
      const names = users.map((u) => (u.id === selfId ? 'you' : u.name));
      if (count > users.length) names.push(`${count - users.length} more`);
      const who = listNames(names);
      const chip = h('button', {
        type: 'button',
        class: 'reaction',
        'aria-pressed': String(mine),
        'aria-label': `${emoji} ${count}: ${who}`,
        title: `${who.charAt(0).toUpperCase()}${who.slice(1)} reacted with ${emoji}`,
      }, h('span', { class: 'reaction-emoji', 'aria-hidden': 'true' }, emoji), h('span', { class: 'reaction-count' }, String(count)));
      chip.addEventListener('click', () => this.toggleReaction(item, message.seq, emoji));
      return chip;
    }));
  }

  async toggleReaction(item, seq, emoji) {
    try {
      await this.onReact(seq, emoji);
    } catch (error) {
      this.actions.note(item, `Reaction not changed: ${error.message}`);
    }
  }

  setTime(item, ts) {
    const date = new Date(ts);
    const time = item.querySelector('.msg-head time');
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

  // ---------- Placing ----------

  /** Hides the messages of the users hidden on this device, and shows the others'. */
  applyHidden() {
    const hidden = store.hidden;
    for (const item of this.list.querySelectorAll('.msg[data-from]')) {
      item.classList.toggle('hidden-user', hidden.has(item.dataset.from));
    }
    for (const item of this.list.querySelectorAll('.msg')) this.regroup(item);
  }

  /**
   * Inserts after the last element that comes before `seq`: scanning up
   * from the bottom, past unconfirmed messages and later messages.
   */
  insert(item, seq, live, own = false) {
    const stick = own || this.atBottom();
    let before = this.list.lastElementChild;
    while (before && before !== this.edgeItem && (isUnconfirmed(before) || Number(before.dataset.seq) > seq)) {
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
      ? `${message.from.name}${message.bot ? ' (bot)' : ''}: ${message.subject ? `${message.subject}. ` : ''}${message.body}`
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
    this.onRead();
  }
}

/** The mark beside the name of a bot: a program posting through an integration of the room. */
function botBadge() {
  return h('span', {
    class: 'bot-badge',
    title: 'Posted by a program, through an integration of this room',
  }, h('span', { 'aria-hidden': 'true' }, 'Bot'), h('span', { class: 'sr-only' }, '(a bot)'));
}

/** The small arrow before a quote. */
function replyIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'icon reply-icon');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', 'M9 14L4 9l5-5M4 9h10a6 6 0 0 1 6 6v5');
  svg.append(path);
  return svg;
}

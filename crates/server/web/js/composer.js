// The composer: a growing textarea (Enter sends, Shift+Enter breaks the
// line), an optional subject, the message being replied to, character
// counters against the server's limits, and typing notifications.

import { charCount, h } from './dom.js';

export const BODY_MAX = 4000;
export const SUBJECT_MAX = 120;
const BODY_COUNTER_FROM = BODY_MAX - 500;
const SUBJECT_COUNTER_FROM = SUBJECT_MAX - 20;
// Tell the others "typing" at most this often, and "stopped" after this
// long without a keystroke.
const TYPING_REFRESH_MS = 3000;
const TYPING_IDLE_MS = 4000;

export class Composer {
  constructor(els, { onSend, onTyping }) {
    Object.assign(this, els);
    this.onSend = onSend;
    this.onTyping = onTyping;
    this.ready = false;
    this.online = false;
    this.typingSentAt = 0;
    this.idleTimer = 0;
    // The message being answered: `{seq, from, body}`, or null.
    this.reply = null;

    this.body.addEventListener('input', () => {
      this.autosize();
      this.update();
      this.noteTyping();
    });
    this.subject.addEventListener('input', () => this.update());
    this.body.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      } else if (event.key === 'Escape' && this.reply) {
        event.preventDefault();
        this.setReply(null);
      }
    });
    this.subject.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') {
        event.preventDefault();
        this.body.focus();
      }
    });
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.submit();
    });
    this.subjectToggle.addEventListener('click', () => this.toggleSubject());
    this.replyCancel.addEventListener('click', () => {
      this.setReply(null);
      this.body.focus();
    });
    this.update();
  }

  /** `ready`: joined, so messages can be queued; `online`: they go out now. */
  setStatus({ ready, online }) {
    this.ready = ready;
    this.online = online;
    this.update();
  }

  /**
   * Answers `reply` with the next message: `{seq, from, body}`, the body
   * cut to a preview. Null answers nothing.
   */
  setReply(reply) {
    this.reply = reply;
    this.replyBar.hidden = !reply;
    if (reply) {
      this.replyText.replaceChildren('Replying to ', h('strong', {}, reply.from.name), `: ${reply.body}`);
      this.body.focus();
    } else {
      this.replyText.replaceChildren();
    }
  }

  toggleSubject() {
    const open = this.subjectRow.hidden;
    this.subjectRow.hidden = !open;
    this.subjectToggle.setAttribute('aria-pressed', String(open));
    if (open) {
      this.subject.focus();
    } else {
      this.subject.value = '';
      this.body.focus();
    }
    this.update();
  }

  autosize() {
    this.body.style.height = 'auto';
    this.body.style.height = `${this.body.scrollHeight}px`;
  }

  lengths() {
    return { body: charCount(this.body.value), subject: charCount(this.subject.value.trim()) };
  }

  update() {
    const { body, subject } = this.lengths();
    const over = body > BODY_MAX || subject > SUBJECT_MAX;
    showCounter(this.counter, body, BODY_MAX, BODY_COUNTER_FROM);
    showCounter(this.subjectCounter, subject, SUBJECT_MAX, SUBJECT_COUNTER_FROM);
    this.box.toggleAttribute('data-over', over);
    this.send.disabled = !this.canSend() || !this.online;
  }

  canSend() {
    const { body, subject } = this.lengths();
    return this.ready && this.body.value.trim() !== '' && body <= BODY_MAX && subject <= SUBJECT_MAX;
  }

  /** Sends, or queues while offline: the caller keeps the message pending. */
  submit() {
    if (!this.canSend()) return;
    const subject = this.subject.value.trim();
    this.onSend(this.body.value, subject || undefined, this.reply ?? undefined);
    this.setReply(null);
    this.body.value = '';
    this.subject.value = '';
    this.autosize();
    this.update();
    this.stopTyping();
    this.body.focus();
  }

  noteTyping() {
    clearTimeout(this.idleTimer);
    if (this.body.value.trim() === '') {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_REFRESH_MS) {
      this.typingSentAt = now;
      this.onTyping(true);
    }
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (this.typingSentAt === 0) return;
    this.typingSentAt = 0;
    this.onTyping(false);
  }
}

function showCounter(el, length, max, from) {
  el.hidden = length < from;
  el.textContent = `${length} / ${max}`;
  el.toggleAttribute('data-over', length > max);
}

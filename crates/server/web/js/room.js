// The room page: joins the room named in the URL, keeps the conversation
// in step across reconnects (resuming with `since`, and `rev` for the edits,
// reactions and deletes), and sends our messages with a `cid` so that a
// retry is never posted twice. Mentions of the reader, and messages that
// arrive while they look elsewhere, are counted in the tab's title.

import { Client } from './client.js';
import { Composer } from './composer.js';
import { bindIndicator } from './connection.js';
import { byId, h, show } from './dom.js';
import { describeError } from './errors.js';
import { Integrations } from './integrations.js';
import { Members } from './members.js';
import { nameProblem, suggestName } from './names.js';
import { beep, notifying, setupNotifyToggle, setupSoundToggle, setupThemeToggle } from './prefs.js';
import { store } from './store.js';
import { preview, Timeline } from './timeline.js';
import { Webhooks } from './webhooks.js';

const code = decodeURIComponent(location.pathname.split('/')[2] ?? '');
const phone = window.matchMedia('(max-width: 720px)');

setupThemeToggle(byId('theme-toggle'));
setupSoundToggle(byId('sound-toggle'));
setupNotifyToggle(byId('notify-toggle'), toast);

const client = new Client(store.name);
const timeline = new Timeline({
  list: byId('messages'),
  scroller: byId('scroller'),
  pill: byId('new-pill'),
  pillText: byId('new-pill-text'),
  announcer: byId('announcer'),
}, {
  people: () => ({ names: [...members.users.values()].map((u) => u.name), self: selfName() }),
  onRetry: retry,
  onReport: report,
  onDelete: deleteMessage,
  onEdit: editMessage,
  onReact: react,
  onReply: startReply,
  onOlder: older,
  onRead: () => { if (!document.hidden) markRead(); },
});
const members = new Members({
  list: byId('member-list'),
  count: byId('member-count'),
  typingLine: byId('typing'),
}, renderSeats, () => timeline.applyHidden(), giveRole, kick, mute, ban);
const integrations = new Integrations({
  request: (op, args) => client.request(op, args),
  onBots: (users) => { for (const user of users) members.markBot(user); },
});
const webhooks = new Webhooks({ request: (op, args) => client.request(op, args) });
const composer = new Composer({
  form: byId('composer'),
  box: byId('composer-box'),
  body: byId('body'),
  subject: byId('subject'),
  subjectRow: byId('subject-row'),
  subjectToggle: byId('subject-toggle'),
  counter: byId('counter'),
  subjectCounter: byId('subject-counter'),
  send: byId('send'),
  replyBar: byId('reply-bar'),
  replyText: byId('reply-bar-text'),
  replyCancel: byId('reply-cancel'),
}, {
  onSend: send,
  onTyping: (active) => { if (joined) client.notify('typing', { room: room.code, active }); },
});

let room = null; // RoomInfo from the latest join
let locked = false; // nobody new may join
let joined = false; // joined on the current connection
let everJoined = false;
let joining = false;
let ended = false; // the room is gone: no more reconnecting
let restarting = false; // the server said it is stopping: say so until we are back
// Every message up to this seq has been seen; a rejoin asks for what follows.
let since = 0;
// The room's change number as far as seen (edits, reactions, deletes); a
// rejoin asks for the messages changed after it. Null until a server says.
let rev = null;
// Messages from others that came while the reader looked elsewhere.
let unread = 0;
// Our messages not yet confirmed by the server, in the order they were written.
const outbox = new Map();

byId('room-code').textContent = code.toUpperCase();
bindIndicator(client, byId('conn'), byId('conn-label'));

client.on('ready', (hello) => {
  timeline.setSelf(hello.user);
  timeline.setEditWindow(hello.server?.edit_seconds ?? 0);
  members.setSelf(hello.user);
  joinRoom();
});
client.on('rejected', (error) => askName(describeError(error)));
client.on('state', (state) => {
  if (state !== 'connected') joined = false;
  updateStatus();
});
client.on('message', ({ message }) => {
  if (!isThisRoom(message.room)) return;
  members.setTyping(message.from, false);
  if (receive(message, true)) arrived(message);
});
client.on('join', ({ room: where, user }) => {
  if (isThisRoom(where) && members.add(user)) timeline.system(`${user.name}${members.bots.has(user.id) ? ' (a bot)' : ''} joined`);
});
client.on('leave', ({ room: where, user, reason }) => {
  if (!isThisRoom(where) || !members.remove(user)) return;
  if (reason === 'kicked') timeline.system(`${user.name} was removed from the room`);
  else if (reason === 'banned') timeline.system(`${user.name} was banned from the room`);
  if (reason === 'kicked' || reason === 'banned') refreshBans();
  else timeline.system(reason === 'disconnected' ? `${user.name} lost the connection` : `${user.name} left`);
});
client.on('role', ({ room: where, user, role }) => {
  if (!isThisRoom(where)) return;
  members.setRole(user, role);
  renderControls();
  if (user.id === client.user?.id) refreshBans();
  const self = user.id === client.user?.id;
  const who = self ? 'You are' : `${user.name} is`;
  if (role === 'owner') timeline.system(`${who} now the owner of this room`);
  else if (role === 'moderator') timeline.system(`${who} now a moderator`);
  else timeline.system(`${who} no longer a moderator`);
});
client.on('locked', ({ room: where, locked: now, user }) => {
  if (!isThisRoom(where)) return;
  setLocked(now);
  const who = user.id === client.user?.id ? 'You' : user.name;
  timeline.system(now ? `${who} locked the room: nobody new may join` : `${who} unlocked the room`);
});
client.on('muted', ({ room: where, user, muted, by }) => {
  if (!isThisRoom(where)) return;
  members.setMuted(user.id, muted);
  const self = user.id === client.user?.id;
  const who = self ? 'You were' : `${user.name} was`;
  timeline.system(muted ? `${who} muted by ${by.name}` : `${who} let speak again by ${by.name}`);
  if (self) showMuted(muted);
  refreshBans();
});
client.on('slow', ({ room: where, seconds, user }) => {
  if (!isThisRoom(where)) return;
  setSlow(seconds);
  // Messages waiting out slow mode go now that it is off (a cid makes a
  // second send of one harmless).
  if (seconds === 0) {
    for (const entry of outbox.values()) if (entry.state === 'pending') post(entry);
  }
  const who = user.id === client.user?.id ? 'You' : user.name;
  timeline.system(seconds ? `${who} turned slow mode on: one message every ${duration(seconds)}` : `${who} turned slow mode off`);
});
client.on('title', ({ room: where, title, user }) => {
  if (!isThisRoom(where)) return;
  room = { ...room, title };
  renderRoom();
  const who = user.id === client.user?.id ? 'You' : user.name;
  timeline.system(`${who} renamed the room “${title}”`);
});
client.on('deleted', ({ room: where, seq, rev: now }) => {
  if (!isThisRoom(where)) return;
  seen(now);
  timeline.markDeleted(seq);
});
client.on('edited', ({ room: where, message, rev: now }) => {
  if (!isThisRoom(where)) return;
  seen(now);
  timeline.update(message);
});
client.on('reacted', ({ room: where, seq, emoji, user, on, rev: now }) => {
  if (!isThisRoom(where)) return;
  seen(now);
  timeline.react(seq, emoji, user, on);
});
client.on('purged', ({ room: where, user_id: userId, rev: now }) => {
  if (!isThisRoom(where)) return;
  seen(now);
  timeline.markDeletedFrom(userId);
});
client.on('notice', ({ room: where, text }) => {
  if (isThisRoom(where)) timeline.system(`From the operator: ${text}`);
});
client.on('typing', ({ room: where, user, active }) => {
  if (isThisRoom(where)) members.setTyping(user, active);
});
client.on('closed', ({ room: where, reason }) => {
  if (!isThisRoom(where)) return;
  if (reason === 'shutdown') {
    restarting = true;
    joined = false; // the room closed under this connection
    updateStatus();
  } else if (reason === 'kicked') {
    roomEnded('You were removed from this room by its owner or a moderator.');
  } else if (reason === 'banned') {
    roomEnded('You were banned from this room by its owner or a moderator.');
  } else if (reason === 'closed') {
    roomEnded('The operator of this server closed this room.');
  } else {
    roomEnded('This room has ended.');
  }
});

if (nameProblem(store.name)) askName();
else client.start();

function isThisRoom(where) {
  return String(where).toLowerCase() === (room?.code ?? code).toLowerCase();
}

async function joinRoom() {
  if (joining || ended) return;
  joining = true;
  const resuming = everJoined;
  const args = { room: code };
  if (resuming) args.since = since;
  if (resuming && rev !== null) args.rev = rev;
  try {
    const result = await client.request('join', args);
    joined = true;
    room = result.room;
    renderRoom();
    const { came, went } = members.reset(result.members);
    members.setRoles(result.roles);
    integrations.refresh();
    webhooks.refresh();
    setLocked(Boolean(result.locked));
    setSlow(result.slow ?? 0);
    refreshBans();
    if (resuming) {
      // Who came and went while we were away.
      for (const user of came) if (user.id !== client.user.id) timeline.system(`${user.name} joined`);
      for (const user of went) timeline.system(`${user.name} left`);
    } else {
      timeline.begin(room, result.seq, result.messages[0]);
    }
    // The room's own number from now on: it may have started again (an
    // ephemeral room on a restarted server), lower than the one we had.
    if (typeof result.rev === 'number') rev = result.rev;
    let fresh = 0;
    let mentioned = false;
    for (const message of result.messages) {
      if (!receive(message, resuming) || !resuming) continue;
      fresh++;
      mentioned ||= arrived(message, false);
    }
    for (const message of result.changed ?? []) timeline.update(message);
    if (fresh) beep(mentioned ? 'mention' : 'message');
    if (resuming && result.gap) timeline.system('Some messages from while you were away are no longer available.');
    since = Math.max(since, result.seq);
    advance();
    everJoined = true;
    hideGate();
    updateStatus();
    if (!resuming && !phone.matches) byId('body').focus();
    for (const entry of outbox.values()) {
      if (entry.state === 'pending') post(entry);
    }
  } catch (error) {
    joinFailed(error);
  } finally {
    joining = false;
  }
}

function joinFailed(error) {
  switch (error.code) {
    case 'disconnected':
    case 'timeout':
      return; // the next connection joins again
    case 'name_taken':
      askName(`Someone in this room is already called “${client.name}”. Pick another name.`);
      return;
    case 'not_found':
      if (everJoined) roomEnded('This room has ended.');
      else gate({ title: 'Room not found', text: `There is no room with the code ${code.toUpperCase()}. It may have ended: ephemeral rooms vanish when everyone leaves.` });
      return;
    case 'room_full':
      gate({ title: 'This room is full', text: 'Every seat is taken. Try again when someone leaves.', retry: true });
      return;
    default:
      gate({ title: 'Could not join the room', text: describeError(error), retry: true });
  }
}

/** Shows a message; returns true if it is new, from someone else, and not hidden on this device. */
function receive(message, live) {
  const own = message.from.id === client.user?.id;
  if (own && message.cid) outbox.delete(message.cid);
  if (message.bot) members.markBot(message.from);
  const fresh = timeline.add(message, { live });
  advance();
  return fresh && !own && !store.hidden.has(message.from.id);
}

function advance() {
  while (timeline.bySeq.has(since + 1)) since++;
}

/** Notes the change number of an event. */
function seen(now) {
  if (typeof now === 'number') rev = Math.max(rev ?? 0, now);
}

/** The name this room knows the reader by. */
function selfName() {
  const self = client.user;
  return self ? (members.users.get(self.id)?.name ?? self.name) : null;
}

/**
 * Tells the reader of a new message from someone else: counted in the
 * title while they look elsewhere, a chime (if chosen, and `chime`), and
 * for a mention of them while the tab is in the background, a desktop
 * notification (if allowed). Returns whether it mentions them.
 */
function arrived(message, chime = true) {
  if (document.hidden || !timeline.following) {
    unread++;
    renderTitle();
  }
  const mentioned = timeline.mentionsMe(message.seq);
  if (chime) beep(mentioned ? 'mention' : 'message');
  if (mentioned && document.hidden && notifying()) {
    try {
      const note = new Notification(`${message.from.name} mentioned you in ${roomTitle()}`, {
        body: preview(message.body, 200),
        tag: `${room.code}:${message.seq}`,
      });
      note.addEventListener('click', () => {
        window.focus();
        timeline.reveal(message.seq);
        note.close();
      });
    } catch {
      // Some browsers (Chrome on Android) only notify from a service worker.
    }
  }
  return mentioned;
}

/** The reader has caught up: the count leaves the title. */
function markRead() {
  if (unread === 0) return;
  unread = 0;
  renderTitle();
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && timeline.following) markRead();
});

function roomEnded(text) {
  ended = true;
  joined = false;
  client.stop();
  setBanner('danger', text, { label: 'Back to home', action: () => location.assign('/') });
  updateStatus();
}

// ---------- Sending ----------

function newCid() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function send(body, subject, reply) {
  const entry = { cid: newCid(), body, subject, reply, state: 'pending', inFlight: false };
  outbox.set(entry.cid, entry);
  timeline.addPending(entry);
  post(entry);
}

async function post(entry) {
  if (!joined || entry.inFlight) return;
  entry.inFlight = true;
  const args = { room: room.code, body: entry.body, cid: entry.cid };
  if (entry.subject) args.subject = entry.subject;
  if (entry.reply) args.reply = entry.reply.seq;
  try {
    const { message } = await client.request('post', args);
    outbox.delete(entry.cid);
    timeline.confirm(entry.cid, message);
    advance();
  } catch (error) {
    if (error.code === 'rate_limited') {
      setTimeout(() => post(entry), error.retryAfterMs ?? 1000);
    } else if (error.code !== 'disconnected') {
      // Still pending after a disconnect: the next join sends it again.
      entry.state = 'failed';
      timeline.fail(entry.cid, postError(error));
    }
  } finally {
    entry.inFlight = false;
  }
}

function postError(error) {
  switch (error.code) {
    case 'too_large': return 'too long';
    case 'not_member': return 'you are not in the room';
    case 'not_found': return 'the message you answer is not there';
    case 'timeout': return 'no answer from the server';
    default: return error.message || error.code;
  }
}

/** Shows whether the room is locked, and the toggle to owners and moderators. */
function setLocked(now) {
  locked = now;
  show(byId('locked-badge'), locked);
  const toggle = byId('lock-toggle');
  toggle.textContent = locked ? 'Unlock the room' : 'Lock the room';
  toggle.setAttribute('aria-pressed', String(locked));
  renderControls();
}

/** The room's controls show for its owner and moderators; its integrations and webhooks, for its owner. */
function renderControls() {
  show(byId('room-controls'), moderating());
  timeline.setModerating(moderating());
  const owner = Boolean(client.user) && members.roles.get(client.user.id) === 'owner';
  integrations.render(room, owner);
  webhooks.render(room, owner);
}

/** Whether this user is the room's owner or a moderator. */
function moderating() {
  return Boolean(client.user && members.roles.has(client.user.id));
}

/** "30 seconds", "a minute", "5 minutes". */
function duration(seconds) {
  if (seconds % 60 !== 0) return `${seconds} second${seconds === 1 ? '' : 's'}`;
  const minutes = seconds / 60;
  return minutes === 1 ? 'minute' : `${minutes} minutes`;
}

/** Shows slow mode: a badge for everyone, the setting for moderators. */
function setSlow(seconds) {
  const badge = byId('slow-badge');
  badge.textContent = `Slow mode: ${duration(seconds)}`;
  badge.title = `One message per member every ${duration(seconds)}; the owner and moderators are not held to it`;
  show(badge, seconds > 0);
  const select = byId('slow-select');
  if (![...select.options].some((o) => o.value === String(seconds))) {
    select.append(h('option', { value: String(seconds) }, `One message every ${duration(seconds)}`));
  }
  select.value = String(seconds);
}

/** Tells this user they are muted (or not any more). */
function showMuted(muted) {
  byId('body').placeholder = muted ? 'You are muted in this room' : 'Write a message';
}

/** The bans, removals and mutes, for the owner and moderators. */
async function refreshBans() {
  if (!room || !moderating()) return;
  let result;
  try {
    result = await client.request('bans', { room: room.code });
  } catch {
    return;
  }
  members.setMutedAll(result.mutes.map((m) => m.user.id));
  const entry = (user, what, op) => {
    const lift = h('button', { type: 'button', class: 'btn' }, 'Lift');
    lift.addEventListener('click', async () => {
      lift.disabled = true;
      try {
        await client.request(op, { room: room.code, user: user.id });
        refreshBans();
      } catch (error) {
        byId('controls-note').textContent = `Could not lift it: ${describeError(error)}`;
        lift.disabled = false;
      }
    });
    return h('li', {}, h('span', { class: 'ban-what' }, user.name, h('small', {}, what)), lift);
  };
  const until = (at) => (at ? `until ${new Date(at).toLocaleString()}` : 'until lifted');
  const items = [
    ...result.bans.map((b) => entry(b.user, `${b.reason === 'banned' ? 'Banned' : 'Removed'} by ${b.by.name}, ${until(b.until)}`, 'unban')),
    ...result.mutes.map((m) => entry(m.user, `${m.shadow ? 'Shadow-muted' : 'Muted'} by ${m.by.name}, ${until(m.until)}`, 'unmute')),
  ];
  byId('ban-list').replaceChildren(...items);
  show(byId('bans-box'), items.length > 0);
}

byId('slow-select').addEventListener('change', async (event) => {
  const select = event.target;
  try {
    await client.request('slow', { room: room.code, seconds: Number(select.value) });
  } catch (error) {
    byId('controls-note').textContent = `Could not set slow mode: ${describeError(error)}`;
  }
});

byId('title-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = byId('title-input');
  try {
    await client.request('title', { room: room.code, title: input.value });
    input.value = '';
  } catch (error) {
    byId('controls-note').textContent = `Could not rename the room: ${describeError(error)}`;
  }
});

byId('lock-toggle').addEventListener('click', async () => {
  const toggle = byId('lock-toggle');
  toggle.disabled = true;
  try {
    await client.request('lock', { room: room.code, locked: !locked });
  } catch (error) {
    byId('lock-note').textContent = `Could not change the lock: ${describeError(error)}`;
  } finally {
    toggle.disabled = false;
  }
});

/** Gives another member a role (the owner only). */
async function giveRole(user, role) {
  try {
    await client.request('role', { room: room.code, user: user.id, role });
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Removes another member from the room for a while (owner, moderators). */
async function kick(user) {
  try {
    await client.request('kick', { room: room.code, user: user.id });
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Mutes another member (or lets them speak again); a shadow mute is told to nobody. */
async function mute(user, muted, shadow = false) {
  try {
    if (muted) {
      await client.request('mute', { room: room.code, user: user.id, ...(shadow ? { shadow: true } : {}) });
    } else {
      await client.request('unmute', { room: room.code, user: user.id });
    }
    // Nobody is told of a shadow mute, nor of its end: the list shows it.
    refreshBans();
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Bans another member: their session and addresses, until lifted. */
async function ban(user) {
  try {
    await client.request('ban', { room: room.code, user: user.id });
    refreshBans();
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Deletes message `seq`: one's own, or anyone's as owner or moderator. */
async function deleteMessage(seq) {
  try {
    await client.request('delete', { room: room.code, seq });
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Replaces the text of our message `seq`. */
async function editMessage(seq, body) {
  try {
    await client.request('edit', { room: room.code, seq, body });
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** Puts our `emoji` on message `seq`, or takes it off. */
async function react(seq, emoji) {
  try {
    const { on } = await client.request('react', { room: room.code, seq, emoji });
    // The event says the same; a change is counted once.
    if (typeof on === 'boolean') timeline.react(seq, emoji, { id: client.user.id, name: selfName() }, on);
  } catch (error) {
    throw new Error(describeError(error));
  }
}

/** The messages before `before`, oldest first (scrolling back). */
async function older(before, limit) {
  const { messages } = await client.request('history', { room: room.code, before, limit });
  for (const message of messages) if (message.bot) members.markBot(message.from);
  return messages;
}

/** Answers `message` with the next one written. */
function startReply(message) {
  composer.setReply({ seq: message.seq, from: message.from, body: preview(message.body) });
}

/** Reports message `seq` of this room to the operator. */
async function report(seq, reason) {
  try {
    await client.request('report', { room: room.code, seq, ...(reason ? { reason } : {}) });
  } catch (error) {
    throw new Error(describeError(error));
  }
}

function retry(cid) {
  const entry = outbox.get(cid);
  if (!entry) return;
  entry.state = 'pending';
  timeline.retrying(cid);
  post(entry);
}

// ---------- Header, banner, gate ----------

function isBoard(info) {
  return !/^[2-9A-HJ-NP-Z]{6}$/i.test(info.code);
}

function roomTitle() {
  if (room.title) return room.title;
  return isBoard(room) ? `#${room.code}` : `Room ${room.code}`;
}

function renderTitle() {
  if (!room) return;
  document.title = `${unread ? `(${unread}) ` : ''}${roomTitle()} · confab`;
}

function renderRoom() {
  const title = roomTitle();
  byId('room-title').textContent = title;
  byId('room-code').textContent = isBoard(room) ? 'Board' : room.code;
  renderTitle();
  const badge = byId('retention-badge');
  const note = byId('retention-note');
  const ephemeral = room.retention === 'ephemeral';
  badge.textContent = ephemeral ? 'Ephemeral' : 'Persistent';
  badge.className = ephemeral ? 'badge warn' : 'badge';
  note.textContent = ephemeral ? 'Messages vanish when everyone leaves' : 'Messages are kept';
  show(badge, true);
  show(note, true);
  renderSeats(members.size);
}

function renderSeats(count) {
  if (!room) return;
  const seats = byId('seats');
  const text = room.capacity === null ? `${count} online` : `${count} / ${room.capacity}`;
  byId('seats-text').textContent = text;
  byId('members-badge').textContent = String(count);
  seats.title = room.capacity === null ? `${count} online` : `${count} of ${room.capacity} seats taken`;
  show(seats, true);
}

function updateStatus() {
  composer.setStatus({ ready: everJoined && !ended, online: joined });
  if (ended) return;
  if (!everJoined) {
    setBanner(null);
  } else if (client.state === 'offline') {
    setBanner('warn', 'You are offline. Messages you write will be sent when the connection is back.');
  } else if (restarting && !joined) {
    setBanner('warn', 'The server is restarting. Reconnecting… Messages you write will be sent when it is back.', {
      label: 'Reconnect now',
      action: () => client.reconnectNow(),
    });
  } else if (client.state === 'reconnecting') {
    setBanner('warn', 'Connection lost. Messages you write will be sent when it is back.', {
      label: 'Reconnect now',
      action: () => client.reconnectNow(),
    });
  } else if (joined) {
    restarting = false;
    setBanner(null);
  }
}

let bannerAction = null;
byId('banner-action').addEventListener('click', () => bannerAction?.());

function setBanner(tone, text, action) {
  const banner = byId('banner');
  show(banner, Boolean(tone));
  if (!tone) return;
  banner.dataset.tone = tone;
  byId('banner-text').textContent = text;
  const button = byId('banner-action');
  show(button, Boolean(action));
  bannerAction = action?.action ?? null;
  if (action) button.textContent = action.label;
}

function gate({ title, text, form = false, retry: canRetry = false, error = '' }) {
  byId('gate-title').textContent = title;
  byId('gate-text').textContent = text;
  show(byId('gate-form'), form);
  show(byId('gate-actions'), !form);
  show(byId('gate-retry'), canRetry);
  const gateError = byId('gate-error');
  gateError.textContent = error;
  show(gateError, Boolean(error));
  byId('gate-name').setAttribute('aria-invalid', error ? 'true' : 'false');
  show(byId('gate'), true);
  // Keep the keyboard inside the dialog.
  document.querySelector('.room-app').inert = true;
  const focus = form ? byId('gate-name') : byId('gate-actions').querySelector('button:not([hidden]), a');
  focus.focus();
}

function hideGate() {
  show(byId('gate'), false);
  document.querySelector('.room-app').inert = false;
}

function askName(error = '') {
  const input = byId('gate-name');
  if (!input.value) input.value = store.name || suggestName();
  gate({
    title: `Join ${code.toUpperCase()}`,
    text: 'Choose the name the others will see.',
    form: true,
    error,
  });
  input.select();
}

byId('gate-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const name = byId('gate-name').value.trim();
  const problem = nameProblem(name);
  if (problem) {
    askName(problem);
    return;
  }
  store.name = name;
  try {
    await client.setName(name);
    if (!joined) joinRoom();
  } catch (error) {
    askName(describeError(error));
  }
});

byId('gate-retry').addEventListener('click', () => {
  hideGate();
  joinRoom();
});

// ---------- Header buttons ----------

byId('invite').addEventListener('click', async () => {
  const link = `${location.origin}/r/${encodeURIComponent(room?.code ?? code)}`;
  try {
    await navigator.clipboard.writeText(link);
    toast('Invite link copied');
  } catch {
    toast(`Invite link: ${link}`);
  }
});

async function leave() {
  if (joined) {
    try {
      await client.request('leave', { room: room.code });
    } catch {
      // Leaving anyway: without an answer the seat is released after the grace period.
    }
  }
  client.stop();
  location.assign('/');
}

for (const button of document.querySelectorAll('[data-leave]')) button.addEventListener('click', leave);

const roomBody = byId('room-body');
const membersToggle = byId('members-toggle');

function membersVisible() {
  return phone.matches ? roomBody.classList.contains('members-open') : !roomBody.classList.contains('members-hidden');
}

function setMembersVisible(visible) {
  if (phone.matches) roomBody.classList.toggle('members-open', visible);
  else roomBody.classList.toggle('members-hidden', !visible);
  membersToggle.setAttribute('aria-expanded', String(visible));
  // On a phone the list covers the conversation: move the focus into it and back.
  if (phone.matches) (visible ? byId('members-close') : membersToggle).focus();
}

membersToggle.addEventListener('click', () => setMembersVisible(!membersVisible()));
byId('members-close').addEventListener('click', () => setMembersVisible(false));
// A click on the dimmed backdrop behind the phone's member list closes it.
roomBody.addEventListener('click', (event) => {
  if (event.target === roomBody && phone.matches) setMembersVisible(false);
});
phone.addEventListener('change', () => membersToggle.setAttribute('aria-expanded', String(membersVisible())));
membersToggle.setAttribute('aria-expanded', String(membersVisible()));
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && phone.matches && membersVisible()) setMembersVisible(false);
});

function toast(text) {
  document.querySelector('.toast')?.remove();
  const el = h('div', { class: 'toast', role: 'status' }, text);
  el.addEventListener('animationend', () => el.remove());
  document.body.append(el);
}

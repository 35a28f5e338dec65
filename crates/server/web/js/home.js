// The home page: pick a name, create a room, join one by code, or pick one
// from the live list of public rooms and boards.

import { Client } from './client.js';
import { bindIndicator } from './connection.js';
import { byId, h, show } from './dom.js';
import { describeError } from './errors.js';
import { nameProblem, suggestName } from './names.js';
import { setupThemeToggle } from './prefs.js';
import { store } from './store.js';

const TITLE_MAX = 80;
const REFRESH_MS = 5000;
// Generated room codes look like this; any other name is a board.
const ROOM_CODE = /^[2-9A-HJ-NP-Z]{6}$/i;

const nameInput = byId('name');
const nameError = byId('name-error');
const createForm = byId('create-form');
const titleInput = byId('title');
const titleError = byId('title-error');
const createError = byId('create-error');
const createHint = byId('create-hint');
const joinForm = byId('join-form');
const codeInput = byId('code');
const codeError = byId('code-error');
const roomList = byId('room-list');
const roomListEmpty = byId('room-list-empty');

setupThemeToggle(byId('theme-toggle'));

nameInput.value = store.name || suggestName();
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim();
  if (!nameProblem(name)) store.name = name;
});
const client = new Client(nameProblem(nameInput.value) ? suggestName() : nameInput.value);
bindIndicator(client, byId('conn'), byId('conn-label'), 'Live');
client.on('ready', refreshRooms);
client.start();

setInterval(() => {
  if (document.visibilityState === 'visible') refreshRooms();
}, REFRESH_MS);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') refreshRooms();
});

function setError(input, el, message) {
  el.textContent = message ?? '';
  show(el, Boolean(message));
  if (input) input.setAttribute('aria-invalid', message ? 'true' : 'false');
}

function clearErrors() {
  setError(nameInput, nameError, null);
  setError(titleInput, titleError, null);
  setError(null, createError, null);
  setError(codeInput, codeError, null);
  for (const el of roomList.querySelectorAll('.room-error')) setError(null, el, null);
}

/** The display name, or null after showing why it cannot be used. */
function readName() {
  const name = nameInput.value.trim();
  const problem = nameProblem(name);
  if (problem) {
    setError(nameInput, nameError, problem);
    nameInput.focus();
    return null;
  }
  return name;
}

/**
 * Says hello under `name`. An objection to the name is shown next to the
 * name field; anything else (the server cannot be reached) by `showError`.
 */
async function useName(name, showError) {
  try {
    await client.setName(name);
    return true;
  } catch (error) {
    if (error.code === 'bad_request' || error.code === 'too_large') {
      setError(nameInput, nameError, describeError(error));
      nameInput.focus();
    } else {
      showError(describeError(error));
    }
    return false;
  }
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', String(on));
}

function goToRoom(code) {
  location.assign(`/r/${encodeURIComponent(code)}`);
}

function radio(name) {
  return createForm.querySelector(`input[name="${name}"]:checked`).value;
}

createForm.addEventListener('change', () => {
  const retention = radio('retention') === 'ephemeral'
    ? 'Messages vanish when everyone leaves.'
    : 'Messages are kept on the server.';
  const visibility = radio('visibility') === 'public'
    ? 'Listed below for anyone to join.'
    : 'Only people with the link can join.';
  createHint.textContent = `${retention} ${visibility}`;
});

createForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  const name = readName();
  if (!name) return;
  const title = titleInput.value.trim();
  if ([...title].length > TITLE_MAX) {
    setError(titleInput, titleError, `Titles can be at most ${TITLE_MAX} characters.`);
    titleInput.focus();
    return;
  }
  const button = byId('create-submit');
  busy(button, true);
  try {
    if (!(await useName(name, (message) => setError(null, createError, message)))) return;
    const args = { retention: radio('retention'), public: radio('visibility') === 'public' };
    if (title) args.title = title;
    if (radio('seats')) args.capacity = Number(radio('seats'));
    const { room } = await client.request('create', args);
    store.name = name;
    goToRoom(room.code);
  } catch (error) {
    if (error.code === 'too_large') setError(titleInput, titleError, describeError(error));
    else setError(null, createError, describeError(error));
  } finally {
    busy(button, false);
  }
});

joinForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  const code = codeInput.value.trim();
  if (!code || /\s/.test(code)) {
    setError(codeInput, codeError, code ? 'Room codes have no spaces.' : 'Enter the code of the room you want to join.');
    codeInput.focus();
    return;
  }
  const button = byId('join-submit');
  busy(button, true);
  await join(code, (message) => {
    setError(codeInput, codeError, message);
    codeInput.focus();
  });
  busy(button, false);
});

/**
 * Joins here first, so that a full room, an unknown code or a taken name is
 * reported on this page; the room page then takes over the seat (same
 * session, within the reconnect grace, so nobody sees a leave and a join).
 */
async function join(code, showError) {
  const name = readName();
  if (!name || !(await useName(name, showError))) return;
  try {
    const { room } = await client.request('join', { room: code });
    store.name = name;
    goToRoom(room.code);
  } catch (error) {
    if (error.code === 'name_taken') {
      setError(nameInput, nameError, `Someone in that room is already called “${name}”. Pick another name.`);
      nameInput.focus();
    } else {
      showError(describeError(error, { code: code.toUpperCase() }));
    }
  }
}

// ---------- The public room list ----------

const rows = new Map();

async function refreshRooms() {
  if (client.state !== 'connected') return;
  try {
    const { rooms } = await client.request('rooms');
    renderRooms(rooms);
  } catch (error) {
    if (rows.size === 0) {
      roomListEmpty.textContent = `Could not load the room list. ${describeError(error)}`;
      show(roomListEmpty, true);
    }
  }
}

function isBoard(info) {
  return !ROOM_CODE.test(info.code);
}

function renderRooms(rooms) {
  rooms.sort((a, b) =>
    Number(isBoard(b)) - Number(isBoard(a))
    || b.members - a.members
    || (a.title || a.code).localeCompare(b.title || b.code));

  const seen = new Set();
  const ordered = rooms.map((info) => {
    seen.add(info.code);
    let row = rows.get(info.code);
    if (!row) {
      row = createRow(info.code);
      rows.set(info.code, row);
    }
    fillRow(row, info);
    return row.item;
  });
  for (const [code, row] of rows) {
    if (!seen.has(code)) {
      row.item.remove();
      rows.delete(code);
    }
  }
  // Re-insert only when the order changed: moving a node would take the
  // keyboard focus away from it.
  const current = [...roomList.children];
  if (current.length !== ordered.length || current.some((item, i) => item !== ordered[i])) {
    roomList.replaceChildren(...ordered);
  }
  roomListEmpty.textContent = 'No public rooms right now. Create one and make it public.';
  show(roomListEmpty, rooms.length === 0);
}

function createRow(code) {
  const link = h('a', { class: 'room-row', href: `/r/${encodeURIComponent(code)}` });
  const error = h('p', { class: 'field-error room-error', role: 'alert', hidden: true });
  link.addEventListener('click', (event) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    clearErrors();
    join(code, (message) => setError(null, error, message));
  });
  return { link, error, item: h('li', {}, link, error) };
}

function fillRow(row, info) {
  const board = isBoard(info);
  const full = info.capacity !== null && info.members >= info.capacity;
  const name = info.title || (board ? info.code : `Room ${info.code}`);
  const count = info.capacity === null ? `${info.members} online` : `${info.members} / ${info.capacity}`;
  const countLabel = info.capacity === null
    ? `${info.members} online`
    : `${info.members} of ${info.capacity} seats taken`;
  row.link.toggleAttribute('data-full', full);
  row.link.setAttribute('aria-label', `${name}, ${board ? 'board' : `code ${info.code}`}, ${countLabel}${full ? ', full' : ''}`);
  row.link.replaceChildren(
    h('span', { class: 'room-glyph', 'aria-hidden': 'true' }, board ? '#' : ([...name][0] ?? '#').toUpperCase()),
    h('span', { class: 'room-name' },
      h('strong', {}, name),
      h('span', { class: 'room-meta' },
        h('span', { class: 'code' }, board ? `#${info.code}` : info.code),
        board
          ? h('span', { class: 'badge accent' }, 'Board')
          : h('span', { class: 'badge' }, info.retention === 'ephemeral' ? 'Ephemeral' : 'Persistent'),
        full ? h('span', { class: 'badge warn' }, 'Full') : null)),
    h('span', { class: 'room-count', 'data-count': String(info.members) },
      h('span', { class: 'dot', 'aria-hidden': 'true' }), count),
    h('span', { class: 'room-go', 'aria-hidden': 'true' }, 'Join →'),
  );
}

// Preferences and the session token, kept in localStorage so that a refresh
// or a second tab is the same user. Storage can be unavailable (some private
// modes throw on access); the page then works for the lifetime of the tab.

const PREFIX = 'confab.';
const memory = new Map();

function read(key) {
  try {
    return localStorage.getItem(PREFIX + key);
  } catch {
    return memory.get(key) ?? null;
  }
}

function write(key, value) {
  try {
    if (value === null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, value);
  } catch {
    if (value === null) memory.delete(key);
    else memory.set(key, value);
  }
}

export const store = {
  get session() { return read('session'); },
  set session(token) { write('session', token); },
  get name() { return read('name') ?? ''; },
  set name(name) { write('name', name); },
  /** 'dark', 'light', or null to follow the system. */
  get theme() { return read('theme'); },
  set theme(theme) { write('theme', theme); },
  get sound() { return read('sound') === 'on'; },
  set sound(on) { write('sound', on ? 'on' : null); },
  /** Desktop notifications of mentions while the tab is in the background. */
  get notify() { return read('notify') === 'on'; },
  set notify(on) { write('notify', on ? 'on' : null); },
  /** Ids of the users hidden on this device. */
  get hidden() {
    try {
      const ids = JSON.parse(read('hidden') ?? '[]');
      return new Set(Array.isArray(ids) ? ids.filter((id) => typeof id === 'string') : []);
    } catch {
      return new Set();
    }
  },
  set hidden(ids) { write('hidden', ids.size ? JSON.stringify([...ids]) : null); },
};

/** Hides a user's messages and typing on this device, or shows them again; returns whether they are hidden now. */
export function toggleHidden(id) {
  const ids = store.hidden;
  if (ids.has(id)) ids.delete(id);
  else ids.add(id);
  store.hidden = ids;
  return ids.has(id);
}

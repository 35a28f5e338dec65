// The theme, sound and notification toggles shared by every page.

import { store } from './store.js';

const systemDark = window.matchMedia('(prefers-color-scheme: dark)');

function effectiveTheme() {
  return store.theme ?? (systemDark.matches ? 'dark' : 'light');
}

/** Wires a button that flips between dark and light and remembers the choice. */
export function setupThemeToggle(button) {
  const render = () => {
    const theme = effectiveTheme();
    const next = theme === 'dark' ? 'light' : 'dark';
    button.setAttribute('aria-label', `Switch to ${next} theme`);
    button.title = `Switch to ${next} theme`;
    button.dataset.theme = theme;
  };
  button.addEventListener('click', () => {
    const next = effectiveTheme() === 'dark' ? 'light' : 'dark';
    store.theme = next;
    document.documentElement.dataset.theme = next;
    render();
  });
  systemDark.addEventListener('change', render);
  render();
}

let audio = null;

/** Wires a button that turns the new-message sound on and off. */
export function setupSoundToggle(button) {
  const render = () => {
    const on = store.sound;
    button.setAttribute('aria-pressed', String(on));
    button.setAttribute('aria-label', on ? 'Sound on new messages: on' : 'Sound on new messages: off');
    button.title = on ? 'Mute new-message sound' : 'Play a sound on new messages';
  };
  button.addEventListener('click', () => {
    store.sound = !store.sound;
    // An AudioContext may only start from a user gesture, so create it here.
    if (store.sound) {
      audio ??= new AudioContext();
      audio.resume();
      beep();
    }
    render();
  });
  render();
}

/**
 * A short chime, if the user turned sound on: two rising tones for a new
 * message, three (longer, brighter) for a mention.
 */
export function beep(kind = 'message') {
  if (!store.sound) return;
  audio ??= new AudioContext();
  if (audio.state === 'suspended') audio.resume();
  const tones = kind === 'mention' ? [880, 1320, 1760] : [880, 1320];
  const length = tones.length * 0.08 + 0.1;
  const now = audio.currentTime;
  const gain = audio.createGain();
  gain.gain.setValueAtTime(0.0001, now);
  gain.gain.exponentialRampToValueAtTime(0.12, now + 0.01);
  gain.gain.exponentialRampToValueAtTime(0.0001, now + length);
  gain.connect(audio.destination);
  const tone = audio.createOscillator();
  tone.type = 'sine';
  tones.forEach((frequency, i) => tone.frequency.setValueAtTime(frequency, now + i * 0.08));
  tone.connect(gain);
  tone.start(now);
  tone.stop(now + length + 0.01);
}

/** Whether this browser can show a desktop notification from a page. */
function canNotify() {
  return 'Notification' in window;
}

/** Whether mentions are to be shown as desktop notifications (chosen, and allowed). */
export function notifying() {
  return canNotify() && store.notify && Notification.permission === 'granted';
}

/**
 * Wires the button that turns desktop notifications of mentions on and
 * off. The browser's permission is asked for on the first click (it may
 * only be asked from a user gesture); `say` tells the person when the
 * browser refuses.
 */
export function setupNotifyToggle(button, say) {
  if (!canNotify()) return;
  const render = () => {
    const on = notifying();
    const blocked = Notification.permission === 'denied';
    button.setAttribute('aria-pressed', String(on));
    button.setAttribute('aria-label', `Desktop notifications when you are mentioned: ${on ? 'on' : 'off'}`);
    button.title = blocked
      ? 'Notifications are blocked for this site in the browser\'s settings'
      : on ? 'Stop desktop notifications of mentions' : 'Notify me on the desktop when I am mentioned';
  };
  button.addEventListener('click', async () => {
    if (notifying()) {
      store.notify = false;
    } else {
      const permission = Notification.permission === 'default'
        ? await Notification.requestPermission()
        : Notification.permission;
      store.notify = permission === 'granted';
      if (permission === 'denied') say('Notifications are blocked for this site in the browser\'s settings');
      else if (permission === 'granted') say('You will be notified when someone mentions you');
    }
    render();
  });
  button.hidden = false;
  render();
}

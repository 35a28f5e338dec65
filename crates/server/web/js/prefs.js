// The theme and sound toggles shared by every page.

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

/** A short two-tone chime, if the user turned sound on. */
export function beep() {
  if (!store.sound) return;
  audio ??= new AudioContext();
  if (audio.state === 'suspended') audio.resume();
  const now = audio.currentTime;
  const gain = audio.createGain();
  gain.gain.setValueAtTime(0.0001, now);
  gain.gain.exponentialRampToValueAtTime(0.12, now + 0.01);
  gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.25);
  gain.connect(audio.destination);
  const tone = audio.createOscillator();
  tone.type = 'sine';
  tone.frequency.setValueAtTime(880, now);
  tone.frequency.setValueAtTime(1320, now + 0.08);
  tone.connect(gain);
  tone.start(now);
  tone.stop(now + 0.26);
}

// Display names: validation that mirrors the server's limits, and a friendly
// suggestion for first-time visitors.

export const NAME_MAX = 32;

const ADJECTIVES = ['Amber', 'Brave', 'Calm', 'Clever', 'Swift', 'Quiet', 'Lucky', 'Sunny', 'Bold', 'Gentle', 'Merry', 'Witty'];
const ANIMALS = ['Otter', 'Fox', 'Heron', 'Panda', 'Lynx', 'Robin', 'Koala', 'Badger', 'Falcon', 'Marten', 'Owl', 'Seal'];

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

export function suggestName() {
  return `${pick(ADJECTIVES)} ${pick(ANIMALS)}`;
}

/** Returns an error message for an unusable name, or null. */
export function nameProblem(name) {
  const length = [...name].length;
  if (length === 0) return 'Pick a display name first.';
  if (length > NAME_MAX) return `Names can be at most ${NAME_MAX} characters (this one has ${length}).`;
  if (/\p{Cc}/u.test(name)) return 'Names cannot contain control characters.';
  return null;
}

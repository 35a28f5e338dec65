// Small DOM helpers. User-supplied strings only ever reach the page as text
// nodes or attribute values, never as markup.

/** Returns the element with this id, or throws: a missing id is a bug in the page. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el;
}

/**
 * Creates an element. `attrs` keys are attribute names, except `class`
 * (a string) and `on` (an object of event listeners). Children are nodes or
 * strings; strings become text nodes.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'on') {
      for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
    } else if (key === 'class') {
      el.className = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

/** Replaces every child of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Shows or hides an element through the `hidden` attribute. */
export function show(el, visible) {
  el.hidden = !visible;
}

/** Number of Unicode characters, the way the server counts them. */
export function charCount(text) {
  return [...text].length;
}

/** A stable hue (0–359) for a user id, used for avatar colours. */
export function hueFor(id) {
  let hash = 0;
  for (let i = 0; i < id.length; i++) hash = (hash * 31 + id.charCodeAt(i)) | 0;
  return Math.abs(hash) % 360;
}

/** A round avatar showing the first letter of a name. */
export function avatar(user, className = 'avatar') {
  const initial = [...user.name.trim()][0] ?? '?';
  const el = h('span', { class: className, 'aria-hidden': 'true' }, initial.toUpperCase());
  el.style.backgroundColor = `hsl(${hueFor(user.id)} 50% 32%)`;
  return el;
}

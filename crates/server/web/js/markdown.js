// A small, safe subset of markdown, rendered as DOM nodes. A message's text
// only ever becomes text nodes and the elements named here, never markup.
//
// Blocks, line by line:
// - A line that is ``` (optionally followed by a language name, as ```js)
//   opens a code block, which runs to the next line that is ``` alone. Its
//   lines are shown as they are. Without a closing line, the fence is text.
// - Lines that start with "> " (or are ">" alone) are a quote; consecutive
//   ones are one quote, and their text is formatted inline.
// - Any other line is formatted inline; line breaks are kept.
//
// Inline, within one line, left to right; where nothing matches, the
// character is text (so an unmatched marker stays as typed):
// - `code`: a run of backticks up to the next run of as many; no formatting
//   inside.
// - [text](url): a link, when the url is http:, https: or mailto:.
// - A bare http(s) address: a link, as typed.
// - **bold**, *italic* and _italic_: the text inside neither starts nor ends
//   with a space; _ only at the edges of a word, so snake_case stays.
// - @name: a mention of a member named in `names` (case-insensitive, the
//   longest name that fits, not followed by a letter or digit). A mention
//   of `self` is marked as such.

import { h } from './dom.js';

const FENCE = /^```([\w+#.-]*)\s*$/;
const FENCE_END = /^```\s*$/;
const QUOTE = /^>(?: |$)/;
const URL_AT = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/y;
const LINK_AT = /\[([^\]\n]+)\]\(([^()\s]+)\)/y;
const LINK_SCHEMES = new Set(['http:', 'https:', 'mailto:']);
const WORD = /[\p{L}\p{N}]/u;
const SPACE = /\s/;

/**
 * The nodes for `text`. `names`: the names a mention may name; `self`: the
 * reader's name, whose mentions are marked `.mention.self`.
 */
export function format(text, { names = [], self = null } = {}) {
  const sorted = [...new Set(names)].sort((a, b) => b.length - a.length);
  const context = { names: sorted, self: self?.toLowerCase() ?? null };
  const lines = text.split('\n');
  const nodes = [];
  // Text lines are joined with line breaks; a block stands on its own.
  let run = [];
  const flush = () => {
    run.forEach((line, i) => {
      if (i > 0) nodes.push('\n');
      nodes.push(...inline(line, context, {}));
    });
    run = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const end = lines.findIndex((next, j) => j > i && FENCE_END.test(next));
      if (end !== -1) {
        flush();
        const code = h('code', {}, lines.slice(i + 1, end).join('\n'));
        if (fence[1]) code.dataset.lang = fence[1];
        nodes.push(h('pre', { class: 'md-pre' }, code));
        i = end;
        continue;
      }
    }
    if (QUOTE.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) quoted.push(lines[i++].replace(QUOTE, ''));
      i--;
      const quote = h('blockquote', { class: 'md-quote' });
      quoted.forEach((q, j) => {
        if (j > 0) quote.append('\n');
        quote.append(...inline(q, context, {}));
      });
      nodes.push(quote);
      continue;
    }
    run.push(line);
  }
  flush();
  return nodes.map((node) => (typeof node === 'string' ? document.createTextNode(node) : node));
}

/**
 * One line's nodes. `inside` names what the text is already inside
 * (`link`, `bold`, `italic`), which does not nest again.
 */
function inline(line, context, inside) {
  const nodes = [];
  let text = '';
  const push = (node) => {
    if (text) nodes.push(text);
    text = '';
    nodes.push(node);
  };
  let i = 0;
  while (i < line.length) {
    const match = code(line, i)
      ?? (inside.link ? null : link(line, i, context, inside))
      ?? (inside.link ? null : bareUrl(line, i))
      ?? (inside.bold ? null : emphasis(line, i, '**', 'strong', context, { ...inside, bold: true }))
      ?? (inside.italic ? null : emphasis(line, i, '*', 'em', context, { ...inside, italic: true }))
      ?? (inside.italic ? null : emphasis(line, i, '_', 'em', context, { ...inside, italic: true }))
      ?? (inside.link ? null : mention(line, i, context));
    if (match) {
      push(match.node);
      i = match.end;
    } else if (line.startsWith('**', i) || line[i] === '`') {
      // An unmatched marker is text, all of it: "**" is not "*" and then "*".
      const run = line[i] === '`' ? /`+/y : /\*\*/y;
      run.lastIndex = i;
      run.exec(line);
      text += line.slice(i, run.lastIndex);
      i = run.lastIndex;
    } else {
      text += line[i++];
    }
  }
  if (text) nodes.push(text);
  return nodes;
}

/** `code`, ``code with a ` in it``. */
function code(line, i) {
  if (line[i] !== '`') return null;
  let n = 0;
  while (line[i + n] === '`') n++;
  const marker = '`'.repeat(n);
  for (let j = line.indexOf(marker, i + n); j !== -1; j = line.indexOf(marker, j + 1)) {
    // Exactly as many backticks: not part of a longer run.
    if (line[j + n] === '`') {
      while (line[j + 1] === '`') j++;
      continue;
    }
    let content = line.slice(i + n, j);
    if (content.trim() === '') return null;
    if (content.length > 2 && content.startsWith(' ') && content.endsWith(' ')) content = content.slice(1, -1);
    return { node: h('code', { class: 'md-code' }, content), end: j + n };
  }
  return null;
}

function link(line, i, context, inside) {
  if (line[i] !== '[') return null;
  LINK_AT.lastIndex = i;
  const match = LINK_AT.exec(line);
  if (!match) return null;
  let url;
  try {
    url = new URL(match[2]);
  } catch {
    return null;
  }
  if (!LINK_SCHEMES.has(url.protocol)) return null;
  const a = anchor(url.href, inline(match[1], context, { ...inside, link: true }));
  a.title = url.href;
  return { node: a, end: LINK_AT.lastIndex };
}

function bareUrl(line, i) {
  if (line[i] !== 'h') return null;
  URL_AT.lastIndex = i;
  const match = URL_AT.exec(line);
  return match ? { node: anchor(match[0], [match[0]]), end: URL_AT.lastIndex } : null;
}

function anchor(href, children) {
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' }, children);
}

/** `marker` text `marker` as a `tag`, the text formatted inline. */
function emphasis(line, i, marker, tag, context, inside) {
  if (!line.startsWith(marker, i)) return null;
  const start = i + marker.length;
  if (start >= line.length || SPACE.test(line[start]) || line[start] === marker[0]) return null;
  const word = marker === '_';
  if (word && i > 0 && WORD.test(line[i - 1])) return null;
  for (let j = line.indexOf(marker, start + 1); j !== -1; j = line.indexOf(marker, j + 1)) {
    if (SPACE.test(line[j - 1])) continue;
    // "*" does not close on half of a "**", nor "**" on a "***".
    if (line[j + marker.length] === marker[0]) continue;
    if (marker === '*' && line[j - 1] === '*') continue;
    if (word && j + 1 < line.length && WORD.test(line[j + 1])) continue;
    const node = h(tag, {}, inline(line.slice(start, j), context, inside));
    return { node, end: j + marker.length };
  }
  return null;
}

function mention(line, i, context) {
  if (line[i] !== '@' || (i > 0 && WORD.test(line[i - 1]))) return null;
  const rest = line.slice(i + 1).toLowerCase();
  for (const name of context.names) {
    const lower = name.toLowerCase();
    if (!rest.startsWith(lower)) continue;
    const after = line[i + 1 + name.length];
    if (after !== undefined && WORD.test(after)) continue;
    const self = lower === context.self;
    const text = line.slice(i, i + 1 + name.length);
    return { node: h('span', { class: self ? 'mention self' : 'mention' }, text), end: i + 1 + name.length };
  }
  return null;
}

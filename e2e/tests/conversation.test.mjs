// The conversation features of the room page: editing one's own messages,
// replies with a quote, reactions, mentions (and the unread count in the
// title), the markdown subset, and scrolling back through older messages.
// Screenshots of each, dark and light, desktop and phone.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { PHONE, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, messages, send, waitForMessage, waitJoined } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { browserSuite, OUT } from '../lib/suite.mjs';

const SCHEMES = ['dark', 'light'];

/** The message item whose body is `text`. */
function item(page, text) {
  return page.locator('#messages .msg', { has: page.locator('.msg-body', { hasText: text }) });
}

/** Waits until `fn(arg)` is true in the page. */
function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: TIMEOUT });
}

/** Makes the page believe its tab is in the background, or in front again. */
async function setHidden(page, hidden) {
  await page.evaluate((now) => {
    if (now) {
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    } else {
      delete document.hidden;
      delete document.visibilityState;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

describe('the conversation', { timeout: 150_000 }, () => {
  const suite = browserSuite(['--post-rate', 'off']);
  let ann;
  let bob;
  let phone; // Bob again, on a phone: the same session, another tab
  let code;

  /** Screenshots of `pages` (`{desktop, phone}`) in both schemes, and their text contrast. */
  async function capture(name, pages) {
    for (const [kind, page] of Object.entries(pages)) {
      for (const scheme of SCHEMES) {
        await page.emulateMedia({ colorScheme: scheme });
        await page.screenshot({ path: path.join(OUT, `conversation-${name}-${scheme}-${kind}.png`), animations: 'disabled' });
        assert.deepEqual(await contrastFailures(page), [], `text contrast of ${name}, ${scheme}, ${kind}`);
      }
      await page.emulateMedia({ colorScheme: 'dark' });
    }
  }

  test('the markdown subset: its rules, as elements', async () => {
    ({ page: ann } = await suite.person());
    await ann.goto(`${suite.server.url}/`);
    const cases = [
      ['**bold**, *italic* and _italic_', '<strong>bold</strong>, <em>italic</em> and <em>italic</em>'],
      ['**bold with *italic* inside**', '<strong>bold with <em>italic</em> inside</strong>'],
      ['snake_case_name and 2 * 3 * 4', 'snake_case_name and 2 * 3 * 4'],
      ['**not closed and *not either', '**not closed and *not either'],
      ['`a **b** c` and ``x ` y``', '<code class="md-code">a **b** c</code> and <code class="md-code">x ` y</code>'],
      ['[the site](https://example.org/a?b=1)',
        '<a href="https://example.org/a?b=1" target="_blank" rel="noopener noreferrer nofollow" title="https://example.org/a?b=1">the site</a>'],
      ['[bad](javascript:alert(1)) [worse](data:text/html,x)', '[bad](javascript:alert(1)) [worse](data:text/html,x)'],
      ['see https://example.org/x.', 'see <a href="https://example.org/x" target="_blank" rel="noopener noreferrer nofollow">https://example.org/x</a>.'],
      ['> quoted *words*\n> more\nplain', '<blockquote class="md-quote">quoted <em>words</em>\nmore</blockquote>plain'],
      ['>not a quote', '&gt;not a quote'],
      ['```js\nlet a = **1**;\n```\nafter', '<pre class="md-pre"><code data-lang="js">let a = **1**;</code></pre>after'],
      ['```\nno closing fence', '```\nno closing fence'],
      ['hi @ann, @Ann Lee and @Bob; bob@Bob.org, @Bobby', 'hi <span class="mention">@ann</span>, <span class="mention">@Ann Lee</span> and '
        + '<span class="mention self">@Bob</span>; bob@Bob.org, @Bobby'],
      ['<img src=x onerror=alert(1)><script>alert(2)</script>', '&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;'],
    ];
    const rendered = await ann.evaluate(async (inputs) => {
      const { format } = await import('/assets/js/markdown.js');
      return inputs.map((text) => {
        const box = document.createElement('div');
        box.append(...format(text, { names: ['Ann', 'Ann Lee', 'Bob'], self: 'Bob' }));
        return box.innerHTML;
      });
    }, cases.map(([text]) => text));
    assert.deepEqual(rendered, cases.map(([, html]) => html));
  });

  test('editing one\'s own message: the other member sees the new text and the mark', async () => {
    ({ page: bob } = await suite.person());
    code = await createRoom(ann, suite.server.url, { name: 'Ann', title: 'Trip planning', seats: 'any' });
    await joinByCode(bob, suite.server.url, 'Bob', code);
    ({ page: phone } = await suite.person({
      viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
      storageState: await bob.context().storageState(),
    }));
    await phone.goto(`${suite.server.url}/r/${code}`);
    await waitJoined(phone);

    await send(ann, 'We leave on Fridya at 8');
    await waitForMessage(bob, 'We leave on Fridya at 8');
    const mine = item(ann, 'We leave on Fridya at 8');
    await mine.hover();
    // Escape leaves the message as it was.
    await mine.getByRole('button', { name: 'Edit your message' }).click();
    await ann.keyboard.press('Escape');
    await waitForMessage(ann, 'We leave on Fridya at 8', 'sent');
    await mine.hover();
    await mine.getByRole('button', { name: 'Edit your message' }).click();
    const field = ann.getByRole('textbox', { name: 'Edit your message' });
    assert.equal(await field.inputValue(), 'We leave on Fridya at 8');
    await capture('edit-open', { desktop: ann });
    await field.fill('We leave on **Friday** at 8');
    await field.press('Enter');

    for (const page of [ann, bob, phone]) {
      await until(page, () => [...document.querySelectorAll('#messages .msg-body')]
        .some((body) => body.textContent === 'We leave on Friday at 8' && body.querySelector('strong')
          && body.closest('.bubble').querySelector('.msg-edited')));
    }
    const mark = item(bob, 'We leave on Friday at 8').locator('.msg-edited');
    assert.equal(await mark.textContent(), '(edited)');
    assert.match(await mark.getAttribute('title'), /^Edited /);
    assert.equal(await item(bob, 'We leave on Friday at 8').getByRole('button', { name: 'Edit your message' }).count(), 0,
      'only the author may edit');
    await capture('edited', { desktop: bob, phone });
  });

  test('a reply quotes the message it answers; the quote of a deleted message is a tombstone', async () => {
    await send(ann, 'Who brings the tent?');
    await waitForMessage(bob, 'Who brings the tent?');

    // From the phone: a tap shows the actions, Reply fills the composer's bar.
    await item(phone, 'Who brings the tent?').locator('.bubble').tap();
    await item(phone, 'Who brings the tent?').getByRole('button', { name: 'Reply to Ann' }).tap();
    await until(phone, () => document.getElementById('reply-bar-text').textContent === 'Replying to Ann: Who brings the tent?');
    await phone.fill('#body', 'I do, and the stove');
    await capture('reply-composing', { phone });
    await phone.press('#body', 'Enter');
    await waitForMessage(ann, 'I do, and the stove');
    assert.equal(await phone.isHidden('#reply-bar'), true, 'the bar goes once the reply is sent');

    const quote = item(ann, 'I do, and the stove').locator('.reply-quote');
    assert.equal(await quote.locator('.reply-from').textContent(), 'Ann');
    assert.equal(await quote.locator('.reply-body').textContent(), 'Who brings the tent?');
    // A click on the quote brings the answered message into view.
    await quote.click();
    await until(ann, () => document.activeElement?.querySelector('.msg-body')?.textContent === 'Who brings the tent?');

    // Cancelling a reply: the cross, or Escape.
    await item(bob, 'We leave on Friday at 8').hover();
    await item(bob, 'We leave on Friday at 8').getByRole('button', { name: 'Reply to Ann' }).click();
    assert.equal(await bob.isVisible('#reply-bar'), true);
    await bob.press('#body', 'Escape');
    assert.equal(await bob.isHidden('#reply-bar'), true);

    // A reply to a message deleted later: the quote turns into a tombstone,
    // live and after a reload.
    await send(ann, 'Tent is in the garage');
    await waitForMessage(bob, 'Tent is in the garage');
    await item(bob, 'Tent is in the garage').hover();
    await item(bob, 'Tent is in the garage').getByRole('button', { name: 'Reply to Ann' }).click();
    await send(bob, 'Great, I will pick it up');
    await waitForMessage(ann, 'Great, I will pick it up');
    await capture('reply', { desktop: ann, phone });
    const original = item(ann, 'Tent is in the garage');
    await original.hover();
    await original.getByRole('button', { name: 'Delete your message' }).click();
    await original.locator('form').getByRole('button', { name: 'Delete' }).click();
    const tombstoned = (page) => until(page, () => [...document.querySelectorAll('#messages .msg')].some((msg) =>
      msg.querySelector('.msg-body')?.textContent === 'Great, I will pick it up'
      && msg.querySelector('.reply-quote .reply-body.tombstone')?.textContent === 'Message deleted'));
    await tombstoned(bob);
    await bob.reload();
    await waitJoined(bob);
    await tombstoned(bob);
    await capture('reply-deleted', { desktop: bob });
  });

  test('reactions: picked, toggled from the chip, counted for everyone', async () => {
    const target = 'Who brings the tent?';
    await item(bob, target).hover();
    await item(bob, target).getByRole('button', { name: 'React to this message from Ann' }).click();
    await capture('react-picker', { desktop: bob });
    await bob.getByRole('group', { name: 'Pick a reaction' }).getByRole('button', { name: 'React with thumbs up' }).click();

    const chip = (page) => item(page, target).locator('.reaction', { hasText: '👍' });
    // Each page counts a reaction when it hears of it: the reacting page
    // by its own answer, which may come after the others' events.
    const count = (page, n) => until(page, ([t, want]) => [...document.querySelectorAll('#messages .msg')].some((msg) =>
      msg.querySelector('.msg-body')?.textContent === t && msg.querySelector('.reaction .reaction-count')?.textContent === want),
    [target, n]);
    await count(ann, '1');
    await count(bob, '1');
    assert.equal(await chip(ann).getAttribute('aria-pressed'), 'false');
    assert.equal(await chip(bob).getAttribute('aria-pressed'), 'true');
    assert.equal(await chip(ann).getAttribute('title'), 'Bob reacted with 👍');

    // Ann adds hers from the chip; both see two, each their own pressed.
    await chip(ann).click();
    await count(bob, '2');
    await count(phone, '2');
    await count(ann, '2');
    assert.equal(await chip(ann).getAttribute('aria-pressed'), 'true');
    assert.equal(await chip(bob).getAttribute('title'), 'You and Ann reacted with 👍');

    // A second emoji, from the phone.
    await item(phone, 'I do, and the stove').locator('.bubble').tap();
    await item(phone, 'I do, and the stove').getByRole('button', { name: 'React to your message' }).tap();
    await phone.getByRole('button', { name: 'React with party' }).tap();
    await until(ann, () => [...document.querySelectorAll('#messages .reaction')].some((c) => c.textContent === '🎉1'));
    await capture('reactions', { desktop: ann, phone });

    // Bob takes his back: one left, and it is Ann's.
    await chip(bob).click();
    await count(ann, '1');
    // Bob's own page hears of it by its own answer, which may come after Ann's event.
    await count(bob, '1');
    assert.equal(await chip(bob).getAttribute('aria-pressed'), 'false');
    assert.equal(await chip(ann).getAttribute('title'), 'You reacted with 👍');
  });

  test('a mention is highlighted, counted in the title while away, and notified', async () => {
    await bob.context().grantPermissions(['notifications'], { origin: suite.server.url });
    // Count the notifications the page shows.
    await bob.evaluate(() => {
      window.shown = [];
      const Real = window.Notification;
      window.Notification = class extends Real {
        constructor(title, options) {
          window.shown.push({ title, body: options?.body });
          super(title, options);
        }
      };
    });
    await bob.click('#notify-toggle');
    await until(bob, () => document.getElementById('notify-toggle').getAttribute('aria-pressed') === 'true');

    await setHidden(bob, true);
    await send(ann, 'Packing list is ready');
    await send(ann, '@Bob can you check the **stove** fuel?');
    await waitForMessage(bob, '@Bob can you check the stove fuel?');
    await until(bob, () => document.title === '(2) Trip planning · confab');
    const shown = await bob.evaluate(() => window.shown);
    assert.deepEqual(shown, [{ title: 'Ann mentioned you in Trip planning', body: '@Bob can you check the **stove** fuel?' }]);

    const mention = item(bob, '@Bob can you check the stove fuel?');
    assert.equal(await mention.getAttribute('class').then((c) => c.includes('mentions-me')), true);
    assert.equal(await mention.locator('.mention.self').textContent(), '@Bob');
    assert.equal(await item(bob, 'Packing list is ready').getAttribute('class').then((c) => c.includes('mentions-me')), false);

    // Back in front, at the bottom: read.
    await setHidden(bob, false);
    await until(bob, () => document.title === 'Trip planning · confab');

    // A mention of someone else is highlighted, not marked as the reader's.
    await send(bob, 'Ask @ann about the maps');
    await until(ann, () => document.querySelector('#messages .msg.mentions-me .mention.self')?.textContent === '@ann');
    await until(phone, () => [...document.querySelectorAll('#messages .mention:not(.self)')].some((m) => m.textContent === '@ann'));
    await capture('mentions', { desktop: bob, phone });
  });

  test('formatting is rendered as elements, and markup in a message stays text', async () => {
    const body = [
      'Checklist for **Friday**, _really_:',
      '> bring *warm* clothes',
      '```',
      'tent, stove, 2 × gas',
      '```',
      'Map: [trail map](https://example.org/trail) or https://example.org/map and `code 42`',
    ].join('\n');
    await send(ann, body);
    const flat = 'Checklist for Friday, really:bring warm clothestent, stove, 2 × gasMap: trail map or https://example.org/map and code 42';
    await until(bob, (text) => [...document.querySelectorAll('#messages .msg-body')].some((b) => b.textContent === text), flat);
    const shown = await item(bob, 'Checklist for Friday').locator('.msg-body').evaluate((el) => ({
      strong: el.querySelector('strong')?.textContent,
      em: [...el.querySelectorAll('em')].map((e) => e.textContent),
      quote: el.querySelector('blockquote')?.textContent,
      pre: el.querySelector('pre')?.textContent,
      links: [...el.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href')]),
      code: el.querySelector('code.md-code')?.textContent,
    }));
    assert.deepEqual(shown, {
      strong: 'Friday',
      em: ['really', 'warm'],
      quote: 'bring warm clothes',
      pre: 'tent, stove, 2 × gas',
      links: [['trail map', 'https://example.org/trail'], ['https://example.org/map', 'https://example.org/map']],
      code: 'code 42',
    });
    await capture('formatting', { desktop: bob, phone });

    const hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> **<b>bold</b>** [x](javascript:window.pwned=3)';
    await send(ann, hostile);
    const asText = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> <b>bold</b> [x](javascript:window.pwned=3)';
    await waitForMessage(bob, asText);
    const found = await bob.evaluate(() => ({
      pwned: window.pwned,
      elements: document.querySelectorAll('#messages script, #messages img, #messages b, #messages a[href^="javascript"]').length,
    }));
    assert.deepEqual(found, { pwned: undefined, elements: 0 });
  });

  test('after a network drop, what was edited, reacted to or deleted meanwhile shows as it is now', async () => {
    const joins = [];
    bob.on('websocket', (socket) => socket.on('framesent', ({ payload }) => {
      const frame = JSON.parse(payload);
      if (frame.op === 'join') joins.push(frame);
    }));
    await send(ann, 'Meet at the station');
    await send(ann, 'Bring snacks');
    await waitForMessage(bob, 'Bring snacks');
    const tombstones = await bob.locator('#messages .msg[data-deleted="true"]').count();
    await bob.context().setOffline(true);
    await bob.waitForSelector('#conn[data-state="offline"]');

    // Meanwhile Ann edits one message, reacts to another, deletes a third.
    await item(ann, 'Meet at the station').hover();
    await item(ann, 'Meet at the station').getByRole('button', { name: 'Edit your message' }).click();
    await ann.getByRole('textbox', { name: 'Edit your message' }).fill('Meet at the bus stop');
    await ann.keyboard.press('Enter');
    await waitForMessage(ann, 'Meet at the bus stop');
    await item(ann, 'Bring snacks').hover();
    await item(ann, 'Bring snacks').getByRole('button', { name: 'React to your message' }).click();
    await ann.getByRole('button', { name: 'React with heart' }).click();
    await item(ann, 'Bring snacks').locator('.reaction').waitFor();
    const gone = item(ann, 'Packing list is ready');
    await gone.hover();
    await gone.getByRole('button', { name: 'Delete your message' }).click();
    await gone.locator('form').getByRole('button', { name: 'Delete' }).click();
    await gone.waitFor({ state: 'detached' });

    await bob.context().setOffline(false);
    await waitJoined(bob);
    await waitForMessage(bob, 'Meet at the bus stop');
    assert.equal(await item(bob, 'Meet at the bus stop').locator('.msg-edited').count(), 1);
    assert.equal(await item(bob, 'Bring snacks').locator('.reaction').textContent(), '❤️1');
    assert.equal(await item(bob, 'Packing list is ready').count(), 0);
    assert.equal(await bob.locator('#messages .msg[data-deleted="true"]').count(), tombstones + 1);
    // The rejoin gave the last seq and change number seen.
    assert.equal(joins.length, 1);
    assert.equal(typeof joins[0].since, 'number');
    assert.ok(Number.isInteger(joins[0].rev) && joins[0].rev > 0, `rev: ${joins[0].rev}`);
  });

  test('scrolling back through a board loads older messages, steadily, to its start', async () => {
    // Eighty messages, posted over a plain WebSocket from another page.
    const { page: poster } = await suite.person();
    await poster.goto(`${suite.server.url}/`);
    await poster.evaluate(async () => {
      const socket = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws`);
      const replies = new Map();
      socket.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        replies.get(frame.re)?.(frame);
      };
      await new Promise((resolve) => { socket.onopen = resolve; });
      let id = 0;
      const request = (op, args) => new Promise((resolve, reject) => {
        const mine = ++id;
        replies.set(mine, (frame) => (frame.ok ? resolve(frame) : reject(new Error(JSON.stringify(frame.error)))));
        socket.send(JSON.stringify({ op, id: mine, ...args }));
      });
      await request('hello', { name: 'Historian' });
      await request('join', { room: 'main' });
      for (let i = 1; i <= 80; i++) await request('post', { room: 'main', body: `Old news number ${i}` });
      socket.close();
    });

    const { page: reader } = await suite.person();
    await joinByCode(reader, suite.server.url, 'Reader', 'main');
    await waitForMessage(reader, 'Old news number 80');
    // A board shows a newcomer a short backlog; the rest is a click or a scroll away.
    assert.equal((await messages(reader)).length, 2);
    await reader.getByRole('button', { name: 'Load earlier messages' }).click();
    await waitForMessage(reader, 'Old news number 29');
    assert.equal((await messages(reader)).length, 52);

    // Scrolled to the top: the next page loads, and what was in view stays put.
    const anchor = item(reader, 'Old news number 29').locator('.bubble');
    // Measured as the scroll happens: the page loads only once it is told.
    const before = await anchor.evaluate((el) => {
      document.getElementById('scroller').scrollTop = 0;
      return el.getBoundingClientRect().top;
    });
    await reader.waitForSelector('#messages .intro');
    const after = await anchor.evaluate((el) => el.getBoundingClientRect().top);
    assert.ok(Math.abs(after - before) < 2, `the message in view stayed put: ${before} → ${after}`);
    await waitForMessage(reader, 'Old news number 1');
    assert.match(await reader.textContent('#messages .intro'), /This is the start of the conversation/);

    const shown = await messages(reader);
    assert.deepEqual(shown.map((m) => m.body), Array.from({ length: 80 }, (_, i) => `Old news number ${i + 1}`));
    const seqs = shown.map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order, each once');
    assert.equal(new Set(seqs).size, 80);
    await reader.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
    await capture('scrollback-start', { desktop: reader });

    // On a phone, with the server's answer held back: the loading line.
    const { page: small } = await suite.person({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    let release;
    await small.routeWebSocket(/\/ws$/, (socket) => {
      const server = socket.connectToServer();
      const asked = new Set();
      const held = [];
      let holding = true;
      socket.onMessage((text) => {
        const frame = JSON.parse(text);
        if (frame.op === 'history') asked.add(frame.id);
        server.send(text);
      });
      server.onMessage((text) => {
        if (holding && asked.has(JSON.parse(text).re)) held.push(text);
        else socket.send(text);
      });
      release = () => {
        holding = false;
        for (const text of held.splice(0)) socket.send(text);
      };
    });
    await joinByCode(small, suite.server.url, 'Skimmer', 'main');
    await small.getByRole('button', { name: 'Load earlier messages' }).tap();
    await small.waitForSelector('#messages .edge[role="status"]');
    assert.equal(await small.textContent('#messages .edge'), 'Loading earlier messages…');
    await capture('scrollback-loading', { phone: small });
    release();
    await waitForMessage(small, 'Old news number 29');
    await small.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
    await small.waitForSelector('#messages .intro');
    await small.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
    await capture('scrollback-start', { phone: small });

    // The reader, scrolled up, is told of a new message in the title and
    // the pill, until they go down to it.
    await send(small, 'Fresh news');
    await until(reader, () => document.title === '(1) Main board · confab');
    await reader.click('#new-pill');
    await until(reader, () => document.title === 'Main board · confab');
  });
});

// Two people chat; a third is refused from a full room; user-supplied text
// never becomes markup.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, TIMEOUT } from '../lib/browser.mjs';
import {
  createRoom, joinByCode, messages, send, submitJoin, systemLines, waitForMessage, waitForText, waitJoined,
} from '../lib/chat.mjs';
import { startServer } from '../lib/server.mjs';

/** Presses Tab (or Shift+Tab) until the element with this id has the focus. */
async function tabTo(page, id, key = 'Tab') {
  for (let i = 0; i < 30; i++) {
    await page.keyboard.press(key);
    if (await page.evaluate(() => document.activeElement?.id) === id) return;
  }
  throw new Error(`#${id} cannot be reached with ${key}`);
}

describe('chatting in a room', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const people = [];

  async function person(options) {
    const p = await newPerson(browser, options);
    people.push(p);
    return p;
  }

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    for (const { page } of people) assert.deepEqual(page.problems, [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  let code;
  let ann;
  let bob;

  test('two people chat in a two-seat room', async () => {
    ann = await person();
    bob = await person();
    code = await createRoom(ann.page, server.url, { name: 'Ann', title: 'Weekend plans', seats: '2' });
    assert.match(code, /^[2-9A-HJ-NP-Z]{6}$/);
    await waitForText(ann.page, '#room-title', 'Weekend plans');
    await waitForText(ann.page, '#seats-text', '1 / 2');

    await joinByCode(bob.page, server.url, 'Bob', code.toLowerCase());
    await waitForText(ann.page, '#seats-text', '2 / 2');
    assert.deepEqual(await systemLines(ann.page), ['Bob joined']);
    const names = await bob.page.$$eval('#member-list .member-name', (els) => els.map((el) => el.textContent));
    assert.deepEqual(names, ['Bob (you)', 'Ann']);

    // Typing shows on the other side, beside the name and above the composer.
    await ann.page.fill('#body', 'Hi');
    await waitForText(bob.page, '#typing', 'Ann is typing…');
    await bob.page.waitForSelector('#member-list .member-typing');

    await send(ann.page, 'Hi Bob! Hiking on Saturday?');
    await waitForMessage(ann.page, 'Hi Bob! Hiking on Saturday?', 'sent');
    await waitForMessage(bob.page, 'Hi Bob! Hiking on Saturday?');
    await waitForText(bob.page, '#typing', '');

    // Bob answers with a subject.
    await bob.page.click('#subject-toggle');
    await bob.page.fill('#subject', 'Saturday');
    await send(bob.page, 'Yes!\nLet us meet at 9.');
    await waitForMessage(ann.page, 'Yes!\nLet us meet at 9.');

    const seenByAnn = await messages(ann.page);
    assert.deepEqual(seenByAnn.map(({ from, subject, body, own }) => ({ from, subject, body, own })), [
      { from: 'Ann', subject: null, body: 'Hi Bob! Hiking on Saturday?', own: true },
      { from: 'Bob', subject: 'Saturday', body: 'Yes!\nLet us meet at 9.', own: false },
    ]);
    assert.deepEqual(seenByAnn.map((m) => m.seq), [1, 2]);
    const seenByBob = await messages(bob.page);
    assert.deepEqual(seenByBob.map((m) => m.own), [false, true]);
    assert.equal(seenByBob[1].state, 'sent');
    // Every message carries its time.
    const times = await bob.page.$$eval('#messages .msg time', (els) => els.map((el) => el.dateTime));
    assert.ok(times.every((t) => !Number.isNaN(Date.parse(t))), `times: ${times}`);

    // New messages from others are announced to screen readers.
    const announced = await bob.page.textContent('#announcer');
    assert.match(announced, /Ann: Hi Bob! Hiking on Saturday\?/);
  });

  test('the character counter appears near the limit and blocks sending past it', async () => {
    const { page } = bob;
    assert.equal(await page.isHidden('#counter'), true);
    await page.fill('#body', 'x'.repeat(3600));
    await waitForText(page, '#counter', '3600 / 4000');
    assert.equal(await page.isEnabled('#send'), true);
    await page.fill('#body', 'x'.repeat(4001));
    await waitForText(page, '#counter', '4001 / 4000');
    assert.equal(await page.getAttribute('#counter', 'data-over'), '');
    assert.equal(await page.isDisabled('#send'), true);
    await page.press('#body', 'Enter');
    assert.equal((await messages(page)).length, 2, 'nothing is sent past the limit');
    await page.fill('#body', '');
    assert.equal(await page.isHidden('#counter'), true);
  });

  test('the invite link is copied', async () => {
    await ann.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
    await ann.page.click('#invite');
    await ann.page.waitForSelector('.toast');
    const copied = await ann.page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, `${server.url}/r/${code}`);
  });

  test('a third person is refused from the full room', async () => {
    const cleo = await person();
    await submitJoin(cleo.page, server.url, 'Cleo', code);
    await cleo.page.waitForSelector('#code-error:not([hidden])');
    assert.match(await cleo.page.textContent('#code-error'), /full/i);
    assert.equal(new URL(cleo.page.url()).pathname, '/', 'stays on the home page');

    // Opening the room's link directly says the same.
    await cleo.page.goto(`${server.url}/r/${code}`);
    await cleo.page.waitForSelector('#gate:not([hidden])');
    await waitForText(cleo.page, '#gate-title', 'This room is full');
    assert.equal(await cleo.page.isVisible('#gate-retry'), true);

    // An unknown code is reported next to the code field.
    await submitJoin(cleo.page, server.url, 'Cleo', '222222');
    await cleo.page.waitForSelector('#code-error:not([hidden])');
    assert.match(await cleo.page.textContent('#code-error'), /no room with the code 222222/i);

    // Neither member saw anyone come or go.
    assert.deepEqual(await systemLines(ann.page), ['Bob joined']);
    await waitForText(ann.page, '#seats-text', '2 / 2');
  });

  test('a name already used in the room is refused next to the name field', async () => {
    const first = await person();
    const other = await person();
    await joinByCode(first.page, server.url, 'Dana', 'main');
    await submitJoin(other.page, server.url, 'dana', 'main');
    await other.page.waitForSelector('#name-error:not([hidden])');
    assert.match(await other.page.textContent('#name-error'), /already called/);
    assert.equal(await other.page.getAttribute('#name', 'aria-invalid'), 'true');
  });

  test('names, titles, subjects and bodies are shown as text, never as markup', async () => {
    const payload = '<img src=x onerror=pwned=1>';
    const mallory = await person();
    const victim = await person();
    const xssCode = await createRoom(mallory.page, server.url, { name: payload, title: payload, seats: '3', visibility: 'public' });
    await joinByCode(victim.page, server.url, 'Victor', xssCode);

    // A hostile name in the join, typing and leave lines is text too.
    const eveName = '<img src=y onerror=pwned=3>';
    const eve = await person();
    await joinByCode(eve.page, server.url, eveName, xssCode);
    const systemLineWith = (page, text) => page.waitForFunction((t) => [...document.querySelectorAll('#messages .system')]
      .some((el) => el.textContent.includes(t)), text, { timeout: TIMEOUT });
    await systemLineWith(victim.page, `${eveName} joined`);
    await eve.page.fill('#body', 'typing away');
    await waitForText(victim.page, '#typing', `${eveName} is typing…`);
    await eve.page.click('#leave');
    await systemLineWith(victim.page, `${eveName} left`);

    await mallory.page.click('#subject-toggle');
    await mallory.page.fill('#subject', payload);
    await send(mallory.page, `${payload}<script>pwned=2</script><b>bold</b>`);
    await waitForMessage(victim.page, `${payload}<script>pwned=2</script><b>bold</b>`);

    for (const page of [mallory.page, victim.page]) {
      await waitForText(page, '#room-title', payload);
      const found = await page.evaluate(() => ({
        pwned: window.pwned,
        injected: document.querySelectorAll('main img, main script, main b, header img, aside img').length,
      }));
      assert.deepEqual(found, { pwned: undefined, injected: 0 });
    }
    const [shown] = await messages(victim.page);
    assert.equal(shown.from, payload);
    assert.equal(shown.subject, payload);
    const members = await victim.page.$$eval('#member-list .member-name', (els) => els.map((el) => el.textContent));
    assert.ok(members.includes(payload), `members: ${members}`);

    // The room list on the home page is text too.
    await victim.page.goto(`${server.url}/`);
    await victim.page.waitForFunction((title) => [...document.querySelectorAll('#room-list .room-name strong')]
      .some((el) => el.textContent === title), payload, { timeout: TIMEOUT });
    assert.equal(await victim.page.evaluate(() => document.querySelectorAll('#room-list img').length), 0);
  });

  test('a message the server refuses shows as failed, and Retry sends it', async () => {
    const { page } = await person();
    let refuse = true;
    // The server's first answer to a post is replaced by an error.
    await page.routeWebSocket(/\/ws$/, (socket) => {
      const upstream = socket.connectToServer();
      socket.onMessage((text) => {
        const frame = JSON.parse(text);
        if (frame.op === 'post' && refuse) {
          refuse = false;
          socket.send(JSON.stringify({ re: frame.id, ok: false, error: { code: 'internal', message: 'disk full' } }));
        } else {
          upstream.send(text);
        }
      });
    });
    await joinByCode(page, server.url, 'Finn', 'main');
    await send(page, 'try, try again');
    await waitForMessage(page, 'try, try again', 'failed');
    assert.match(await page.textContent('.msg[data-state="failed"] .msg-status'), /Not sent: disk full/);
    await page.click('.msg[data-state="failed"] .retry');
    await waitForMessage(page, 'try, try again', 'sent');
    assert.equal((await messages(page)).filter((m) => m.body === 'try, try again').length, 1);
  });

  test('a board can be joined and used with the keyboard alone', async () => {
    const { page } = await person();
    await page.goto(`${server.url}/`);
    await tabTo(page, 'name');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('Kim');
    await tabTo(page, 'code');
    await page.keyboard.type('main');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/r\/main$/);
    await waitJoined(page);

    // The message box has the focus once the room is joined.
    assert.equal(await page.evaluate(() => document.activeElement.id), 'body');
    await page.keyboard.type('Typed without a mouse');
    await page.keyboard.press('Enter');
    await waitForMessage(page, 'Typed without a mouse', 'sent');
    await page.keyboard.type('line one');
    await page.keyboard.press('Shift+Enter');
    await page.keyboard.type('line two');
    await page.keyboard.press('Enter');
    await waitForMessage(page, 'line one\nline two', 'sent');

    await tabTo(page, 'leave', 'Shift+Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${server.url}/`);
  });
});

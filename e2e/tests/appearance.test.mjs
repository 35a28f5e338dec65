// Screenshots of home and room in both themes at desktop and phone width
// (saved under target/e2e/), text contrast in both themes, and the theme
// choice being remembered.

import assert from 'node:assert/strict';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, PHONE, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, send, waitForMessage, waitForText, waitJoined } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { startServer } from '../lib/server.mjs';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/e2e');
const SCHEMES = ['dark', 'light'];

describe('appearance', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const people = [];
  let ann;
  let bob;
  let code;
  let bookClub;

  async function person(options) {
    const p = await newPerson(browser, options);
    people.push(p);
    return p;
  }

  /** Bob starts typing afresh, and `page` shows it. */
  async function bobTyping(page, text) {
    await bob.page.fill('#body', '');
    await bob.page.fill('#body', text);
    await waitForText(page, '#typing', 'Bob is typing…');
  }

  /** Saves a screenshot and checks the contrast of every text on it. */
  async function capture(page, name) {
    const file = path.join(OUT, `${name}.png`);
    await page.screenshot({ path: file, animations: 'disabled', fullPage: name.startsWith('home') });
    assert.ok((await stat(file)).size > 10_000, `${name}.png has content`);
    assert.deepEqual(await contrastFailures(page), [], `text contrast in ${name}`);
  }

  before(async () => {
    await mkdir(OUT, { recursive: true });
    server = await startServer();
    browser = await launchBrowser();
    ann = await person();
    bob = await person();
    const cleo = await person();
    const dana = await person();

    code = await createRoom(ann.page, server.url, {
      name: 'Ann', title: 'Design review', seats: '3', visibility: 'public',
    });
    await joinByCode(bob.page, server.url, 'Bob', code);
    await send(ann.page, 'Morning! The new onboarding flow is up on staging.');
    await waitForMessage(bob.page, 'Morning! The new onboarding flow is up on staging.');
    await bob.page.click('#subject-toggle');
    await bob.page.fill('#subject', 'Feedback');
    await send(bob.page, 'The first two screens are great. The third one feels crowded on a phone.');
    await send(bob.page, 'Maybe split it into two steps?');
    await waitForMessage(ann.page, 'Maybe split it into two steps?');
    await joinByCode(cleo.page, server.url, 'Cleo', code);
    await send(cleo.page, 'Agreed — and the skip button could be bigger. Notes: https://example.org/notes/onboarding');
    await waitForMessage(ann.page, 'Agreed — and the skip button could be bigger. Notes: https://example.org/notes/onboarding');
    await send(ann.page, 'On it. I will share a new build after lunch.');
    await waitForMessage(ann.page, 'On it. I will share a new build after lunch.', 'sent');

    bookClub = await createRoom(dana.page, server.url, { name: 'Dana', title: 'Book club', seats: '4', visibility: 'public' });
  });

  after(async () => {
    for (const { page } of people) assert.deepEqual(page.problems, [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  test('the room, dark and light, desktop and phone', async () => {
    for (const scheme of SCHEMES) {
      await ann.page.emulateMedia({ colorScheme: scheme });
      await bobTyping(ann.page, `thinking (${scheme})`);
      await capture(ann.page, `room-${scheme}-desktop`);
    }

    // Ann again, on a phone: the same session, so the same member.
    const phone = await person({
      viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2,
      storageState: await ann.context.storageState(),
    });
    await phone.page.goto(`${server.url}/r/${code}`);
    await waitJoined(phone.page);
    await waitForText(phone.page, '#seats-text', '3 / 3');
    for (const scheme of SCHEMES) {
      await phone.page.emulateMedia({ colorScheme: scheme });
      await bobTyping(phone.page, `still thinking (${scheme})`);
      await capture(phone.page, `room-${scheme}-phone`);
    }
    assert.equal(await phone.page.isHidden('#members-panel'), true, 'members are tucked away on a phone');
    await phone.page.click('#members-toggle');
    assert.equal(await phone.page.isVisible('#members-panel'), true);
    await phone.page.keyboard.press('Escape');
    assert.equal(await phone.page.isHidden('#members-panel'), true);

    // The new-message sound is off until chosen, and the choice is remembered.
    assert.equal(await phone.page.getAttribute('#sound-toggle', 'aria-pressed'), 'false');
    await phone.page.click('#sound-toggle');
    await phone.page.reload();
    await waitJoined(phone.page);
    assert.equal(await phone.page.getAttribute('#sound-toggle', 'aria-pressed'), 'true');
  });

  test('the home page, dark and light, desktop and phone', async () => {
    const visitor = await person();
    const phoneVisitor = await person({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    for (const { page } of [visitor, phoneVisitor]) {
      await page.goto(`${server.url}/`);
      await page.fill('#name', 'Eve');
      // The live list: the board, and both public rooms with their counts.
      await page.waitForFunction(() => document.querySelectorAll('#room-list .room-row').length === 3);
    }
    const counts = await visitor.page.$$eval('#room-list .room-row', (rows) => rows.map((row) =>
      `${row.querySelector('.room-meta .code').textContent}: ${row.querySelector('.room-count').textContent}`));
    assert.deepEqual(counts, ['#main: 0 online', `${code}: 3 / 3`, `${bookClub}: 1 / 4`]);

    for (const scheme of SCHEMES) {
      await visitor.page.emulateMedia({ colorScheme: scheme });
      await capture(visitor.page, `home-${scheme}-desktop`);
      await phoneVisitor.page.emulateMedia({ colorScheme: scheme });
      await capture(phoneVisitor.page, `home-${scheme}-phone`);
    }

    // The counts are live: someone joining shows up without a reload.
    const reader = await person();
    await joinByCode(reader.page, server.url, 'Finn', bookClub);
    await visitor.page.waitForFunction((room) => [...document.querySelectorAll('#room-list .room-row')]
      .some((row) => row.querySelector('.room-meta .code').textContent === room
        && row.querySelector('.room-count').textContent === '2 / 4'), bookClub, { timeout: TIMEOUT });
  });

  test('the theme follows the system and a choice is remembered', async () => {
    const background = (page) => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const light = await person({ colorScheme: 'light' });
    await light.page.goto(`${server.url}/`);
    const lightBackground = await background(light.page);
    const dark = await person({ colorScheme: 'dark' });
    await dark.page.goto(`${server.url}/`);
    const darkBackground = await background(dark.page);
    assert.notEqual(lightBackground, darkBackground);

    // Choosing light on a dark system sticks across a reload.
    await dark.page.click('#theme-toggle');
    assert.equal(await background(dark.page), lightBackground);
    await dark.page.reload();
    assert.equal(await dark.page.getAttribute('html', 'data-theme'), 'light');
    assert.equal(await background(dark.page), lightBackground);
  });

  test('an unknown address gets the 404 page, in the app\'s style, dark and light', async () => {
    const lost = await person();
    const response = await lost.page.goto(`${server.url}/no/such/page`);
    assert.equal(response.status(), 404);
    assert.equal(await lost.page.textContent('h1'), 'Page not found');
    // Styled by the app's stylesheet (the brand bar is laid out as a row),
    // with a way back home.
    assert.equal(await lost.page.$eval('.topbar', (el) => getComputedStyle(el).display), 'flex');
    await lost.page.click('text=Go to the rooms');
    await lost.page.waitForURL(`${server.url}/`);
    await lost.page.goBack();
    for (const scheme of SCHEMES) {
      await lost.page.emulateMedia({ colorScheme: scheme });
      await capture(lost.page, `404-${scheme}-desktop`);
    }
  });
});

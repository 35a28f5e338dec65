// Hiding a person on this device: their messages and typing disappear,
// earlier and later ones, they make no sound or unread count, the choice
// survives a reload, and showing them again brings everything back. The
// server knows nothing of it: the others still see everything.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, messages, send, waitForMessage, waitForText, waitJoined } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { startServer } from '../lib/server.mjs';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/e2e');

/** The bodies of the messages a page shows (visible ones only). */
function visibleBodies(page) {
  return page.$$eval('#messages .msg', (items) => items
    .filter((item) => item.offsetParent !== null)
    .map((item) => item.querySelector('.msg-body').textContent));
}

describe('hiding a person on this device', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const people = [];

  async function person(options) {
    const p = await newPerson(browser, options);
    people.push(p);
    return p;
  }

  before(async () => {
    await mkdir(OUT, { recursive: true });
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    for (const { page } of people) assert.deepEqual(page.problems, [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  test('a hidden person is gone from the conversation, on this device only, until shown again', async () => {
    const ann = await person();
    const bob = await person();
    const cleo = await person();
    const code = await createRoom(ann.page, server.url, { name: 'Ann', title: 'Town square', seats: '3' });
    await joinByCode(bob.page, server.url, 'Bob', code);
    await joinByCode(cleo.page, server.url, 'Cleo', code);
    await send(bob.page, 'Buy cheap watches at my site!!!');
    await send(cleo.page, 'Has anyone seen the new park?');
    await waitForMessage(ann.page, 'Has anyone seen the new park?');
    await waitForMessage(ann.page, 'Buy cheap watches at my site!!!');

    // Ann hides Bob from the member list; no button for herself.
    const annSelf = await ann.page.$$eval('#member-list .member .you', (els) => els.length);
    assert.equal(annSelf, 1);
    const ownButton = await ann.page.$$eval('#member-list .member', (items) => items
      .filter((item) => item.querySelector('.you')).map((item) => item.querySelector('.member-hide')));
    assert.deepEqual(ownButton, [null], 'one cannot hide oneself');
    await ann.page.click('#member-list .member-hide[aria-label="Hide messages from Bob"]');
    await ann.page.waitForFunction(() => document.querySelector('#member-list .member.is-hidden .member-hide')
      ?.getAttribute('aria-pressed') === 'true', null, { timeout: TIMEOUT });
    assert.deepEqual(await visibleBodies(ann.page), ['Has anyone seen the new park?']);
    await ann.page.screenshot({ path: path.join(OUT, 'hide-member-list.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(ann.page), [], 'text contrast with a hidden member');

    // What Bob says next, and his typing, do not show for Ann.
    await bob.page.fill('#body', 'still here');
    await waitForText(cleo.page, '#typing', 'Bob is typing…');
    assert.equal(await ann.page.textContent('#typing'), '', 'no typing notice from a hidden person');
    await bob.page.fill('#body', '');
    await send(bob.page, 'Last chance, 90% off!!!');
    await send(cleo.page, 'It opened on Sunday.');
    await waitForMessage(ann.page, 'It opened on Sunday.');
    assert.deepEqual(await visibleBodies(ann.page), ['Has anyone seen the new park?', 'It opened on Sunday.']);
    // Still delivered and kept (the server knows nothing of it): Cleo sees all.
    assert.equal((await messages(ann.page)).length, 4);
    assert.deepEqual(await visibleBodies(cleo.page), [
      'Buy cheap watches at my site!!!', 'Has anyone seen the new park?', 'Last chance, 90% off!!!', 'It opened on Sunday.',
    ]);

    // Kept on this device: after a reload Bob is still hidden.
    await ann.page.reload();
    await waitJoined(ann.page);
    await waitForMessage(ann.page, 'It opened on Sunday.');
    assert.deepEqual(await visibleBodies(ann.page), ['Has anyone seen the new park?', 'It opened on Sunday.']);
    const pressed = await ann.page.getAttribute('#member-list .member-hide[aria-label="Show messages from Bob"]', 'aria-pressed');
    assert.equal(pressed, 'true');

    // Shown again: everything is back, in order.
    await ann.page.click('#member-list .member-hide[aria-label="Show messages from Bob"]');
    await ann.page.waitForFunction(() => document.querySelectorAll('#member-list .member.is-hidden').length === 0,
      null, { timeout: TIMEOUT });
    assert.deepEqual(await visibleBodies(ann.page), [
      'Buy cheap watches at my site!!!', 'Has anyone seen the new park?', 'Last chance, 90% off!!!', 'It opened on Sunday.',
    ]);
    // The button keeps the keyboard focus through the change.
    assert.equal(await ann.page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
      'Hide messages from Bob');
  });
});

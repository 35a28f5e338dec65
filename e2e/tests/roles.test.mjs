// The room's owner in the member list: badges for the owner and
// moderators, the owner's menu to name a moderator and to hand the room
// over, and what every member sees of it.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, systemLines } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { startServer } from '../lib/server.mjs';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/e2e');

/** Each member's name and role badge, as the page lists them. */
function listed(page) {
  return page.$$eval('#member-list .member', (items) => items.map((item) => {
    const name = item.querySelector('.member-name').firstChild.textContent;
    const badge = item.querySelector('.role-badge')?.textContent;
    return badge ? `${name} ${badge}` : name;
  }));
}

async function waitListed(page, expected) {
  await page.waitForFunction((want) => {
    const got = [...document.querySelectorAll('#member-list .member')].map((item) => {
      const name = item.querySelector('.member-name').firstChild.textContent;
      const badge = item.querySelector('.role-badge')?.textContent;
      return badge ? `${name} ${badge}` : name;
    });
    return JSON.stringify(got) === JSON.stringify(want);
  }, expected, { timeout: TIMEOUT });
}

describe('roles in a room', { timeout: 120_000 }, () => {
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

  test('the owner names a moderator and hands the room over from the member list', async () => {
    const ann = await person();
    const bob = await person();
    const code = await createRoom(ann.page, server.url, { name: 'Ann', title: 'Book club', seats: '3' });
    await joinByCode(bob.page, server.url, 'Bob', code);
    await waitListed(ann.page, ['Ann Owner', 'Bob']);
    await waitListed(bob.page, ['Bob', 'Ann Owner']);
    // A plain member has no menu.
    assert.equal(await bob.page.locator('#member-list .member-menu').count(), 0);

    await ann.page.click('#member-list summary[aria-label="Manage Bob"]');
    await ann.page.screenshot({ path: path.join(OUT, 'roles-menu.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(ann.page), [], 'text contrast with the roles menu open');
    await ann.page.getByRole('menuitem', { name: 'Make moderator' }).click();
    await waitListed(ann.page, ['Ann Owner', 'Bob Mod']);
    await waitListed(bob.page, ['Bob Mod', 'Ann Owner']);
    await bob.page.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
      .some((line) => line.textContent === 'You are now a moderator'), null, { timeout: TIMEOUT });

    // Handing over: Bob owns the room, Ann is a moderator, and the menu moves.
    await ann.page.click('#member-list summary[aria-label="Manage Bob"]');
    await ann.page.getByRole('menuitem', { name: 'Make owner (you become a moderator)' }).click();
    await waitListed(bob.page, ['Bob Owner', 'Ann Mod']);
    await waitListed(ann.page, ['Ann Mod', 'Bob Owner']);
    // A moderator has no menu for the owner; the owner has one for Ann.
    assert.equal(await ann.page.locator('#member-list .member-menu').count(), 0);
    assert.equal(await bob.page.locator('#member-list .member-menu').count(), 1);
    const lines = await systemLines(ann.page);
    assert.ok(lines.includes('Bob is now the owner of this room'), lines.join(' | '));
    assert.ok(lines.includes('You are now a moderator'), lines.join(' | '));
    await bob.page.screenshot({ path: path.join(OUT, 'roles-handed-over.png'), animations: 'disabled' });

    // Roles are there after a reload too (from the join).
    await ann.page.reload();
    await waitListed(ann.page, ['Ann Mod', 'Bob Owner']);
    assert.deepEqual(await listed(ann.page), ['Ann Mod', 'Bob Owner']);

    // A third person misbehaves; the moderator removes them from the list.
    const cleo = await person();
    await joinByCode(cleo.page, server.url, 'Cleo', code);
    await waitListed(ann.page, ['Ann Mod', 'Bob Owner', 'Cleo']);
    await ann.page.click('#member-list summary[aria-label="Manage Cleo"]');
    await ann.page.getByRole('menuitem', { name: 'Remove from the room for 10 minutes' }).click();
    await waitListed(ann.page, ['Ann Mod', 'Bob Owner']);
    await bob.page.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
      .some((line) => line.textContent === 'Cleo was removed from the room'), null, { timeout: TIMEOUT });
    await cleo.page.waitForFunction(() => document.body.textContent
      .includes('You were removed from this room by its owner or a moderator.'), null, { timeout: TIMEOUT });
    await cleo.page.screenshot({ path: path.join(OUT, 'kicked.png'), animations: 'disabled' });

    // The owner locks the room: the badge shows for everyone, newcomers are turned away.
    assert.equal(await ann.page.isVisible('#lock-toggle'), true, 'a moderator has the control');
    await bob.page.click('#lock-toggle');
    await bob.page.waitForFunction(() => document.getElementById('lock-toggle').textContent === 'Unlock the room',
      null, { timeout: TIMEOUT });
    await ann.page.waitForFunction(() => !document.getElementById('locked-badge').hidden, null, { timeout: TIMEOUT });
    await ann.page.screenshot({ path: path.join(OUT, 'locked.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(ann.page), [], 'text contrast of a locked room');
    const dana = await person();
    await dana.page.goto(`${server.url}/`);
    await dana.page.fill('#name', 'Dana');
    await dana.page.fill('#code', code);
    await dana.page.click('#join-submit');
    await dana.page.waitForFunction(() => document.body.textContent.includes('is locked: nobody new may join'),
      null, { timeout: TIMEOUT });
    // Unlocked again: Dana comes in.
    await bob.page.click('#lock-toggle');
    await ann.page.waitForFunction(() => document.getElementById('locked-badge').hidden, null, { timeout: TIMEOUT });
  });
});

// The owner's moderation controls: mute and ban from the member list, the
// list of bans and mutes with a way to lift each, slow mode and renaming
// the room, and what the other members see of each.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, send, systemLines, waitForMessage, waitForText } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { browserSuite, OUT } from '../lib/suite.mjs';

/** Waits until the page shows a system line `text`. */
async function waitSystem(page, text) {
  await page.waitForFunction((want) => [...document.querySelectorAll('#messages .system')]
    .some((line) => line.textContent === want), text, { timeout: TIMEOUT });
}

/** Opens the owner's menu for `name` and picks `item`. */
async function pick(page, name, item) {
  await page.click(`#member-list summary[aria-label="Manage ${name}"]`);
  await page.getByRole('menuitem', { name: item, exact: true }).click();
}

describe('moderating a room', { timeout: 120_000 }, () => {
  const suite = browserSuite();
  const person = (options) => suite.person(options);

  test('the owner mutes, sets slow mode, renames, bans and lifts', async () => {
    const ann = await person({ colorScheme: 'light' });
    const bob = await person();
    const cleo = await person();
    const code = await createRoom(ann.page, suite.server.url, { name: 'Ann', title: 'Garden club', seats: '4' });
    await joinByCode(bob.page, suite.server.url, 'Bob', code);
    await joinByCode(cleo.page, suite.server.url, 'Cleo', code);
    // The controls are the owner's: a plain member has none.
    assert.equal(await bob.page.isVisible('#slow-select'), false);
    assert.equal(await ann.page.isVisible('#slow-select'), true);

    // Muted: Bob is told, his post is refused with the reason, and the
    // owner sees the badge and the entry with its Lift button.
    await pick(ann.page, 'Bob', 'Mute');
    await waitSystem(bob.page, 'You were muted by Ann');
    await waitSystem(cleo.page, 'Bob was muted by Ann');
    await ann.page.waitForFunction(() => document.querySelector('#ban-list')?.textContent.includes('Muted by Ann'),
      null, { timeout: TIMEOUT });
    await send(bob.page, 'can anyone hear me');
    await waitForMessage(bob.page, 'can anyone hear me', 'failed');
    const note = await bob.page.textContent('#messages .msg[data-state="failed"]');
    assert.match(note, /you are muted in room/);
    await ann.page.screenshot({ path: path.join(OUT, 'moderation-muted.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(ann.page), [], 'text contrast of the moderation controls');
    await ann.page.getByRole('button', { name: 'Lift' }).click();
    await waitSystem(bob.page, 'You were let speak again by Ann');
    await send(bob.page, 'back again');
    await waitForMessage(cleo.page, 'back again');

    // Shadow-muted: Bob sees his own message as sent; nobody else sees it,
    // nor hears of the mute; the owner sees it in the list.
    const toldBefore = (await systemLines(bob.page)).filter((l) => l.includes('muted')).length;
    await pick(ann.page, 'Bob', 'Shadow-mute (their messages reach only them)');
    await ann.page.waitForFunction(() => document.querySelector('#ban-list')?.textContent.includes('Shadow-muted by Ann'),
      null, { timeout: TIMEOUT });
    await send(bob.page, 'into the void');
    await waitForMessage(bob.page, 'into the void', 'sent');
    await send(ann.page, 'after the void');
    await waitForMessage(cleo.page, 'after the void');
    assert.equal(await cleo.page.locator('#messages .msg', { hasText: 'into the void' }).count(), 0);
    const toldAfter = (await systemLines(bob.page)).filter((l) => l.includes('muted')).length;
    assert.equal(toldAfter, toldBefore, 'Bob is not told');
    await ann.page.screenshot({ path: path.join(OUT, 'moderation-shadow-muted.png'), animations: 'disabled' });
    await ann.page.getByRole('button', { name: 'Lift' }).click();
    await ann.page.waitForFunction(() => document.getElementById('bans-box').hidden, null, { timeout: TIMEOUT });

    // Slow mode: a badge for everyone; Bob's second message waits its turn.
    await ann.page.selectOption('#slow-select', '30');
    await waitForText(cleo.page, '#slow-badge', 'Slow mode: 30 seconds');
    await waitSystem(bob.page, 'Ann turned slow mode on: one message every 30 seconds');
    await send(bob.page, 'first under slow mode');
    await waitForMessage(cleo.page, 'first under slow mode');
    await send(bob.page, 'second under slow mode');
    await waitForMessage(bob.page, 'second under slow mode', 'pending');
    await cleo.page.screenshot({ path: path.join(OUT, 'moderation-slow-dark.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(cleo.page), [], 'text contrast with the slow mode badge, dark');
    // Turned off: the waiting message goes out at once.
    await ann.page.selectOption('#slow-select', '0');
    await cleo.page.waitForFunction(() => document.getElementById('slow-badge').hidden, null, { timeout: TIMEOUT });
    await waitForMessage(cleo.page, 'second under slow mode');
    await waitForMessage(bob.page, 'second under slow mode', 'sent');

    // Deleted: by its author, and by the owner; a tombstone for everyone.
    await send(bob.page, 'buy cheap pills');
    await waitForMessage(cleo.page, 'buy cheap pills');
    const spam = ann.page.locator('#messages .msg', { hasText: 'buy cheap pills' });
    await spam.hover();
    await spam.getByRole('button', { name: 'Delete this message from Bob' }).click();
    await spam.locator('form').getByRole('button', { name: 'Delete' }).click();
    for (const page of [ann.page, bob.page, cleo.page]) {
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .msg[data-deleted="true"] .tombstone')]
        .some((t) => t.textContent === 'This message was deleted'), null, { timeout: TIMEOUT });
    }
    assert.equal(await cleo.page.locator('#messages .msg', { hasText: 'buy cheap pills' }).count(), 0);
    // A plain member has no Delete for someone else's message.
    const annsLine = await ann.page.locator('#messages .msg').count();
    assert.ok(annsLine > 0);
    assert.equal(await cleo.page.locator('#messages .msg', { hasText: 'back again' })
      .getByRole('button', { name: /Delete/ }).isVisible(), false);
    const own = bob.page.locator('#messages .msg', { hasText: 'back again' });
    await own.hover();
    await own.getByRole('button', { name: 'Delete your message' }).click();
    await bob.page.screenshot({ path: path.join(OUT, 'moderation-delete-confirm-dark.png'), animations: 'disabled' });
    await own.locator('form').getByRole('button', { name: 'Delete' }).click();
    await cleo.page.waitForFunction(() => document.querySelectorAll('#messages .msg[data-deleted="true"]').length === 2,
      null, { timeout: TIMEOUT });
    await cleo.page.screenshot({ path: path.join(OUT, 'moderation-deleted-dark.png'), animations: 'disabled' });

    // Renamed: every page's heading follows.
    await ann.page.fill('#title-input', 'Allotment society');
    await ann.page.click('#title-form button[type="submit"]');
    await waitForText(bob.page, '#room-title', 'Allotment society');
    await waitSystem(cleo.page, 'Ann renamed the room “Allotment society”');

    // Banned: Cleo's page says so; she is listed, and lifted again.
    await pick(ann.page, 'Cleo', 'Ban from the room');
    await cleo.page.waitForFunction(() => document.body.textContent
      .includes('You were banned from this room by its owner or a moderator.'), null, { timeout: TIMEOUT });
    await waitSystem(bob.page, 'Cleo was banned from the room');
    await ann.page.waitForFunction(() => document.querySelector('#ban-list')?.textContent.includes('Banned by Ann'),
      null, { timeout: TIMEOUT });
    await cleo.page.screenshot({ path: path.join(OUT, 'moderation-banned-dark.png'), animations: 'disabled' });
    await ann.page.screenshot({ path: path.join(OUT, 'moderation-bans.png'), animations: 'disabled' });
    await ann.page.getByRole('button', { name: 'Lift' }).click();
    await ann.page.waitForFunction(() => document.getElementById('bans-box').hidden, null, { timeout: TIMEOUT });
    await cleo.page.reload();
    await waitForText(cleo.page, '#room-title', 'Allotment society');
    const lines = await systemLines(ann.page);
    assert.ok(lines.includes('Bob was let speak again by Ann'), lines.join(' | '));
  });
});

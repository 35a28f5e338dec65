// Staying the same person across a refresh, a second tab and a network drop.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, newTab } from '../lib/browser.mjs';
import {
  createRoom, joinByCode, messages, send, systemLines, waitForMessage, waitForText, waitJoined,
} from '../lib/chat.mjs';
import { startServer } from '../lib/server.mjs';

describe('reconnecting and resuming', { timeout: 120_000 }, () => {
  let server;
  let browser;
  let ann;
  let bob;
  let code;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    ann = await newPerson(browser);
    bob = await newPerson(browser);
    // Two seats: a refresh that came back as a new user would be refused.
    code = await createRoom(ann.page, server.url, { name: 'Ann', seats: '2' });
    await joinByCode(bob.page, server.url, 'Bob', code);
    await send(bob.page, 'before the refresh');
    await waitForMessage(ann.page, 'before the refresh');
  });

  after(async () => {
    for (const { page } of [ann, bob]) assert.deepEqual(page?.problems ?? [], [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  test('a refresh keeps the same user, with no ghost and no join or leave', async () => {
    const session = await bob.page.evaluate(() => localStorage.getItem('confab.session'));
    assert.ok(session, 'the session is kept in localStorage');

    await bob.page.reload();
    await waitJoined(bob.page);
    assert.equal(await bob.page.evaluate(() => localStorage.getItem('confab.session')), session);

    // Bob's earlier message is still his own: same user id.
    const [earlier] = await messages(bob.page);
    assert.deepEqual([earlier.body, earlier.own], ['before the refresh', true]);
    const names = await bob.page.$$eval('#member-list .member-name', (els) => els.map((el) => el.textContent));
    assert.deepEqual(names, ['Bob (you)', 'Ann']);

    // Anything Ann would have seen about the refresh reaches her before this.
    await send(bob.page, 'after the refresh');
    await waitForMessage(ann.page, 'after the refresh');
    assert.deepEqual(await systemLines(ann.page), ['Bob joined']);
    await waitForText(ann.page, '#seats-text', '2 / 2');
    const annMembers = await ann.page.$$eval('#member-list .member', (els) => els.length);
    assert.equal(annMembers, 2);
  });

  test('two tabs of one browser are one member', async () => {
    const second = await newTab(bob.context);
    await second.goto(`${server.url}/r/${code}`);
    await waitJoined(second);
    await waitForText(second, '#seats-text', '2 / 2');

    await send(second, 'from the second tab');
    await waitForMessage(ann.page, 'from the second tab');
    // The first tab shows it as Bob's own message too.
    await waitForMessage(bob.page, 'from the second tab', 'sent');
    const inFirstTab = (await messages(bob.page)).find((m) => m.body === 'from the second tab');
    assert.equal(inFirstTab.own, true);

    assert.deepEqual(await systemLines(ann.page), ['Bob joined']);
    assert.deepEqual(second.problems, []);
    await second.close();
  });

  test('a network drop and return delivers the missed messages exactly once, in order', async () => {
    const joins = [];
    bob.page.on('websocket', (socket) => socket.on('framesent', ({ payload }) => {
      const frame = JSON.parse(payload);
      if (frame.op === 'join') joins.push(frame);
    }));
    const lastSeen = Math.max(...(await messages(bob.page)).map((m) => m.seq));

    await bob.context.setOffline(true);
    await bob.page.waitForSelector('#conn[data-state="offline"]');
    await bob.page.waitForSelector('#banner:not([hidden])');

    const missed = ['missed one', 'missed two', 'missed three'];
    for (const body of missed) {
      await send(ann.page, body);
      await waitForMessage(ann.page, body, 'sent');
    }
    // Written while offline: queued as pending, sent on return.
    await send(bob.page, 'written offline');
    await waitForMessage(bob.page, 'written offline', 'pending');
    assert.equal(await bob.page.isDisabled('#send'), true, 'the send button is disabled while offline');

    await bob.context.setOffline(false);
    await waitJoined(bob.page);
    await waitForMessage(bob.page, 'missed three');
    await waitForMessage(bob.page, 'written offline', 'sent');
    await waitForMessage(ann.page, 'written offline');
    await bob.page.waitForSelector('#banner', { state: 'hidden' });

    // The rejoin asked only for what came after the last message seen.
    assert.equal(joins.length, 1);
    assert.equal(joins[0].since, lastSeen);

    const shown = await messages(bob.page);
    const bodies = shown.map((m) => m.body);
    assert.deepEqual(bodies, [
      'before the refresh', 'after the refresh', 'from the second tab',
      ...missed, 'written offline',
    ]);
    const seqs = shown.map((m) => m.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'in seq order');
    assert.equal(new Set(seqs).size, seqs.length, 'each message once');
    assert.equal((await messages(ann.page)).filter((m) => m.body === 'written offline').length, 1);
    assert.deepEqual(await systemLines(ann.page), ['Bob joined'], 'a short drop is not a leave');
  });
});

// Where WebSockets are blocked the page falls back to long-polling, chats
// with people on real WebSockets, and moves back to a WebSocket as soon as
// one gets through, without losing or repeating anything.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson } from '../lib/browser.mjs';
import {
  createRoom, joinByCode, messages, send, systemLines, waitForMessage, waitForText, waitJoined,
} from '../lib/chat.mjs';
import { startServer } from '../lib/server.mjs';

/** Longer than the longest wait between two WebSocket attempts while long-polling (30 s). */
const SWITCH_TIMEOUT = 45_000;

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('chatting where WebSockets are blocked', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let ann;
  let bob;
  let code;
  // Ann's network: WebSockets are cut as they open, until `blocked` is false.
  let blocked = true;
  let socketsThrough = 0;
  // Ann's long-poll requests, as "METHOD /path".
  const polling = [];

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    ann = await newPerson(browser);
    bob = await newPerson(browser);
    await ann.context.routeWebSocket(/\/ws$/, (socket) => {
      if (blocked) {
        socket.close();
      } else {
        socket.connectToServer();
        socketsThrough++;
      }
    });
    ann.page.on('request', (request) => {
      const { pathname } = new URL(request.url());
      if (pathname.startsWith('/lp')) polling.push(`${request.method()} ${pathname}`);
    });
  });

  after(async () => {
    for (const { page } of [ann, bob]) assert.deepEqual(page?.problems ?? [], [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  test('the page falls back to long-polling and chats with a WebSocket user', async () => {
    code = await createRoom(bob.page, server.url, { name: 'Bob', seats: '2' });
    await joinByCode(ann.page, server.url, 'Ann', code);
    assert.ok(polling.includes('POST /lp'), 'a long-poll connection was opened');
    assert.ok(polling.some((r) => r.startsWith('GET /lp/')), 'and polled');
    assert.equal(socketsThrough, 0);
    await waitForText(bob.page, '#seats-text', '2 / 2');

    await send(ann.page, 'hello over long-polling');
    await waitForMessage(ann.page, 'hello over long-polling', 'sent');
    await waitForMessage(bob.page, 'hello over long-polling');
    await send(bob.page, 'hello over a websocket');
    await waitForMessage(ann.page, 'hello over a websocket');

    await ann.page.fill('#body', 'typing');
    await waitForText(bob.page, '#typing', 'Ann is typing…');
    await ann.page.fill('#body', '');

    assert.deepEqual(await systemLines(bob.page), ['Ann joined']);
  });

  test('the page moves back to a WebSocket once one gets through, losing and repeating nothing', async () => {
    blocked = false;
    // The page tries a WebSocket now and then; once one carries a frame it
    // closes the long-poll connection. Bob keeps talking meanwhile, so some
    // of his messages arrive around the switch.
    const switched = () => polling.some((r) => r.startsWith('DELETE /lp/'));
    const deadline = Date.now() + SWITCH_TIMEOUT;
    let ticks = 0;
    while (!switched()) {
      assert.ok(Date.now() < deadline, `no switch back to a WebSocket within ${SWITCH_TIMEOUT} ms`);
      ticks++;
      await send(bob.page, `tick ${ticks}`);
      await waitForMessage(bob.page, `tick ${ticks}`, 'sent');
      await pause(700);
    }
    assert.ok(socketsThrough >= 1);
    await send(bob.page, 'right after the switch');
    await waitJoined(ann.page);
    await waitForMessage(ann.page, 'right after the switch');

    const pollsBefore = polling.filter((r) => r.startsWith('GET ')).length;
    await send(ann.page, 'over a websocket now');
    await waitForMessage(bob.page, 'over a websocket now');
    await send(bob.page, 'and back');
    await waitForMessage(ann.page, 'and back');
    assert.equal(polling.filter((r) => r.startsWith('GET ')).length, pollsBefore, 'no more polling');

    // Every message once, in order, the same on both sides.
    const seen = await messages(ann.page);
    const expected = [
      'hello over long-polling', 'hello over a websocket',
      ...Array.from({ length: ticks }, (_, i) => `tick ${i + 1}`),
      'right after the switch', 'over a websocket now', 'and back',
    ];
    assert.deepEqual(seen.map((m) => m.body), expected);
    assert.deepEqual(seen.map((m) => m.seq), expected.map((_, i) => i + 1));
    assert.deepEqual((await messages(bob.page)).map((m) => m.body), expected);
    // The switch was a reconnect within grace: nobody saw Ann leave.
    assert.deepEqual(await systemLines(bob.page), ['Ann joined']);
  });
});

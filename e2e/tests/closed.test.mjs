// What a person sees when the server goes away under an open room, and
// that the page comes back by itself when it returns.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TIMEOUT, launchBrowser, newPerson } from '../lib/browser.mjs';
import { createRoom, send, waitForMessage, waitJoined } from '../lib/chat.mjs';
import { startServer } from '../lib/server.mjs';

describe('a server that stops under an open room', { timeout: 90_000 }, () => {
  let server;
  let browser;
  let ann;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
    ann = await newPerson(browser);
  });

  after(async () => {
    assert.deepEqual(ann?.page.problems ?? [], [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
  });

  test('the room says the server is restarting, and the composer waits', async () => {
    // A persistent room, so that it is still there when the server is back.
    await createRoom(ann.page, server.url, { name: 'Ann', seats: '2', retention: 'persistent' });
    await send(ann.page, 'still here');
    await waitForMessage(ann.page, 'still here', 'sent');

    await server.halt();
    await ann.page.waitForFunction(() => {
      const banner = document.getElementById('banner');
      return !banner.hidden && document.getElementById('banner-text').textContent.includes('restarting');
    }, null, { timeout: TIMEOUT });
    const state = await ann.page.evaluate(() => document.getElementById('conn').dataset.state);
    assert.notEqual(state, 'connected', 'the connection indicator no longer says connected');
    // What was said before stays on screen.
    await waitForMessage(ann.page, 'still here', 'sent');
  });

  test('the page comes back by itself when the server does', async () => {
    await server.restart();
    // The next attempt comes at the end of the backoff (at most 15 s, with
    // jitter), without anybody touching the page.
    await ann.page.waitForFunction(() => document.getElementById('conn').dataset.state === 'connected'
      && document.getElementById('banner').hidden, null, { timeout: 25_000 });
    await waitJoined(ann.page);
    await send(ann.page, 'back again');
    await waitForMessage(ann.page, 'back again', 'sent');
  });
});

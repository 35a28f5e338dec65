// The history page lists this browser's own posts, and says clearly when
// the server cannot.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, TIMEOUT } from '../lib/browser.mjs';
import { joinByCode, send, waitForMessage } from '../lib/chat.mjs';
import { startServer } from '../lib/server.mjs';

async function openHistory(page, base) {
  await page.goto(`${base}/history`);
  await page.waitForFunction(() => document.getElementById('history').getAttribute('aria-busy') === 'false',
    null, { timeout: TIMEOUT });
}

describe('history', { timeout: 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  test('my messages lists what this browser posted, newest first', async () => {
    const { page } = await newPerson(browser);
    await joinByCode(page, server.url, 'Hana', 'main');
    await send(page, 'A post for the record');
    await send(page, '<i>and</i> a second one');
    await waitForMessage(page, '<i>and</i> a second one', 'sent');

    await openHistory(page, server.url);
    const bodies = await page.$$eval('.history-item .history-body', (els) => els.map((el) => el.textContent));
    assert.deepEqual(bodies, ['<i>and</i> a second one', 'A post for the record']);
    assert.equal(await page.getAttribute('.history-item a', 'href'), '/r/main');
    assert.equal(await page.$('.history-item i'), null, 'bodies are text');
    assert.deepEqual(page.problems, []);
  });

  test('an error from the server is shown as a sentence', async () => {
    const { page } = await newPerson(browser);
    // Stand in for a server without message storage: answer `mine` with an error.
    await page.routeWebSocket(/\/ws$/, (socket) => {
      const upstream = socket.connectToServer();
      socket.onMessage((text) => {
        const frame = JSON.parse(text);
        if (frame.op === 'mine') {
          socket.send(JSON.stringify({
            re: frame.id, ok: false, error: { code: 'unavailable', message: 'message storage is not configured' },
          }));
        } else {
          upstream.send(text);
        }
      });
    });
    await openHistory(page, server.url);
    const text = await page.textContent('.history-error');
    assert.match(text, /not available/);
    assert.match(text, /message storage is not configured/);
    assert.equal(await page.isHidden('#history-list'), true);
    assert.deepEqual(page.problems, []);
  });
});

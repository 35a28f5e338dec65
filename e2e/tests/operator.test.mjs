// The operator's actions as the people in a room see them: a notice, a
// user's messages purged, and the room closed under them.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, send, waitForMessage, waitForText } from '../lib/chat.mjs';
import { browserSuite, OUT } from '../lib/suite.mjs';

const TOKEN = 'an-operator-token-for-the-browser-test';

describe('the operator', { timeout: 120_000 }, () => {
  const suite = browserSuite(['--admin-token', TOKEN]);
  const person = (options) => suite.person(options);

  /** One call of the operator's API. */
  async function api(method, route, body) {
    const response = await fetch(`${suite.server.url}/admin/v1/${route}`, {
      method,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: body ? JSON.stringify(body) : undefined,
    });
    assert.equal(response.status, 200, `${method} ${route}`);
    return response.json();
  }

  test('a notice, a purge and a closed room reach the page', async () => {
    const ann = await person();
    const bob = await person({ colorScheme: 'light' });
    const code = await createRoom(ann.page, suite.server.url, { name: 'Ann', title: 'Night shift', seats: '3' });
    await joinByCode(bob.page, suite.server.url, 'Bob', code);
    await send(bob.page, 'visit my shady site');
    await send(ann.page, 'please do not');
    await waitForMessage(ann.page, 'visit my shady site');

    await api('POST', 'announce', { text: 'Maintenance at 22:00 UTC' });
    for (const page of [ann.page, bob.page]) {
      await page.waitForFunction(() => [...document.querySelectorAll('#messages .system')]
        .some((line) => line.textContent === 'From the operator: Maintenance at 22:00 UTC'), null, { timeout: TIMEOUT });
    }

    const { members } = await api('GET', `rooms/${code}`);
    const bobId = members.find((m) => m.name === 'Bob').id;
    await api('POST', `users/${bobId}/purge`);
    await ann.page.waitForFunction(() => document.querySelectorAll('#messages .msg[data-deleted="true"]').length === 1,
      null, { timeout: TIMEOUT });
    assert.equal(await ann.page.locator('#messages .msg', { hasText: 'visit my shady site' }).count(), 0);
    await waitForMessage(ann.page, 'please do not');
    await bob.page.screenshot({ path: path.join(OUT, 'operator-notice-purge.png'), animations: 'disabled' });

    // The defensive mode: a new visitor's page solves the puzzle and comes in.
    await api('POST', 'defense', { bits: 12 });
    const cleo = await person();
    await joinByCode(cleo.page, suite.server.url, 'Cleo', code);
    await waitForText(cleo.page, '#conn-label', 'Connected');
    await api('POST', 'defense', { bits: 0 });

    await api('POST', `rooms/${code}/close`);
    await ann.page.waitForFunction(() => document.body.textContent
      .includes('The operator of this server closed this room.'), null, { timeout: TIMEOUT });
    await ann.page.screenshot({ path: path.join(OUT, 'operator-closed-dark.png'), animations: 'disabled' });
  });
});

// A room's integrations: the owner makes one in the room's controls and
// sees its token and webhook URL once; a program posts through the
// Slack-compatible webhook and through the HTTP API with the token; the
// members see its messages marked as a bot's; revoked, the token is
// refused. Nobody but the owner sees the panel, and an ephemeral room says
// integrations need a persistent one. Screenshots, dark and light, desktop
// and phone.

import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { PHONE, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, waitForMessage, waitJoined } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { browserSuite, OUT } from '../lib/suite.mjs';

const SCHEMES = ['dark', 'light'];
const PHONE_OPTIONS = { viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

/** Waits until `fn(arg)` is true in the page. */
function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: TIMEOUT });
}

/** The message item whose body is `text`. */
function item(page, text) {
  return page.locator('#messages .msg', { has: page.locator('.msg-body', { hasText: text }) });
}

/** The names in the owner's list of integrations. */
function listed(page) {
  return page.$$eval('#integration-list .integration-name', (names) => names.map((n) => n.textContent));
}

/** Makes an integration named `name` from the owner's panel; resolves to the token and webhook URL shown. */
async function make(page, name) {
  await page.fill('#integrate-name', name);
  await page.click('#integrate-submit');
  await until(page, (want) => document.getElementById('integration-made-title')?.textContent === `${want} is ready`, name);
  await until(page, (want) => [...document.querySelectorAll('#integration-list .integration-name')]
    .some((n) => n.textContent === want), name);
  return {
    token: await page.textContent('#integration-token'),
    hook: await page.textContent('#integration-hook'),
    curl: await page.textContent('#integration-curl'),
  };
}

/** Opens the member drawer on a phone and brings `selector` into view. */
async function openDrawer(page, selector) {
  await page.click('#members-toggle');
  await page.locator(selector).scrollIntoViewIfNeeded();
}

describe('integrations', { timeout: 150_000 }, () => {
  const suite = browserSuite();

  /** Screenshots of `page` in both schemes as `integrations-<name>-<scheme>-<kind>.png`, and their text contrast. */
  async function capture(page, name, kind) {
    for (const scheme of SCHEMES) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: path.join(OUT, `integrations-${name}-${scheme}-${kind}.png`), animations: 'disabled' });
      assert.deepEqual(await contrastFailures(page), [], `text contrast of ${name}, ${scheme}, ${kind}`);
    }
    await page.emulateMedia({ colorScheme: 'dark' });
  }

  test('the owner makes an integration, a program posts as a bot, and revoked its token is refused', async () => {
    const base = suite.server.url;
    const { page: ann } = await suite.person();
    const { page: bob } = await suite.person();
    const code = await createRoom(ann, base, { name: 'Ann', title: 'Releases', seats: 'any', retention: 'persistent' });
    await joinByCode(bob, base, 'Bob', code);

    // The panel is the owner's: a member has none.
    await until(ann, () => !document.getElementById('integrations').hidden
      && document.getElementById('integration-list').childElementCount === 0);
    assert.equal(await bob.isVisible('#integrations'), false);
    assert.equal(await bob.locator('#integrate-form').count(), 1, 'the form is on the page, hidden');

    // Made: the token and the webhook URL, shown once, with a curl line.
    const { token, hook, curl } = await make(ann, 'CI');
    assert.match(token, /^i_[A-Za-z0-9]+\.[A-Za-z0-9]+$/);
    assert.equal(hook, `${base}/api/v1/hooks/${token}`);
    assert.equal(curl, `curl -X POST -H 'Content-Type: application/json' -d '{"text":"hello"}' ${hook}`);
    assert.match(await ann.textContent('#integration-made'), /Shown once — copy it now/);
    assert.match(await ann.textContent('#integration-list .integration'), /CI\s*Post, Read · made /);
    await ann.locator('#integration-made').scrollIntoViewIfNeeded();
    await capture(ann, 'token', 'desktop');

    // A second name like the first is refused, inline; a name is needed.
    await ann.fill('#integrate-name', 'ci');
    await ann.click('#integrate-submit');
    await until(ann, () => /named ci already/.test(document.getElementById('integrate-error').textContent));
    await ann.fill('#integrate-name', '');
    await ann.click('#integrate-submit');
    await until(ann, () => document.getElementById('integrate-error').textContent === 'Give the bot a name first.');
    assert.equal(await ann.getAttribute('#integrate-name', 'aria-invalid'), 'true');
    // The token is still shown until the owner is done with it.
    assert.equal(await ann.textContent('#integration-token'), token);

    // The incoming webhook, as Slack's: {"text"}, answered "ok".
    const hooked = await fetch(hook, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'Build 41 passed on main' }),
    });
    assert.equal(hooked.status, 200, await hooked.clone().text());
    assert.equal(await hooked.text(), 'ok');
    await waitForMessage(bob, 'Build 41 passed on main');

    // The HTTP API with the bearer token.
    const api = `${base}/api/v1/rooms/${encodeURIComponent(code)}/messages`;
    const posted = await fetch(api, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ body: 'Deployed **v1.2** to staging', cid: 'deploy-1' }),
    });
    assert.equal(posted.status, 201, await posted.clone().text());
    const { message } = await posted.json();
    assert.equal(message.bot, true);
    assert.equal(message.from.name, 'CI');
    await waitForMessage(bob, 'Deployed v1.2 to staging');
    const history = await fetch(`${api}?limit=5`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(history.status, 200);

    // Marked: a Bot badge by the name, for the members and the owner alike,
    // and none on a person's message.
    for (const page of [bob, ann]) {
      const msg = item(page, 'Build 41 passed on main');
      await msg.waitFor();
      assert.equal(await msg.locator('.msg-from').textContent(), 'CI');
      assert.equal(await msg.locator('.bot-badge').textContent(), 'Bot(a bot)');
      assert.equal(await msg.locator('.bot-badge [aria-hidden="true"]').textContent(), 'Bot');
      assert.equal(await msg.locator('.bot-badge').isVisible(), true);
    }
    assert.equal(await bob.locator('#messages .msg.bot').count(), 2);
    // While it posts, the bot is a member, marked in the list too.
    await until(bob, () => [...document.querySelectorAll('#member-list .member')].some((m) =>
      m.querySelector('.member-name').textContent === 'CI' && m.querySelector('.role-badge.bot')?.textContent === 'Bot'));
    await ann.fill('#body', 'Thanks, bot');
    await ann.press('#body', 'Enter');
    await waitForMessage(bob, 'Thanks, bot');
    assert.equal(await item(bob, 'Thanks, bot').locator('.bot-badge').count(), 0);
    await capture(bob, 'bot-message', 'desktop');

    // On a phone: Bob's messages, and Ann's panel in the drawer, where she
    // makes another one.
    const { page: bobPhone } = await suite.person({ ...PHONE_OPTIONS, storageState: await bob.context().storageState() });
    await bobPhone.goto(`${base}/r/${code}`);
    await waitJoined(bobPhone);
    await waitForMessage(bobPhone, 'Deployed v1.2 to staging');
    // The second is grouped under the first, with its name and badge.
    assert.equal(await item(bobPhone, 'Build 41 passed on main').locator('.bot-badge').isVisible(), true);
    await capture(bobPhone, 'bot-message', 'phone');
    const { page: annPhone } = await suite.person({ ...PHONE_OPTIONS, storageState: await ann.context().storageState() });
    await annPhone.goto(`${base}/r/${code}`);
    await waitJoined(annPhone);
    await openDrawer(annPhone, '#integrate-form');
    await until(annPhone, () => document.querySelectorAll('#integration-list .integration').length === 1);
    const deploy = await make(annPhone, 'Deploy bot');
    assert.notEqual(deploy.token, token);
    await annPhone.locator('#integration-made').scrollIntoViewIfNeeded();
    await capture(annPhone, 'token', 'phone');
    // Done: the token leaves the page.
    await annPhone.getByRole('button', { name: 'Done: I have copied them' }).click();
    assert.equal(await annPhone.locator('#integration-token').count(), 0);
    await annPhone.close();

    // Ann's desktop tab, looked at again, lists the one made on the phone.
    // (Headless, a tab is not focused by bringing it to the front: it is told.)
    await ann.evaluate(() => window.dispatchEvent(new Event('focus')));
    await until(ann, () => document.querySelectorAll('#integration-list .integration').length === 2);

    // Revoked, after a confirmation (Cancel first leaves it be).
    await ann.click('#integration-list button[aria-label="Revoke CI"]');
    assert.match(await ann.textContent('.integration-confirm'), /Revoke CI\? Programs using its token stop working at once\./);
    await ann.locator('#integration-list').scrollIntoViewIfNeeded();
    await capture(ann, 'revoke-confirm', 'desktop');
    await ann.locator('.integration', { hasText: 'CI' }).getByRole('button', { name: 'Cancel' }).click();
    assert.deepEqual(await listed(ann), ['CI', 'Deploy bot']);
    await ann.click('#integration-list button[aria-label="Revoke CI"]');
    await ann.locator('.integration', { hasText: 'CI' }).getByRole('button', { name: 'Revoke', exact: true }).click();
    await until(ann, () => [...document.querySelectorAll('#integration-list .integration-name')]
      .map((n) => n.textContent).join() === 'Deploy bot');
    // Its token was the one shown: gone from the page too.
    assert.equal(await ann.locator('#integration-token').count(), 0);

    const refusedHook = await fetch(hook, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'after the revoke' }),
    });
    assert.equal(refusedHook.status, 401);
    const refusedApi = await fetch(api, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ body: 'after the revoke' }),
    });
    assert.equal(refusedApi.status, 401);
    // The other one still works.
    const other = await fetch(`${base}${new URL(deploy.hook).pathname}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'Deploy bot reporting' }),
    });
    assert.equal(other.status, 200);
    await waitForMessage(bob, 'Deploy bot reporting');
    assert.equal(await bob.locator('#messages .msg-body', { hasText: 'after the revoke' }).count(), 0);
  });

  test('an ephemeral room says integrations need a persistent one', async () => {
    const { page: cleo } = await suite.person({ colorScheme: 'light' });
    await createRoom(cleo, suite.server.url, { name: 'Cleo', title: 'Quick chat' });
    await until(cleo, () => !document.getElementById('integrations').hidden);
    assert.equal(await cleo.isVisible('#integrations-ephemeral'), true);
    assert.equal(await cleo.isVisible('#integrate-form'), false);
    assert.match(await cleo.textContent('#integrations-ephemeral'), /need a persistent room/);
  });
});

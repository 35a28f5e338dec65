// A room's outgoing webhooks: the owner adds one in the room's controls,
// pointing at a real HTTP receiver this test runs, and sees its signing
// secret once; a member's message reaches the receiver, signed as the
// test checks with the secret read off the page; removed, a webhook is
// sent nothing more while another one still is. The server's refusals (a
// URL that is not http, a private address on a server that forbids them)
// show inline. Nobody but the owner sees the section, and an ephemeral
// room says webhooks need a persistent one. Screenshots, dark and light,
// desktop and phone.

import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PHONE, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, send, waitForMessage, waitJoined } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { startServer } from '../lib/server.mjs';
import { browserSuite, OUT } from '../lib/suite.mjs';

const SCHEMES = ['dark', 'light'];
const PHONE_OPTIONS = { viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };
// How long a removed webhook is watched, after the one still there got
// the same event, for a delivery that should never come.
const QUIET_MS = 1_000;

/** Waits until `fn(arg)` is true in the page. */
function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: TIMEOUT });
}

/**
 * An HTTP receiver on a free loopback port that answers 200 to every POST
 * and records it: `{ path, headers, raw, body }`. `url(path)` is where it
 * listens; `next(test)` resolves to the first delivery (recorded or still
 * to come) that passes `test`.
 */
async function startReceiver() {
  const received = [];
  const waiting = new Set();
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body = null;
      try {
        body = JSON.parse(raw);
      } catch {
        // Kept as it came: a test asserting on `body` says what is wrong.
      }
      const delivery = { method: req.method, path: req.url, headers: req.headers, raw, body };
      received.push(delivery);
      res.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok');
      for (const waiter of waiting) waiter(delivery);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    received,
    url: (where) => `http://127.0.0.1:${port}${where}`,
    next(accept, what = 'a delivery') {
      const found = received.find(accept);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(waiter);
          reject(new Error(`no ${what} within ${TIMEOUT} ms; received ${JSON.stringify(received.map((d) => [d.path, d.body?.type]))}`));
        }, TIMEOUT);
        const waiter = (delivery) => {
          if (!accept(delivery)) return;
          clearTimeout(timer);
          waiting.delete(waiter);
          resolve(delivery);
        };
        waiting.add(waiter);
      });
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(resolve);
    }),
  };
}

/** Whether `delivery` is signed with `secret` as Standard Webhooks says: v1, HMAC-SHA256 of "id.timestamp.body". */
function signedWith(delivery, secret) {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  const id = delivery.headers['webhook-id'];
  const timestamp = delivery.headers['webhook-timestamp'];
  const expected = Buffer.from(createHmac('sha256', key).update(`${id}.${timestamp}.${delivery.raw}`).digest('base64'));
  return (delivery.headers['webhook-signature'] ?? '').split(' ').some((signature) => {
    const [version, value = ''] = signature.split(',', 2);
    const given = Buffer.from(value);
    return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
  });
}

/** A delivery of the message `text` to `where`. */
function messageTo(where, text) {
  return (d) => d.path === where && d.body?.type === 'message.created' && d.body.data?.body === text;
}

/** The URLs in the owner's list of webhooks. */
function listed(page) {
  return page.$$eval('#webhook-list .webhook-url', (urls) => urls.map((u) => u.textContent));
}

/**
 * Adds a webhook to `url` from the owner's section, with only `events`
 * ticked (the values of their boxes) if given; resolves to the secret shown.
 */
async function add(page, url, events) {
  if (events) {
    for (const box of await page.locator('#webhook-form input[type="checkbox"]').all()) {
      await box.setChecked(events.includes(await box.getAttribute('value')));
    }
  }
  await page.fill('#webhook-url', url);
  await page.click('#webhook-submit');
  await until(page, () => document.getElementById('webhook-made-title')?.textContent === 'Webhook added');
  await until(page, (want) => [...document.querySelectorAll('#webhook-list .webhook-url')]
    .some((u) => u.textContent === want), url);
  return page.textContent('#webhook-secret');
}

/** Opens the member drawer on a phone and brings `selector` into view. */
async function openDrawer(page, selector) {
  await page.click('#members-toggle');
  await page.locator(selector).scrollIntoViewIfNeeded();
}

describe('webhooks', { timeout: 150_000 }, () => {
  // The receiver is on loopback: a server that allows private addresses.
  const suite = browserSuite(['--webhook-private', 'true']);

  /** Screenshots of `page` in both schemes as `webhooks-<name>-<scheme>-<kind>.png`, and their text contrast. */
  async function capture(page, name, kind) {
    for (const scheme of SCHEMES) {
      await page.emulateMedia({ colorScheme: scheme });
      await page.screenshot({ path: path.join(OUT, `webhooks-${name}-${scheme}-${kind}.png`), animations: 'disabled' });
      assert.deepEqual(await contrastFailures(page), [], `text contrast of ${name}, ${scheme}, ${kind}`);
    }
    await page.emulateMedia({ colorScheme: 'dark' });
  }

  test('the owner adds a webhook, a message reaches it signed, and removed it is sent nothing more', async () => {
    const receiver = await startReceiver();
    try {
      const base = suite.server.url;
      const { page: ann, context } = await suite.person();
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
      const { page: bob } = await suite.person();
      const code = await createRoom(ann, base, { name: 'Ann', title: 'Releases', seats: 'any', retention: 'persistent' });
      await joinByCode(bob, base, 'Bob', code);

      // The section is the owner's: a member has none.
      await until(ann, () => !document.getElementById('webhooks').hidden
        && document.getElementById('webhook-list').childElementCount === 0);
      assert.equal(await bob.isVisible('#webhooks'), false);
      assert.equal(await bob.locator('#webhook-form').count(), 1, 'the form is on the page, hidden');
      // Every event is ticked to begin with.
      assert.deepEqual(await ann.$$eval('#webhook-form input[type="checkbox"]', (boxes) => boxes.map((b) => b.checked)),
        [true, true, true, true, true, true, true]);

      // Added: the secret, shown once, with a line on checking a signature.
      const first = receiver.url('/first');
      const secret = await add(ann, first);
      assert.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/);
      const made = await ann.textContent('#webhook-made');
      assert.match(made, /Shown once — copy it now/);
      assert.match(made, /HMAC-SHA256 of id\.timestamp\.body/);
      assert.match(made, /see docs\/integrations\.md/);
      assert.match(await ann.textContent('#webhook-list .integration'), /All events · added /);
      // Copy puts it on the clipboard.
      await ann.getByRole('button', { name: 'Copy the signing secret' }).click();
      await until(ann, () => document.querySelector('#webhook-made .copy').textContent === 'Copied');
      assert.equal(await ann.evaluate(() => navigator.clipboard.readText()), secret);
      await ann.locator('#webhook-made').scrollIntoViewIfNeeded();
      await capture(ann, 'secret', 'desktop');

      // Bob's message reaches the receiver, signed with that secret.
      await send(bob, 'Build 41 passed on main');
      const delivery = await receiver.next(messageTo('/first', 'Build 41 passed on main'), 'message.created at /first');
      assert.equal(delivery.method, 'POST');
      assert.match(delivery.headers['content-type'], /^application\/json/);
      assert.equal(delivery.body.room, code);
      assert.equal(delivery.body.data.from.name, 'Bob');
      assert.equal(typeof delivery.body.data.seq, 'number');
      assert.ok(!Number.isNaN(Date.parse(delivery.body.timestamp)), delivery.body.timestamp);
      assert.ok(delivery.headers['webhook-id'], 'a webhook-id');
      const age = Math.abs(Date.now() / 1000 - Number(delivery.headers['webhook-timestamp']));
      assert.ok(age < 300, `webhook-timestamp ${delivery.headers['webhook-timestamp']} is near now`);
      assert.equal(signedWith(delivery, secret), true, `signature ${delivery.headers['webhook-signature']}`);
      // A different secret, or a changed body, does not check.
      assert.equal(signedWith(delivery, `whsec_${Buffer.alloc(24, 7).toString('base64')}`), false);
      assert.equal(signedWith({ ...delivery, raw: delivery.raw.replace('Build 41', 'Build 42') }, secret), false);

      // Done: the secret leaves the page.
      await ann.getByRole('button', { name: 'Done: I have copied it' }).click();
      assert.equal(await ann.locator('#webhook-secret').count(), 0);

      // A second one, for messages only.
      const second = receiver.url('/second');
      const secondSecret = await add(ann, second, ['message.created']);
      assert.notEqual(secondSecret, secret);
      assert.deepEqual(await listed(ann), [first, second]);
      assert.match(await ann.locator('#webhook-list .integration').nth(1).textContent(), /Messages · added /);

      // Removed, after a confirmation (Cancel first leaves it be).
      const removeFirst = `#webhook-list button[aria-label="Remove the webhook to ${first}"]`;
      await ann.click(removeFirst);
      assert.match(await ann.textContent('#webhook-list .integration-confirm'), /Remove this webhook\?/);
      await ann.locator('#webhook-list').scrollIntoViewIfNeeded();
      await capture(ann, 'remove-confirm', 'desktop');
      await ann.locator('#webhook-list .integration', { hasText: first }).getByRole('button', { name: 'Cancel' }).click();
      assert.deepEqual(await listed(ann), [first, second]);
      await ann.click(removeFirst);
      await ann.locator('#webhook-list .integration', { hasText: first }).getByRole('button', { name: 'Remove', exact: true }).click();
      await until(ann, (want) => [...document.querySelectorAll('#webhook-list .webhook-url')]
        .map((u) => u.textContent).join() === want, second);
      // The second one's secret was the one shown, and it stays.
      assert.equal(await ann.textContent('#webhook-secret'), secondSecret);

      // A marker reaches the second; the first is sent nothing more.
      const before = receiver.received.filter((d) => d.path === '/first').length;
      await send(bob, 'Marker after the removal');
      await waitForMessage(ann, 'Marker after the removal');
      const marker = await receiver.next(messageTo('/second', 'Marker after the removal'), 'the marker at /second');
      assert.equal(signedWith(marker, secondSecret), true);
      await sleep(QUIET_MS);
      assert.deepEqual(receiver.received.filter((d) => d.path === '/first').slice(before), []);
      // Messages only: Bob's joining is not the second one's business.
      assert.deepEqual([...new Set(receiver.received.filter((d) => d.path === '/second').map((d) => d.body.type))],
        ['message.created']);

      // On a phone: Ann's section in the drawer, where she adds another one.
      const { page: annPhone } = await suite.person({ ...PHONE_OPTIONS, storageState: await context.storageState() });
      await annPhone.goto(`${base}/r/${code}`);
      await waitJoined(annPhone);
      await openDrawer(annPhone, '#webhook-form');
      await until(annPhone, () => document.querySelectorAll('#webhook-list .integration').length === 1);
      const third = receiver.url('/third');
      await add(annPhone, third);
      await annPhone.locator('#webhook-made').scrollIntoViewIfNeeded();
      await capture(annPhone, 'secret', 'phone');
      await annPhone.close();

      // Ann's desktop tab, looked at again, lists the one added on the phone.
      await ann.evaluate(() => window.dispatchEvent(new Event('focus')));
      await until(ann, () => document.querySelectorAll('#webhook-list .integration').length === 2);
      assert.deepEqual(await listed(ann), [second, third]);
    } finally {
      await receiver.close();
    }
  });

  test('the server\'s refusal shows inline: a URL that is not http, nothing to send', async () => {
    const { page: dan } = await suite.person({ colorScheme: 'light' });
    await createRoom(dan, suite.server.url, { name: 'Dan', title: 'Ops', seats: 'any', retention: 'persistent' });
    await until(dan, () => !document.getElementById('webhooks').hidden);
    await dan.fill('#webhook-url', 'ftp://example.org/confab');
    await dan.click('#webhook-submit');
    await until(dan, () => document.getElementById('webhook-error').textContent
      === 'Could not add that URL: must start with http:// or https://');
    assert.equal(await dan.getAttribute('#webhook-url', 'aria-invalid'), 'true');
    assert.equal(await dan.isVisible('#webhook-error'), true);
    // Checked here: no URL, or no event.
    await dan.fill('#webhook-url', '');
    await dan.click('#webhook-submit');
    await until(dan, () => document.getElementById('webhook-error').textContent === 'Give the URL to send the events to first.');
    await dan.fill('#webhook-url', 'https://example.org/confab');
    for (const box of await dan.locator('#webhook-form input[type="checkbox"]').all()) await box.uncheck();
    await dan.click('#webhook-submit');
    await until(dan, () => document.getElementById('webhook-error').textContent === 'Choose at least one event to send.');
    assert.equal(await dan.locator('#webhook-list .integration').count(), 0);
  });

  test('a server that forbids private addresses refuses one, inline', async () => {
    const strict = await startServer();
    try {
      const { page: eve } = await suite.person();
      await createRoom(eve, strict.url, { name: 'Eve', title: 'Alerts', seats: 'any', retention: 'persistent' });
      await until(eve, () => !document.getElementById('webhooks').hidden);
      await eve.fill('#webhook-url', 'http://127.0.0.1:9/hook');
      await eve.click('#webhook-submit');
      await until(eve, () => /private or loopback address is not allowed/.test(document.getElementById('webhook-error').textContent));
      assert.equal(await eve.locator('#webhook-made').isVisible(), false);
      assert.equal(await eve.locator('#webhook-list .integration').count(), 0);
      // What was typed stays, to be corrected.
      assert.equal(await eve.inputValue('#webhook-url'), 'http://127.0.0.1:9/hook');
      await eve.locator('#webhook-form').scrollIntoViewIfNeeded();
      await capture(eve, 'refused', 'desktop');
      await eve.close();
    } finally {
      await strict.stop();
    }
  });

  test('an ephemeral room says webhooks need a persistent one', async () => {
    const { page: cleo } = await suite.person({ colorScheme: 'light' });
    await createRoom(cleo, suite.server.url, { name: 'Cleo', title: 'Quick chat' });
    await until(cleo, () => !document.getElementById('webhooks').hidden);
    assert.equal(await cleo.isVisible('#webhooks-ephemeral'), true);
    assert.equal(await cleo.isVisible('#webhook-form'), false);
    assert.match(await cleo.textContent('#webhooks-ephemeral'), /need a persistent room/);
  });
});

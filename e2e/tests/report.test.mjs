// Reporting a message to the operator from its "Report" action: the
// optional reason, the confirmation in place, the audit entry on the
// server, and Cancel and Escape leaving nothing behind.

import assert from 'node:assert/strict';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, newPerson, TIMEOUT } from '../lib/browser.mjs';
import { createRoom, joinByCode, send, waitForMessage, waitForText } from '../lib/chat.mjs';
import { contrastFailures } from '../lib/contrast.mjs';
import { startServer } from '../lib/server.mjs';

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/e2e');

/** The message item with this body. */
function item(page, body) {
  return page.locator('#messages .msg', { has: page.locator('.msg-body', { hasText: body }) });
}

describe('reporting a message', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const people = [];

  async function person(options) {
    const p = await newPerson(browser, options);
    people.push(p);
    return p;
  }

  const audit = path.join(tmpdir(), `confab-e2e-audit-${process.pid}.jsonl`);

  /** The audit log's entries (the file may not exist yet). */
  async function entries() {
    const text = await readFile(audit, 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map((line) => JSON.parse(line));
  }

  before(async () => {
    await mkdir(OUT, { recursive: true });
    await rm(audit, { force: true });
    server = await startServer(['--audit-log', audit]);
    browser = await launchBrowser();
  });

  after(async () => {
    for (const { page } of people) assert.deepEqual(page.problems, [], 'no script errors or CSP violations');
    await browser?.close();
    await server?.stop();
    await rm(audit, { force: true });
  });

  test('a message is reported with a reason, and the operator gets it', async () => {
    const ann = await person();
    const bob = await person();
    const code = await createRoom(ann.page, server.url, { name: 'Ann', title: 'Help desk', seats: '2' });
    await joinByCode(bob.page, server.url, 'Bob', code);
    await send(bob.page, 'Send me your password and I will fix it');
    await send(ann.page, 'My own message has nothing to report');
    await waitForMessage(ann.page, 'Send me your password and I will fix it');
    await waitForMessage(ann.page, 'My own message has nothing to report', 'sent');

    // Only other people's messages can be reported (one's own can be deleted).
    const own = item(ann.page, 'My own message has nothing to report');
    assert.equal(await own.getByRole('button', { name: /Report/ }).count(), 0);
    assert.equal(await own.getByRole('button', { name: 'Delete your message' }).count(), 1);
    const bobs = item(ann.page, 'Send me your password and I will fix it');
    await bobs.hover();
    await bobs.getByRole('button', { name: 'Report this message from Bob' }).click();
    // Cancel and Escape put the action back, reporting nothing.
    await bobs.getByRole('button', { name: 'Cancel' }).click();
    await bobs.getByRole('button', { name: 'Report this message from Bob' }).click();
    await ann.page.keyboard.press('Escape');
    assert.equal(await ann.page.evaluate(() => document.activeElement?.getAttribute('aria-label')),
      'Report this message from Bob', 'the focus returns to the action');
    assert.deepEqual(await entries(), []);

    await ann.page.keyboard.press('Enter');
    const reason = bobs.getByRole('textbox', { name: 'Why you report this message (optional)' });
    await reason.fill('asks for passwords');
    await ann.page.screenshot({ path: path.join(OUT, 'report-form.png'), animations: 'disabled' });
    assert.deepEqual(await contrastFailures(ann.page), [], 'text contrast with the report form open');
    await reason.press('Enter');
    await waitForText(ann.page, '#messages .report-note', 'Reported to the operator. Thank you.');
    await ann.page.screenshot({ path: path.join(OUT, 'report-done.png'), animations: 'disabled' });

    // The operator's audit entry: the message, who wrote it, who reported it
    // and why (the file has no event to wait for: it is read until it has it).
    const deadline = Date.now() + TIMEOUT;
    while ((await entries()).length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const [entry] = await entries();
    assert.ok(entry, 'the report is in the audit log');
    assert.equal(entry.kind, 'report');
    // The general log says a report came, and nothing of the message.
    assert.match(server.log(), /audit entry kind="report"/);
    assert.doesNotMatch(server.log(), /Send me your password/);
    assert.equal(entry.message.body, 'Send me your password and I will fix it');
    assert.equal(entry.message.from.name, 'Bob');
    assert.equal(entry.reporter.name, 'Ann');
    assert.equal(entry.reason, 'asks for passwords');
    assert.equal(entry.room, code);
    // Bob is told nothing.
    assert.equal(await bob.page.locator('.report-note').count(), 0);
  });
});

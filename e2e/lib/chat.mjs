// What a person does on the pages, and what they see, as test helpers.

import { TIMEOUT } from './browser.mjs';

/** Creates a room from the home page and waits until the room page has joined it. Returns its code. */
export async function createRoom(page, base, { name, title, seats = '2', retention = 'ephemeral', visibility = 'private' }) {
  await page.goto(`${base}/`);
  await page.fill('#name', name);
  if (title) await page.fill('#title', title);
  await page.click(`label[for="seats-${seats}"]`);
  await page.click(`label[for="retention-${retention}"]`);
  await page.click(`label[for="visibility-${visibility}"]`);
  await page.click('#create-submit');
  await page.waitForURL(/\/r\/[^/]+$/);
  await waitJoined(page);
  return decodeURIComponent(new URL(page.url()).pathname.split('/')[2]);
}

/** Fills in the home page's join form; does not wait for the outcome. */
export async function submitJoin(page, base, name, code) {
  await page.goto(`${base}/`);
  await page.fill('#name', name);
  await page.fill('#code', code);
  await page.click('#join-submit');
}

export async function joinByCode(page, base, name, code) {
  await submitJoin(page, base, name, code);
  await page.waitForURL(/\/r\/[^/]+$/);
  await waitJoined(page);
}

/** The room page has joined: it knows the seat count and the connection is live. */
export async function waitJoined(page) {
  await page.waitForFunction(() => !document.getElementById('seats').hidden
    && document.getElementById('conn').dataset.state === 'connected', null, { timeout: TIMEOUT });
}

export async function send(page, text) {
  await page.fill('#body', text);
  await page.press('#body', 'Enter');
}

/** Every message the page shows, top to bottom. */
export function messages(page) {
  return page.$$eval('#messages .msg', (items) => items.map((item) => ({
    seq: item.dataset.seq ? Number(item.dataset.seq) : null,
    from: item.querySelector('.msg-from').textContent,
    subject: item.querySelector('.msg-subject')?.textContent ?? null,
    body: item.querySelector('.msg-body').textContent,
    own: item.classList.contains('own'),
    state: item.dataset.state ?? null,
  })));
}

/** The join/leave lines the page shows. */
export function systemLines(page) {
  return page.$$eval('#messages .system', (items) => items.map((item) => item.textContent));
}

/** Waits until a message with this body is shown (with this state, if given). */
export async function waitForMessage(page, body, state) {
  await page.waitForFunction(([text, wanted]) => [...document.querySelectorAll('#messages .msg')].some((item) =>
    item.querySelector('.msg-body').textContent === text && (!wanted || item.dataset.state === wanted)),
  [body, state], { timeout: TIMEOUT });
}

/** Waits until an element's text content equals `text`. */
export async function waitForText(page, selector, text) {
  await page.waitForFunction(([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
    [selector, text], { timeout: TIMEOUT });
}

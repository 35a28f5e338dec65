// What a browser test file's suite shares: a server of its own, a browser,
// and the people it opens, whose pages must end without script errors or
// CSP violations. Call inside `describe`.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { launchBrowser, newPerson } from './browser.mjs';
import { startServer } from './server.mjs';

/** Where the screenshots go. */
export const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/e2e');

/** Starts a server (with `serverArgs`) and a browser for the suite. */
export function browserSuite(serverArgs = []) {
  const suite = { server: null, browser: null, people: [] };
  suite.person = async (options) => {
    const person = await newPerson(suite.browser, options);
    suite.people.push(person);
    return person;
  };
  before(async () => {
    await mkdir(OUT, { recursive: true });
    suite.server = await startServer(serverArgs);
    suite.browser = await launchBrowser();
  });
  after(async () => {
    for (const { page } of suite.people) assert.deepEqual(page.problems, [], 'no script errors or CSP violations');
    await suite.browser?.close();
    await suite.server?.stop();
  });
  return suite;
}

// Headless Chromium (the system package) and per-user browser contexts.

import { chromium } from 'playwright-core';

/** The longest any single wait in these tests may take. */
export const TIMEOUT = 10_000;

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

export function launchBrowser() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run'],
  });
}

/**
 * A person with their own browser profile (own localStorage, so their own
 * session) and one open tab. `page.problems` collects uncaught exceptions
 * and Content-Security-Policy violations, which no test should produce.
 */
export async function newPerson(browser, options = {}) {
  const context = await browser.newContext({ viewport: DESKTOP, colorScheme: 'dark', ...options });
  context.setDefaultTimeout(TIMEOUT);
  const page = await newTab(context);
  return { context, page };
}

/** Another tab in the same browser profile. */
export async function newTab(context) {
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (error) => page.problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) {
      page.problems.push(`csp: ${message.text()}`);
    }
  });
  return page;
}

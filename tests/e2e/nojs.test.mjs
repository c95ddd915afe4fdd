// The same core flow with JavaScript switched off in the browser: every page
// must work as plain HTML forms and links (DESIGN: "work without JavaScript").
// axe-core needs JavaScript in the page, so accessibility is checked by
// foundation.test.mjs; this file proves the pages do not depend on scripts.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

import { startServer } from './lib/server.mjs';
import { outboxLink } from './lib/outbox.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, randomPassphrase, minimalPdf, scratchDir } from './lib/files.mjs';

describe('Keyhold works with JavaScript switched off', { timeout: 180_000 }, () => {
  let server;
  let b;
  let page;
  let scratch;

  before(async () => {
    server = await startServer();
    b = await launchBrowser({ contextOptions: { javaScriptEnabled: false } });
    page = b.page;
  });

  after(async () => {
    await b?.close();
    await server?.stop();
    await scratch?.remove();
  });

  it('signs up, adds an entry, uploads and downloads a document, signs out', async () => {
    await visit(page, `${server.url}/signup`);
    assert.equal(await page.locator('body.js-enabled').count(), 0, 'a page script ran: JavaScript is not off');

    const email = `nojs-${randomToken()}@example.test`;
    await page.fill('#name', 'Nora Nojs');
    await page.fill('#email', email);
    await page.fill('#password', randomPassphrase());
    let res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account' }).click());
    assert.equal(res.status(), 200, 'the "check your email" page');
    await visit(page, await outboxLink(server, email, '/account/confirm/'));
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in' }).click());
    assert.equal(new URL(page.url()).pathname, '/record', `after confirming the address\n${await describePage(page)}`);
    assert.equal(res.status(), 200);

    await visit(page, `${server.url}/record/entries/new?kind=note`);
    await page.fill('#title', 'Written without scripts');
    await page.fill('#date-day', '2');
    await page.fill('#date-month', '11');
    await page.fill('#date-year', '2026');
    await page.check('input[name="category"][value="general"]');
    const phrase = `no-js phrase ${randomToken()}`;
    await page.fill('#details', phrase);
    await navigateBy(page, () => page.getByRole('button', { name: 'Save entry' }).click());
    assert.match(new URL(page.url()).pathname, /^\/record\/entries\/[0-9a-f-]{36}$/, await describePage(page));
    assert.ok((await page.content()).includes(phrase), 'the saved entry page does not show its details');

    scratch = await scratchDir();
    const pdf = minimalPdf(`nojs-${randomToken()}`);
    const file = await scratch.write('letter.pdf', pdf);
    await visit(page, `${server.url}/record/documents`);
    await page.fill('#title', 'Letter uploaded without scripts');
    await page.check('input[name="category"][value="general"]');
    await page.setInputFiles('#file', file);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Upload document' }).click());
    assert.equal(res.status(), 200, await describePage(page));
    assert.ok((await page.content()).includes('Letter uploaded without scripts'), 'the upload is not listed');

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('a[href^="/record/documents/"]').first().click(),
    ]);
    const got = await readFile(await download.path());
    assert.ok(Buffer.compare(got, Buffer.from(pdf)) === 0, 'the downloaded file differs from the upload');

    await navigateBy(page, () => page.getByRole('button', { name: 'Sign out' }).click());
    await visit(page, `${server.url}/record`);
    assert.equal(new URL(page.url()).pathname, '/signin', 'still signed in after signing out');
  });
});

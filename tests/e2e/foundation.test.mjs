// The foundation flow of Keyhold in a real (headless Chromium) browser:
// sign up, sign out, sign in, add an entry, upload/download documents, the
// upload error pages, and sign out again. Every page the browser loads is
// checked with axe-core (WCAG 2.x A/AA) and must have no violations.
//
// The steps share one server, one browser page and one account, and run in
// order; once a step fails, the later ones are skipped (reported as such) so
// the first real failure is the one to read.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { unzipSync } from 'fflate';

import { startServer } from './lib/server.mjs';
import { outboxLink } from './lib/outbox.mjs';
import { launchBrowser, checkA11y, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, randomPassphrase, minimalPdf, tinyPng, oversizePdf, scratchDir } from './lib/files.mjs';
import {
  pathOf,
  assertPath,
  expectVisible,
  expectAbsent,
  h1Text,
  assertMainContains,
  assertMainLacks,
  linkOrButton,
  assertStatus,
  is4xx,
  isOk,
  stepHarness,
} from './lib/flow.mjs';

const STEP_TIMEOUT_MS = 120_000;
const MAX_UPLOAD_BYTES = 20 * 1024 * 1024; // the server's limit (20 MiB)

// ---------------------------------------------------------------- helpers --

/** Waits for a download started by `action`; fails clearly if none starts. */
async function captureDownload(page, action, what) {
  const dl = page.waitForEvent('download', { timeout: 30_000 });
  dl.catch(() => {}); // handled below; avoids an unhandled rejection while action() runs
  await action();
  let download;
  try {
    download = await dl;
  } catch {
    assert.fail(
      `${what}: no download started within 30 s (is the response sent with Content-Disposition: attachment?)\n${await describePage(page)}`,
    );
  }
  const failure = await download.failure();
  if (failure) assert.fail(`${what}: the download failed: ${failure}`);
  const bytes = await readFile(await download.path());
  return { download, bytes };
}

function describeBytes(b) {
  const head = b.subarray(0, 24).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `${b.length} bytes starting ${JSON.stringify(head)}`;
}

// ------------------------------------------------------------------ flow --

describe('Keyhold foundation flow in a real browser', () => {
  let server;
  let b;
  let page;
  let files;

  // What the steps share.
  const email = `e2e-${randomToken(10)}@example.test`;
  const password = randomPassphrase(20);
  const entryTitle = 'Hay fever (e2e)';
  const entryPhrase = `Sneezing every spring, marker ${randomToken(12)}`;
  const docTitle = 'Discharge letter (e2e)';
  const pdfMarker = `keyhold-e2e-marker-${randomToken(16)}`;
  const pdf = minimalPdf(pdfMarker);
  let pdfPath;
  let uploadPagePath = '/record/documents'; // where the upload form is (found in the documents step)

  // The steps run in order; a setup failure is reported by the first step
  // (see stepHarness in lib/flow.mjs).
  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({ server, browsers: [{ page, visits: b?.visits }] }),
  });
  const { step } = harness;

  before(
    async () => {
      try {
        server = await startServer();
        files = await scratchDir();
        pdfPath = await files.write('discharge letter.pdf', pdf);
        b = await launchBrowser();
        page = b.page;
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 90_000 },
  );

  after(async () => {
    await b?.close();
    await server?.stop();
    await files?.remove();
  });

  step('GET /healthz returns 200', async () => {
    const res = await fetch(`${server.url}/healthz`);
    assert.equal(res.status, 200, `GET /healthz returned ${res.status}: ${await res.text()}`);
  });

  step(
    "pages are served with a Content-Security-Policy that has script-src 'self'",
    async () => {
      const res = await fetch(`${server.url}/`);
      const csp = res.headers.get('content-security-policy');
      assert.ok(csp, 'GET / has no Content-Security-Policy header');
      assert.match(csp, /script-src 'self'/, `unexpected CSP: ${csp}`);
    },
    { critical: false },
  );

  step('the landing page loads and is accessible', async () => {
    const res = await visit(page, `${server.url}/`);
    assertStatus(res, isOk, '2xx', 'GET /');
    await checkA11y(page, 'landing page');
  });

  step('"Create an account" leads to /signup; an empty form shows an error summary', async (t) => {
    await navigateBy(page, () => linkOrButton(page, 'Create an account').click());
    await assertPath(page, '/signup', 'after clicking "Create an account"');
    await expectVisible(page.locator('#email'), 'the email field on /signup');
    await checkA11y(page, 'sign-up page');

    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    t.diagnostic(`empty sign-up form answered ${res.status()}`);
    await assertPath(page, '/signup', 'after submitting an empty sign-up form');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'an error summary (.nhsuk-error-summary) after an empty sign-up form');
    await checkA11y(page, 'sign-up page with errors');
  });

  step('signing up mails a link; confirming it lands on /record, signed in', async (t) => {
    t.diagnostic(`account: ${email}`);
    await page.locator('#name').fill('Erin Endtoend');
    await page.locator('#email').fill(email);
    await page.locator('#password').fill(password);
    await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assert.equal(await h1Text(page), 'Check your email', 'h1 after signing up');
    await expectAbsent(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }), '"Sign out" before the address is confirmed');
    await checkA11y(page, 'check your email (after sign-up)');
    const link = await outboxLink(server, email, '/account/confirm/');
    await visit(page, link);
    assert.equal(await h1Text(page), 'Confirm your email address', 'h1 of the confirmation link');
    await checkA11y(page, 'confirm your email address');
    await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in', exact: true }).click());
    await assertPath(page, '/record', 'after confirming the address');
    assert.equal(await h1Text(page), 'Your health record', 'h1 of /record');
    const header = page.getByRole('banner');
    await expectVisible(header.getByRole('button', { name: 'Sign out', exact: true }), 'a "Sign out" button in the header');
    await expectAbsent(header.getByRole('link', { name: 'Sign in', exact: true }), '"Sign in" link in the header once signed in');
    await checkA11y(page, 'record page (new account)');
  });

  step('signing out ends the session; /record then redirects to /signin', async () => {
    await navigateBy(page, () => page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }).click());
    await assertPath(page, /^\/(signin)?$/, 'after signing out');
    await expectAbsent(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }), '"Sign out" button after signing out');
    await checkA11y(page, `page after sign-out (${pathOf(page)})`);

    await visit(page, `${server.url}/record`);
    await assertPath(page, '/signin', 'GET /record when signed out');
    await checkA11y(page, 'sign-in page (redirected from /record)');
  });

  step('signing in with a wrong password shows an error; the right one lands on /record', async (t) => {
    if (pathOf(page) !== '/signin') await visit(page, `${server.url}/signin`);
    const main = page.getByRole('main');

    await page.locator('#email').fill(email);
    await page.locator('#password').fill(`${password}-wrong`);
    const res = await navigateBy(page, () => main.getByRole('button', { name: 'Sign in', exact: true }).click());
    t.diagnostic(`wrong password answered ${res.status()}`);
    await assertPath(page, '/signin', 'after signing in with a wrong password');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'an error summary after a wrong password');
    await expectAbsent(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }), '"Sign out" button after a failed sign-in');
    await checkA11y(page, 'sign-in page with errors');

    await page.locator('#email').fill(email);
    await page.locator('#password').fill(password);
    await navigateBy(page, () => main.getByRole('button', { name: 'Sign in', exact: true }).click());
    await assertPath(page, '/record', 'after signing in with the right password');
    assert.equal(await h1Text(page), 'Your health record', 'h1 of /record');
    await expectVisible(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }), 'a "Sign out" button in the header');
    await checkA11y(page, 'record page (signed in)');
  });

  step('adding an entry shows it on its own page and on /record', async (t) => {
    await navigateBy(page, () => linkOrButton(page, 'Add an entry').click());
    await assertPath(page, '/record/entries/new', 'after clicking "Add an entry"');
    await checkA11y(page, 'new entry form');

    await page.locator('#kind').selectOption('condition');
    await page.locator('#title').fill(entryTitle);
    await page.locator('#date-day').fill('14');
    await page.locator('#date-month').fill('3');
    await page.locator('#date-year').fill('2024');
    await page.locator('input[name="category"][value="general"]').check();
    await page.locator('#details').fill(entryPhrase);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Save entry', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'saving the entry');

    const path = pathOf(page);
    const m = path.match(/^\/record\/entries\/([^/]+)$/);
    assert.ok(m && m[1] !== 'new', `after "Save entry": expected /record/entries/<id>, got ${path}\n${await describePage(page)}`);
    t.diagnostic(`entry id: ${m[1]}`);
    await assertMainContains(page, entryTitle, 'entry page');
    await assertMainContains(page, entryPhrase, 'entry page');
    await checkA11y(page, 'entry page');

    await visit(page, `${server.url}/record`);
    await assertPath(page, '/record', 'GET /record');
    await assertMainContains(page, entryTitle, '/record after adding an entry');
    await checkA11y(page, 'record page with an entry');
  });

  step('uploading a PDF lists it; downloading it (singly and as a zip) gives back the same bytes', async (t) => {
    await navigateBy(page, () => page.getByRole('navigation', { name: 'This record' }).getByRole('link', { name: 'Documents', exact: true }).click());
    await assertPath(page, '/record/documents', 'after clicking "Documents" in the header');
    await checkA11y(page, 'documents page (empty)');

    if ((await page.locator('#file').count()) === 0) {
      // The upload form may live on its own page, reached from the list.
      t.diagnostic('no #file on /record/documents: following the upload link');
      await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: /upload/i }).first().click());
      await checkA11y(page, 'upload page');
    }
    uploadPagePath = pathOf(page);
    t.diagnostic(`upload form at ${uploadPagePath}`);

    await page.locator('#title').fill(docTitle);
    await page.locator('input[name="category"][value="general"]').check();
    await page.locator('#file').setInputFiles(pdfPath);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Upload document', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'uploading the PDF');
    await assertPath(page, '/record/documents', 'after uploading a document');
    await assertMainContains(page, docTitle, 'documents page after upload');
    await checkA11y(page, 'documents page (one document)');

    // The row of the document: the innermost list/table item that names it
    // and holds a link; its download link is the one named "Download..." if
    // there is one, else the link named after the document.
    const main = page.getByRole('main');
    const rows = main.locator('tr, li, .nhsuk-summary-list__row, .nhsuk-card, dl > div').filter({ hasText: docTitle });
    let link = null;
    const rowCount = await rows.count();
    for (let i = rowCount - 1; i >= 0 && !link; i--) {
      const row = rows.nth(i);
      const dlLinks = row.getByRole('link', { name: /download/i }).filter({ hasNotText: /download all/i });
      if ((await dlLinks.count()) > 0) link = dlLinks.first();
      else if ((await row.getByRole('link', { name: docTitle }).count()) > 0) link = row.getByRole('link', { name: docTitle }).first();
    }
    if (!link) {
      const html = rowCount ? await rows.last().innerHTML() : '(no row element found)';
      assert.fail(`no download link found in the row for ${JSON.stringify(docTitle)}; row HTML:\n${html}`);
    }
    t.diagnostic(`download link: ${await link.getAttribute('href')}`);
    const single = await captureDownload(page, () => link.click(), 'downloading the document');
    t.diagnostic(`downloaded as ${JSON.stringify(single.download.suggestedFilename())}`);
    assert.ok(
      single.bytes.equals(pdf),
      `downloaded document differs from the upload: got ${describeBytes(single.bytes)}, expected ${describeBytes(pdf)}`,
    );
    assert.match(single.download.suggestedFilename(), /\.pdf$/i, 'suggested file name of the downloaded PDF');

    const all = await captureDownload(
      page,
      () => linkOrButton(page, 'Download all documents (zip)').click(),
      'downloading all documents as a zip',
    );
    t.diagnostic(`zip downloaded as ${JSON.stringify(all.download.suggestedFilename())}, ${all.bytes.length} bytes`);
    assert.match(all.download.suggestedFilename(), /\.zip$/i, 'suggested file name of the zip');
    let entries;
    try {
      entries = unzipSync(new Uint8Array(all.bytes));
    } catch (err) {
      assert.fail(`the zip download is not a readable zip (${err.message}): ${describeBytes(all.bytes)}`);
    }
    const fileNames = Object.keys(entries).filter((n) => !n.endsWith('/'));
    t.diagnostic(`zip entries: ${JSON.stringify(Object.keys(entries))}`);
    assert.equal(fileNames.length, 1, `expected exactly one file in the zip, got ${JSON.stringify(fileNames)}`);
    const inZip = Buffer.from(entries[fileNames[0]]);
    assert.ok(
      inZip.equals(pdf),
      `the file in the zip (${fileNames[0]}) differs from the upload: got ${describeBytes(inZip)}, expected ${describeBytes(pdf)}`,
    );
  });

  const fakes = [
    { kind: 'PNG', name: 'scan.pdf', bytes: () => tinyPng() },
    {
      kind: 'HTML',
      name: 'letter.pdf',
      bytes: () => Buffer.from('<!DOCTYPE html><html><head><title>x</title></head><body><script>alert(1)</script></body></html>\n'),
    },
    { kind: 'plain text', name: 'notes.pdf', bytes: () => Buffer.from('These are just some notes, not a PDF at all.\n') },
  ];
  for (const fake of fakes) {
    step(`uploading ${fake.kind} bytes named "${fake.name}" is refused with an error summary (4xx)`, async (t) => {
      await visit(page, `${server.url}${uploadPagePath}`);
      await checkA11y(page, `upload form (before the ${fake.kind} upload)`);
      const filePath = await files.write(fake.name, fake.bytes());
      await page.locator('#title').fill(`Fake ${fake.kind} (e2e)`);
      await page.locator('input[name="category"][value="general"]').check();
      await page.locator('#file').setInputFiles(filePath);
      const res = await navigateBy(page, () => page.getByRole('button', { name: 'Upload document', exact: true }).click());
      t.diagnostic(`answered ${res.status()} at ${pathOf(page)}`);
      assertStatus(res, is4xx, '4xx', `uploading ${fake.kind} bytes as .pdf`);
      await assertPath(page, /^\/record\/documents(\/|$)/, `after uploading ${fake.kind} bytes as .pdf`);
      await expectVisible(page.locator('.nhsuk-error-summary'), `an error summary after uploading ${fake.kind} bytes as .pdf`);
      await checkA11y(page, `documents page after a ${fake.kind} upload claiming .pdf`);
    });
  }

  step('refused uploads were not stored', async () => {
    await visit(page, `${server.url}/record/documents`);
    await assertMainContains(page, docTitle, 'documents page');
    for (const fake of fakes) await assertMainLacks(page, `Fake ${fake.kind} (e2e)`, 'documents page after refused uploads');
    await checkA11y(page, 'documents page after refused uploads');
  });

  step('an upload over the 20 MiB limit gets a 413 "too large" page', async (t) => {
    await visit(page, `${server.url}${uploadPagePath}`);
    await checkA11y(page, 'upload form (before the oversize upload)');
    const size = MAX_UPLOAD_BYTES + 1024 * 1024; // 21 MiB
    const bigPath = await files.write('big scan.pdf', oversizePdf(size));
    await page.locator('#title').fill('Oversize (e2e)');
    await page.locator('input[name="category"][value="general"]').check();
    await page.locator('#file').setInputFiles(bigPath);
    let res;
    try {
      res = await navigateBy(page, () => page.getByRole('button', { name: 'Upload document', exact: true }).click(), {
        timeout: 60_000,
      });
    } catch (err) {
      if (/ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE|ERR_CONNECTION_CLOSED/.test(err.message)) {
        err.message +=
          '\n(the browser got no 413 page: the server closed the connection while the upload was still being sent;' +
          ' it has to let the browser read the 413 response, e.g. by reading and discarding the rest of the body)';
      }
      throw err;
    }
    t.diagnostic(`answered ${res.status()} at ${pathOf(page)}`);
    assertStatus(res, (s) => s === 413, '413', `uploading ${size} bytes`);
    const h1 = await h1Text(page);
    assert.match(h1, /too large/i, `h1 of the 413 page is ${JSON.stringify(h1)}`);
    await checkA11y(page, '413 page (upload too large)');

    await visit(page, `${server.url}/record/documents`);
    await assertMainLacks(page, 'Oversize (e2e)', 'documents page after the oversize upload');
    await checkA11y(page, 'documents page after the oversize upload');
  });

  step('signing out again; /record redirects to /signin', async () => {
    await navigateBy(page, () => page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }).click());
    await assertPath(page, /^\/(signin)?$/, 'after signing out');
    await checkA11y(page, `page after the second sign-out (${pathOf(page)})`);
    await visit(page, `${server.url}/record`);
    await assertPath(page, '/signin', 'GET /record after signing out');
    await checkA11y(page, 'sign-in page (redirected from /record, end)');
  });

  step(
    'every page the browser loaded was checked with axe',
    async (t) => {
      const loads = b.visits.loads;
      t.diagnostic(`${loads.length} page loads: ${loads.map((l) => new URL(l.url).pathname).join(' ')}`);
      b.visits.assertAllChecked();
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const { assetFailures, consoleErrors } = b.visits;
      const problems = [
        ...assetFailures.map((f) => `asset: ${f}`),
        ...consoleErrors.map((e) => `console: ${e}`),
      ];
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});

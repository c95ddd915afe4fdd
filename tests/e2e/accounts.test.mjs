// Email accounts in a real (headless Chromium) browser, against one
// `keyhold serve` whose mail goes to the SMTP sink in lib/mail.mjs:
//
// - sign-up mails a link to confirm the address; until it is used, the right
//   password does not sign in (a new link is mailed instead); the link signs in
//   once and then "cannot be used";
// - signing up again with a registered address shows the same page and mails
//   "you already have an account", with no link to confirm;
// - a forgotten password: the same page for an unknown address, a mail only to
//   the known one, its link sets a new password once, ends every other session
//   and signs in; a too-short password is refused (422);
// - changing the password needs the current one and ends other sessions;
// - "Sign out everywhere" ends every session, this one too;
// - "Keep me signed in" gives a 12-hour cookie, otherwise a browser-session one;
// - no mail carries a password or record text.
//
// One holder, several browsers (fresh profiles), each opened when first used.
// Every page the browsers load is checked with axe-core (WCAG 2.x A/AA). The
// steps run in order; once one fails, the later ones are skipped, except after
// axe violations, which fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

import { startServer } from './lib/server.mjs';
import { startMailSink, linkIn } from './lib/mail.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, randomPassphrase } from './lib/files.mjs';
import {
  pathOf,
  assertPath,
  expectVisible,
  expectAbsent,
  h1Text,
  mainText,
  assertMainContains,
  linkOrButton,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
// How long to wait for mail that must NOT come (the server mails after it answers).
const NO_MAIL_SETTLE_MS = 2_000;

const SESSION_COOKIE = 'keyhold_session';

const CHECK_EMAIL_H1 = 'Check your email';
const LINK_GONE_H1 = 'This link cannot be used';
const BAD_CREDENTIALS = 'Enter a correct email address and password';

// ---------------------------------------------------------------- helpers --

/** "Sign out" in the header. */
function signOutButton(page) {
  return page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true });
}

/** The main content's text, whitespace collapsed and trimmed. */
async function mainTextTrimmed(page) {
  return (await mainText(page)).trim();
}

/** The forms in the main content: action, method, fields (no values), buttons. */
async function formShape(page) {
  return page.locator('main form').evaluateAll((forms) =>
    forms.map((f) => ({
      action: f.getAttribute('action'),
      method: (f.getAttribute('method') ?? '').toLowerCase(),
      fields: [...f.querySelectorAll('input, select, textarea')].map((e) => `${e.tagName.toLowerCase()}[type=${e.type}][name=${e.name}]`),
      buttons: [...f.querySelectorAll('button')].map((b) => b.innerText.trim()),
    })),
  );
}

/** A response's Set-Cookie values start no session (clearing one is allowed). */
function assertNoNewSession(setCookies, what) {
  const started = setCookies.filter((c) => c.startsWith(`${SESSION_COOKIE}=`) && !/Max-Age=0(;|$)/i.test(c));
  assert.equal(started.length, 0, `${what}: no session may start; Set-Cookie: ${JSON.stringify(setCookies)}`);
}

function replaceAll(text, what, by) {
  return text.split(what).join(by);
}

// ------------------------------------------------------------------ flow --

describe('Keyhold email accounts in real browsers: confirming, resetting, changing, signing out', () => {
  let server;
  let sink;

  const token = randomToken(8);
  const holder = {
    name: `Alex Accounts-${token}`,
    email: `e2e-accounts-${token}@example.test`,
  };
  const unknownEmail = `e2e-nobody-${randomToken(8)}@example.test`;
  // Every password typed anywhere in the run (step 8 checks no mail has one).
  const pw = {
    first: randomPassphrase(20), // at sign-up
    wrong: randomPassphrase(20), // a wrong guess while unconfirmed
    intruder: randomPassphrase(20), // the second sign-up with the same address
    reset: randomPassphrase(22), // chosen from the reset link
    tooShort: randomPassphrase(7), // refused from a reset link
    wrongCurrent: randomPassphrase(18), // a wrong "current password"
    changed: randomPassphrase(24), // chosen on "Change your password"
  };
  // Record text the holder writes (step 8 checks no mail has it).
  const entry = {
    title: `Accounts e2e condition ${randomToken(10)}`,
    details: `Private accounts e2e details ${randomToken(16)}`,
  };

  // The holder's browsers, each opened when first used.
  const browsers = {
    first: { label: "the holder's first browser" },
    second: { label: "a second browser (the holder's other device)" },
  };

  const shared = {
    newAddressCheckText: '',
    newAddressForms: null,
    confirmLink: '',
    firstResetLink: '',
  };

  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({
      server,
      browsers: Object.values(browsers)
        .filter((b) => b.b)
        .map((b) => ({ label: b.label, page: b.page, visits: b.b.visits })),
    }),
  });

  // An axe violation fails its step after the step's own checks have run,
  // without skipping the later steps.
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        sink = await startMailSink();
        server = await startServer({ env: { KEYHOLD_SMTP_URL: sink.url } });
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 90_000 },
  );

  after(async () => {
    for (const b of Object.values(browsers)) await b.b?.close();
    await server?.stop();
    await sink?.close();
  });

  async function pageOf(who) {
    if (!who.b) {
      who.b = await launchBrowser();
      who.page = who.b.page;
    }
    return who.page;
  }

  // -------------------------------------------------------------- mail --

  /** Where the mail so far ends: pass to mailSince / mailsSince. */
  const mailMark = () => sink.messages.length;
  const mailSince = (mark, predicate) => sink.waitFor((m) => sink.messages.indexOf(m) >= mark && predicate(m), MAIL_TIMEOUT_MS);
  const mailsSince = (mark, predicate = () => true) => sink.messages.slice(mark).filter(predicate);
  const toHolder = (m) => m.to === holder.email;
  const describeMails = (list) => list.map((m) => `  to=${m.to} subject=${JSON.stringify(m.subject)}`).join('\n') || '  (none)';

  /**
   * A mailed link, opened on the server under test (KEYHOLD_PUBLIC_URL is
   * unset, so mail names the default public address; the path is what counts).
   */
  function onServer(link) {
    const u = new URL(link);
    return new URL(`${u.pathname}${u.search}`, server.url).href;
  }

  // ----------------------------------------------------------- sessions --

  async function sessionCookie(page) {
    return (await page.context().cookies(server.url)).find((c) => c.name === SESSION_COOKIE);
  }

  /** GET /record with only this session cookie value, no browser: where does it go? */
  async function recordWithCookie(value) {
    const res = await fetch(`${server.url}/record`, { headers: { cookie: `${SESSION_COOKIE}=${value}` }, redirect: 'manual' });
    await res.body?.cancel();
    return { status: res.status, location: res.headers.get('location') };
  }

  /** GET /record in the browser must end on /signin (the session is over). */
  async function assertSignedOut(page, what) {
    const res = await visit(page, `${server.url}/record`);
    await assertPath(page, '/signin', `${what}: GET /record should be redirected to sign in (got ${res.status()})`);
    await expectAbsent(signOutButton(page), `"Sign out" button (${what})`);
    await checkPage(page, `sign-in page after GET /record (${what})`);
  }

  /** GET /record in the browser shows the record (still signed in). */
  async function assertSignedIn(page, what) {
    const res = await visit(page, `${server.url}/record`);
    assertStatus(res, isOk, '2xx', `${what}: GET /record`);
    await assertPath(page, '/record', `${what}: GET /record`);
    assert.equal(await h1Text(page), 'Your health record', `${what}: h1 of /record`);
    await expectVisible(signOutButton(page), `a "Sign out" button (${what})`);
    await checkPage(page, `the record (${what})`);
  }

  /**
   * Fills in /signin and submits. Returns the navigation's final response and
   * the POST /signin response itself (with its Set-Cookie).
   */
  async function submitSignIn(page, password, { keep = false, label }) {
    if (pathOf(page) !== '/signin' || (await page.locator('#password').count()) === 0) {
      assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
      await checkPage(page, `sign-in page (${label})`);
    }
    await page.locator('#email').fill(holder.email);
    await page.locator('#password').fill(password);
    if (keep) await page.locator('#keep').check();
    else await page.locator('#keep').uncheck();
    const posted = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/signin', { timeout: 30_000 });
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    return { res, post: await posted };
  }

  /** Signs in with the right password; lands on /record. */
  async function signIn(who, password, { keep = false } = {}) {
    const page = await pageOf(who);
    const out = await submitSignIn(page, password, { keep, label: who.label });
    if (pathOf(page) === '/signin') {
      assert.fail(`${who.label} could not sign in as ${holder.email}\n${await describePage(page)}`);
    }
    await assertPath(page, '/record', `${who.label} after signing in`);
    await expectVisible(signOutButton(page), `a "Sign out" button once ${who.label} is signed in`);
    await checkPage(page, `the record after signing in (${who.label})`);
    return out;
  }

  /** A sign-in with this password is refused: the usual error, still signed out. */
  async function assertPasswordRefused(who, password, what) {
    const page = await pageOf(who);
    const { res, post } = await submitSignIn(page, password, { label: who.label });
    assertStatus(res, (s) => s >= 400 && s < 500, '4xx', `${what}: POST /signin`);
    await assertPath(page, '/signin', what);
    await expectVisible(page.locator('.nhsuk-error-summary'), `an error summary (${what})`);
    await assertMainContains(page, BAD_CREDENTIALS, what);
    await expectAbsent(signOutButton(page), `"Sign out" button (${what})`);
    assertNoNewSession(await post.headerValues('set-cookie'), what);
    await checkPage(page, `sign-in refused (${what})`);
  }

  /** /account, through the email address in the header. */
  async function openAccount(page, what) {
    const link = page.getByRole('banner').getByRole('link', { name: new RegExp(holder.email.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) });
    await expectVisible(link, `the holder's email address in the header, linking to the account (${what})`);
    await navigateBy(page, () => link.first().click());
    await assertPath(page, '/account', `after the header's email address (${what})`);
    assert.equal(await h1Text(page), 'Your account', `h1 of /account (${what})`);
    await assertMainContains(page, holder.email, `/account names the address (${what})`);
    await checkPage(page, `your account (${what})`);
  }

  /** Asks for a reset link for `email` from /signin's "Forgotten your password?"; returns the page's main text. */
  async function askForReset(page, email, what) {
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    await checkPage(page, `sign-in page (${what})`);
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Forgotten your password?', exact: true }).click());
    await assertPath(page, '/password/forgot', `after "Forgotten your password?" (${what})`);
    assert.equal(await h1Text(page), 'Reset your password', 'h1 of /password/forgot');
    await checkPage(page, `forgotten password form (${what})`);
    await page.locator('#email').fill(email);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Send the link', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', `POST /password/forgot (${what})`);
    assert.equal(await h1Text(page), CHECK_EMAIL_H1, `h1 after asking for a reset link (${what})`);
    await checkPage(page, `check your email after asking for a reset link (${what})`);
    return { text: await mainTextTrimmed(page), forms: await formShape(page) };
  }

  // ------------------------------------------------------------------ 1 --

  step('sign-up says "Check your email" and mails a link to confirm the address', async (t) => {
    const page = await pageOf(browsers.first);
    assertStatus(await visit(page, `${server.url}/signup`), isOk, '2xx', 'GET /signup');
    await checkPage(page, 'sign-up page');
    const mark = mailMark();
    await page.locator('#name').fill(holder.name);
    await page.locator('#email').fill(holder.email);
    await page.locator('#password').fill(pw.first);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', 'POST /signup (a new address)');
    assert.equal(await h1Text(page), CHECK_EMAIL_H1, 'h1 after signing up');
    await assertMainContains(page, holder.email, 'the page names the address the mail went to');
    await expectAbsent(signOutButton(page), '"Sign out" button before the address is confirmed');
    assert.equal(await sessionCookie(page), undefined, 'signing up sets no session cookie before the address is confirmed');
    await checkPage(page, 'check your email (sign-up, new address)');
    shared.newAddressCheckText = replaceAll(await mainTextTrimmed(page), holder.email, '<address>');
    shared.newAddressForms = await formShape(page);
    t.diagnostic(`sign-up page for a new address: ${shared.newAddressCheckText}`);

    const mail = await mailSince(mark, (m) => toHolder(m) && m.text.includes('/account/confirm/'));
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    shared.confirmLink = onServer(linkIn(mail, '/account/confirm/'));
  });

  step('before the address is confirmed, the right password does not sign in: "Check your email", and a new link is mailed', async (t) => {
    const page = browsers.first.page;
    // The wrong password: the usual error (nothing is mailed for it).
    const mark = mailMark();
    await assertPasswordRefused(browsers.first, pw.wrong, 'the wrong password for an unconfirmed address');

    // The right password.
    const { res, post } = await submitSignIn(page, pw.first, { label: browsers.first.label });
    t.diagnostic(`POST /signin with the right password, unconfirmed: ${post.status()}, final ${res.status()} ${page.url()}`);
    assertStatus(res, (s) => s === 200, '200', 'POST /signin (right password, address not confirmed)');
    assert.equal(await h1Text(page), CHECK_EMAIL_H1, 'h1 after signing in with an unconfirmed address');
    await expectAbsent(signOutButton(page), '"Sign out" button after signing in unconfirmed');
    assertNoNewSession(await post.headerValues('set-cookie'), 'signing in with an unconfirmed address');
    await checkPage(page, 'check your email (sign-in, address not confirmed)');
    await assertSignedOut(page, 'after signing in unconfirmed');

    const again = await mailSince(mark, (m) => toHolder(m) && m.text.includes('/account/confirm/'));
    const second = onServer(linkIn(again, '/account/confirm/'));
    t.diagnostic(`second confirmation mail: ${JSON.stringify(again.subject)}`);
    assert.notEqual(second, shared.confirmLink, 'the second mail carries a new link');
    const sent = mailsSince(mark, toHolder);
    assert.equal(sent.length, 1, `exactly one mail (the new link) after the wrong and the right password:\n${describeMails(sent)}`);
    // The newest link is the one a person would follow.
    shared.confirmLink = second;
  });

  step('the confirmation link shows "Confirm your email address"; "Confirm and sign in" opens /record', async (t) => {
    const page = browsers.first.page;
    let res = await visit(page, shared.confirmLink);
    assertStatus(res, (s) => s === 200, '200', 'GET the confirmation link');
    assert.equal(await h1Text(page), 'Confirm your email address', 'h1 of the confirmation link');
    // GET alone must not use the link or sign in (a mail scanner may fetch it).
    await expectAbsent(signOutButton(page), '"Sign out" button before "Confirm and sign in"');
    await checkPage(page, 'confirm your email address');

    res = await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'POST "Confirm and sign in"');
    await assertPath(page, '/record', 'after "Confirm and sign in"');
    assert.equal(await h1Text(page), 'Your health record', 'h1 after confirming');
    await expectVisible(signOutButton(page), 'a "Sign out" button after confirming');
    await checkPage(page, 'the record after confirming the address');

    // Some record text, so that step 8 can check no mail carries it.
    await navigateBy(page, () => linkOrButton(page, 'Add an entry').click());
    await assertPath(page, '/record/entries/new', 'after "Add an entry"');
    await checkPage(page, 'new entry form');
    await page.locator('#kind').selectOption('condition');
    await page.locator('#title').fill(entry.title);
    await page.locator('#date-day').fill('2');
    await page.locator('#date-month').fill('5');
    await page.locator('#date-year').fill('2025');
    await page.locator('input[name="category"][value="general"]').check();
    await page.locator('#details').fill(entry.details);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Save entry', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'saving the entry');
    assert.match(pathOf(page), /^\/record\/entries\/[^/]+$/, `after "Save entry"\n${await describePage(page)}`);
    await assertMainContains(page, entry.details, 'the entry page');
    await checkPage(page, 'entry page');
    t.diagnostic(`entry saved at ${pathOf(page)}`);
  });

  step('the confirmation link used a second time: "This link cannot be used" (404)', async () => {
    const page = browsers.first.page;
    const res = await visit(page, shared.confirmLink);
    assertStatus(res, (s) => s === 404, '404', 'GET the used confirmation link');
    assert.equal(await h1Text(page), LINK_GONE_H1, 'h1 of a used confirmation link');
    await expectAbsent(page.getByRole('button', { name: 'Confirm and sign in', exact: true }), '"Confirm and sign in" on a used link');
    await checkPage(page, 'link cannot be used (confirmation, used)');
  });

  // ------------------------------------------------------------------ 2 --

  step('signing up again with the same address shows the same page; the mail says it already has an account, with no link to confirm', async (t) => {
    const page = await pageOf(browsers.second);
    assertStatus(await visit(page, `${server.url}/signup`), isOk, '2xx', 'GET /signup (second browser)');
    await checkPage(page, 'sign-up page (second browser)');
    const mark = mailMark();
    await page.locator('#name').fill(`Someone Else-${token}`);
    await page.locator('#email').fill(holder.email);
    await page.locator('#password').fill(pw.intruder);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', 'POST /signup (an address that has an account)');
    assert.equal(await h1Text(page), CHECK_EMAIL_H1, 'h1 after signing up with a registered address');
    await expectAbsent(signOutButton(page), '"Sign out" button after signing up with a registered address');
    assert.equal(await sessionCookie(page), undefined, 'no session cookie after signing up with a registered address');
    await checkPage(page, 'check your email (sign-up, registered address)');

    const text = replaceAll(await mainTextTrimmed(page), holder.email, '<address>');
    assert.equal(text, shared.newAddressCheckText, 'the page for a registered address reads exactly like the one for a new address');
    assert.deepEqual(await formShape(page), shared.newAddressForms, 'the page for a registered address has the same forms as the one for a new address');

    const mail = await mailSince(mark, toHolder);
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    assert.ok(mail.text.includes('already has one'), `the mail says the address already has an account:\n${mail.text}`);
    assert.ok(!mail.text.includes('/account/confirm/') && !mail.raw.includes('/account/confirm/'), `the mail carries no link to confirm:\n${mail.text}`);
    await sleep(NO_MAIL_SETTLE_MS);
    const sent = mailsSince(mark, toHolder);
    assert.equal(sent.length, 1, `exactly one mail for the second sign-up:\n${describeMails(sent)}`);
  });

  // -------------------------------------------------------------- 3 & 4 --

  step('a forgotten password: the same page for an unknown and a known address; only the known one is mailed a link', async (t) => {
    const page = browsers.second.page;
    const mark = mailMark();
    const unknown = await askForReset(page, unknownEmail, 'an unknown address');
    const known = await askForReset(page, holder.email, 'the known address');
    t.diagnostic(`reset page: ${known.text}`);
    assert.equal(known.text, unknown.text, 'the page after asking for a reset reads the same for an unknown address');
    assert.deepEqual(known.forms, unknown.forms, 'the page after asking for a reset has the same forms for an unknown address');
    assert.ok(!known.text.includes(holder.email), 'the page does not name the address');

    const mail = await mailSince(mark, (m) => toHolder(m) && m.text.includes('/password/reset/'));
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    shared.firstResetLink = onServer(linkIn(mail, '/password/reset/'));
    await sleep(NO_MAIL_SETTLE_MS);
    const toUnknown = mailsSince(mark, (m) => m.to === unknownEmail || m.envelope.to.includes(unknownEmail));
    assert.equal(toUnknown.length, 0, `nothing is mailed to an address without an account:\n${describeMails(toUnknown)}`);
    const sent = mailsSince(mark);
    assert.equal(sent.length, 1, `exactly one mail (to the known address) for the two requests:\n${describeMails(sent)}`);
  });

  step('the reset link sets a new password and signs in; the session of a browser signed in before it ends', async (t) => {
    // The first browser is still signed in from confirming the address.
    const first = browsers.first.page;
    await assertSignedIn(first, 'the first browser, before the reset');
    const firstCookie = await sessionCookie(first);
    assert.ok(firstCookie, 'the first browser has a session cookie before the reset');

    const page = browsers.second.page;
    let res = await visit(page, shared.firstResetLink);
    assertStatus(res, (s) => s === 200, '200', 'GET the reset link');
    assert.equal(await h1Text(page), 'Choose a new password', 'h1 of the reset link');
    await checkPage(page, 'choose a new password');
    await page.locator('#password').fill(pw.reset);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Save the new password', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'POST "Save the new password"');
    t.diagnostic(`after saving the new password: ${page.url()}`);
    await assertPath(page, '/record', 'after "Save the new password" (signed in, / sends to the record)');
    await expectVisible(signOutButton(page), 'a "Sign out" button after resetting the password');
    await checkPage(page, 'the record after resetting the password');

    // Step 4: the first browser was signed in before the reset.
    await assertSignedOut(first, 'the first browser after the password was reset elsewhere');
    const direct = await recordWithCookie(firstCookie.value);
    assert.deepEqual(direct, { status: 303, location: '/signin' }, "the first browser's old session cookie no longer opens the record");
  });

  step('after the reset the old password fails and the new one works; the reset link cannot be used again', async () => {
    await assertPasswordRefused(browsers.first, pw.first, 'the old password after the reset');
    await signIn(browsers.first, pw.reset);

    const page = browsers.first.page;
    const res = await visit(page, shared.firstResetLink);
    assertStatus(res, (s) => s === 404, '404', 'GET the used reset link');
    assert.equal(await h1Text(page), LINK_GONE_H1, 'h1 of a used reset link');
    await expectAbsent(page.locator('#password'), 'a password field on a used reset link');
    await checkPage(page, 'link cannot be used (reset, used)');
  });

  step('a too-short new password from a fresh reset link is refused: 422 with an error summary', async (t) => {
    // The second browser is signed in (from the reset): it signs out first, as someone who forgot would be.
    const page = browsers.second.page;
    const mark = mailMark();
    await navigateBy(page, () => signOutButton(page).click());
    await checkPage(page, `after "Sign out" (${pathOf(page)})`);
    await askForReset(page, holder.email, 'the known address, again');
    const mail = await mailSince(mark, (m) => toHolder(m) && m.text.includes('/password/reset/'));
    const link = onServer(linkIn(mail, '/password/reset/'));
    assert.notEqual(link, shared.firstResetLink, 'a fresh reset link');

    let res = await visit(page, link);
    assertStatus(res, (s) => s === 200, '200', 'GET the fresh reset link');
    await checkPage(page, 'choose a new password (fresh link)');
    await page.locator('#password').fill(pw.tooShort);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Save the new password', exact: true }).click());
    t.diagnostic(`a ${pw.tooShort.length}-character password answered ${res.status()}`);
    assertStatus(res, (s) => s === 422, '422', 'a too-short new password');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'an error summary for a too-short password');
    assert.equal(await h1Text(page), 'Choose a new password', 'h1 after a too-short password');
    await expectAbsent(signOutButton(page), '"Sign out" button after a refused reset');
    await checkPage(page, 'choose a new password, too short');

    // The password did not change: the one from the first reset still works here.
    await signIn(browsers.second, pw.reset);
  });

  // ------------------------------------------------------------------ 5 --

  step('changing the password: a wrong current one is refused; the right one ends the other session and keeps this one', async (t) => {
    const page = browsers.first.page;
    const other = browsers.second.page;
    await assertSignedIn(other, 'the second browser, before the change');
    const otherCookie = await sessionCookie(other);
    const ownCookieBefore = await sessionCookie(page);

    await openAccount(page, 'first browser');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Change your password', exact: true }).click());
    await assertPath(page, '/account/password', 'after "Change your password"');
    assert.equal(await h1Text(page), 'Change your password', 'h1 of /account/password');
    await checkPage(page, 'change your password');

    await page.locator('#current-password').fill(pw.wrongCurrent);
    await page.locator('#new-password').fill(pw.changed);
    let res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Change your password', exact: true }).click());
    assertStatus(res, (s) => s === 422, '422', 'changing the password with a wrong current one');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'an error summary for a wrong current password');
    await assertMainContains(page, 'Enter your current password correctly', 'the error for a wrong current password');
    await checkPage(page, 'change your password, wrong current password');
    await assertSignedIn(other, 'the second browser after a refused change');

    await visit(page, `${server.url}/account/password`);
    await checkPage(page, 'change your password (again)');
    await page.locator('#current-password').fill(pw.reset);
    await page.locator('#new-password').fill(pw.changed);
    res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Change your password', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'changing the password');
    await assertPath(page, '/account', 'after changing the password');
    assert.equal(await h1Text(page), 'Your account', 'h1 after changing the password');
    await checkPage(page, 'your account after changing the password');

    await assertSignedIn(page, 'the browser that changed the password');
    await assertSignedOut(other, 'the second browser after the password was changed elsewhere');
    assert.deepEqual(await recordWithCookie(otherCookie.value), { status: 303, location: '/signin' }, "the second browser's old session cookie no longer opens the record");
    const ownAfter = await sessionCookie(page);
    t.diagnostic(`the changing browser's session cookie was ${ownAfter?.value === ownCookieBefore?.value ? 'kept' : 'replaced'}`);

    await assertPasswordRefused(browsers.second, pw.reset, 'the old password after the change');
    await signIn(browsers.second, pw.changed);
  });

  // ------------------------------------------------------------------ 6 --

  step('"Sign out everywhere" ends the session in the other browser and in this one', async () => {
    const page = browsers.first.page;
    const other = browsers.second.page;
    const ownCookie = await sessionCookie(page);
    const otherCookie = await sessionCookie(other);
    assert.ok(ownCookie && otherCookie, 'both browsers have a session cookie before signing out everywhere');
    assert.equal((await recordWithCookie(otherCookie.value)).status, 200, "the second browser's session opens the record before");

    await openAccount(page, 'first browser, to sign out everywhere');
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign out everywhere', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'POST "Sign out everywhere"');
    await assertPath(page, '/signin', 'after "Sign out everywhere"');
    await expectAbsent(signOutButton(page), '"Sign out" button after signing out everywhere');
    await checkPage(page, 'sign-in page after signing out everywhere');

    await assertSignedOut(page, 'the browser that signed out everywhere');
    await assertSignedOut(other, 'the other browser after signing out everywhere');
    assert.deepEqual(await recordWithCookie(ownCookie.value), { status: 303, location: '/signin' }, "this browser's old session cookie no longer opens the record");
    assert.deepEqual(await recordWithCookie(otherCookie.value), { status: 303, location: '/signin' }, "the other browser's old session cookie no longer opens the record");
  });

  // ------------------------------------------------------------------ 7 --

  step('"Keep me signed in" gives a 12-hour cookie; without it the cookie lasts the browser session', async (t) => {
    const page = browsers.first.page;

    let before = Date.now() / 1000;
    let { post } = await signIn(browsers.first, pw.changed, { keep: true });
    let after = Date.now() / 1000;
    let setCookies = await post.headerValues('set-cookie');
    t.diagnostic(`kept: ${post.status()} Set-Cookie ${JSON.stringify(setCookies.map((c) => c.replace(/=[^;]+/, '=…')))}`);
    assert.equal(post.status(), 303, 'POST /signin answers 303');
    let header = setCookies.find((c) => c.startsWith(`${SESSION_COOKIE}=`));
    assert.ok(header, `the sign-in sets ${SESSION_COOKIE}: ${JSON.stringify(setCookies)}`);
    assert.match(header, /;\s*Max-Age=43200(;|$)/i, 'with "Keep me signed in" the cookie has Max-Age=43200');
    let cookie = await sessionCookie(page);
    const ahead = cookie.expires - before;
    t.diagnostic(`kept: the cookie expires ${(ahead / 3600).toFixed(3)} h ahead`);
    assert.ok(cookie.expires > 0, `with "Keep me signed in" the cookie has an expiry (expires=${cookie.expires})`);
    assert.ok(
      cookie.expires >= before + 11.9 * 3600 && cookie.expires <= after + 12.1 * 3600,
      `the cookie expires about 12 h ahead: ${(ahead / 3600).toFixed(3)} h`,
    );
    assert.equal((await recordWithCookie(cookie.value)).status, 200, 'the kept session opens the record');

    await navigateBy(page, () => signOutButton(page).click());
    await checkPage(page, `after "Sign out" (${pathOf(page)})`);
    assert.equal(await sessionCookie(page), undefined, 'signing out drops the session cookie');

    ({ post } = await signIn(browsers.first, pw.changed, { keep: false }));
    setCookies = await post.headerValues('set-cookie');
    t.diagnostic(`not kept: ${post.status()} Set-Cookie ${JSON.stringify(setCookies.map((c) => c.replace(/=[^;]+/, '=…')))}`);
    header = setCookies.find((c) => c.startsWith(`${SESSION_COOKIE}=`));
    assert.ok(header, `the sign-in sets ${SESSION_COOKIE}: ${JSON.stringify(setCookies)}`);
    assert.doesNotMatch(header, /Max-Age|Expires/i, 'without "Keep me signed in" the cookie has no Max-Age or Expires');
    cookie = await sessionCookie(page);
    assert.equal(cookie.expires, -1, 'without "Keep me signed in" the cookie is a browser-session cookie (expires === -1)');
    assert.equal((await recordWithCookie(cookie.value)).status, 200, 'the session opens the record');
  });

  // ------------------------------------------------------------------ 8 --

  step('no mail carries a password or record text', async (t) => {
    const mails = sink.messages;
    t.diagnostic(`${mails.length} messages:`);
    for (const m of mails) t.diagnostic(`  to=${m.to} subject=${JSON.stringify(m.subject)}`);
    assert.ok(mails.length >= 5, `the run sent its mails (2 confirmations, 1 "already", 2 resets):\n${describeMails(mails)}`);
    const secrets = [
      ...Object.entries(pw).map(([k, v]) => [`the ${k} password`, v]),
      ['the entry title', entry.title],
      ['the entry details', entry.details],
    ];
    const leaks = [];
    for (const m of mails) {
      const all = `${m.subject}\n${m.text}\n${m.raw}`;
      for (const [what, secret] of secrets) {
        if (all.includes(secret)) leaks.push(`${what} in the mail to ${m.to} ${JSON.stringify(m.subject)}`);
      }
    }
    assert.equal(leaks.length, 0, `mail carries secrets or record text:\n  ${leaks.join('\n  ')}`);
  });

  // ---------------------------------------------------------------- end --

  step(
    'every page each browser loaded was checked with axe',
    async (t) => {
      const missing = [];
      for (const b of Object.values(browsers)) {
        if (!b.b) continue;
        t.diagnostic(`${b.label}: ${b.b.visits.loads.length} page loads`);
        for (const l of b.b.visits.unchecked()) missing.push(`${b.label}: #${l.seq} ${l.url}`);
      }
      assert.ok(Object.values(browsers).every((b) => b.b), 'both browsers were used');
      assert.ok(missing.length === 0, `${missing.length} page load(s) were never checked with axe:\n  ${missing.join('\n  ')}`);
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const problems = [];
      for (const b of Object.values(browsers)) {
        if (!b.b) continue;
        problems.push(...b.b.visits.assetFailures.map((f) => `${b.label}: asset: ${f}`));
        problems.push(...b.b.visits.consoleErrors.map((e) => `${b.label}: console: ${e}`));
      }
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});

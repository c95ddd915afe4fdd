// Linking NHS login to an email account, against the test OpenID provider
// (tests/idp) and one `keyhold serve --demo` that asks NHS login for P9, P5 or
// P0 and sends its mail to the SMTP sink in lib/mail.mjs.
//
// The provider gets its three usual users (tests/idp/users.json) and two more,
// passed inline: `link9`, a new P9 identity with the NHS number of the demo
// record for NHS login (9990000018), and `dup`, a P9 identity whose email
// address is the one Lee signs up with.
//
// In real (headless Chromium) browsers, one fresh profile per person:
//
// 1. Lee signs up with email and password and confirms through the mailed
//    link: their own empty record (no NHS number, no "Note for my care team");
//    /account says P0, "Not linked", and offers "Link NHS login".
// 2. "Link NHS login", the provider's login page as link9, and back on
//    /account: P9, "Linked to this account".
// 3. /record is now the demo record: NHS number 999 000 0018, entries from the
//    GP practice and the hospital, the patient's note; "Discharge summary" in
//    the documents.
// 4. One account, two ways in: signed out, the password opens the same record;
//    signed out again, "Continue with NHS login" as link9 opens the same
//    account (the header names Lee's address, not link9's).
// 5. Refusals: Sam (a second email account) cannot link link9 (409, reason
//    "account"), and link9 still opens Lee's account; signed out,
//    /auth/nhs/start?link=1 is refused.
// 6. dup (a new NHS login identity with Lee's email address), signed out, is
//    not given Lee's account: 409, reason "account", telling them to sign in
//    with the email and password and link from the account page.
//
// Every page the browsers load is checked with axe-core (WCAG 2.x A/AA), the
// provider's login page and the refusal pages included. The steps run in
// order; once one fails, the later ones are skipped, except after axe
// violations, which fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startServer } from './lib/server.mjs';
import { startMailSink, linkIn } from './lib/mail.mjs';
import { makeClientKey, startIdp, idpDir } from './lib/idp.mjs';
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
  assertMainLacks,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

// What `keyhold serve --demo` seeds (crates/keyhold-domain/src/demo.rs): the
// record of DEMO_NHS_LOGIN_NHS_NUMBER, which no account owns at the start.
const NHS_NUMBER = '999 000 0018';
const GP_PRACTICE = 'Riverside Medical Practice';
const HOSPITAL = "St Oswald's Hospital NHS Foundation Trust";
const PATIENT_NOTE = 'Note for my care team';
const PATIENT_ENTERED = 'Patient entered';
const HOSPITAL_DOCUMENT = 'Discharge summary';

const CLIENT_ID = 'keyhold-test';
const VTR = '["P9.Cp.Cd","P5.Cp.Cd","P0.Cp.Cd"]';

const IDP_H1 = 'Sign in to Test NHS login';
const REFUSED_H1 = 'You have not been signed in';
// What a refused link says to someone who stays signed in.
const NOT_LINKED_H1 = 'NHS login was not linked';
const CHECK_EMAIL_H1 = 'Check your email';
const RECORD_H1 = 'Your health record';
const ACCOUNT_H1 = 'Your account';
const ALREADY_LINKED = 'This NHS login is already linked to another Keyhold account';
const EMAIL_TAKEN = 'A Keyhold account already uses this email address. Sign in with your email and password, then link NHS login from your account page';

const SESSION_COOKIE = 'keyhold_session';
const FLOW_COOKIE = 'keyhold_nhs_login';

const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;

// ---------------------------------------------------------------- helpers --

/** "Sign out" in the header. */
function signOutButton(page) {
  return page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true });
}

/** The header's link to /account (it names the signed-in address). */
function accountLink(page) {
  return page.getByRole('banner').locator('a.nhsuk-header__account-link[href="/account"]');
}

/** The address the header says is signed in, or null when nobody is. */
async function headerEmail(page) {
  const link = accountLink(page);
  if ((await link.count()) === 0) return null;
  return ((await link.first().innerText()) ?? '').replace(/^Your account, signed in as\s*/i, '').trim();
}

/** The entries listed on a record page, as { title, from } (the tables: Date, Title, Category, From). */
async function listedEntries(page) {
  return page.locator('main table tbody tr').evaluateAll((rows) =>
    rows
      .map((r) => {
        const cells = r.querySelectorAll('td');
        return { title: cells[1]?.innerText.trim() ?? '', from: cells[3]?.innerText.trim() ?? '' };
      })
      .filter((e) => e.title),
  );
}

/** What the patient banner shows as the NHS number (e.g. "Not recorded" when there is none). */
async function bannerNhsNumbers(page) {
  return page.locator('.keyhold-banner__nhs-number strong').evaluateAll((dds) => dds.map((d) => d.innerText.trim()));
}

/** The identity row of /account: its data-level. */
async function accountLevel(page) {
  const dd = page.locator('main dd[data-level]');
  await expectVisible(dd, 'the identity check row (dd[data-level]) on /account');
  return dd.first().getAttribute('data-level');
}

/** The value of a summary-list row on /account, by its key. */
async function accountRow(page, key) {
  const row = page.locator('main .nhsuk-summary-list__row').filter({ has: page.locator('dt', { hasText: key }) });
  await expectVisible(row, `the "${key}" row on /account`);
  return ((await row.first().locator('dd').innerText()) ?? '').replace(/\s+/g, ' ').trim();
}

/** "Link NHS login" on /account (an <a role="button">). */
function linkNhsLoginButton(page) {
  return page.getByRole('main').getByRole('button', { name: 'Link NHS login', exact: true });
}

// ------------------------------------------------------------------ flow --

describe('Keyhold: linking NHS login to an email account (test provider, demo data)', () => {
  let tmp;
  let key;
  let sink;
  let idp;
  let server;

  const token = randomToken(8);
  // Lee: the email account that links link9. Sam: a second email account that tries to.
  const lee = { label: 'Lee (email account that links link9)', name: `Lee Linker-${token}`, email: `lee-${token}@example.test`, password: randomPassphrase(20) };
  const sam = { label: 'Sam (second email account)', name: `Sam Second-${token}`, email: `sam-${token}@example.test`, password: randomPassphrase(20) };
  const visitor = { label: 'a signed-out visitor' };
  const dupPerson = { label: "dup (NHS login with Lee's email address)" };
  const people = [lee, sam, visitor, dupPerson];

  // The provider's extra users, inline beside tests/idp/users.json's.
  const LINK9 = {
    sub: '4f9b8c2e-1a7d-4e3b-9c11-0000000000a9',
    vot: 'P9.Cp.Cd',
    identity_proofing_level: 'P9',
    nhs_number: '9990000018',
    birthdate: '1980-04-15',
    family_name: 'Example-Link',
    given_name: 'Lina',
    email: 'link9@idp.keyhold.test',
    email_verified: true,
  };
  const DUP = {
    sub: '4f9b8c2e-1a7d-4e3b-9c11-0000000000d9',
    vot: 'P9.Cp.Cd',
    identity_proofing_level: 'P9',
    nhs_number: '9990000026',
    birthdate: '1975-01-20',
    family_name: 'Example-Dup',
    given_name: 'Dee',
    email: lee.email,
    email_verified: true,
  };

  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({
      server: server && {
        logs: (limit) => `${server.logs(limit)}\n${idp ? `=== test provider (${idp.issuer}) ===\n${idp.logs(limit)}` : ''}`,
      },
      browsers: people.filter((p) => p.b).map((p) => ({ label: p.label, page: p.page, visits: p.b.visits })),
    }),
  });

  // An axe violation fails its step after the step's own checks have run,
  // without skipping the later steps.
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        tmp = await mkdtemp(path.join(tmpdir(), 'keyhold-nhslink-'));
        key = await makeClientKey(path.join(tmp, 'keys'));
        const users = JSON.parse(await readFile(path.join(idpDir, 'users.json'), 'utf8'));
        users.link9 = LINK9;
        users.dup = DUP;
        idp = await startIdp({ clientId: CLIENT_ID, publicJwk: key.publicJwk, users });
        sink = await startMailSink();
        server = await startServer({
          extraArgs: ['--demo'],
          env: {
            KEYHOLD_OIDC_ISSUER: idp.issuer,
            KEYHOLD_OIDC_CLIENT_ID: CLIENT_ID,
            KEYHOLD_OIDC_CLIENT_KEY: key.pemPath,
            KEYHOLD_OIDC_VTR: VTR,
            KEYHOLD_SMTP_URL: sink.url,
          },
        });
        await idp.setRedirectUris([`${server.url}/auth/nhs/callback`]);
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 120_000 },
  );

  after(async () => {
    for (const p of people) await p.b?.close();
    await server?.stop();
    await idp?.stop();
    await sink?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true, maxRetries: 3 });
  });

  /** The person's page, opening a fresh browser (profile) for them if needed. */
  async function pageOf(person) {
    if (!person.b) {
      person.b = await launchBrowser();
      person.page = person.b.page;
    }
    return person.page;
  }

  /**
   * A mailed link, opened on the server under test (KEYHOLD_PUBLIC_URL is
   * unset, so mail names the default public address; the path is what counts).
   */
  function onServer(link) {
    const u = new URL(link);
    return new URL(`${u.pathname}${u.search}`, server.url).href;
  }

  async function sessionCookie(page) {
    return (await page.context().cookies(server.url)).find((c) => c.name === SESSION_COOKIE);
  }

  /** Signs up with email and password, confirms through the mailed link, and lands on /record. */
  async function signUpAndConfirm(person, t) {
    const page = await pageOf(person);
    assertStatus(await visit(page, `${server.url}/signup`), isOk, '2xx', 'GET /signup');
    await checkPage(page, `sign-up page (${person.label})`);
    const mark = sink.messages.length;
    await page.locator('#name').fill(person.name);
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(person.password);
    let res = await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assertStatus(res, (s) => s === 200, '200', `POST /signup (${person.label})`);
    assert.equal(await h1Text(page), CHECK_EMAIL_H1, `h1 after signing up (${person.label})`);
    await checkPage(page, `check your email (${person.label})`);

    const mail = await sink.waitFor((m) => sink.messages.indexOf(m) >= mark && m.to === person.email && m.text.includes('/account/confirm/'), MAIL_TIMEOUT_MS);
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    res = await visit(page, onServer(linkIn(mail, '/account/confirm/')));
    assertStatus(res, (s) => s === 200, '200', `GET the confirmation link (${person.label})`);
    assert.equal(await h1Text(page), 'Confirm your email address', `h1 of the confirmation link (${person.label})`);
    await checkPage(page, `confirm your email address (${person.label})`);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in', exact: true }).click());
    assertStatus(res, isOk, '2xx', `"Confirm and sign in" (${person.label})`);
    await assertPath(page, '/record', `after "Confirm and sign in" (${person.label})`);
    assert.equal(await h1Text(page), RECORD_H1, `h1 after confirming (${person.label})`);
    await expectVisible(signOutButton(page), `a "Sign out" button after confirming (${person.label})`);
    assert.equal(await headerEmail(page), person.email, `the header names ${person.label}'s address`);
    await checkPage(page, `the record after confirming (${person.label})`);
    return page;
  }

  /** The person's own new record: no NHS number, nothing from the demo record. */
  async function assertOwnEmptyRecord(page, who) {
    assert.equal(pathOf(page), '/record', `${who}: on /record`);
    const numbers = await bannerNhsNumbers(page);
    // The banner says "Not recorded" for a record without an NHS number.
    assert.ok(numbers.every((n) => !/\d/.test(n)), `${who}: no NHS number is shown (banner: ${JSON.stringify(numbers)})`);
    await assertMainLacks(page, NHS_NUMBER, `${who}'s record`);
    await assertMainLacks(page, PATIENT_NOTE, `${who}'s record`);
    await assertMainLacks(page, GP_PRACTICE, `${who}'s record`);
    const entries = await listedEntries(page);
    assert.deepEqual(entries, [], `${who}'s new record lists no entries`);
  }

  /** /account through the header's address; checks it is `person`'s account. */
  async function openAccount(page, person, what) {
    const link = accountLink(page);
    await expectVisible(link, `the header's link to the account (${what})`);
    await navigateBy(page, () => link.first().click());
    await assertPath(page, '/account', `after the header's address (${what})`);
    assert.equal(await h1Text(page), ACCOUNT_H1, `h1 of /account (${what})`);
    assert.equal(await accountRow(page, 'Email address'), person.email, `the account's email address (${what})`);
    assert.equal(await headerEmail(page), person.email, `the header's address (${what})`);
    await checkPage(page, `your account (${what})`);
  }

  /**
   * On the provider's login page (the browser must be there): signs in as
   * `login` and returns the response of the page the browser ends on (Keyhold).
   */
  async function loginAtProvider(page, login, who) {
    assert.equal(new URL(page.url()).origin, idp.issuer, `${who}: the browser should be at the provider (${idp.issuer}), not at ${page.url()}`);
    assert.equal(await h1Text(page), IDP_H1, `${who}: h1 of the provider's login page`);
    await checkPage(page, `the provider's login page (${who})`);
    await page.locator('#login').fill(login);
    await page.locator('#password').fill('any password will do');
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Continue', exact: true }).click());
    assert.equal(new URL(page.url()).origin, server.url, `${who}: after the provider's login, the browser should be back on Keyhold (${server.url}), not at ${page.url()}\n${await describePage(page)}`);
    return res;
  }

  /** From /account, "Link NHS login", and the provider's login page as `login`. */
  async function linkFromAccount(page, login, who) {
    const button = linkNhsLoginButton(page);
    await expectVisible(button, `a "Link NHS login" button on /account (${who})`);
    const res = await navigateBy(page, () => button.first().click());
    assertStatus(res, isOk, '2xx', `the provider's login page after "Link NHS login" (${who})`);
    return loginAtProvider(page, login, who);
  }

  /** From /signin, "Continue with NHS login", and the provider's login page as `login`. */
  async function continueWithNhsLogin(page, login, who) {
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', `GET /signin (${who})`);
    await checkPage(page, `sign-in page (${who})`);
    const button = page.getByRole('main').getByRole('button', { name: 'Continue with NHS login', exact: true });
    await expectVisible(button, `a "Continue with NHS login" button on /signin (${who})`);
    const res = await navigateBy(page, () => button.click());
    assertStatus(res, isOk, '2xx', `the provider's login page (${who})`);
    return loginAtProvider(page, login, who);
  }

  /** Signs in with the person's email and password from /signin; lands on /record. */
  async function signInWithPassword(page, person, who) {
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', `GET /signin (${who})`);
    await checkPage(page, `sign-in page (${who})`);
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(person.password);
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    assertStatus(res, isOk, '2xx', `POST /signin (${who})`);
    await assertPath(page, '/record', `${who}: after signing in with the password`);
    await expectVisible(signOutButton(page), `a "Sign out" button (${who})`);
    await checkPage(page, `the record after signing in (${who})`);
  }

  async function signOut(page, who) {
    await expectVisible(signOutButton(page), `a "Sign out" button before signing out (${who})`);
    await navigateBy(page, () => signOutButton(page).click());
    await assertPath(page, '/', `after "Sign out" (${who})`);
    await expectAbsent(signOutButton(page), `"Sign out" button after signing out (${who})`);
    await checkPage(page, `home page after signing out (${who})`);
  }

  /** The linked demo record: its NHS number, the organisations' entries and the patient's note. */
  async function assertLinkedRecord(page, who, t) {
    if (pathOf(page) !== '/record') {
      assertStatus(await visit(page, `${server.url}/record`), isOk, '2xx', `GET /record (${who})`);
      await checkPage(page, `the record (${who})`);
    }
    assert.equal(await h1Text(page), RECORD_H1, `h1 of /record (${who})`);
    assert.deepEqual(await bannerNhsNumbers(page), [NHS_NUMBER], `the NHS number in the banner (${who})`);
    const entries = await listedEntries(page);
    t?.diagnostic(`${who} sees ${entries.length} entries from: ${[...new Set(entries.map((e) => e.from))].join(', ')}`);
    assert.ok(entries.some((e) => e.from === GP_PRACTICE), `${who}: entries from ${GP_PRACTICE}: ${JSON.stringify(entries)}`);
    assert.ok(entries.some((e) => e.from === HOSPITAL), `${who}: entries from ${HOSPITAL}: ${JSON.stringify(entries)}`);
    const note = entries.find((e) => e.title === PATIENT_NOTE);
    assert.ok(note, `${who}: the patient's "${PATIENT_NOTE}": ${JSON.stringify(entries)}`);
    assert.equal(note.from, PATIENT_ENTERED, `"${PATIENT_NOTE}" is from the patient (${who})`);
  }

  /** A refusal page after NHS login: its status, h1 and data-reason; returns its message. */
  async function assertRefusalPage(page, res, { status, reason, who, h1 = REFUSED_H1 }) {
    assertStatus(res, (s) => s === status, String(status), `the callback (${who})`);
    await assertPath(page, '/auth/nhs/callback', `the refusal page (${who})`);
    assert.equal(await h1Text(page), h1, `h1 of the refusal page (${who})`);
    const p = page.locator('main [data-reason]');
    await expectVisible(p, `the refusal's reason (${who})`);
    assert.equal(await p.first().getAttribute('data-reason'), reason, `the refusal reason (${who})`);
    assert.ok((await page.content()).includes(`<h1>${h1}</h1>`), `the page says <h1>${h1}</h1> (${who})`);
    await checkPage(page, `the refusal page (${who})`);
    return ((await p.first().innerText()) ?? '').replace(/\s+/g, ' ').trim();
  }

  // ------------------------------------------------------------------ 1 --

  step('1. Lee signs up with email and password and confirms: their own empty record; /account says P0, "Not linked", "Link NHS login"', async (t) => {
    const page = await signUpAndConfirm(lee, t);
    await assertOwnEmptyRecord(page, 'Lee (email only)');
    await openAccount(page, lee, 'Lee, email only');
    assert.equal(await accountLevel(page), 'P0', "Lee's identity level before linking");
    assert.equal(await accountRow(page, 'NHS login'), 'Not linked', "the NHS login row before linking");
    await expectVisible(linkNhsLoginButton(page), 'a "Link NHS login" button on /account');
    const href = await linkNhsLoginButton(page).first().getAttribute('href');
    t.diagnostic(`"Link NHS login" goes to ${href}`);
    assert.equal(href, '/auth/nhs/start?link=1', 'the "Link NHS login" button');
  });

  // ------------------------------------------------------------------ 2 --

  step('2. "Link NHS login" as link9 comes back to /account: P9, "Linked to this account"', async (t) => {
    const page = lee.page;
    const res = await linkFromAccount(page, 'link9', 'Lee linking link9');
    assertStatus(res, isOk, '2xx', 'the page after linking');
    t.diagnostic(`after linking: ${page.url()}`);
    await assertPath(page, '/account', 'the link flow returns to /account');
    assert.equal(await h1Text(page), ACCOUNT_H1, 'h1 after linking');
    await checkPage(page, 'your account after linking (Lee)');
    assert.equal(await accountLevel(page), 'P9', "Lee's identity level after linking");
    assert.equal(await accountRow(page, 'NHS login'), 'Linked to this account', 'the NHS login row after linking');
    const check = await accountRow(page, 'Identity check');
    t.diagnostic(`identity check row: ${check}`);
    assert.ok(check.includes('NHS login (P9.Cp.Cd)'), `the identity check names NHS login's vector of trust: ${check}`);
    assert.equal(await accountRow(page, 'Email address'), lee.email, 'the account keeps its email address');
    assert.equal(await headerEmail(page), lee.email, "the header still names Lee's address");
    await expectAbsent(linkNhsLoginButton(page), '"Link NHS login" button once linked');
    await assertMainContains(page, 'Change your password', '/account still offers the password (the account has one)');
  });

  // ------------------------------------------------------------------ 3 --

  step('3. /record is now the demo record: 999 000 0018, entries from the GP practice and the hospital, the patient\'s note; "Discharge summary"', async (t) => {
    const page = lee.page;
    assertStatus(await visit(page, `${server.url}/record`), isOk, '2xx', 'GET /record after linking');
    await checkPage(page, 'the record after linking (Lee)');
    await assertLinkedRecord(page, 'Lee after linking', t);

    await navigateBy(page, () => page.getByRole('navigation', { name: 'This record' }).getByRole('link', { name: 'Documents', exact: true }).click());
    await assertPath(page, '/record/documents', 'after "Documents"');
    await checkPage(page, 'documents page (Lee, linked)');
    await assertMainContains(page, HOSPITAL_DOCUMENT, "Lee's documents after linking");
  });

  // ------------------------------------------------------------------ 4 --

  step('4. one account, two ways in: the password opens the same record; "Continue with NHS login" as link9 opens Lee\'s account', async (t) => {
    const page = lee.page;
    await signOut(page, 'Lee, linked');
    await signInWithPassword(page, lee, 'Lee with the password, after linking');
    assert.equal(await headerEmail(page), lee.email, 'the header after the password sign-in');
    await assertLinkedRecord(page, 'Lee with the password', t);
    await openAccount(page, lee, 'Lee with the password');
    assert.equal(await accountLevel(page), 'P9', 'the level after the password sign-in (kept from NHS login)');
    assert.equal(await accountRow(page, 'NHS login'), 'Linked to this account', 'the NHS login row after the password sign-in');

    await signOut(page, 'Lee after the password sign-in');
    // The provider still has link9's session in this browser and would skip
    // its login form; end it, so that link9 is chosen on the form again.
    await page.context().clearCookies({ name: /^test_idp_/ });
    const res = await continueWithNhsLogin(page, 'link9', 'link9 signing in, signed out');
    assertStatus(res, isOk, '2xx', 'the page after signing in as link9');
    t.diagnostic(`link9 landed on ${page.url()}`);
    await expectVisible(signOutButton(page), 'a "Sign out" button once link9 is signed in');
    await checkPage(page, `landing page after link9 signs in (${pathOf(page)})`);
    const shown = await headerEmail(page);
    t.diagnostic(`header after NHS login as link9: ${shown}`);
    assert.equal(shown, lee.email, `the header names Lee's address (the email account), not ${LINK9.email}`);
    await assertLinkedRecord(page, 'link9 via NHS login', t);
    await openAccount(page, lee, 'link9 via NHS login');
    assert.equal(await accountLevel(page), 'P9', 'the level after NHS login as link9');
    assert.equal(await accountRow(page, 'NHS login'), 'Linked to this account', 'the NHS login row after NHS login as link9');
    await assertMainLacks(page, LINK9.email, "Lee's account page (link9's address)");
  });

  // ------------------------------------------------------------------ 5 --

  step('5a. Sam (a second email account) cannot link link9: 409, reason "account"; Sam stays signed in, unlinked; link9 still opens Lee\'s account', async (t) => {
    const page = await signUpAndConfirm(sam, t);
    await assertOwnEmptyRecord(page, 'Sam (email only)');
    const before = await sessionCookie(page);
    await openAccount(page, sam, 'Sam, email only');
    assert.equal(await accountLevel(page), 'P0', "Sam's identity level before trying to link");
    assert.equal(await accountRow(page, 'NHS login'), 'Not linked', "Sam's NHS login row before trying to link");

    const res = await linkFromAccount(page, 'link9', 'Sam linking link9');
    const message = await assertRefusalPage(page, res, { status: 409, reason: 'account', who: 'Sam linking link9', h1: NOT_LINKED_H1 });
    await expectVisible(page.getByText('You are still signed in as before.'), 'the page says Sam is still signed in');
    t.diagnostic(`refusal (409 account): ${message}`);
    assert.ok(message.includes(ALREADY_LINKED), `the refusal says the NHS login is linked to another account: ${message}`);
    await assertMainLacks(page, lee.email, "the refusal page (Lee's address)");

    // What the server does with Sam's session: the refusal page is rendered
    // for the signed-in viewer and the session is left as it was.
    const shown = await headerEmail(page);
    t.diagnostic(`header on the refusal page: ${shown ?? '(nobody signed in)'}; "Sign out" buttons: ${await signOutButton(page).count()}`);
    assert.equal(shown, sam.email, "the refusal page's header still names Sam (still signed in)");
    const after = await sessionCookie(page);
    assert.equal(after?.value, before?.value, "Sam's session cookie is unchanged by the refused link");

    await openAccount(page, sam, 'Sam after the refused link');
    assert.equal(await accountLevel(page), 'P0', "Sam's level after the refused link");
    assert.equal(await accountRow(page, 'NHS login'), 'Not linked', "Sam's NHS login row after the refused link");
    await expectVisible(linkNhsLoginButton(page), '"Link NHS login" still offered to Sam');
    assertStatus(await visit(page, `${server.url}/record`), isOk, '2xx', "GET /record (Sam after the refused link)");
    await checkPage(page, "Sam's record after the refused link");
    await assertOwnEmptyRecord(page, 'Sam after the refused link');

    // Lee's browser (signed in as link9 in step 4) still sees the linked account.
    const leePage = lee.page;
    assertStatus(await visit(leePage, `${server.url}/account`), isOk, '2xx', "GET /account (Lee, after Sam's attempt)");
    await checkPage(leePage, "Lee's account after Sam's attempt");
    assert.equal(await accountRow(leePage, 'Email address'), lee.email, "Lee's account after Sam's attempt");
    assert.equal(await accountLevel(leePage), 'P9', "Lee's level after Sam's attempt");
    assert.equal(await accountRow(leePage, 'NHS login'), 'Linked to this account', "Lee's NHS login row after Sam's attempt");
  });

  step('5b. signed out, /auth/nhs/start?link=1 is refused: 303 to /signin, no sign-in flow, the provider is not asked', async (t) => {
    const last = await idp.lastRequest();
    const lastParams = JSON.stringify(last.authorization?.params ?? null);

    const res = await fetch(`${server.url}/auth/nhs/start?link=1`, { redirect: 'manual' });
    await res.body?.cancel();
    const setCookies = res.headers.getSetCookie();
    t.diagnostic(`GET /auth/nhs/start?link=1 (no cookies): ${res.status} Location ${res.headers.get('location')} Set-Cookie ${JSON.stringify(setCookies)}`);
    assert.equal(res.status, 303, 'signed out, /auth/nhs/start?link=1 answers');
    assert.equal(res.headers.get('location'), '/signin', 'signed out, /auth/nhs/start?link=1 sends to');
    assert.ok(!setCookies.some((c) => c.startsWith(`${FLOW_COOKIE}=`)), `no sign-in flow is started: ${JSON.stringify(setCookies)}`);

    const page = await pageOf(visitor);
    const r = await visit(page, `${server.url}/auth/nhs/start?link=1`);
    t.diagnostic(`in the browser: ended at ${page.url()} (${r.status()})`);
    assertStatus(r, isOk, '2xx', 'the page after /auth/nhs/start?link=1, signed out');
    await assertPath(page, '/signin', 'signed out, /auth/nhs/start?link=1 in the browser');
    assert.equal(new URL(page.url()).origin, server.url, 'the browser stays on Keyhold');
    await expectAbsent(signOutButton(page), '"Sign out" button (signed-out visitor)');
    await checkPage(page, 'sign-in page after /auth/nhs/start?link=1 (signed out)');
    const flow = (await page.context().cookies(server.url)).find((c) => c.name === FLOW_COOKIE);
    assert.equal(flow, undefined, 'the browser holds no sign-in flow cookie');

    const now = await idp.lastRequest();
    assert.equal(JSON.stringify(now.authorization?.params ?? null), lastParams, 'the provider got no new authorization request');
  });

  // ------------------------------------------------------------------ 6 --

  step("6. dup (NHS login with Lee's email address), signed out, is refused: 409, reason \"account\"; not signed in, Lee's account unchanged", async (t) => {
    const page = await pageOf(dupPerson);
    const res = await continueWithNhsLogin(page, 'dup', 'dup signing in');
    const message = await assertRefusalPage(page, res, { status: 409, reason: 'account', who: 'dup signing in' });
    t.diagnostic(`refusal (409 account): ${message}`);
    assert.ok(message.includes(EMAIL_TAKEN), `the refusal says to sign in with the email and password and link from the account page: ${message}`);
    await expectAbsent(signOutButton(page), '"Sign out" button on the refusal page (dup)');
    assert.equal(await headerEmail(page), null, 'nobody is signed in on the refusal page (dup)');
    assert.equal(await sessionCookie(page), undefined, 'no session cookie after the refusal (dup)');

    await visit(page, `${server.url}/record`);
    await assertPath(page, '/signin', 'GET /record after the refusal (dup) goes to sign in');
    await assertMainLacks(page, NHS_NUMBER, 'the sign-in page (dup)');
    await checkPage(page, 'sign-in page after the refusal (dup)');

    // Lee's account is untouched: same address, still linked to link9, same record.
    const leePage = lee.page;
    assertStatus(await visit(leePage, `${server.url}/account`), isOk, '2xx', "GET /account (Lee, after dup's attempt)");
    await checkPage(leePage, "Lee's account after dup's attempt");
    assert.equal(await accountRow(leePage, 'Email address'), lee.email, "Lee's account after dup's attempt");
    assert.equal(await accountLevel(leePage), 'P9', "Lee's level after dup's attempt");
    const check = await accountRow(leePage, 'Identity check');
    assert.ok(check.includes('NHS login (P9.Cp.Cd)'), `Lee's identity check after dup's attempt: ${check}`);
    await assertLinkedRecord(leePage, "Lee after dup's attempt", t);
  });

  // ---------------------------------------------------------------- end --

  step(
    'every page each browser loaded was checked with axe',
    async (t) => {
      const missing = [];
      for (const p of people) {
        if (!p.b) continue;
        t.diagnostic(`${p.label}: ${p.b.visits.loads.length} page loads`);
        for (const l of p.b.visits.unchecked()) missing.push(`${p.label}: #${l.seq} ${l.url}`);
      }
      assert.ok(people.every((p) => p.b), `every person had a browser (${people.filter((p) => p.b).length} of ${people.length})`);
      assert.ok(missing.length === 0, `${missing.length} page load(s) were never checked with axe:\n  ${missing.join('\n  ')}`);
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const problems = [];
      for (const p of people) {
        if (!p.b) continue;
        problems.push(...p.b.visits.assetFailures.map((f) => `${p.label}: asset: ${f}`));
        problems.push(...p.b.visits.consoleErrors.map((e) => `${p.label}: console: ${e}`));
      }
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});

// Sign-in with NHS login, against the test OpenID provider (tests/idp) and two
// `keyhold serve --demo` servers: A asks NHS login for P9, P5 or P0, and B
// asks for P9 only (the default vectors of trust).
//
// In real (headless Chromium) browsers, one fresh profile per person: p9 goes
// from "Continue with NHS login" through the provider's login page to the
// demo record that carries their NHS number, and sees all of it, documents
// from the hospital included. p5 (same NHS number, partly proved) lands on the
// same record but sees only its details and what the patient entered; an
// organisation's entry that p9 can open is a 404 for p5. p0 (no NHS number)
// gets an account with no record. Signing out works, and the record is then
// out of reach. A sign-in at P5 on B, which asks for P9, is refused, and that
// refusal page is checked too. Every page the browsers load is checked with
// axe-core (WCAG 2.x A/AA), the provider's login page included.
//
// Without a browser (lib/idp.mjs's authorizeWithFetch, one cookie jar per
// attempt): what Keyhold sends NHS login (PKCE S256, the configured vtr, an
// RS512 client assertion for the token endpoint that lasts 60 s, a fresh jti
// each time); a changed state, a used sign-in flow, a replayed code, a wrong
// nonce, a foreign signature and an expired ID token are each refused with a
// 400 and their own reason; a level below what the server asks for is refused
// with a 403. No refusal starts a session, and each says "You have not been
// signed in".
//
// The steps run in order; once one fails, the later ones are skipped, except
// after axe violations, which fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { startServer } from './lib/server.mjs';
import { makeClientKey, startIdp, authorizeWithFetch, fetchWithJar, createCookieJar } from './lib/idp.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import {
  pathOf,
  assertPath,
  expectVisible,
  expectAbsent,
  h1Text,
  mainText,
  assertMainContains,
  assertMainLacks,
  linkOrButton,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

// What `keyhold serve --demo` seeds (crates/keyhold-domain/src/demo.rs): the
// record NHS login's p9 and p5 (tests/idp/users.json) sign in to.
const NHS_NUMBER = '999 000 0018';
const GP_PRACTICE = 'Riverside Medical Practice';
const HOSPITAL = "St Oswald's Hospital NHS Foundation Trust";
const PATIENT_NOTE = 'Note for my care team';
const PATIENT_ENTERED = 'Patient entered';
const HOSPITAL_DOCUMENT = 'Discharge summary';

const CLIENT_ID = 'keyhold-test';
const VTR_A = '["P9.Cp.Cd","P5.Cp.Cd","P0.Cp.Cd"]';
const VTR_DEFAULT = ['P9.Cp.Cd', 'P9.Cp.Ck', 'P9.Cm'];

const IDP_H1 = 'Sign in to Test NHS login';
const REFUSED_H1 = 'You have not been signed in';
const SESSION_COOKIE = 'keyhold_session';
const FLOW_COOKIE = 'keyhold_nhs_login';

const STEP_TIMEOUT_MS = 120_000;

// ---------------------------------------------------------------- helpers --

/** "Sign out" in the header. */
function signOutButton(page) {
  return page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true });
}

/** The main content's text without the person banner. */
async function textBesideBanner(page) {
  const text = await page.getByRole('main').evaluate((main) => {
    const copy = main.cloneNode(true);
    copy.querySelectorAll('.keyhold-banner').forEach((b) => b.remove());
    return copy.textContent ?? '';
  });
  return text.replace(/\s+/g, ' ');
}

/** The entries listed on a record page, as { title, from, href } (the tables: Date, Title, Category, From). */
async function listedEntries(page) {
  return page.locator('main table tbody tr').evaluateAll((rows) =>
    rows
      .map((r) => {
        const cells = r.querySelectorAll('td');
        const link = cells[1]?.querySelector('a');
        return {
          title: cells[1]?.innerText.trim() ?? '',
          from: cells[3]?.innerText.trim() ?? '',
          href: link ? new URL(link.href).pathname : '',
        };
      })
      .filter((e) => e.title),
  );
}

/** The NHS number in the patient banner. */
async function bannerNhsNumber(page) {
  const dd = page.locator('.keyhold-banner__nhs-number strong');
  await expectVisible(dd, 'the NHS number in the patient banner');
  return ((await dd.first().innerText()) ?? '').trim();
}

/** The identity row of /account: its data-level. */
async function accountLevel(page) {
  const dd = page.locator('main dd[data-level]');
  await expectVisible(dd, 'the identity check row (dd[data-level]) on /account');
  return dd.first().getAttribute('data-level');
}

/** The `data-reason` of a refusal page's HTML, or null. */
function reasonOf(html) {
  return html.match(/data-reason="([^"]*)"/)?.[1] ?? null;
}

/** The visible text of an HTML page's <main>, for failure messages. */
function mainTextOf(html) {
  const main = html.match(/<main[\s\S]*?<\/main>/)?.[0] ?? html;
  return main
    .replace(/<[^>]+>/g, ' ')
    .replace(/&#39;/g, "'")
    .replace(/&quot;/g, '"')
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 800);
}

/** Whether these Set-Cookie lines start a session (a non-empty keyhold_session). */
function startsSession(setCookies) {
  return setCookies.some((c) => new RegExp(`^${SESSION_COOKIE}=[^;\\s]+`).test(c));
}

/** Whether these Set-Cookie lines clear the sign-in flow cookie. */
function clearsFlow(setCookies) {
  return setCookies.some((c) => new RegExp(`^${FLOW_COOKIE}=;`).test(c) && /max-age=0/i.test(c));
}

/** A callback URL with some of its query parameters replaced. */
function withParams(url, params) {
  const u = new URL(url);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
}

// ------------------------------------------------------------------ flow --

describe('Keyhold sign-in with NHS login (test provider, demo data)', () => {
  let tmp;
  let key;
  let idp;
  let serverA; // asks for P9, P5 or P0
  let serverB; // asks for P9 only (the default vtr)

  // The people of the browser part; each gets a browser when they first act.
  const people = {
    p9: { label: 'p9 (P9) on server A', login: 'p9' },
    p5: { label: 'p5 (P5) on server A', login: 'p5' },
    p0: { label: 'p0 (P0) on server A', login: 'p0' },
    p5b: { label: 'p5 (P5) on server B, which asks for P9', login: 'p5' },
  };
  const opened = [];

  // What the steps learn and share.
  const shared = {
    orgEntries: [], // p9's entries from organisations: { title, from, href }
    orgEntryPath: '', // one of them (from the GP practice)
    noteHref: '', // the patient's own note
    jtis: [], // client assertion jti of each successful sign-in by fetch
    refusals: 0, // refusal pages seen (fetch part)
  };

  const servers = () => [
    ['server A', serverA],
    ['server B', serverB],
  ].filter(([, s]) => s);

  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({
      server: {
        logs: (limit) =>
          [
            ...servers().map(([name, s]) => `=== ${name} (${s.url}) ===\n${s.logs(limit)}`),
            idp ? `=== test provider (${idp.issuer}) ===\n${idp.logs(limit)}` : '',
          ].join('\n'),
      },
      browsers: Object.values(people)
        .filter((p) => p.b)
        .map((p) => ({ label: p.label, page: p.page, visits: p.b.visits })),
    }),
  });

  // An axe violation fails its step after the step's own checks have run,
  // without skipping the later steps.
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        tmp = await mkdtemp(path.join(tmpdir(), 'keyhold-nhslogin-'));
        key = await makeClientKey(path.join(tmp, 'keys'));
        idp = await startIdp({ clientId: CLIENT_ID, publicJwk: key.publicJwk });
        const env = {
          KEYHOLD_OIDC_ISSUER: idp.issuer,
          KEYHOLD_OIDC_CLIENT_ID: CLIENT_ID,
          KEYHOLD_OIDC_CLIENT_KEY: key.pemPath,
        };
        // KEYHOLD_PUBLIC_URL is left unset: the server then names the address
        // it listens on, so the redirect URL is <server.url>/auth/nhs/callback.
        serverA = await startServer({ extraArgs: ['--demo'], env: { ...env, KEYHOLD_OIDC_VTR: VTR_A } });
        serverB = await startServer({ extraArgs: ['--demo'], env });
        await idp.setRedirectUris([`${serverA.url}/auth/nhs/callback`, `${serverB.url}/auth/nhs/callback`]);
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 120_000 },
  );

  after(async () => {
    for (const p of Object.values(people)) await p.b?.close();
    await serverA?.stop();
    await serverB?.stop();
    await idp?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true, maxRetries: 3 });
  });

  /** The person's page, opening a fresh browser (profile) for them if needed. */
  async function browserOf(person) {
    if (!person.b) {
      person.b = await launchBrowser();
      person.page = person.b.page;
      opened.push(person);
    }
    return person.page;
  }

  async function closeBrowserOf(person) {
    const b = person.b;
    person.b = null;
    person.page = null;
    person.closedVisits = b?.visits;
    await b?.close();
  }

  /**
   * From `server`'s /signin, "Continue with NHS login", the provider's login
   * page as `person.login`, and back to Keyhold. Returns the final response.
   */
  async function signInWithNhsLogin(person, server) {
    const page = await browserOf(person);
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    await checkPage(page, `sign-in page (${person.label})`);
    const button = page.getByRole('main').getByRole('button', { name: 'Continue with NHS login', exact: true });
    await expectVisible(button, 'a "Continue with NHS login" button on /signin');
    let res = await navigateBy(page, () => button.click());
    assertStatus(res, isOk, '2xx', 'the provider\'s login page');
    assert.equal(new URL(page.url()).origin, idp.issuer, `"Continue with NHS login" should lead to the provider (${idp.issuer}), not ${page.url()}`);
    assert.equal(await h1Text(page), IDP_H1, 'h1 of the provider\'s login page');
    await checkPage(page, `the provider's login page (${person.label})`);
    await page.locator('#login').fill(person.login);
    await page.locator('#password').fill('any password will do');
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Continue', exact: true }).click());
    assert.equal(new URL(page.url()).origin, server.url, `after the provider's login, the browser should be back on Keyhold (${server.url}), not at ${page.url()}\n${await describePage(page)}`);
    return res;
  }

  /** Signs in with NHS login on server A and expects to be signed in. */
  async function signedInOnA(person) {
    const res = await signInWithNhsLogin(person, serverA);
    assertStatus(res, isOk, '2xx', `the page after ${person.label} signs in`);
    const page = person.page;
    if (pathOf(page).startsWith('/auth/nhs/')) {
      assert.fail(`${person.label} was not signed in: ${await mainText(page)}\n${await describePage(page)}`);
    }
    await expectVisible(signOutButton(page), `a "Sign out" button once ${person.label} is signed in`);
    await checkPage(page, `landing page after ${person.label} signs in (${pathOf(page)})`);
    return page;
  }

  async function openDocuments(page, who) {
    if (pathOf(page) !== '/record') {
      await navigateBy(page, () => page.getByRole('link', { name: 'Back to the record', exact: true }).click());
      await assertPath(page, '/record', `after "Back to the record" (${who})`);
      await checkPage(page, `record page again (${who})`);
    }
    await navigateBy(page, () => page.getByRole('navigation', { name: 'This record' }).getByRole('link', { name: 'Documents', exact: true }).click());
    await assertPath(page, '/record/documents', `after "Documents" (${who})`);
    await checkPage(page, `documents page (${who})`);
  }

  async function openAccount(page, who) {
    const res = await visit(page, `${serverA.url}/account`);
    assertStatus(res, isOk, '2xx', `GET /account (${who})`);
    await assertPath(page, '/account', `/account (${who})`);
    await checkPage(page, `your account (${who})`);
  }

  // ------------------------------------------------------------- browser --

  step('p9 signs in with NHS login and sees the whole record of their NHS number', async (t) => {
    const page = await signedInOnA(people.p9);
    await assertPath(page, '/record', 'p9 after signing in with NHS login');
    assert.equal(await h1Text(page), 'Your health record', "h1 of p9's /record");
    assert.equal(await bannerNhsNumber(page), NHS_NUMBER, 'the NHS number in the banner is the one NHS login vouched for');

    const entries = await listedEntries(page);
    t.diagnostic(`p9 sees ${entries.length} entries from: ${[...new Set(entries.map((e) => e.from))].join(', ')}`);
    const fromGp = entries.filter((e) => e.from === GP_PRACTICE);
    const fromHospital = entries.filter((e) => e.from === HOSPITAL);
    assert.ok(fromGp.length > 0, `p9 should see entries from ${GP_PRACTICE}: ${JSON.stringify(entries)}`);
    assert.ok(fromHospital.length > 0, `p9 should see entries from ${HOSPITAL}: ${JSON.stringify(entries)}`);
    const note = entries.find((e) => e.title === PATIENT_NOTE);
    assert.ok(note, `p9 should see the patient's "${PATIENT_NOTE}": ${JSON.stringify(entries)}`);
    assert.equal(note.from, PATIENT_ENTERED, `"${PATIENT_NOTE}" is from the patient`);
    shared.noteHref = note.href;
    shared.orgEntries = entries.filter((e) => e.from !== PATIENT_ENTERED && !entries.some((o) => o.from === PATIENT_ENTERED && o.title === e.title));
    shared.orgEntryPath = fromGp[0].href;
    assert.match(shared.orgEntryPath, /^\/record\/entries\/[^/]+$/, 'the link of an entry from the GP practice');

    // p9 can open an entry from the GP practice (p5 must not, below).
    const res = await navigateBy(page, () => page.getByRole('main').locator(`a[href="${shared.orgEntryPath}"]`).first().click());
    assertStatus(res, isOk, '2xx', `p9 opening ${fromGp[0].title} (${shared.orgEntryPath})`);
    await assertPath(page, shared.orgEntryPath, 'after opening an entry from the GP practice');
    await assertMainContains(page, fromGp[0].title, 'the entry page');
    await checkPage(page, 'an entry from the GP practice (p9)');

    await openDocuments(page, 'p9');
    const p9Listed = await page.getByRole('main').locator('a[href*="/documents/"]').allInnerTexts();
    assert.ok(
      p9Listed.some((title) => title.includes(HOSPITAL_DOCUMENT)),
      `p9's documents page lists the hospital's document: ${JSON.stringify(p9Listed)}`,
    );
    await assertMainContains(page, HOSPITAL, "p9's documents page names the hospital");

    await openAccount(page, 'p9');
    assert.equal(await accountLevel(page), 'P9', "p9's identity level on /account");
    await assertMainContains(page, 'Linked to this account', 'the NHS login row on /account (p9)');
    await assertMainContains(page, 'You can see your whole health record', '"What you can see" on /account (p9)');
  });

  step('p5 signs in to the same record and sees only its details and what the patient entered', async (t) => {
    const page = await signedInOnA(people.p5);
    await assertPath(page, '/record', 'p5 after signing in with NHS login');
    assert.equal(await h1Text(page), 'Your health record', "h1 of p5's /record");
    assert.equal(await bannerNhsNumber(page), NHS_NUMBER, 'the NHS number in the banner (p5)');

    const entries = await listedEntries(page);
    t.diagnostic(`p5 sees: ${JSON.stringify(entries.map((e) => `${e.title} (${e.from})`))}`);
    assert.ok(entries.some((e) => e.title === PATIENT_NOTE), `p5 should see the patient's "${PATIENT_NOTE}": ${JSON.stringify(entries)}`);
    const fromOrganisations = entries.filter((e) => e.from !== PATIENT_ENTERED);
    assert.deepEqual(fromOrganisations, [], 'p5 must see no entry from an organisation');
    // The banner names p5's own GP practice (their personal details); the
    // record beside it names no organisation's entries.
    const beside = await textBesideBanner(page);
    assert.ok(!beside.includes(GP_PRACTICE), `p5's record page beside the banner names the GP practice: ${beside.slice(0, 1500)}`);
    await assertMainLacks(page, HOSPITAL, "p5's record page");
    const body = await mainText(page);
    const seen = shared.orgEntries.filter((e) => body.includes(e.title)).map((e) => e.title);
    assert.deepEqual(seen, [], "p5's record page must not name the organisations' entries p9 sees");

    // The patient's own note opens; the GP practice's entry p9 opened does not.
    let res = await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: PATIENT_NOTE, exact: true }).first().click());
    assertStatus(res, isOk, '2xx', `p5 opening "${PATIENT_NOTE}"`);
    await assertPath(page, shared.noteHref, `after opening "${PATIENT_NOTE}"`);
    await checkPage(page, "the patient's note (p5)");
    res = await visit(page, `${serverA.url}${shared.orgEntryPath}`);
    t.diagnostic(`p5 opening ${shared.orgEntryPath} (an entry from the GP practice) answered ${res.status()}`);
    assertStatus(res, (s) => s === 404, '404', `p5 opening an entry from the GP practice (${shared.orgEntryPath})`);
    await checkPage(page, 'an entry from the GP practice, refused (p5)');
    await visit(page, `${serverA.url}/record`);
    await checkPage(page, "p5's record again");

    await openDocuments(page, 'p5');
    // "Discharge summary" is also a kind in the upload form's list: look at
    // the documents themselves.
    const listed = await page.getByRole('main').locator('a[href*="/documents/"]').allInnerTexts();
    assert.ok(
      !listed.some((title) => title.includes(HOSPITAL_DOCUMENT)),
      `p5's documents page lists the hospital's document: ${JSON.stringify(listed)}`,
    );
    await assertMainLacks(page, HOSPITAL, "p5's documents page");

    await openAccount(page, 'p5');
    assert.equal(await accountLevel(page), 'P5', "p5's identity level on /account");
    await assertMainContains(page, 'Linked to this account', 'the NHS login row on /account (p5)');
    await closeBrowserOf(people.p5);
  });

  step('p0 (no NHS number) signs in to an account with no record: /record is a 404', async (t) => {
    const page = await signedInOnA(people.p0);
    t.diagnostic(`p0 landed on ${pathOf(page)}`);
    assert.notEqual(pathOf(page), '/record', 'p0 has no record to land on');
    await expectAbsent(page.getByRole('banner').getByRole('link', { name: 'My record', exact: true }), '"My record" link in the header for p0');

    const res = await visit(page, `${serverA.url}/record`);
    t.diagnostic(`GET /record for p0 answered ${res.status()}`);
    assertStatus(res, (s) => s === 404, '404', 'GET /record for p0');
    await assertPath(page, '/record', 'GET /record for p0 (no redirect)');
    await assertMainLacks(page, NHS_NUMBER, 'the 404 for p0');
    await checkPage(page, 'GET /record, not found (p0)');

    await openAccount(page, 'p0');
    assert.equal(await accountLevel(page), 'P0', "p0's identity level on /account");
    await assertMainContains(page, 'No health record is linked to this account', '"What you can see" on /account (p0)');
    await assertMainContains(page, 'Linked to this account', 'the NHS login row on /account (p0)');
    await closeBrowserOf(people.p0);
  });

  step('p9 signs out; the record then sends them to sign in', async (t) => {
    const page = people.p9.page;
    assert.ok(page, "p9's browser is still open");
    await visit(page, `${serverA.url}/record`);
    await checkPage(page, "p9's record before signing out");
    await navigateBy(page, () => signOutButton(page).click());
    t.diagnostic(`after "Sign out": ${page.url()}`);
    await assertPath(page, '/', 'after "Sign out"');
    await expectAbsent(signOutButton(page), '"Sign out" button after signing out');
    await expectVisible(page.getByRole('banner').getByRole('link', { name: 'Sign in', exact: true }), 'a "Sign in" link in the header after signing out');
    await checkPage(page, 'home page after signing out (p9)');

    const res = await visit(page, `${serverA.url}/record`);
    t.diagnostic(`GET /record after signing out ended at ${page.url()} (${res.status()})`);
    await assertPath(page, '/signin', 'GET /record after signing out (redirected to sign in)');
    await assertMainLacks(page, NHS_NUMBER, 'the sign-in page after signing out');
    await checkPage(page, 'sign-in page after /record, signed out (p9)');
    await closeBrowserOf(people.p9);
  });

  step('on server B (P9 only), p5 is refused in the browser: 403, reason "level", not signed in', async () => {
    const res = await signInWithNhsLogin(people.p5b, serverB);
    const page = people.p5b.page;
    assertStatus(res, (s) => s === 403, '403', 'the callback for p5 on server B');
    await assertPath(page, '/auth/nhs/callback', 'the refusal page (p5 on server B)');
    assert.equal(await h1Text(page), REFUSED_H1, 'h1 of the refusal page');
    assert.equal(await page.locator('main [data-reason]').first().getAttribute('data-reason'), 'level', 'the refusal reason');
    await assertMainContains(page, 'level P5', 'the refusal page names the level NHS login confirmed');
    await expectAbsent(signOutButton(page), '"Sign out" button on the refusal page');
    await checkPage(page, 'sign-in refused, level too low (p5 on server B)');

    await visit(page, `${serverB.url}/record`);
    await assertPath(page, '/signin', 'GET /record after the refusal (redirected to sign in)');
    await checkPage(page, 'sign-in page after the refusal (p5 on server B)');
    await closeBrowserOf(people.p5b);
  });

  // --------------------------------------------------------------- fetch --

  /** Signs in by fetch as `login` on `server` up to the callback (not requested). */
  function authorize(server, login) {
    return authorizeWithFetch(`${server.url}/auth/nhs/start?next=/`, { login });
  }

  /** Requests a callback URL; returns what came back. */
  async function callback(url, jar, headers) {
    const res = await fetchWithJar(url, jar, headers ? { headers } : {});
    const body = await res.text();
    return { url, status: res.status, location: res.headers.get('location'), setCookies: res.headers.getSetCookie(), body };
  }

  function describeAnswer(r) {
    return (
      `GET ${r.url}\n  -> ${r.status}${r.location ? ` Location: ${r.location}` : ''}\n` +
      `  Set-Cookie: ${JSON.stringify(r.setCookies)}\n  reason: ${reasonOf(r.body)}\n  main text: ${mainTextOf(r.body)}`
    );
  }

  /** A refusal: this status and reason, the page's h1, no session; the jar still reaches no record. */
  async function assertRefused(r, { status, reason, jar, server, what }) {
    assert.equal(r.status, status, `${what}: expected ${status} (reason "${reason}")\n${describeAnswer(r)}`);
    assert.equal(reasonOf(r.body), reason, `${what}: the refusal reason\n${describeAnswer(r)}`);
    assert.ok(r.body.includes(`<h1>${REFUSED_H1}</h1>`), `${what}: the page must say <h1>${REFUSED_H1}</h1>\n${describeAnswer(r)}`);
    assert.ok(!startsSession(r.setCookies), `${what}: a refusal must not start a session\n${describeAnswer(r)}`);
    if (jar) {
      const rec = await fetchWithJar(`${server.url}/record`, jar);
      await rec.body?.cancel();
      assert.notEqual(rec.status, 200, `${what}: GET /record with the same cookies must not show a record`);
      assert.equal(rec.status, 303, `${what}: GET /record with the same cookies should send to sign in`);
      assert.equal(rec.headers.get('location'), '/signin', `${what}: GET /record with the same cookies`);
    }
    shared.refusals++;
  }

  /** A completed sign-in: 303 to `next`, a session, and the record (or not) behind it. */
  async function assertSignedIn(r, { jar, server, what }) {
    assert.equal(r.status, 303, `${what}: expected a 303 to the page after signing in\n${describeAnswer(r)}`);
    assert.equal(r.location, '/', `${what}: the 303 goes to next=/\n${describeAnswer(r)}`);
    assert.ok(startsSession(r.setCookies), `${what}: a session cookie is set\n${describeAnswer(r)}`);
    assert.ok(clearsFlow(r.setCookies), `${what}: the sign-in flow cookie is cleared\n${describeAnswer(r)}`);
    const rec = await fetchWithJar(`${server.url}/record`, jar);
    const html = await rec.text();
    assert.equal(rec.status, 200, `${what}: GET /record after signing in`);
    assert.ok(html.includes(NHS_NUMBER), `${what}: the record carries the NHS number ${NHS_NUMBER}`);
  }

  step('what Keyhold sends NHS login: PKCE S256, the vtr, an RS512 client assertion for the token endpoint', async (t) => {
    for (let i = 0; i < 2; i++) {
      const { callbackUrl, jar } = await authorize(serverA, 'p9');
      const r = await callback(callbackUrl, jar);
      await assertSignedIn(r, { jar, server: serverA, what: `p9 signing in by fetch (#${i + 1})` });
      const sent = await idp.lastRequest();
      const a = sent.authorization;
      t.diagnostic(`authorization request #${i + 1}: ${JSON.stringify({ ...a, params: undefined })}`);
      assert.equal(a.client_id, CLIENT_ID, 'client_id');
      assert.equal(a.response_type, 'code', 'response_type');
      assert.equal(a.redirect_uri, `${serverA.url}/auth/nhs/callback`, 'redirect_uri');
      assert.equal(a.code_challenge_method, 'S256', 'code_challenge_method');
      assert.equal(a.code_challenge_present, true, 'a code_challenge is sent');
      assert.equal(a.vtr, VTR_A, 'vtr is the configured KEYHOLD_OIDC_VTR');
      assert.equal(a.state_present, true, 'state is sent');
      assert.equal(a.nonce_present, true, 'nonce is sent');
      assert.ok(String(a.scope).split(' ').includes('openid'), `scope contains openid: ${a.scope}`);
      assert.equal(new URL(callbackUrl).searchParams.get('state'), a.params.state, 'the callback carries the state sent');

      const tok = sent.token;
      t.diagnostic(`token request #${i + 1}: ${JSON.stringify(tok)}`);
      assert.equal(tok.status, 200, 'the provider accepted the token request');
      assert.equal(tok.grant_type, 'authorization_code', 'grant_type');
      assert.equal(tok.code_verifier_present, true, 'a PKCE code_verifier is sent');
      assert.equal(tok.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', 'client_assertion_type');
      const ca = tok.client_assertion;
      assert.ok(ca?.header && ca?.claims, `a decodable client assertion: ${JSON.stringify(ca)}`);
      assert.equal(ca.header.alg, 'RS512', 'client assertion alg');
      assert.equal(ca.header.kid, key.kid, 'client assertion kid (the thumbprint of the registered key)');
      assert.equal(ca.claims.iss, CLIENT_ID, 'client assertion iss');
      assert.equal(ca.claims.sub, CLIENT_ID, 'client assertion sub');
      assert.equal(ca.claims.aud, idp.tokenEndpoint, 'client assertion aud is the token endpoint');
      assert.equal(ca.claims.exp - ca.claims.iat, 60, 'the client assertion lasts 60 s');
      assert.ok(typeof ca.claims.jti === 'string' && ca.claims.jti.length >= 16, `client assertion jti: ${JSON.stringify(ca.claims.jti)}`);
      shared.jtis.push(ca.claims.jti);
    }
    assert.notEqual(shared.jtis[0], shared.jtis[1], 'each sign-in uses a fresh jti');
  });

  step('a changed state is refused (400 "state"), and that sign-in cannot then be finished ("expired")', async () => {
    const { callbackUrl, jar } = await authorize(serverA, 'p9');
    const flowCookie = jar.get(callbackUrl, FLOW_COOKIE);
    assert.ok(flowCookie, `/auth/nhs/start set the ${FLOW_COOKIE} cookie`);
    const state = new URL(callbackUrl).searchParams.get('state');
    const wrong = await callback(withParams(callbackUrl, { state: `${state}x` }), jar);
    await assertRefused(wrong, { status: 400, reason: 'state', jar, server: serverA, what: 'the callback with a changed state' });
    assert.ok(clearsFlow(wrong.setCookies), `the refusal clears the flow cookie\n${describeAnswer(wrong)}`);

    // The right state now, with the flow cookie sent again by hand: the flow
    // was taken by the refused attempt.
    const again = await callback(callbackUrl, jar, { cookie: `${FLOW_COOKIE}=${flowCookie}` });
    await assertRefused(again, { status: 400, reason: 'expired', jar, server: serverA, what: 'the right state after the flow was used' });
    // And as the browser would send it (no flow cookie left).
    const plain = await callback(callbackUrl, jar);
    await assertRefused(plain, { status: 400, reason: 'expired', jar, server: serverA, what: 'the right state without the flow cookie' });
  });

  step('a reply naming another issuer (RFC 9207 iss) is refused (400 "token")', async () => {
    const { callbackUrl, jar } = await authorize(serverA, 'p9');
    assert.ok(new URL(callbackUrl).searchParams.get('iss'), 'the provider names itself in the callback');
    const mixedUp = await callback(withParams(callbackUrl, { iss: 'http://127.0.0.1:1/other-issuer' }), jar);
    await assertRefused(mixedUp, { status: 400, reason: 'token', jar, server: serverA, what: 'the callback naming another issuer' });
  });

  step('a code is used once: replayed in a new sign-in it is refused (400 "code"); the first callback replayed is "expired"', async (t) => {
    const first = await authorize(serverA, 'p9');
    const flowCookie = first.jar.get(first.callbackUrl, FLOW_COOKIE);
    const ok = await callback(first.callbackUrl, first.jar);
    await assertSignedIn(ok, { jar: first.jar, server: serverA, what: 'the first sign-in' });

    // A new flow (new jar, new flow cookie, new state), finished with the old code.
    const jar = createCookieJar();
    const start = await fetchWithJar(`${serverA.url}/auth/nhs/start?next=/`, jar);
    await start.body?.cancel();
    assert.equal(start.status, 303, '/auth/nhs/start answers 303');
    const newState = new URL(start.headers.get('location')).searchParams.get('state');
    assert.ok(newState, `the new flow has a state: ${start.headers.get('location')}`);
    assert.ok(jar.get(`${serverA.url}/auth/nhs/callback`, FLOW_COOKIE), 'the new flow has its own cookie');
    assert.notEqual(newState, new URL(first.callbackUrl).searchParams.get('state'), 'a new state');
    const replay = await callback(withParams(first.callbackUrl, { state: newState }), jar);
    await assertRefused(replay, { status: 400, reason: 'code', jar, server: serverA, what: 'the old code with a new flow' });
    const tok = (await idp.lastRequest()).token;
    t.diagnostic(`the provider answered the replayed code: ${tok.status} ${tok.error}`);
    assert.equal(tok.error, 'invalid_grant', 'the provider refused the used code');

    // The first callback URL again, with its own jar (signed in; the flow
    // cookie was cleared), then with the old flow cookie sent by hand.
    const again = await callback(first.callbackUrl, first.jar);
    assert.equal(again.status, 400, `replaying the first callback\n${describeAnswer(again)}`);
    assert.equal(reasonOf(again.body), 'expired', `replaying the first callback\n${describeAnswer(again)}`);
    assert.ok(again.body.includes(`<h1>${REFUSED_H1}</h1>`), `replaying the first callback\n${describeAnswer(again)}`);
    assert.ok(!startsSession(again.setCookies), `replaying the first callback starts no new session\n${describeAnswer(again)}`);
    shared.refusals++;
    const bare = createCookieJar();
    const withOldFlow = await callback(first.callbackUrl, bare, { cookie: `${FLOW_COOKIE}=${flowCookie}` });
    await assertRefused(withOldFlow, { status: 400, reason: 'expired', jar: bare, server: serverA, what: 'the first callback with its used flow cookie' });
  });

  step('tampered ID tokens are refused: wrong nonce, another key, expired (400 each, no session)', async (t) => {
    const cases = [
      ['wrong-nonce', 'nonce'],
      ['other-key', 'signature'],
      ['expired', 'expired-token'],
    ];
    try {
      for (const [mode, reason] of cases) {
        await idp.setMode(mode);
        const { callbackUrl, jar } = await authorize(serverA, 'p9');
        const r = await callback(callbackUrl, jar);
        t.diagnostic(`${mode}: ${r.status} reason ${reasonOf(r.body)}`);
        await assertRefused(r, { status: 400, reason, jar, server: serverA, what: `an ID token with mode ${mode}` });
        assert.equal((await idp.lastRequest()).token.tamper_mode, mode, `the provider tampered (${mode})`);
      }
    } finally {
      await idp.setMode('none');
    }
  });

  step('a level weaker than the server asks for is refused (403 "level"); P9 on the same server signs in', async (t) => {
    // Server B asks for P9 only (the default vtr).
    let { callbackUrl, jar } = await authorize(serverB, 'p5');
    const vtr = (await idp.lastRequest()).authorization.vtr;
    t.diagnostic(`server B sent vtr ${vtr}`);
    assert.deepEqual(JSON.parse(vtr), VTR_DEFAULT, "server B sends NHS login's default P9 vectors");
    let r = await callback(callbackUrl, jar);
    await assertRefused(r, { status: 403, reason: 'level', jar, server: serverB, what: 'p5 on server B' });

    try {
      await idp.setMode('weak-vot');
      ({ callbackUrl, jar } = await authorize(serverB, 'p9'));
      r = await callback(callbackUrl, jar);
      await assertRefused(r, { status: 403, reason: 'level', jar, server: serverB, what: 'p9 with a P0 vot (weak-vot) on server B' });
    } finally {
      await idp.setMode('none');
    }

    ({ callbackUrl, jar } = await authorize(serverB, 'p9'));
    r = await callback(callbackUrl, jar);
    await assertSignedIn(r, { jar, server: serverB, what: 'p9 on server B (control)' });
    t.diagnostic(`refusal pages checked by fetch: ${shared.refusals}`);
  });

  // ---------------------------------------------------------------- end --

  step(
    'every page each browser loaded was checked with axe',
    async (t) => {
      const missing = [];
      for (const p of opened) {
        const visits = p.b?.visits ?? p.closedVisits;
        t.diagnostic(`${p.label}: ${visits.loads.length} page loads`);
        for (const l of visits.unchecked()) missing.push(`${p.label}: #${l.seq} ${l.url}`);
      }
      assert.ok(opened.length === Object.keys(people).length, `every person had a browser (${opened.length} of ${Object.keys(people).length})`);
      assert.ok(missing.length === 0, `${missing.length} page load(s) were never checked with axe:\n  ${missing.join('\n  ')}`);
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const problems = [];
      for (const p of opened) {
        const visits = p.b?.visits ?? p.closedVisits;
        problems.push(...visits.assetFailures.map((f) => `${p.label}: asset: ${f}`));
        problems.push(...visits.consoleErrors.map((e) => `${p.label}: console: ${e}`));
      }
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});

// Consent in a real (headless Chromium) browser, against `keyhold serve --demo`:
// the demo patient shares with a new carer by email, the carer accepts the
// mailed invitation and sees only what was shared, the patient stops sharing
// and the carer is refused; the GP practice the patient shares with finds the
// patient by NHS number; a hospital doctor without sharing is refused and uses
// emergency access (the patient is mailed); the patient's "Who has seen your
// record" shows all of it and filters by person; the GP practice's
// emergency-access report holds nothing from the hospital. Every page the
// browsers load is checked with axe-core (WCAG 2.x A/AA), with no violations.
//
// Each person has their own browser (a fresh profile), opened when they first
// act. The steps run in order; once one fails, the later ones are skipped,
// except after axe violations, which fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

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
  assertMainLacks,
  linkOrButton,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

// What `keyhold serve --demo` seeds (crates/keyhold-domain/src/demo.rs).
const DEMO_PASSWORD = 'keyhold-demo-2026';
const GP_PRACTICE = 'Riverside Medical Practice';
const HOSPITAL = "St Oswald's Hospital NHS Foundation Trust";
const GP_NAME = 'Dr Imran Haque';
const DOCTOR_NAME = 'Dr Tom Okafor';

const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;

const CATEGORIES = ['General', 'Mental health', 'Sexual health', 'Social care', 'Restricted'];

// ---------------------------------------------------------------- helpers --

/** "Sign out" in the header. */
function signOutButton(page) {
  return page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true });
}

/**
 * The entries listed on a record page, as { title, category } (the record
 * page's tables: Date, Title, Category, From).
 */
async function listedEntries(page) {
  return page.locator('main table tbody tr').evaluateAll((rows) =>
    rows
      .map((r) => {
        const cells = r.querySelectorAll('td');
        return { title: cells[1]?.innerText.trim() ?? '', category: cells[2]?.innerText.trim() ?? '' };
      })
      .filter((e) => e.title),
  );
}

/** The strip above a record that says whose record it is, and why one may see it. */
async function viewingStrip(page, name, what) {
  const strip = page.getByRole('region', { name, exact: true });
  await expectVisible(strip, `the "${name}" strip (${what})`);
  return (await strip.innerText()).replace(/\s+/g, ' ').trim();
}

/** A mailed link, which must point at the server under test (it names its own address when KEYHOLD_PUBLIC_URL is unset). */
function onServer(link, server) {
  const u = new URL(link);
  assert.equal(u.origin, server.url, `the mailed link ${link} should point at the server`);
  return link;
}

// ------------------------------------------------------------------ flow --

describe('Keyhold consent in real browsers (demo data)', () => {
  let server;
  let sink;

  // The people of the flow; each gets a browser when they first act.
  const carerToken = randomToken(8);
  const people = {
    patient: { label: 'the patient', email: 'patient@demo.keyhold.test', password: DEMO_PASSWORD },
    carer: {
      label: 'the new carer',
      email: `carer-${carerToken}@example.test`,
      password: randomPassphrase(20),
      name: `Casey Carer-${carerToken}`,
    },
    gp: { label: 'the GP', email: 'gp@demo.keyhold.test', password: DEMO_PASSWORD },
    doctor: { label: 'the hospital doctor', email: 'doctor@demo.keyhold.test', password: DEMO_PASSWORD },
    gpAdmin: { label: "the GP practice's administrator", email: 'gp-admin@demo.keyhold.test', password: DEMO_PASSWORD },
  };
  // Every browser opened (open or closed), for the "all pages checked" step.
  const opened = [];

  // What the steps learn and share.
  const shared = {
    patientName: '',
    nhsNumber: '',
    patientId: '',
    entries: [], // the patient's own { title, category }
    titles: {}, // category -> titles found only in that category
    generalTitle: '',
    mentalHealthTitle: '',
    purpose: `Helps me with appointments (e2e ${carerToken})`,
    reason: `Unconscious in A&E after a fall, need allergies and medicines (e2e ${randomToken(6)})`,
  };

  const harness = stepHarness({
    timeoutMs: STEP_TIMEOUT_MS,
    context: () => ({
      server,
      browsers: Object.values(people)
        .filter((p) => p.b)
        .map((p) => ({ label: `${p.label} (${p.email})`, page: p.page, visits: p.b.visits })),
    }),
  });

  // An axe violation fails its step after the step's own checks have run,
  // without skipping the later steps.
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        sink = await startMailSink();
        // KEYHOLD_PUBLIC_URL is left unset: the port is not known before the
        // server starts. Mailed links are opened on the server's own origin.
        server = await startServer({ extraArgs: ['--demo'], env: { KEYHOLD_SMTP_URL: sink.url } });
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 90_000 },
  );

  after(async () => {
    for (const p of Object.values(people)) await p.b?.close();
    await server?.stop();
    await sink?.close();
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

  /** Signs the person in from /signin; returns the page they land on. */
  async function signIn(person) {
    const page = await browserOf(person);
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    await checkPage(page, `sign-in page (${person.label})`);
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(person.password);
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    if (pathOf(page) === '/signin') {
      assert.fail(`${person.label} (${person.email}) could not sign in\n${await describePage(page)}`);
    }
    await expectVisible(signOutButton(page), `a "Sign out" button once ${person.label} is signed in`);
    await checkPage(page, `landing page after ${person.label} signs in (${pathOf(page)})`);
    return page;
  }

  /** From the organisations list, opens `org`'s page; returns its id. */
  async function openOrganisation(page, org, who) {
    if (pathOf(page) !== '/organisations') {
      await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Your organisation', exact: true }).click());
    }
    await assertPath(page, '/organisations', `${who}'s organisations`);
    await checkPage(page, `organisations list (${who})`);
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: org, exact: true }).click());
    const m = pathOf(page).match(/^\/organisations\/([^/]+)$/);
    assert.ok(m, `after clicking "${org}": expected /organisations/<id>, got ${pathOf(page)}\n${await describePage(page)}`);
    assert.equal(await h1Text(page), org, `h1 of ${org}'s page`);
    await checkPage(page, `${org} home (${who})`);
    return m[1];
  }

  /** Types the patient's NHS number into "Search by NHS number" and submits it. */
  async function findPatient(page) {
    await page.locator('#nhs-number').fill(shared.nhsNumber);
    return navigateBy(page, () => page.getByRole('button', { name: 'Search by NHS number', exact: true }).click());
  }

  /** The titles of the patient's entries in these categories (each listed only there). */
  function titlesIn(...categories) {
    return categories.flatMap((c) => shared.titles[c] ?? []);
  }

  async function assertShows(page, titles, what) {
    for (const title of titles) {
      await expectVisible(page.getByRole('main').getByRole('link', { name: title, exact: true }), `the entry "${title}" (${what})`);
    }
  }

  async function assertHides(page, titles, what) {
    const body = await mainText(page);
    const seen = titles.filter((t) => body.includes(t));
    if (seen.length) {
      assert.fail(`${what}: these entries must not be shown, but are: ${JSON.stringify(seen)}\n${await describePage(page)}`);
    }
  }

  // ------------------------------------------------------------------ 1 --

  step('the patient signs in and reads their NHS number and entries', async (t) => {
    const page = await signIn(people.patient);
    await assertPath(page, '/record', 'the demo patient after signing in');
    assert.equal(await h1Text(page), 'Your health record', 'h1 of the patient\'s /record');

    shared.patientName = ((await page.locator('.keyhold-banner__name').innerText()) ?? '').replace(/\s+/g, ' ').trim();
    shared.nhsNumber = ((await page.locator('.keyhold-banner__nhs-number strong').innerText()) ?? '').trim();
    assert.ok(shared.patientName, 'the patient banner names the patient');
    assert.match(shared.nhsNumber.replace(/\s/g, ''), /^\d{10}$/, `NHS number in the banner: ${JSON.stringify(shared.nhsNumber)}`);
    t.diagnostic(`patient: ${shared.patientName}, NHS number ${shared.nhsNumber}`);

    shared.entries = await listedEntries(page);
    const byCategory = new Map(CATEGORIES.map((c) => [c, new Set()]));
    for (const e of shared.entries) {
      assert.ok(byCategory.has(e.category), `unknown category ${JSON.stringify(e.category)} for entry ${JSON.stringify(e.title)}`);
      byCategory.get(e.category).add(e.title);
    }
    // A title counts for a category only when no entry of another category
    // has the same title (so "absent" and "present" are unambiguous).
    for (const [c, set] of byCategory) {
      shared.titles[c] = [...set].filter((title) => ![...byCategory].some(([o, s]) => o !== c && s.has(title)));
    }
    t.diagnostic(`entries by category: ${JSON.stringify(shared.titles)}`);
    const pick = (c, preferred) => {
      const list = shared.titles[c];
      assert.ok(list.length > 0, `the demo patient has no ${c} entry on /record (demo.rs seeds some): ${JSON.stringify(shared.entries)}`);
      return list.includes(preferred) ? preferred : list[0];
    };
    shared.generalTitle = pick('General', 'GP consultation');
    shared.mentalHealthTitle = pick('Mental health', 'Community mental health review');
    // The demo seeds Social care too, so "not shared" checks have something to miss.
    pick('Social care', 'Care needs assessment');
  });

  step('the patient shares General, view only, with a new person by email; the grant is "Pending"', async (t) => {
    const page = people.patient.page;
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Sharing', exact: true }).click());
    await assertPath(page, '/record/sharing', 'after "Sharing" in the header');
    await checkPage(page, 'sharing page (demo patient)');
    // The demo's own grants are listed.
    await assertMainContains(page, GP_PRACTICE, 'the demo patient shares with the GP practice');

    await navigateBy(page, () => linkOrButton(page, 'Share your record').click());
    await assertPath(page, '/record/sharing/new', 'after "Share your record"');
    await checkPage(page, 'share form');

    await page.locator('#grantee-kind').check();
    await page.locator('#email').fill(people.carer.email);
    await page.locator('#permissions').check(); // name="may-read"
    await page.locator('input[name="may-contribute"]').uncheck();
    await page.locator('input[name="may-act"]').uncheck();
    const boxes = page.locator('input[type="checkbox"][name^="category-"]');
    for (let i = 0; i < (await boxes.count()); i++) {
      const box = boxes.nth(i);
      if ((await box.getAttribute('name')) === 'category-general') await box.check();
      else await box.uncheck();
    }
    // The last day is prefilled (a year ahead); it is left as it is.
    assert.ok(await page.locator('#ends-year').inputValue(), 'the last day of sharing is prefilled');
    await page.locator('#purpose').fill(shared.purpose);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Share', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'sharing with a person');
    await assertPath(page, '/record/sharing', 'after "Share"');
    await assertMainContains(page, 'Invitation sent', 'the notice after sharing with a person');
    await checkPage(page, 'sharing page after inviting a person');

    const card = page.locator('main .nhsuk-card').filter({ hasText: people.carer.email });
    await expectVisible(card, `a card for the grant to ${people.carer.email}`);
    const cardText = (await card.first().innerText()).replace(/\s+/g, ' ');
    t.diagnostic(`grant card: ${cardText}`);
    assert.match(cardText, /Pending/, 'the new grant is "Pending" until it is accepted');
    assert.ok(cardText.includes('General'), 'the grant covers General');
    for (const c of CATEGORIES.filter((c) => c !== 'General')) {
      assert.ok(!cardText.includes(c), `the grant must not cover ${c}: ${cardText}`);
    }
    assert.ok(cardText.includes(shared.purpose), 'the grant shows the purpose typed');
  });

  // ------------------------------------------------------------------ 2 --

  step('the invited person gets a mail, creates an account from the link and accepts; they see General only', async (t) => {
    const mail = await sink.waitFor((m) => m.to === people.carer.email, MAIL_TIMEOUT_MS);
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    const link = linkIn(mail, '/invitations/');
    const url = onServer(link, server);
    const invitationPath = new URL(url).pathname;

    const page = await browserOf(people.carer);
    let res = await visit(page, url);
    assertStatus(res, isOk, '2xx', 'opening the invitation link');
    assert.equal(await h1Text(page), `${shared.patientName} wants to share their health record with you`, 'h1 of the invitation');
    await assertMainContains(page, shared.purpose, 'the invitation shows why');
    await checkPage(page, 'invitation (signed out)');

    res = await navigateBy(page, () => linkOrButton(page.getByRole('main'), 'Create an account').click());
    assertStatus(res, isOk, '2xx', `GET ${pathOf(page)}${new URL(page.url()).search} (sign-up page carrying next=)`);
    await assertPath(page, '/signup', 'after "Create an account" on the invitation');
    assert.equal(new URL(page.url()).searchParams.get('next'), invitationPath, 'the sign-up link carries next=<the invitation>');
    await checkPage(page, 'sign-up page (from the invitation)');
    await page.locator('#name').fill(people.carer.name);
    await page.locator('#email').fill(people.carer.email);
    await page.locator('#password').fill(people.carer.password);
    await navigateBy(page, () => page.getByRole('button', { name: 'Create account', exact: true }).click());
    assert.equal(await h1Text(page), 'Check your email', 'h1 after signing up from the invitation');
    await checkPage(page, 'check your email (carer)');
    const confirmMail = await sink.waitFor((m) => m.to === people.carer.email && m.text.includes('/account/confirm/'), MAIL_TIMEOUT_MS);
    res = await visit(page, onServer(linkIn(confirmMail, '/account/confirm/'), server));
    assertStatus(res, isOk, '2xx', 'opening the confirmation link');
    await checkPage(page, 'confirm your email address (carer)');
    await navigateBy(page, () => page.getByRole('button', { name: 'Confirm and sign in', exact: true }).click());
    await assertPath(page, invitationPath, 'after confirming the address (back to the invitation: next=)');
    await expectVisible(signOutButton(page), 'a "Sign out" button after signing up');
    await checkPage(page, 'invitation (signed in)');

    res = await navigateBy(page, () => page.getByRole('button', { name: 'Accept invitation', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'accepting the invitation');
    const m = pathOf(page).match(/^\/people\/([^/]+)\/record\/?$/);
    assert.ok(m, `after "Accept invitation": expected /people/<patient>/record, got ${pathOf(page)}\n${await describePage(page)}`);
    shared.patientId = m[1];
    const strip = await viewingStrip(page, 'Acting for', 'the carer on the record');
    assert.ok(strip.includes(`You are acting for ${shared.patientName}`), `strip: ${strip}`);
    await checkPage(page, "the patient's record (carer)");

    await assertShows(page, [shared.generalTitle], 'General is shared with the carer');
    await assertHides(page, titlesIn('Mental health', 'Sexual health', 'Social care', 'Restricted'), 'only General is shared with the carer');
  });

  step('"People you care for" lists "Act for <patient>", which opens the record', async () => {
    const page = people.carer.page;
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'People you care for', exact: true }).click());
    await assertPath(page, '/people', 'after "People you care for"');
    await checkPage(page, 'people you care for (carer)');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: `Act for ${shared.patientName}`, exact: true }).click());
    await assertPath(page, `/people/${shared.patientId}/record`, `after "Act for ${shared.patientName}"`);
    await checkPage(page, "the patient's record via People you care for (carer)");
    await assertShows(page, [shared.generalTitle], 'record opened from "People you care for"');
  });

  // ------------------------------------------------------------------ 3 --

  step('the patient stops sharing with the carer; the carer\'s next page is refused (404)', async (t) => {
    const page = people.patient.page;
    await visit(page, `${server.url}/record/sharing`);
    await checkPage(page, 'sharing page (carer accepted)');
    const card = page.locator('main .nhsuk-card').filter({ hasText: people.carer.name });
    await expectVisible(card, `a card for the grant to ${people.carer.name} (the account that accepted)`);
    assert.match((await card.first().innerText()).replace(/\s+/g, ' '), /Active/, 'the accepted grant is "Active"');

    const stop = page.getByRole('button', { name: `Stop sharing with ${people.carer.name}`, exact: true });
    await expectVisible(stop, `a "Stop sharing with ${people.carer.name}" button`);
    await navigateBy(page, () => stop.click());
    await assertPath(page, '/record/sharing', 'after "Stop sharing"');
    await assertMainContains(page, 'Sharing stopped', 'the notice after stopping sharing');
    await expectAbsent(page.getByRole('button', { name: `Stop sharing with ${people.carer.name}`, exact: true }), 'stop button for a stopped grant');
    await checkPage(page, 'sharing page after stopping');

    const carerPage = people.carer.page;
    const res = await visit(carerPage, carerPage.url());
    t.diagnostic(`the carer's reload answered ${res.status()}`);
    assertStatus(res, (s) => s === 404, '404', "the carer reloading the patient's record after sharing stopped");
    assert.equal(await h1Text(carerPage), 'You cannot see this record', 'h1 of the refused record page');
    await assertMainLacks(carerPage, shared.generalTitle, 'the refused record page');
    await checkPage(carerPage, 'record refused (carer, sharing stopped)');
    await closeBrowserOf(people.carer);
  });

  // ------------------------------------------------------------------ 4 --

  step('the GP finds the patient by NHS number and sees what is shared with the practice', async () => {
    const page = await signIn(people.gp);
    await openOrganisation(page, GP_PRACTICE, 'GP');
    let res = await findPatient(page);
    assertStatus(res, isOk, '2xx', 'the GP finding the patient');
    // The search lists the one match; its name opens the record.
    await checkPage(page, 'search results (GP)');
    const result = page.getByRole('main').locator(`a[href="/people/${shared.patientId}/record"]`);
    res = await navigateBy(page, () => result.first().click());
    assertStatus(res, isOk, '2xx', 'the GP opening the record from the results');
    await assertPath(page, `/people/${shared.patientId}/record`, 'after the GP finds the patient');
    const strip = await viewingStrip(page, 'Viewing as', 'the GP on the record');
    assert.ok(
      strip.includes(`You are viewing ${shared.patientName}'s record for ${GP_PRACTICE}`),
      `strip: ${strip}`,
    );
    await checkPage(page, "the patient's record (GP)");
    await assertShows(page, [shared.generalTitle, shared.mentalHealthTitle], 'General and Mental health are shared with the practice');
    await assertHides(page, titlesIn('Sexual health', 'Social care', 'Restricted'), 'only General and Mental health are shared with the practice');
    await closeBrowserOf(people.gp);
  });

  // ------------------------------------------------------------------ 5 --

  step('the hospital doctor is refused, gives a reason, and opens emergency access; the patient is mailed', async (t) => {
    const page = await signIn(people.doctor);
    await openOrganisation(page, HOSPITAL, 'hospital doctor');
    let res = await findPatient(page);
    assertStatus(res, isOk, '2xx', 'the hospital doctor finding the patient');
    assert.equal(await h1Text(page), 'You do not have access to this record', 'h1 for a record not shared with the hospital');
    await assertMainLacks(page, shared.patientName, 'the page before emergency access shows nothing of the patient');
    await assertMainLacks(page, shared.generalTitle, 'the page before emergency access shows nothing of the record');
    await checkPage(page, 'no access: emergency access offered');

    await page.locator('#reason').fill('Urgent');
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Open emergency access', exact: true }).click());
    t.diagnostic(`a too-short reason answered ${res.status()}`);
    assertStatus(res, (s) => s === 422, '422', 'a too-short reason');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'an error summary for a too-short reason');
    assert.equal(await h1Text(page), 'You do not have access to this record', 'h1 after a too-short reason');
    await checkPage(page, 'emergency access with a too-short reason');

    await page.locator('#reason').fill(shared.reason);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Open emergency access', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'opening emergency access');
    await assertPath(page, `/people/${shared.patientId}/record`, 'after opening emergency access');
    const strip = await viewingStrip(page, 'Emergency access', 'the doctor on the record');
    assert.ok(strip.includes(`Emergency access to ${shared.patientName}'s record for ${HOSPITAL}`), `strip: ${strip}`);
    await checkPage(page, "the patient's record (emergency access)");
    await assertShows(page, [shared.generalTitle], 'emergency access shows the record');
    await assertHides(page, titlesIn('Restricted'), 'emergency access keeps Restricted entries hidden');
    await closeBrowserOf(people.doctor);

    const mail = await sink.waitFor((m) => m.to === people.patient.email && /emergency/i.test(m.subject), MAIL_TIMEOUT_MS);
    t.diagnostic(`mail to ${mail.to}: ${JSON.stringify(mail.subject)}`);
    assert.ok(mail.text.includes(HOSPITAL), `the emergency-access mail names the organisation:\n${mail.text}`);
    assert.ok(!mail.text.includes(shared.reason), 'the mail does not carry the reason (it is read on Keyhold)');
    const accessLink = linkIn(mail, '/record/access');
    onServer(accessLink, server);
  });

  // ------------------------------------------------------------------ 6 --

  step('"Who has seen your record" shows the carer, the GP, the emergency access and the refusal; it filters by person', async (t) => {
    const page = people.patient.page;
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Who has seen my record', exact: true }).click());
    await assertPath(page, '/record/access', 'after "Who has seen my record"');
    assert.equal(await h1Text(page), 'Who has seen your record', 'h1 of the access log');
    await checkPage(page, 'who has seen your record');

    const rows = page.locator('main table tbody tr');
    const tag = (text) => page.locator('.nhsuk-tag', { hasText: new RegExp(`^\\s*${text}\\s*$`) });
    const expectRow = async (what, ...filters) => {
      let found = rows;
      for (const f of filters) found = found.filter(f);
      if ((await found.count()) === 0) {
        const all = (await rows.allInnerTexts()).map((r) => r.replace(/\s+/g, ' '));
        assert.fail(`the access log has no line for ${what}; its lines:\n  ${all.join('\n  ')}`);
      }
    };
    await expectRow(`the carer (${people.carer.name}) with the "Carer" tag, allowed`, { hasText: people.carer.name }, { has: tag('Carer') }, { hasText: 'Allowed' });
    await expectRow(`the carer's refused attempt`, { hasText: people.carer.name }, { has: tag('Refused') });
    await expectRow(`the GP (${GP_NAME}) at ${GP_PRACTICE}`, { hasText: GP_NAME }, { hasText: GP_PRACTICE });
    await expectRow(`the hospital doctor (${DOCTOR_NAME}) with the "Emergency access" tag and the reason`, { hasText: DOCTOR_NAME }, { has: tag('Emergency access') }, { hasText: shared.reason });

    await page.getByText('Filter by date or person', { exact: true }).click();
    await page.locator('#who').selectOption({ label: DOCTOR_NAME });
    await navigateBy(page, () => page.getByRole('button', { name: 'Apply filter', exact: true }).click());
    await assertPath(page, '/record/access', 'after "Apply filter"');
    t.diagnostic(`filtered: ${page.url()}`);
    await checkPage(page, 'who has seen your record, filtered by person');
    const lines = (await rows.allInnerTexts()).map((r) => r.replace(/\s+/g, ' '));
    assert.ok(lines.length > 0, `filtering by ${DOCTOR_NAME} shows no lines\n${await describePage(page)}`);
    const others = lines.filter((l) => !l.includes(DOCTOR_NAME));
    assert.deepEqual(others, [], `filtering by ${DOCTOR_NAME} shows lines of others`);
  });

  // ------------------------------------------------------------------ 7 --

  step("the GP practice's emergency-access report shows nothing from the hospital", async () => {
    const page = await signIn(people.gpAdmin);
    const org = await openOrganisation(page, GP_PRACTICE, 'GP administrator');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Emergency access report', exact: true }).click());
    await assertPath(page, `/organisations/${org}/emergency-access`, 'after "Emergency access report"');
    assert.equal(await h1Text(page), 'Emergency access report', 'h1 of the report');
    await checkPage(page, 'emergency access report (GP practice)');
    await assertMainContains(page, `No one in ${GP_PRACTICE} has used emergency access.`, 'the GP practice report');
    await assertMainLacks(page, DOCTOR_NAME, 'the GP practice report');
    await assertMainLacks(page, shared.reason, 'the GP practice report');
    await closeBrowserOf(people.gpAdmin);
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

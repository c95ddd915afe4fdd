// The professional's view in a real (headless Chromium) browser, against
// `keyhold serve --demo`: the GP finds the demo patient by name and date of
// birth, opens the record under its banner, filters the summary by date,
// walks and searches the document tree, adds the patient to a new worklist,
// and assigns a PHQ-9; the patient is mailed, completes it (after being told
// what was missing), and the GP sees the score and its chart. Every page the
// browsers load is checked with axe-core (WCAG 2.x A/AA), with no violations.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer } from './lib/server.mjs';
import { startMailSink, linkIn } from './lib/mail.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken } from './lib/files.mjs';
import {
  pathOf,
  expectVisible,
  h1Text,
  assertMainContains,
  assertMainLacks,
  assertStatus,
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

const DEMO_PASSWORD = 'keyhold-demo-2026';
const GP_PRACTICE = 'Riverside Medical Practice';
const HOSPITAL = "St Oswald's Hospital NHS Foundation Trust";
const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** "12 May 1980 (aged 46)" -> { day: '12', month: '5', year: '1980' } */
function dateParts(text) {
  const m = text.trim().match(/^(\d{1,2}) ([A-Za-z]+) (\d{4})/);
  assert.ok(m, `a date like "12 May 1980" in "${text}"`);
  const month = MONTHS.indexOf(m[2]) + 1;
  assert.ok(month > 0, `a month name in "${text}"`);
  return { day: m[1], month: String(month), year: m[3] };
}

describe('The professional view in real browsers (demo data)', () => {
  let server;
  let sink;
  const people = {
    patient: { label: 'the patient', email: 'patient@demo.keyhold.test' },
    gp: { label: 'the GP', email: 'gp@demo.keyhold.test' },
  };
  const shared = {
    name: '',
    family: '',
    dob: null,
    nhsNumber: '',
    patientId: '',
    orgId: '',
    worklist: `Diabetes review ${randomToken(5)}`,
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
  const { step, checkPage } = axeSteps(harness);

  before(
    async () => {
      try {
        sink = await startMailSink();
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

  async function signIn(person) {
    if (!person.b) {
      person.b = await launchBrowser();
      person.page = person.b.page;
    }
    const page = person.page;
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(DEMO_PASSWORD);
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    assert.notEqual(pathOf(page), '/signin', `${person.label} signs in\n${await describePage(page)}`);
    return page;
  }

  /** A link in the record's navigation. */
  function recordNav(page, name) {
    return page.getByRole('navigation', { name: 'This record' }).getByRole('link', { name, exact: true });
  }

  step('the patient reads who they are off their own banner', async () => {
    const page = await signIn(people.patient);
    assertStatus(await visit(page, `${server.url}/record`), isOk, '2xx', 'GET /record');
    await checkPage(page, "the patient's record");
    const name = (await page.locator('.keyhold-banner__name').innerText()).replace(/\s+/g, ' ').trim();
    shared.name = name;
    shared.family = name.split(' ').at(-1);
    shared.nhsNumber = (await page.locator('.keyhold-banner__nhs-number strong').innerText()).trim();
    const born = await page.locator('.keyhold-banner__detail', { hasText: 'Born' }).locator('dd').innerText();
    shared.dob = dateParts(born);
    assert.match(shared.nhsNumber, /^\d{3} \d{3} \d{4}$/);
  });

  step('the GP finds the patient by name and date of birth, among those who shared', async () => {
    const page = await signIn(people.gp);
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Your organisation', exact: true }).click());
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: GP_PRACTICE, exact: true }).click());
    shared.orgId = pathOf(page).match(/^\/organisations\/([^/]+)$/)?.[1];
    assert.ok(shared.orgId, `the organisation's page\n${await describePage(page)}`);
    await checkPage(page, "the GP practice's page");
    await page.getByText('Search by name and date of birth', { exact: true }).click();
    // The first letters of the family name are enough.
    await page.locator('#name').fill(shared.family.slice(0, 4));
    await page.locator('#dob-day').fill(shared.dob.day);
    await page.locator('#dob-month').fill(shared.dob.month);
    await page.locator('#dob-year').fill(shared.dob.year);
    await navigateBy(page, () => page.getByRole('button', { name: 'Search by name', exact: true }).click());
    await checkPage(page, 'search results');
    const results = page.getByRole('table', { name: 'Search results' });
    await expectVisible(results, 'the results table');
    await expectVisible(results.getByRole('cell', { name: shared.nhsNumber }), "the patient's NHS number in the results");
    await navigateBy(page, () => results.getByRole('link', { name: shared.name, exact: true }).click());
    shared.patientId = pathOf(page).match(/^\/people\/([^/]+)\/record$/)?.[1];
    assert.ok(shared.patientId, `the record opens\n${await describePage(page)}`);
  });

  step("the record's banner and summary, filtered by date", async () => {
    const page = people.gp.page;
    await checkPage(page, 'the record summary');
    const banner = page.getByRole('region', { name: 'Patient details' });
    await expectVisible(banner.getByText(shared.nhsNumber, { exact: true }), 'the NHS number in the banner');
    await expectVisible(banner.getByText('GP practice', { exact: true }), 'the GP practice in the banner');
    // Collapsible: the details hide and come back.
    await banner.locator('summary.keyhold-banner__summary').click();
    assert.equal(await banner.getByText('GP practice', { exact: true }).isVisible(), false, 'collapsed banner hides details');
    await banner.locator('summary.keyhold-banner__summary').click();
    await banner.getByText('More', { exact: true }).click();
    await expectVisible(banner.getByText(shared.patientId, { exact: true }), 'the record ID under "More"');

    for (const card of ['Upcoming appointments', 'Events and past appointments', 'Documents', 'Medications', 'Allergies']) {
      await expectVisible(page.getByRole('heading', { level: 2, name: new RegExp(`^${card}`) }), `the "${card}" card`);
    }
    await assertMainContains(page, GP_PRACTICE, 'rows name the organisation they came from');
    // A year long before any entry: every card says so, and stays.
    await page.locator('#from-day').fill('1');
    await page.locator('#from-month').fill('1');
    await page.locator('#from-year').fill('1950');
    await page.locator('#to-day').fill('31');
    await page.locator('#to-month').fill('12');
    await page.locator('#to-year').fill('1950');
    await navigateBy(page, () => page.getByRole('button', { name: 'Apply dates', exact: true }).click());
    await checkPage(page, 'the summary filtered by date');
    await assertMainContains(page, 'No medications in these dates.', 'the filter applies');
    await assertMainLacks(page, 'Discharge summary', 'the document is outside the dates');
    await navigateBy(page, () => page.getByRole('link', { name: 'Compact view', exact: true }).click());
    assert.ok(new URL(page.url()).searchParams.get('from-year') === '1950', 'the view keeps the dates');
    await navigateBy(page, () => page.getByRole('link', { name: 'Clear dates', exact: true }).click());
    await assertMainContains(page, 'Discharge summary', 'cleared: everything is back');
    await checkPage(page, 'the compact summary');
  });

  step('the GP walks and searches the document tree', async () => {
    const page = people.gp.page;
    await navigateBy(page, () => recordNav(page, 'Documents').click());
    await checkPage(page, 'documents');
    const hospital = page.locator('details.keyhold-tree__node', { hasText: HOSPITAL }).first();
    await expectVisible(hospital.getByText('Discharge summaries', { exact: false }), 'the heading under the hospital');
    const link = hospital.getByRole('link', { name: 'Discharge summary', exact: true });
    await expectVisible(link, 'the document under its heading');
    // Closing the organisation's branch hides its documents.
    await hospital.locator('summary').first().click();
    assert.equal(await link.isVisible(), false, 'a closed branch hides its documents');
    await page.locator('#q').fill('no-such-document');
    await navigateBy(page, () => page.getByRole('button', { name: 'Show documents', exact: true }).click());
    await assertMainContains(page, 'No documents match this search.', 'search narrows');
    await page.locator('#q').fill('discharge');
    await navigateBy(page, () => page.getByRole('button', { name: 'Show documents', exact: true }).click());
    await assertMainContains(page, 'Discharge summary', 'search finds it');
    await checkPage(page, 'documents searched');
  });

  step('the GP adds the patient to a new worklist', async () => {
    const page = people.gp.page;
    await navigateBy(page, () => recordNav(page, 'Record').click());
    await navigateBy(page, () => page.getByRole('button', { name: 'Add to a worklist', exact: true }).or(page.getByRole('link', { name: 'Add to a worklist', exact: true })).click());
    await checkPage(page, 'add to a worklist');
    await page.locator('#name').fill(shared.worklist);
    await navigateBy(page, () => page.getByRole('button', { name: 'Create list and add', exact: true }).click());
    await visit(page, `${server.url}/organisations/${shared.orgId}/worklists`);
    await checkPage(page, 'worklists');
    await navigateBy(page, () => page.getByRole('link', { name: shared.worklist, exact: true }).click());
    await checkPage(page, 'the worklist');
    await expectVisible(page.getByRole('link', { name: shared.name, exact: true }), 'the patient on the worklist');
    await visit(page, `${server.url}/organisations/${shared.orgId}/recent`);
    await checkPage(page, 'recently accessed');
    await expectVisible(page.getByRole('link', { name: shared.name, exact: true }).first(), 'the patient among recent records');
  });

  step('the GP assigns a PHQ-9', async () => {
    const page = people.gp.page;
    await visit(page, `${server.url}/people/${shared.patientId}/record/questionnaires`);
    await checkPage(page, 'questionnaires (GP)');
    await page.getByLabel('PHQ-9', { exact: false }).first().check();
    await navigateBy(page, () => page.getByRole('button', { name: 'Send questionnaire', exact: true }).click());
    await checkPage(page, 'questionnaire sent');
    await assertMainContains(page, 'PHQ-9', 'the assignment is listed');
  });

  step('the patient is mailed, and completes it after being told what was missing', async () => {
    const mail = await sink.waitFor((m) => m.to === people.patient.email && /questionnaire/i.test(m.subject), MAIL_TIMEOUT_MS);
    assert.doesNotMatch(mail.text, /PHQ|depress/i, 'the mail carries no clinical content');
    const link = linkIn(mail, '/record/questionnaires');
    const page = people.patient.page;
    const url = new URL(link);
    assertStatus(await visit(page, `${server.url}${url.pathname}`), isOk, '2xx', 'the mailed link');
    await checkPage(page, 'questionnaires (patient)');
    await navigateBy(page, () => page.getByRole('button', { name: /^Complete/ }).or(page.getByRole('link', { name: /^Complete/ })).first().click());
    await checkPage(page, 'the PHQ-9 form');
    const questions = page.locator('main form fieldset');
    const n = await questions.count();
    assert.equal(n, 9, 'nine questions');
    // Answer all but the last: the form names the one missing and keeps the rest.
    for (let i = 0; i < n - 1; i++) {
      await questions.nth(i).getByLabel(i < 4 ? 'More than half the days' : 'Several days', { exact: true }).check();
    }
    await navigateBy(page, () => page.getByRole('button', { name: 'Submit answers', exact: true }).click());
    await checkPage(page, 'the PHQ-9 form with an error');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'the error summary');
    assert.ok(await questions.nth(0).getByLabel('More than half the days', { exact: true }).isChecked(), 'answers kept');
    await questions.nth(n - 1).getByLabel('Not at all', { exact: true }).check();
    await navigateBy(page, () => page.getByRole('button', { name: 'Submit answers', exact: true }).click());
    await checkPage(page, 'after completing');
    // 4 x 2 + 4 x 1 + 0 = 12: moderate.
    await assertMainContains(page, '12', 'the score');
    await assertMainContains(page, 'oderate', 'the band');
  });

  step('the GP sees the score and its chart', async () => {
    const page = people.gp.page;
    await visit(page, `${server.url}/people/${shared.patientId}/record/questionnaires`);
    await checkPage(page, 'questionnaires with a score (GP)');
    await assertMainContains(page, '12', 'the score');
    const chart = page.locator('main svg[role="img"]').first();
    await expectVisible(chart, 'the chart');
    const desc = await chart.locator('desc').textContent();
    assert.match(desc ?? '', /12/, 'the chart describes the score');
    assert.ok((await h1Text(page)).startsWith(shared.name), 'the heading names the person');
  });
});

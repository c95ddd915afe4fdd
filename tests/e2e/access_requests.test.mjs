// Access to records (subject access requests) in real (headless Chromium)
// browsers, against `keyhold serve --demo` whose mail goes to the SMTP sink in
// lib/mail.mjs:
//
// 1. The demo patient asks Riverside Medical Practice for their own records,
//    through every step (with the errors of an empty step, a missing document
//    and a missing declaration) and an upload. The confirmation page and the
//    confirmation mail carry the same reference; the mail carries no record
//    content. Riverside's records officer finds it in the queue, assigns it to
//    themself and asks a question with a file. The patient sees "New message"
//    on their list, reads the question, downloads its file and replies with
//    text and a file. The officer sees the reply (and downloads its file),
//    compiles a PDF from the Keyhold record, uploads one more file and
//    completes. The patient is mailed that the records are ready (no record
//    content), sees "Your records", downloads one file and the zip (both
//    names inside), and the safe-storage advice. "Who has seen my record"
//    shows the disclosure.
// 2. The demo carer (an account with no record of their own) asks, as the
//    executor, for the records of the demo's deceased patient (Arthur Hughes,
//    NHS number and date of death given), with the same question-and-reply
//    round; the officer compiles (the record is matched by NHS number and date
//    of birth), completes, and the carer downloads the zip.
// 3. A guest proves their address by the mailed link, sends a third-party
//    request and gets its confirmation mail. The guest's page has no reply
//    form (and a reply sent by hand is refused); the officer's page for it
//    has no "Ask the requester" form (and a question sent by hand is refused).
// 4. The hospital's records officer sees none of these requests in the
//    hospital's queue, and each request's page, under Riverside or under the
//    hospital, is a 404 for them.
//
// Every page the browsers load is checked with axe-core (WCAG 2.x A/AA). The
// steps run in order; once one fails, the later ones are skipped, except
// after axe violations (and the few checks marked as not critical), which
// fail their step and let the flow go on.

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { unzipSync } from 'fflate';

import { startServer } from './lib/server.mjs';
import { startMailSink, linkIn } from './lib/mail.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, minimalPdf, tinyPng } from './lib/files.mjs';
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

const DEMO_PASSWORD = 'keyhold-demo-2026';
const GP_PRACTICE = 'Riverside Medical Practice';
const HOSPITAL = "St Oswald's Hospital NHS Foundation Trust";
const OFFICER_NAME = 'Jo Bennett';
const DECEASED = { given: 'Arthur', family: 'Hughes', nhs: '9990000026', dob: { day: '14', month: '3', year: '1941' } };
const STEP_TIMEOUT_MS = 120_000;
const MAIL_TIMEOUT_MS = 15_000;
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const REFERENCE_RE = /KH-[0-9A-HJKMNP-TV-Y]{4}-[0-9A-HJKMNP-TV-Y]{4}-[0-9A-HJKMNP-TV-Y]/;
const SAFE_STORAGE = 'Keep your records safe';

// ---------------------------------------------------------------- helpers --

/** "12 May 1980 (aged 46)" -> { day: '12', month: '5', year: '1980' } */
function dateParts(text) {
  const m = text.trim().match(/^(\d{1,2}) ([A-Za-z]+) (\d{4})/);
  assert.ok(m, `a date like "12 May 1980" in "${text}"`);
  const month = MONTHS.indexOf(m[2]) + 1;
  assert.ok(month > 0, `a month name in "${text}"`);
  return { day: m[1], month: String(month), year: m[3] };
}

/** A date `days` before today (UTC), as form parts. */
function daysAgo(days) {
  const d = new Date(Date.now() - days * 86_400_000);
  return { day: String(d.getUTCDate()), month: String(d.getUTCMonth() + 1), year: String(d.getUTCFullYear()) };
}

/**
 * The check character of a reference: eight characters of Crockford's base 32
 * (not Z, so values 0-30), weighted 2..9, and a check value that makes the sum
 * a multiple of 31.
 */
function referenceCheckOk(reference) {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXY';
  const chars = reference.replace(/^KH-/, '').replace(/-/g, '');
  let sum = 0;
  [...chars.slice(0, 8)].forEach((c, i) => {
    sum += (i + 2) * alphabet.indexOf(c);
  });
  return alphabet.indexOf(chars[8]) === (31 - (sum % 31)) % 31 && !chars.includes('Z');
}

function describeBytes(b) {
  const head = b.subarray(0, 24).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
  return `${b.length} bytes starting ${JSON.stringify(head)}`;
}

/** Waits for a download started by `action`; fails clearly if none starts. */
async function captureDownload(page, action, what) {
  const dl = page.waitForEvent('download', { timeout: 30_000 });
  dl.catch(() => {}); // handled below; avoids an unhandled rejection while action() runs
  await action();
  let download;
  try {
    download = await dl;
  } catch {
    assert.fail(`${what}: no download started within 30 s (is the response an attachment?)\n${await describePage(page)}`);
  }
  const failure = await download.failure();
  if (failure) assert.fail(`${what}: the download failed: ${failure}`);
  const bytes = await readFile(await download.path());
  return { download, bytes };
}

/** Checks a zip's bytes: `PK` first, and every name in it; returns its entries. */
function readZip(bytes, names, what) {
  assert.equal(bytes.subarray(0, 2).toString('latin1'), 'PK', `${what}: a zip begins with "PK" (${describeBytes(bytes)})`);
  const raw = bytes.toString('latin1');
  for (const n of names) assert.ok(raw.includes(n), `${what}: the zip's bytes name ${JSON.stringify(n)}`);
  let entries;
  try {
    entries = unzipSync(new Uint8Array(bytes));
  } catch (err) {
    assert.fail(`${what}: not a readable zip (${err.message}): ${describeBytes(bytes)}`);
  }
  assert.deepEqual(Object.keys(entries).sort(), [...names].sort(), `${what}: the files in the zip`);
  return entries;
}

/**
 * A compiled PDF must be a real document, not only a header: `%PDF-` first,
 * a cross-reference (`startxref`) and `%%EOF` last.
 */
function pdfProblem(bytes) {
  const text = bytes.toString('latin1');
  if (!text.startsWith('%PDF-')) return `it does not begin with %PDF- (${describeBytes(bytes)})`;
  if (!text.includes('startxref') || !/%%EOF\s*$/.test(text)) {
    return `it is not a complete PDF (no cross-reference, or no %%EOF at the end): ${describeBytes(bytes)}, whole text ${JSON.stringify(text.slice(0, 200))}`;
  }
  return null;
}

/** Mail fails this check if it carries any of `secrets` (record content typed or seen in the run). */
function assertNoRecordContent(mail, secrets, what) {
  const body = `${mail.subject}\n${mail.text}\n${mail.raw}`;
  const found = secrets.filter((s) => s && body.includes(s));
  assert.deepEqual(found, [], `${what}: the mail must carry no record content, but it has ${JSON.stringify(found)}:\n${mail.text}`);
}

/** A file as setInputFiles takes it. */
const pdfFile = (name, marker) => ({ name, mimeType: 'application/pdf', buffer: minimalPdf(marker) });
const pngFile = (name) => ({ name, mimeType: 'image/png', buffer: tinyPng() });

// ------------------------------------------------------------------ flow --

describe('Access to records (subject access requests) in real browsers (demo data)', () => {
  let server;
  let sink;
  const token = randomToken(6);

  const people = {
    patient: { label: 'the patient', email: 'patient@demo.keyhold.test' },
    officer: { label: "Riverside's records officer", email: 'records@demo.keyhold.test' },
    carer: { label: 'the carer (executor)', email: 'carer@demo.keyhold.test' },
    guest: { label: 'the guest', email: `guest-${token}@example.test` },
    hospital: { label: "the hospital's records officer", email: 'records-hospital@demo.keyhold.test' },
  };

  const shared = {
    riverside: '', // org ids
    hospital: '',
    patient: { given: '', family: '', dob: null, nhs: '' },
    own: null, // each request: { id, reference, ... }
    executor: null,
    guest: null,
  };

  // Text typed in the run that is record content (no mail may carry it).
  const secrets = {
    ownDescription: `All my GP records about my asthma ${randomToken(8)}`,
    ownAddress: `${randomToken(3)} Example Road, Leeds`,
    ownPostcode: 'LS1 4AP',
    question: `Which years do you mean? ${randomToken(8)}`,
    reply: `From 2015 to now, please ${randomToken(8)}`,
    execDescription: `Everything from the last year of his life ${randomToken(8)}`,
    execAddress: `${randomToken(3)} Chapel Lane, Otley`,
    execQuestion: `Please send the grant of probate itself ${randomToken(8)}`,
    execReply: `Here is the grant of probate ${randomToken(8)}`,
    guestFamily: `Example${randomToken(4)}`,
    guestDescription: `Letters about the knee operation ${randomToken(8)}`,
    guestAddress: `${randomToken(3)} Mill Street, Ilkley`,
  };

  // Files (names and bytes) uploaded in the run.
  const files = {
    ownId: pdfFile(`passport-${token}.pdf`, `passport ${token}`),
    ownBill: pngFile(`utility-bill-${token}.png`),
    question: pdfFile(`years-form-${token}.pdf`, `years form ${token}`),
    reply: pdfFile(`years-answer-${token}.pdf`, `years answer ${token}`),
    disclosure: pdfFile(`hospital-letters-${token}.pdf`, `hospital letters ${token}`),
    probate: pdfFile(`probate-${token}.pdf`, `probate ${token}`),
    execQuestion: pdfFile(`probate-checklist-${token}.pdf`, `probate checklist ${token}`),
    execReply: pngFile(`probate-scan-${token}.png`),
    consent: pdfFile(`signed-consent-${token}.pdf`, `consent ${token}`),
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

  // ------------------------------------------------------------ helpers --

  async function pageOf(person) {
    if (!person.b) {
      person.b = await launchBrowser();
      person.page = person.b.page;
    }
    return person.page;
  }

  /** Signs in on /signin (or the page already there); returns the page. */
  async function signIn(person) {
    const page = await pageOf(person);
    if (pathOf(page) !== '/signin') {
      assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    }
    await checkPage(page, `sign-in page (${person.label})`);
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(DEMO_PASSWORD);
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    assert.notEqual(pathOf(page), '/signin', `${person.label} signs in\n${await describePage(page)}`);
    await checkPage(page, `after ${person.label} signs in (${pathOf(page)})`);
    return page;
  }

  const mailMark = () => sink.messages.length;
  const mailSince = (mark, predicate) => sink.waitFor((m) => sink.messages.indexOf(m) >= mark && predicate(m), MAIL_TIMEOUT_MS);

  /** A mailed link, opened on the server under test (mail names the default public address). */
  function onServer(link) {
    const u = new URL(link);
    return new URL(`${u.pathname}${u.search}`, server.url).href;
  }

  /** The main "Continue" button. */
  const continueButton = (page) => page.getByRole('main').getByRole('button', { name: 'Continue', exact: true });

  /** "Make a new request" from the list, to `org`, of `kind`; returns the request id. */
  async function startRequest(page, org, kind, who) {
    if (pathOf(page) !== '/access-requests') {
      assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests');
      await checkPage(page, `your requests (${who})`);
    }
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Make a new request', exact: true }).click());
    await assertPath(page, '/access-requests/new', `after "Make a new request" (${who})`);
    await checkPage(page, `a new request: organisation and kind (${who})`);
    await page.locator('#org').selectOption({ label: org });
    await page.locator(`input[name="kind"][value="${kind}"]`).check();
    await navigateBy(page, () => continueButton(page).click());
    const m = pathOf(page).match(/^\/access-requests\/([^/]+)\/step\/patient$/);
    assert.ok(m, `after choosing ${org} and "${kind}": expected /access-requests/<id>/step/patient\n${await describePage(page)}`);
    await checkPage(page, `the patient step (${who})`);
    return m[1];
  }

  /**
   * Fills a step's fields by id (a date is { day, month, year }) and continues;
   * every required label named in `required` must end with "(required)".
   */
  async function fillStep(page, values, { required = [], requiredDates = [], next, who }) {
    for (const label of required) {
      await expectVisible(page.getByLabel(`${label} (required)`, { exact: true }), `the field "${label} (required)" (${who})`);
    }
    for (const legend of requiredDates) {
      await expectVisible(page.getByRole('group', { name: `${legend} (required)`, exact: true }), `the date "${legend} (required)" (${who})`);
    }
    for (const [id, v] of Object.entries(values)) {
      if (v && typeof v === 'object') {
        await page.locator(`#${id}-day`).fill(v.day);
        await page.locator(`#${id}-month`).fill(v.month);
        await page.locator(`#${id}-year`).fill(v.year);
      } else {
        await page.locator(`#${id}`).fill(v);
      }
    }
    const res = await navigateBy(page, () => continueButton(page).click());
    assertStatus(res, isOk, '2xx', `Continue (${who})`);
    await assertPath(page, next, `after Continue (${who})`);
    await checkPage(page, `${await h1Text(page)} (${who})`);
  }

  /** On the check page: the declaration is required; then "Send request". Returns the reference on the sent page. */
  async function checkAndSend(page, id, expectations, who) {
    await assertPath(page, `/access-requests/${id}/check`, `the check page (${who})`);
    assert.equal(await h1Text(page), 'Check your answers', `h1 of the check page (${who})`);
    for (const text of expectations) await assertMainContains(page, text, `the check page shows an answer (${who})`);
    const changes = page.getByRole('main').getByRole('link', { name: /^Change/ });
    assert.ok((await changes.count()) >= 4, `the check page has "Change" links (${who})`);
    await expectVisible(page.getByRole('link', { name: 'Change documents', exact: true }), `"Change documents" (${who})`);
    // Without the declaration: 422 and an error.
    let res = await navigateBy(page, () => page.getByRole('button', { name: 'Send request', exact: true }).click());
    assertStatus(res, (s) => s === 422, '422', `"Send request" without the declaration (${who})`);
    await expectVisible(page.locator('.nhsuk-error-summary'), `the error summary for the declaration (${who})`);
    await checkPage(page, `the check page with the declaration error (${who})`);
    await page.locator('#declaration').check();
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Send request', exact: true }).click());
    assertStatus(res, isOk, '2xx', `"Send request" (${who})`);
    await assertPath(page, `/access-requests/${id}/sent`, `after "Send request" (${who})`);
    await checkPage(page, `request sent (${who})`);
    const reference = (await page.locator('#reference').innerText()).trim();
    assert.match(reference, new RegExp(`^${REFERENCE_RE.source}$`), `the reference on the sent page (${who})`);
    assert.ok(referenceCheckOk(reference), `the reference ${reference} has a valid check character`);
    return reference;
  }

  /** The confirmation mail to `to` naming `reference`; no record content. */
  async function confirmationMail(mark, to, reference, mailSecrets, who) {
    const mail = await mailSince(mark, (m) => m.to === to && REFERENCE_RE.test(`${m.subject} ${m.text}`));
    assert.equal(mail.subject.match(REFERENCE_RE)?.[0], reference, `the confirmation mail's subject carries the reference (${who}): ${mail.subject}`);
    assert.equal(mail.text.match(REFERENCE_RE)?.[0], reference, `the confirmation mail's text carries the same reference (${who})`);
    assertNoRecordContent(mail, mailSecrets, `the confirmation mail (${who})`);
    return mail;
  }

  /** A row of the requester's list naming `reference`. */
  const requestRow = (page, reference) => page.locator('#requests tbody tr', { hasText: reference });
  /** A row of the queue naming `reference`. */
  const queueRow = (page, reference) => page.locator('#queue tbody tr', { hasText: reference });
  const newMessageTag = (row) => row.locator('.nhsuk-tag', { hasText: /^\s*New message\s*$/ });

  /** The officer's queue of `org`, through the organisation's home page. */
  async function openQueue(page, org, orgName, who) {
    assertStatus(await visit(page, `${server.url}/organisations/${org}`), isOk, '2xx', `${orgName}'s home`);
    await checkPage(page, `${orgName} home (${who})`);
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Subject access requests', exact: true }).click());
    await assertPath(page, `/organisations/${org}/access-requests`, `after "Subject access requests" (${who})`);
    await checkPage(page, `the queue of ${orgName} (${who})`);
  }

  /** Opens a request from the queue by its reference link. */
  async function openFromQueue(page, org, request, who) {
    const row = queueRow(page, request.reference);
    await expectVisible(row, `the request ${request.reference} in the queue (${who})`);
    await navigateBy(page, () => row.getByRole('link', { name: request.reference, exact: true }).click());
    await assertPath(page, `/organisations/${org}/access-requests/${request.id}`, `after opening ${request.reference} (${who})`);
    assert.equal(await h1Text(page), `Request ${request.reference}`, `h1 of the request page (${who})`);
    await checkPage(page, `the request ${request.reference} for the records team (${who})`);
  }

  const statusOf = async (page) => (await page.locator('#status').innerText()).trim();

  /** The files listed under a heading with this id (the first list after it). */
  const filesUnder = (page, headingId) => page.locator(`#${headingId} ~ ul.nhsuk-list`).first().getByRole('link');

  /** Assign to self: status "In progress", named in the summary. */
  async function assignToSelf(page, request, who) {
    assert.equal(await statusOf(page), 'Received', `status before assigning (${who})`);
    const chosen = await page.locator('#assignee option:checked').innerText();
    assert.match(chosen, /\(you\)/, `the officer is chosen by default (${who})`);
    await navigateBy(page, () => page.getByRole('button', { name: 'Assign', exact: true }).click());
    await assertPath(page, `/organisations/${shared.riverside}/access-requests/${request.id}`, `after "Assign" (${who})`);
    await checkPage(page, `assigned (${who})`);
    assert.equal(await statusOf(page), 'In progress', `status after assigning (${who})`);
    await assertMainContains(page, OFFICER_NAME, `the request is assigned to ${OFFICER_NAME}`);
  }

  /** "Ask the requester" with a file: status "Awaiting requester"; the requester is mailed (not the text). */
  async function ask(page, request, text, file, requesterEmail, who) {
    const mark = mailMark();
    await page.locator('#text').fill(text);
    await page.locator('#question-files').setInputFiles([file]);
    await navigateBy(page, () => page.getByRole('button', { name: 'Send question', exact: true }).click());
    await assertPath(page, `/organisations/${shared.riverside}/access-requests/${request.id}`, `after "Send question" (${who})`);
    await checkPage(page, `question sent (${who})`);
    assert.equal(await statusOf(page), 'Awaiting requester', `status after asking (${who})`);
    await assertMainContains(page, text, `the question is in the thread (${who})`);
    await expectVisible(page.locator('#messages ~ .nhsuk-card').getByRole('link', { name: file.name, exact: true }), `the question's file in the thread (${who})`);
    const mail = await mailSince(mark, (m) => m.to === requesterEmail && m.subject.includes(request.reference));
    assertNoRecordContent(mail, [text, file.name], `the mail that a message awaits (${who})`);
    assert.ok(mail.text.includes(`/access-requests/${request.id}`), `the mail links to the request:\n${mail.text}`);
  }

  /** The requester: "New message" on the list, reads the question, downloads its file, replies with text and a file. */
  async function readAndReply(page, request, question, questionFile, reply, replyFile, who) {
    assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests');
    await checkPage(page, `your requests with a new message (${who})`);
    const row = requestRow(page, request.reference);
    await expectVisible(row, `the request ${request.reference} on the list (${who})`);
    await expectVisible(newMessageTag(row), `the "New message" marker on ${request.reference} (${who})`);
    await expectVisible(row.getByText('Awaiting your reply', { exact: true }), `the status "Awaiting your reply" (${who})`);
    await navigateBy(page, () => row.getByRole('link', { name: request.reference, exact: true }).click());
    await assertPath(page, `/access-requests/${request.id}`, `the request page (${who})`);
    await checkPage(page, `the request with a question (${who})`);
    await assertMainContains(page, question, `the question is shown (${who})`);
    await assertMainContains(page, 'The records team is waiting for your reply', `the page says a reply is awaited (${who})`);
    const link = page.locator('#messages ~ .nhsuk-card').getByRole('link', { name: questionFile.name, exact: true });
    await expectVisible(link, `the question's file (${who})`);
    const got = await captureDownload(page, () => link.click(), `downloading the question's file (${who})`);
    assert.ok(got.bytes.equals(questionFile.buffer), `the question's file comes back unchanged (${who}): ${describeBytes(got.bytes)}`);
    assert.equal(got.download.suggestedFilename(), questionFile.name, `the question's file name (${who})`);

    await expectVisible(page.getByLabel('Your reply', { exact: true }), `the reply box (${who})`);
    await page.locator('#text').fill(reply);
    await page.locator('#files').setInputFiles([replyFile]);
    const res = await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Send', exact: true }).click());
    assertStatus(res, isOk, '2xx', `sending the reply (${who})`);
    await assertPath(page, `/access-requests/${request.id}`, `after sending the reply (${who})`);
    await checkPage(page, `reply sent (${who})`);
    await assertMainContains(page, reply, `the reply is in the thread (${who})`);
    await assertMainContains(page, 'In progress', `the request is in progress again (${who})`);
    await expectVisible(page.locator('#messages ~ .nhsuk-card').getByRole('link', { name: replyFile.name, exact: true }), `the reply's file in the thread (${who})`);

    assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests');
    await checkPage(page, `your requests after replying (${who})`);
    await expectAbsent(newMessageTag(requestRow(page, request.reference)), `"New message" marker after replying (${who})`);
  }

  /** The officer: the reply is marked in the queue, shown, and its file downloads. */
  async function seeReply(page, request, reply, replyFile, who) {
    await openQueue(page, shared.riverside, GP_PRACTICE, who);
    const row = queueRow(page, request.reference);
    await expectVisible(newMessageTag(row), `the "New message" marker in the queue (${who})`);
    await expectVisible(row.getByText('In progress', { exact: true }), `"In progress" in the queue (${who})`);
    await openFromQueue(page, shared.riverside, request, who);
    assert.equal(await statusOf(page), 'In progress', `status after the reply (${who})`);
    await assertMainContains(page, reply, `the reply is shown to the records team (${who})`);
    const link = page.locator('#messages ~ .nhsuk-card').getByRole('link', { name: replyFile.name, exact: true });
    const got = await captureDownload(page, () => link.click(), `downloading the reply's file (${who})`);
    assert.ok(got.bytes.equals(replyFile.buffer), `the reply's file comes back unchanged (${who})`);
  }

  /**
   * "Compile and add": a PDF named records-<date>.pdf joins the disclosure.
   * Returns its name; a compiled file that is not a complete PDF is reported
   * in `problems` (the flow goes on).
   */
  async function compile(page, request, problems, who) {
    const before = await filesUnder(page, 'disclosure').allInnerTexts().catch(() => []);
    const form = page.locator('form#compile');
    await expectVisible(form, `the "Compile from the Keyhold record" form (${who})`);
    await navigateBy(page, () => form.getByRole('button', { name: 'Compile and add', exact: true }).click());
    await assertPath(page, `/organisations/${shared.riverside}/access-requests/${request.id}`, `after "Compile and add" (${who})`);
    await checkPage(page, `compiled (${who})`);
    await expectAbsent(page.locator('.nhsuk-error-summary'), `an error after "Compile and add" (${who})`);
    const names = await filesUnder(page, 'disclosure').allInnerTexts();
    const added = names.filter((n) => !before.includes(n));
    assert.equal(added.length, 1, `one file added by compiling (${who}); the list: ${JSON.stringify(names)}`);
    const name = added[0].trim();
    assert.match(name, /^records-\d{4}-\d{2}-\d{2}\.pdf$/, `the compiled file's name (${who})`);
    await assertMainContains(page, 'Compiled from the Keyhold record', `the compiled file's label (${who})`);
    const link = filesUnder(page, 'disclosure').filter({ hasText: name });
    const got = await captureDownload(page, () => link.first().click(), `the officer downloads the compiled PDF (${who})`);
    const problem = pdfProblem(got.bytes);
    if (problem) problems.push(`the compiled "${name}" (${who}) is not a usable PDF: ${problem}`);
    return { name, bytes: got.bytes };
  }

  /** Uploads one more disclosure file. */
  async function uploadDisclosure(page, request, file, who) {
    const form = page.locator('form', { has: page.getByRole('button', { name: 'Upload', exact: true }) });
    await form.locator('#files').setInputFiles([file]);
    await navigateBy(page, () => form.getByRole('button', { name: 'Upload', exact: true }).click());
    await assertPath(page, `/organisations/${shared.riverside}/access-requests/${request.id}`, `after "Upload" (${who})`);
    await checkPage(page, `disclosure file uploaded (${who})`);
    await expectVisible(filesUnder(page, 'disclosure').filter({ hasText: file.name }), `the uploaded file in the disclosure (${who})`);
  }

  /** "Complete and disclose": status "Completed"; the requester is mailed that the records are ready. */
  async function complete(page, request, requesterEmail, mailSecrets, who) {
    const mark = mailMark();
    await navigateBy(page, () => page.getByRole('button', { name: 'Complete and disclose', exact: true }).click());
    await assertPath(page, `/organisations/${shared.riverside}/access-requests/${request.id}`, `after "Complete and disclose" (${who})`);
    await checkPage(page, `completed (${who})`);
    assert.equal(await statusOf(page), 'Completed', `status after completing (${who})`);
    await expectAbsent(page.getByRole('button', { name: 'Complete and disclose', exact: true }), `"Complete and disclose" once completed (${who})`);
    const mail = await mailSince(mark, (m) => m.to === requesterEmail && m.subject.includes(request.reference));
    assert.match(mail.subject, /ready/i, `the mail says the records are ready (${who}): ${mail.subject}`);
    assert.ok(mail.text.includes(`/access-requests/${request.id}`), `the ready mail links to the request:\n${mail.text}`);
    assertNoRecordContent(mail, mailSecrets, `the "ready" mail (${who})`);
  }

  /** The requester: "Your records", one file and the zip; returns nothing. */
  async function downloadRecords(page, request, names, who) {
    assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests');
    await checkPage(page, `your requests with records ready (${who})`);
    const row = requestRow(page, request.reference);
    await expectVisible(row.getByText('Ready to download', { exact: true }), `"Ready to download" on the list (${who})`);
    await navigateBy(page, () => row.getByRole('link', { name: request.reference, exact: true }).click());
    await assertPath(page, `/access-requests/${request.id}`, `the request page (${who})`);
    await checkPage(page, `the request with records to download (${who})`);
    await expectVisible(page.getByRole('heading', { name: 'Your records', exact: true }), `"Your records" (${who})`);
    const listed = (await filesUnder(page, 'records').allInnerTexts()).map((n) => n.trim());
    assert.deepEqual([...listed].sort(), [...names].sort(), `the files under "Your records" (${who})`);
    await assertMainContains(page, 'You can download them until', `the expiry date (${who})`);
    const until = (await page.locator('#records + p strong').innerText()).trim();
    assert.match(until, /^\d{1,2} [A-Z][a-z]+ \d{4}$/, `the expiry is a date (${who})`);
    await expectVisible(page.getByRole('heading', { name: new RegExp(SAFE_STORAGE) }), `the safe-storage advice (${who})`);
    await assertMainContains(page, 'Do not download them on a shared or public computer', `the safe-storage advice's text (${who})`);
    await expectAbsent(page.locator('form[action$="/messages"]'), `a reply form once the request is closed (${who})`);

    const one = await captureDownload(page, () => filesUnder(page, 'records').filter({ hasText: names[0] }).first().click(), `downloading ${names[0]} (${who})`);
    assert.equal(one.download.suggestedFilename(), names[0], `the downloaded file's name (${who})`);
    assert.ok(one.bytes.length > 0, `the downloaded file has bytes (${who})`);
    const zip = await captureDownload(page, () => page.locator('a#download-all').click(), `downloading all as a zip (${who})`);
    assert.match(zip.download.suggestedFilename(), new RegExp(`${request.reference}\\.zip$`), `the zip's name carries the reference (${who})`);
    const entries = readZip(zip.bytes, names, `the zip (${who})`);
    assert.ok(Buffer.from(entries[names[0]]).equals(one.bytes), `the file in the zip equals the single download (${who})`);
    return entries;
  }

  // ------------------------------------------------------------------ 0 --

  step('the records officers find their organisations; the patient reads who they are off their banner', async () => {
    let page = await signIn(people.officer);
    assertStatus(await visit(page, `${server.url}/organisations`), isOk, '2xx', 'GET /organisations (records officer)');
    await checkPage(page, 'organisations (records officer)');
    let href = await page.getByRole('main').getByRole('link', { name: GP_PRACTICE, exact: true }).getAttribute('href');
    shared.riverside = href?.match(/^\/organisations\/([^/]+)$/)?.[1] ?? '';
    assert.ok(shared.riverside, `Riverside's id from its link (${href})`);

    page = await signIn(people.hospital);
    assertStatus(await visit(page, `${server.url}/organisations`), isOk, '2xx', "GET /organisations (hospital's records officer)");
    await checkPage(page, "organisations (hospital's records officer)");
    href = await page.getByRole('main').getByRole('link', { name: HOSPITAL, exact: true }).getAttribute('href');
    shared.hospital = href?.match(/^\/organisations\/([^/]+)$/)?.[1] ?? '';
    assert.ok(shared.hospital, `the hospital's id from its link (${href})`);
    assert.notEqual(shared.hospital, shared.riverside);

    // The patient, not signed in: the start page offers to sign in or continue as a guest.
    page = await pageOf(people.patient);
    assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests (signed out)');
    await checkPage(page, 'access requests start page (signed out)');
    await expectVisible(page.getByRole('main').getByRole('button', { name: 'Continue as a guest', exact: true }), '"Continue as a guest"');
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    await assertPath(page, '/signin', 'after "Sign in" on the start page');
    await signIn(people.patient);
    await assertPath(page, '/access-requests', 'signing in from the start page comes back to the requests');
    assert.equal(await h1Text(page), 'Your requests for records', 'h1 of the list');

    assertStatus(await visit(page, `${server.url}/record`), isOk, '2xx', 'GET /record');
    await checkPage(page, "the patient's record");
    const name = (await page.locator('.keyhold-banner__name').innerText()).replace(/\s+/g, ' ').trim();
    const parts = name.split(' ');
    shared.patient.given = parts[0];
    shared.patient.family = parts.at(-1);
    shared.patient.nhs = (await page.locator('.keyhold-banner__nhs-number strong').innerText()).trim();
    shared.patient.dob = dateParts(await page.locator('.keyhold-banner__detail', { hasText: 'Born' }).locator('dd').innerText());
    assert.match(shared.patient.nhs, /^\d{3} \d{3} \d{4}$/);
  });

  // ------------------------------------------------------------------ 1 --

  step('1a. the patient asks Riverside for their own records, step by step, with two uploads', async () => {
    const who = 'own records';
    const page = people.patient.page;
    const id = await startRequest(page, GP_PRACTICE, 'own', who);
    shared.own = { id, reference: '' };
    assert.equal(await h1Text(page), 'About you', 'h1 of the first step');

    // An empty step: 422, the errors listed.
    let res = await navigateBy(page, () => continueButton(page).click());
    assertStatus(res, (s) => s === 422, '422', 'an empty step');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'the error summary of an empty step');
    await assertMainContains(page, 'Enter your first name', 'the error names the missing first name');
    await checkPage(page, 'the patient step with errors');

    const p = shared.patient;
    await fillStep(
      page,
      {
        'patient-given-name': p.given,
        'patient-family-name': p.family,
        'patient-dob': p.dob,
        'patient-nhs-number': p.nhs,
        'patient-address': secrets.ownAddress,
        'patient-postcode': secrets.ownPostcode,
        'requester-phone': '0113 496 0000',
      },
      {
        required: ['Your first name', 'Your last name', 'Your address', 'Postcode'],
        requiredDates: ['Date of birth'],
        next: `/access-requests/${id}/step/records`,
        who,
      },
    );
    await fillStep(
      page,
      { 'records-description': secrets.ownDescription, 'records-from': { day: '1', month: '1', year: '2015' } },
      { required: ['Which records do you want?'], next: `/access-requests/${id}/documents`, who },
    );

    // Documents: "Continue" with nothing uploaded is refused.
    await assertMainContains(page, 'proof of your identity', 'the documents page names the document needed');
    res = await navigateBy(page, () => continueButton(page).click());
    assertStatus(res, (s) => s === 422, '422', '"Continue" without the required document');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'the error summary for a missing document');
    await checkPage(page, 'documents with the missing-document error');

    // Upload the proof of identity, then another document with "Continue".
    await page.locator('#purpose').check();
    await page.locator('#files').setInputFiles([files.ownId]);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Upload', exact: true }).click());
    assertStatus(res, isOk, '2xx', '"Upload"');
    await assertPath(page, `/access-requests/${id}/documents`, 'after "Upload"');
    await checkPage(page, 'documents with one upload');
    await expectVisible(page.locator('#uploaded li', { hasText: files.ownId.name }), 'the uploaded proof of identity');
    await expectVisible(page.locator('#uploaded li', { hasText: 'Proof of your identity' }), 'its label');
    assert.ok(await page.locator('#purpose-other').isChecked(), 'once the required document is in, "another document" is chosen');
    await page.locator('#files').setInputFiles([files.ownBill]);
    res = await navigateBy(page, () => continueButton(page).click());
    assertStatus(res, isOk, '2xx', '"Continue" with a file chosen');
    await checkPage(page, 'check your answers (own records)');

    shared.own.reference = await checkAndSend(
      page,
      id,
      [p.given, p.family, secrets.ownAddress, secrets.ownPostcode, secrets.ownDescription, files.ownId.name, files.ownBill.name],
      who,
    );
  });

  step('1b. the confirmation mail carries the same reference and no record content; the list shows the request', async () => {
    const page = people.patient.page;
    const { own } = shared;
    await confirmationMail(0, people.patient.email, own.reference, [secrets.ownAddress, secrets.ownPostcode, secrets.ownDescription, shared.patient.nhs, shared.patient.nhs.replace(/ /g, ''), files.ownId.name], 'own records');
    await assertMainContains(page, GP_PRACTICE, 'the sent page names the organisation');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'all your requests', exact: true }).click());
    await assertPath(page, '/access-requests', 'after "all your requests"');
    await checkPage(page, 'your requests (own records sent)');
    const row = requestRow(page, own.reference);
    await expectVisible(row, 'the request on the list');
    const cells = (await row.locator('td').allInnerTexts()).map((c) => c.replace(/\s+/g, ' ').trim());
    assert.ok(cells[0].endsWith('Own records'), `Type: ${cells[0]}`);
    assert.ok(cells[1].endsWith(own.reference), `Reference: ${cells[1]}`);
    assert.ok(cells[2].includes(shared.patient.family), `Name: ${cells[2]}`);
    assert.ok(cells[4].includes('Received'), `Status: ${cells[4]}`);
    await expectAbsent(newMessageTag(row), '"New message" on a new request');
    await expectAbsent(page.getByText('Not sent yet', { exact: true }), '"Not sent yet" once sent');

    // Search by part of the reference; a search that matches nothing; "Refresh".
    await page.locator('#q').fill(own.reference.slice(3, 7));
    await navigateBy(page, () => page.getByRole('button', { name: 'Search', exact: true }).click());
    await checkPage(page, 'your requests, searched');
    await expectVisible(requestRow(page, own.reference), 'the request found by part of its reference');
    await page.locator('#q').fill(`nothing-${token}`);
    await navigateBy(page, () => page.getByRole('button', { name: 'Search', exact: true }).click());
    await checkPage(page, 'your requests, nothing found');
    await assertMainContains(page, 'No requests match', 'a search that matches nothing');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Refresh', exact: true }).click());
    await checkPage(page, 'your requests, refreshed');
    await expectVisible(requestRow(page, own.reference), 'the request after "Refresh"');
  });

  step("1c. Riverside's records officer finds it in the queue, assigns it to themself and asks a question with a file", async () => {
    const who = 'officer, own records';
    const page = people.officer.page;
    await openQueue(page, shared.riverside, GP_PRACTICE, who);
    const row = queueRow(page, shared.own.reference);
    await expectVisible(row, 'the request in the queue');
    const cells = (await row.locator('td').allInnerTexts()).map((c) => c.replace(/\s+/g, ' ').trim());
    assert.ok(cells[1].includes('Own records'), `Type: ${cells[1]}`);
    assert.ok(cells[2].includes(shared.patient.family), `Name: ${cells[2]}`);
    assert.ok(cells[5].includes('Received'), `Status: ${cells[5]}`);
    assert.ok(cells[6].includes('Nobody yet'), `Assigned to: ${cells[6]}`);
    await openFromQueue(page, shared.riverside, shared.own, who);
    await assertMainContains(page, secrets.ownDescription, 'the team reads what was asked for');
    await expectVisible(page.getByRole('link', { name: files.ownId.name, exact: true }), 'the proof of identity sent with it');
    await assignToSelf(page, shared.own, who);
    await ask(page, shared.own, secrets.question, files.question, people.patient.email, who);
  });

  step('1d. the patient sees "New message", reads it, downloads its file and replies with text and a file', async () => {
    await readAndReply(people.patient.page, shared.own, secrets.question, files.question, secrets.reply, files.reply, 'patient');
  });

  step('1e. the officer sees the reply, compiles from the Keyhold record, uploads one more file and completes', async () => {
    const who = 'officer, own records';
    const page = people.officer.page;
    const problems = [];
    await seeReply(page, shared.own, secrets.reply, files.reply, who);
    await assertMainContains(page, 'No disclosure files yet.', 'no disclosure before compiling');
    const compiled = await compile(page, shared.own, problems, who);
    shared.own.compiled = compiled.name;
    await uploadDisclosure(page, shared.own, files.disclosure, who);
    await complete(page, shared.own, people.patient.email, [secrets.ownDescription, secrets.ownAddress, secrets.question, secrets.reply, files.disclosure.name, compiled.name], who);
    if (problems.length) {
      const err = new Error(`the flow went on, but:\n  ${problems.join('\n  ')}`);
      err.keepGoing = true;
      throw err;
    }
  });

  step('1f. the patient sees "Your records", downloads one file and the zip, and reads the safe-storage advice', async () => {
    const page = people.patient.page;
    const names = [shared.own.compiled, files.disclosure.name];
    const entries = await downloadRecords(page, shared.own, names, 'patient');
    assert.ok(Buffer.from(entries[files.disclosure.name]).equals(files.disclosure.buffer), 'the uploaded disclosure file is in the zip unchanged');
  });

  step('1g. "Who has seen my record" shows the disclosure', async () => {
    const page = people.patient.page;
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Who has seen my record', exact: true }).click());
    await assertPath(page, '/record/access', 'after "Who has seen my record"');
    await checkPage(page, 'who has seen your record (after the disclosure)');
    const rows = page.locator('main table tbody tr');
    // (A string in hasText is matched case-insensitively: "a disclosed file" would do.)
    const disclosed = rows.filter({ hasText: /\bDisclosed\b/ });
    const all = async () => (await rows.allInnerTexts()).map((r) => r.replace(/\s+/g, ' '));
    if ((await disclosed.count()) === 0) {
      assert.fail(`the access log has no "Disclosed" line; its lines:\n  ${(await all()).slice(0, 30).join('\n  ')}`);
    }
    const line = (await disclosed.first().innerText()).replace(/\s+/g, ' ');
    assert.ok(line.includes(GP_PRACTICE), `the disclosure line names ${GP_PRACTICE}: ${line}`);
    assert.ok(line.includes(OFFICER_NAME), `the disclosure line names the officer: ${line}`);
    assert.ok(line.includes(shared.own.reference), `the disclosure line names the request's reference: ${line}`);
    // The compiling (the officer reading the record for the request) is there too.
    const compiled = rows.filter({ hasText: /for an access request/ }).filter({ hasText: shared.own.reference });
    if ((await compiled.count()) === 0) {
      assert.fail(`the access log has no line for compiling the record; its lines:\n  ${(await all()).slice(0, 30).join('\n  ')}`);
    }
  });

  // ------------------------------------------------------------------ 2 --

  step('2a. the carer, as executor, asks for the deceased patient\'s records (date of death, NHS number, proof)', async () => {
    const who = 'executor';
    const page = await signIn(people.carer);
    await expectAbsent(page.getByRole('banner').getByRole('link', { name: 'My record', exact: true }), '"My record" for an account without a record');
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Requests for records', exact: true }).click());
    await assertPath(page, '/access-requests', 'after "Requests for records"');
    await checkPage(page, "the carer's requests (none yet)");
    await assertMainContains(page, 'You have not sent any requests yet.', 'the carer has no requests');
    const id = await startRequest(page, GP_PRACTICE, 'executor', who);
    shared.executor = { id, reference: '' };
    assert.equal(await h1Text(page), 'About the patient', 'h1 of the first step');
    const dod = daysAgo(200);
    await fillStep(
      page,
      {
        'patient-given-name': DECEASED.given,
        'patient-family-name': DECEASED.family,
        'patient-dob': DECEASED.dob,
        'patient-nhs-number': DECEASED.nhs,
        'patient-dod': dod,
        'patient-address': secrets.execAddress,
        'patient-postcode': 'LS21 1AA',
      },
      {
        required: ["Patient's first name", "Patient's last name", 'Last known address', 'Postcode'],
        requiredDates: ['Date of birth', 'Date of death'],
        next: `/access-requests/${id}/step/requester`,
        who,
      },
    );
    await fillStep(
      page,
      {
        'requester-name': 'Sam Reid',
        'requester-relationship': 'Nephew and executor of the will',
        'requester-address': `${randomToken(3)} Carer Close, Leeds`,
        'requester-phone': '0113 496 0001',
      },
      { required: ['Your full name', 'Your relationship to the patient', 'Your address'], next: `/access-requests/${id}/step/records`, who },
    );
    await fillStep(page, { 'records-description': secrets.execDescription }, { required: ['Which records do you want?'], next: `/access-requests/${id}/documents`, who });
    await assertMainContains(page, 'proof that you are the executor', 'the documents page names the document needed');
    // A file chosen and "Continue": uploaded, then on to the check page.
    await page.locator('#purpose').check();
    await page.locator('#files').setInputFiles([files.probate]);
    const res = await navigateBy(page, () => continueButton(page).click());
    assertStatus(res, isOk, '2xx', '"Continue" with the proof chosen');
    await checkPage(page, 'check your answers (executor)');
    const mark = mailMark();
    shared.executor.reference = await checkAndSend(
      page,
      id,
      [DECEASED.given, DECEASED.family, '999 000 0026', 'Sam Reid', secrets.execDescription, files.probate.name, `${dod.day} ${MONTHS[Number(dod.month) - 1]} ${dod.year}`],
      who,
    );
    shared.executor.mark = mark;
  });

  step('2b. the executor\'s confirmation mail carries the reference; the officer assigns and asks; the carer reads and replies', async () => {
    const { executor } = shared;
    await confirmationMail(executor.mark, people.carer.email, executor.reference, [secrets.execDescription, secrets.execAddress, DECEASED.nhs, DECEASED.family], 'executor');
    const page = people.officer.page;
    const who = 'officer, executor';
    await openQueue(page, shared.riverside, GP_PRACTICE, who);
    const row = queueRow(page, executor.reference);
    await expectVisible(row, 'the request in the queue');
    const cells = (await row.locator('td').allInnerTexts()).map((c) => c.replace(/\s+/g, ' ').trim());
    assert.ok(cells[1].endsWith('Executor'), `Type: ${cells[1]}`);
    assert.ok(cells[2].endsWith(`${DECEASED.given} ${DECEASED.family}`), `Name (the patient): ${cells[2]}`);
    await openFromQueue(page, shared.riverside, executor, who);
    await assertMainContains(page, 'Date of death', 'the team sees the date of death');
    await assignToSelf(page, executor, who);
    await ask(page, executor, secrets.execQuestion, files.execQuestion, people.carer.email, who);
    await readAndReply(people.carer.page, executor, secrets.execQuestion, files.execQuestion, secrets.execReply, files.execReply, 'carer');
  });

  step('2c. the officer sees the reply, compiles (the record matched by NHS number and date of birth), completes; the carer downloads the zip', async () => {
    const who = 'officer, executor';
    const page = people.officer.page;
    const problems = [];
    await seeReply(page, shared.executor, secrets.execReply, files.execReply, who);
    const compiled = await compile(page, shared.executor, problems, who);
    shared.executor.compiled = compiled.name;
    await complete(page, shared.executor, people.carer.email, [secrets.execDescription, secrets.execAddress, secrets.execQuestion, secrets.execReply, DECEASED.nhs], who);
    await downloadRecords(people.carer.page, shared.executor, [compiled.name], 'carer');
    if (problems.length) {
      const err = new Error(`the flow went on, but:\n  ${problems.join('\n  ')}`);
      err.keepGoing = true;
      throw err;
    }
  });

  // ------------------------------------------------------------------ 3 --

  step('3a. a guest proves their address by the mailed link (once) and gets a guest session', async () => {
    const page = await pageOf(people.guest);
    assertStatus(await visit(page, `${server.url}/access-requests`), isOk, '2xx', 'GET /access-requests (guest)');
    await checkPage(page, 'start page (guest)');
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Continue as a guest', exact: true }).click());
    await assertPath(page, '/access-requests/guest', 'after "Continue as a guest"');
    await checkPage(page, 'continue as a guest');
    // A malformed address: 422.
    await page.locator('#email').fill('not-an-address');
    let res = await navigateBy(page, () => page.getByRole('button', { name: 'Email me a link', exact: true }).click());
    assertStatus(res, (s) => s === 422, '422', 'a malformed address');
    await expectVisible(page.locator('.nhsuk-error-summary'), 'the error summary for a malformed address');
    await checkPage(page, 'continue as a guest, with an error');
    const mark = mailMark();
    await page.locator('#email').fill(people.guest.email);
    res = await navigateBy(page, () => page.getByRole('button', { name: 'Email me a link', exact: true }).click());
    assertStatus(res, isOk, '2xx', '"Email me a link"');
    assert.equal(await h1Text(page), 'Check your email', 'h1 after asking for a link');
    await assertMainContains(page, people.guest.email, 'the page names the address');
    await checkPage(page, 'guest: check your email');
    const mail = await mailSince(mark, (m) => m.to === people.guest.email);
    const link = onServer(linkIn(mail, '/access-requests/guest/'));
    assertStatus(await visit(page, link), isOk, '2xx', 'the mailed guest link');
    await checkPage(page, 'guest: confirm your email address');
    await navigateBy(page, () => continueButton(page).click());
    await assertPath(page, '/access-requests', 'after "Continue" on the guest link');
    await checkPage(page, 'your requests (guest)');
    await assertMainContains(page, `You are signed in as a guest with ${people.guest.email}`, 'the list names the guest');
    const cookies = await page.context().cookies(server.url);
    assert.ok(cookies.some((c) => c.name === 'keyhold_guest' && c.httpOnly), `an HttpOnly keyhold_guest cookie: ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert.ok(!cookies.some((c) => c.name === 'keyhold_session'), 'no account session for a guest');
    // The link works once: opened again, it is refused with a page that says so
    // (checked last, so that a failure here lets the flow go on).
    res = await visit(page, link);
    await checkPage(page, 'guest link used already');
    const problems = [];
    if (res.status() !== 410) problems.push(`the used guest link answers ${res.status()}, not 410 "This link has expired"`);
    else if ((await h1Text(page)) !== 'This link has expired') problems.push(`the used guest link's page has the h1 "${await h1Text(page)}"`);
    if (problems.length) {
      const err = new Error(`the guest session works, but:\n  ${problems.join('\n  ')}\n${await describePage(page)}`);
      err.keepGoing = true;
      throw err;
    }
  });

  step('3b. the guest sends a third-party request and gets the confirmation mail', async () => {
    const who = 'guest';
    const page = people.guest.page;
    const id = await startRequest(page, GP_PRACTICE, 'third-party', who);
    shared.guest = { id, reference: '' };
    const [given, family] = ['Morgan', secrets.guestFamily];
    await fillStep(
      page,
      {
        'patient-given-name': given,
        'patient-family-name': family,
        'patient-dob': { day: '2', month: '7', year: '1950' },
        'patient-address': secrets.guestAddress,
        'patient-postcode': 'LS29 9AA',
      },
      { required: ["Patient's first name", "Patient's last name", "Patient's address", 'Postcode'], requiredDates: ['Date of birth'], next: `/access-requests/${id}/step/requester`, who },
    );
    await fillStep(
      page,
      { 'requester-name': `Robin Guest${token}`, 'requester-relationship': 'Daughter', 'requester-address': secrets.guestAddress },
      { required: ['Your full name', 'Your relationship to the patient', 'Your address'], next: `/access-requests/${id}/step/records`, who },
    );
    await fillStep(page, { 'records-description': secrets.guestDescription }, { next: `/access-requests/${id}/documents`, who });
    await page.locator('#purpose').check();
    await page.locator('#files').setInputFiles([files.consent]);
    await navigateBy(page, () => continueButton(page).click());
    await checkPage(page, 'check your answers (guest)');
    const mark = mailMark();
    shared.guest.reference = await checkAndSend(page, id, [given, family, `Robin Guest${token}`, secrets.guestDescription, files.consent.name], who);
    await assertMainContains(page, 'As a guest', 'the sent page tells a guest how to come back');
    const mail = await confirmationMail(mark, people.guest.email, shared.guest.reference, [secrets.guestFamily, secrets.guestDescription, secrets.guestAddress], who);
    linkIn(mail, '/access-requests/guest');
  });

  step("3c. the guest's page has no reply form; the officer's page has no \"Ask the requester\"; both refuse a message sent by hand", async () => {
    const { guest } = shared;
    const page = people.guest.page;
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'View your request', exact: true }).click());
    await assertPath(page, `/access-requests/${guest.id}`, 'the guest\'s request page');
    await checkPage(page, "the guest's request page");
    await assertMainContains(page, 'Received', 'the status');
    await expectAbsent(page.locator('form[action$="/messages"]'), 'a reply form for a guest');
    await expectAbsent(page.locator('textarea#text'), 'a message box for a guest');
    await assertMainContains(page, 'As a guest you cannot send messages here', 'the guest is told why');
    await expectVisible(page.getByRole('button', { name: 'Withdraw request', exact: true }), '"Withdraw request"');
    // A message posted by hand is refused.
    const csrf = await page.locator('input[name="csrf_token"]').first().inputValue();
    const reply = await page.request.post(`${server.url}/access-requests/${guest.id}/messages`, {
      multipart: { csrf_token: csrf, text: 'A message a guest cannot send' },
      maxRedirects: 0,
    });
    assert.equal(reply.status(), 422, `a guest's message posted by hand is refused (got ${reply.status()})`);
    assert.match(await reply.text(), /Guests cannot send messages/, 'the refusal says why');

    const officer = people.officer.page;
    const who = 'officer, guest request';
    await openQueue(officer, shared.riverside, GP_PRACTICE, who);
    const guestType = (await queueRow(officer, guest.reference).locator('td').nth(1).innerText()).trim();
    assert.ok(guestType.endsWith('Third party (guest)'), `the queue marks the guest request: ${guestType}`);
    await openFromQueue(officer, shared.riverside, guest, who);
    await assertMainContains(officer, 'A guest (verified email; cannot be asked questions)', 'the page says the requester is a guest');
    await expectAbsent(officer.getByLabel('Ask the requester', { exact: true }), '"Ask the requester" for a guest request');
    await expectAbsent(officer.locator('form[action$="/messages"]'), 'a question form for a guest request');
    await expectAbsent(officer.getByRole('button', { name: 'Send question', exact: true }), '"Send question" for a guest request');
    await assertMainContains(officer, 'This request was made by a guest, who cannot be asked questions.', 'the team is told why');
    const token2 = await officer.locator('input[name="csrf_token"]').first().inputValue();
    const asked = await officer.request.post(`${server.url}/organisations/${shared.riverside}/access-requests/${guest.id}/messages`, {
      multipart: { csrf_token: token2, text: 'A question a guest cannot be asked' },
      maxRedirects: 0,
    });
    assert.equal(asked.status(), 422, `a question to a guest posted by hand is refused (got ${asked.status()})`);
    assert.match(await asked.text(), /Complete or reject it/, 'the refusal says why');
    assertStatus(await visit(officer, officer.url()), isOk, '2xx', 'the guest request reloaded');
    await checkPage(officer, `the guest request after the refused question (${who})`);
    await assertMainLacks(officer, 'A question a guest cannot be asked', 'the refused question is not in the thread');
    assert.equal(await statusOf(officer), 'Received', 'the guest request is still "Received"');
    const mails = sink.messages.filter((m) => m.to === people.guest.email && /message/i.test(m.subject));
    assert.deepEqual(mails.map((m) => m.subject), [], 'the guest is not mailed about a message');
  });

  // ------------------------------------------------------------------ 4 --

  step("4. the hospital's records officer cannot see Riverside's requests: not in their queue, 404 by address", async (t) => {
    const page = people.hospital.page;
    const who = "hospital's officer";
    await openQueue(page, shared.hospital, HOSPITAL, who);
    const requests = [shared.own, shared.executor, shared.guest].filter(Boolean);
    assert.equal(requests.length, 3, 'the three requests were made');
    for (const r of requests) await assertMainLacks(page, r.reference, `the hospital's queue (open) lists ${r.reference}`);
    await page.locator('#show').selectOption('all');
    await navigateBy(page, () => page.getByRole('button', { name: 'Show', exact: true }).click());
    await checkPage(page, "the hospital's queue, all requests");
    for (const r of requests) await assertMainLacks(page, r.reference, `the hospital's queue (all) lists ${r.reference}`);
    const text = await mainText(page);
    t.diagnostic(`hospital queue: ${text.slice(0, 300)}`);

    const paths = [`/organisations/${shared.riverside}/access-requests`];
    for (const r of requests) {
      paths.push(`/organisations/${shared.riverside}/access-requests/${r.id}`);
      paths.push(`/organisations/${shared.hospital}/access-requests/${r.id}`);
    }
    for (const p of paths) {
      const res = await visit(page, `${server.url}${p}`);
      assertStatus(res, (s) => s === 404, '404', `${who} opening ${p}`);
      for (const r of requests) await assertMainLacks(page, r.reference, `the 404 page for ${p}`);
      await checkPage(page, `404 for ${p} (${who})`);
    }
    // Nor can one requester open another's request.
    const res = await visit(people.carer.page, `${server.url}/access-requests/${shared.own.id}`);
    assertStatus(res, (s) => s === 404, '404', "the carer opening the patient's request");
    await checkPage(people.carer.page, "404 for the patient's request (carer)");
  });

  // ------------------------------------------------------------------ 5 --

  step('5. every page the browsers loaded was checked with axe', async () => {
    for (const p of Object.values(people)) p.b?.visits.assertAllChecked();
  });

  step(
    'no browser logged a console error or had a failed asset',
    async () => {
      const problems = Object.values(people).flatMap((p) => [...(p.b?.visits.consoleErrors ?? []), ...(p.b?.visits.assetFailures ?? [])]);
      assert.deepEqual(problems, [], 'console errors or failed assets');
    },
    { critical: false },
  );
});

// Organisation feeds end to end, against `keyhold serve --demo`: where a
// person acts it is a real (headless Chromium) browser, where the
// organisation's system acts it is plain `fetch`.
//
// The GP practice's administrator registers a system by its public RS512 key
// (a private key pasted by mistake is refused); a patient who shares with no
// one yet lets the practice read and add General entries; the system signs a
// client assertion by hand (node:crypto, RS512), gets a token (a replay is
// refused), posts one transaction Bundle with an entry of every ingestible
// type, reads each back by id and by patient, updates one by its business
// identifier, and has a Bundle with a malformed entry and one with an entry
// the patient did not allow refused whole. The patient sees the entries on
// their record, from the practice, and the writes in their access log; the
// administrator stops the system and its token stops working.
//
// Every FHIR answer (and the Bundles posted) is validated by an independent
// library (PyPI fhir.resources via tests/fhir/validate.py), and every page the
// browsers load is checked with axe-core (WCAG 2.x A/AA).

import { describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import path from 'node:path';

import { startServer, repoRoot } from './lib/server.mjs';
import { launchBrowser, navigateBy, visit, describePage } from './lib/browser.mjs';
import { randomToken, scratchDir } from './lib/files.mjs';
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
  isOk,
  stepHarness,
  axeSteps,
} from './lib/flow.mjs';

// What `keyhold serve --demo` seeds (crates/keyhold-domain/src/demo.rs).
const DEMO_PASSWORD = 'keyhold-demo-2026';
const GP_PRACTICE = 'Riverside Medical Practice';
// A patient whose identity was checked (P9) and who shares with no one: the
// grant made here is the only thing that lets the practice in.
const PATIENT_EMAIL = 'sensitive@demo.keyhold.test';
const ADMIN_EMAIL = 'gp-admin@demo.keyhold.test';
// A seeded record no account owns and nobody shares.
const UNSHARED_NHS_NUMBER = '9990000018';

const NHS_SYSTEM = 'https://fhir.nhs.uk/Id/nhs-number';
const CATEGORY_SYSTEM = 'https://keyhold.example/fhir/CodeSystem/category';
const JWT_BEARER = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const SYSTEM_ROLE = "Organisation's system";
const TYPES = ['AllergyIntolerance', 'Condition', 'MedicationStatement', 'Immunization', 'Encounter', 'Appointment', 'CarePlan'];

const STEP_TIMEOUT_MS = 120_000;

const python = path.join(repoRoot, 'tests', 'fhir', '.venv', 'bin', 'python');
const validator = path.join(repoRoot, 'tests', 'fhir', 'validate.py');

// --------------------------------------------------------------- FHIR side --

/**
 * Validates documents with the independent validator in one run; rejects
 * naming every document that is not valid FHIR.
 * @param {{ what: string, doc: object }[]} docs
 */
async function validateAll(docs) {
  const dir = await scratchDir();
  try {
    const files = [];
    for (const [i, d] of docs.entries()) files.push(await dir.write(`${String(i).padStart(3, '0')}.json`, JSON.stringify(d.doc)));
    const { err, stdout, stderr } = await new Promise((resolve) => {
      execFile(python, [validator, ...files], { timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
        resolve({ err, stdout, stderr }),
      );
    });
    const lines = stdout.trim().split('\n').filter(Boolean);
    if (err || lines.length !== docs.length) {
      const bad = docs
        .map((d, i) => ({ ...d, file: files[i] }))
        .filter((d) => stderr.includes(d.file))
        .map((d) => `  ${d.what} (${path.basename(d.file)}): ${JSON.stringify(d.doc).slice(0, 1500)}`);
      assert.fail(`not valid FHIR (fhir.resources):\n${bad.join('\n')}\nThe validator said:\n${stderr.slice(0, 6000) || err?.message}`);
    }
    // One "valid <type>" line per document, in order.
    docs.forEach((d, i) => {
      assert.equal(lines[i], `valid ${d.doc.resourceType}`, `validator verdict for ${d.what}`);
    });
  } finally {
    await dir.remove();
  }
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A client assertion (RFC 7523) signed RS512 (RSA PKCS#1 v1.5, SHA-512) by hand. */
function clientAssertion({ privateKey, kid, clientId, aud, jti = randomUUID(), ttl = 120 }) {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: 'RS512', typ: 'JWT', ...(kid ? { kid } : {}) };
  const claims = { iss: clientId, sub: clientId, aud, jti, iat: now, exp: now + ttl };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign('sha512', Buffer.from(input), privateKey))}`;
}

async function readJson(res) {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    assert.fail(`${res.status} ${res.url}: the body is not JSON: ${text.slice(0, 500)}`);
  }
}

// ------------------------------------------------------------------- flow --

describe('Organisation feeds: a system writes into a shared record (browsers and fetch, demo data)', () => {
  let server;

  const people = {
    admin: { label: "the GP practice's administrator", email: ADMIN_EMAIL, password: DEMO_PASSWORD },
    patient: { label: 'the patient', email: PATIENT_EMAIL, password: DEMO_PASSWORD },
  };
  const opened = [];

  const tok = randomToken(6);
  const idSystem = `https://riverside.example/e2e-${tok}/ids`;
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = `riverside-epr-${tok}`;
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS512', use: 'sig' };
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS512', use: 'sig' };

  // What the steps learn and share.
  const shared = {
    systemName: `Riverside EPR (e2e ${tok})`,
    orgId: '',
    feedsPath: '',
    clientId: '',
    tokenUrl: '',
    token: null, // { value, at }
    nhsNumber: '',
    patientName: '',
    patientId: '',
    created: {}, // type -> { id } (from the location)
    totals: {}, // type -> search total
    refusedTitles: [], // titles of good entries in refused Bundles
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
        server = await startServer({ extraArgs: ['--demo'] });
      } catch (err) {
        harness.setupFailed(err);
      }
    },
    { timeout: 90_000 },
  );

  after(async () => {
    for (const p of Object.values(people)) await p.b?.close();
    await server?.stop();
  });

  // ------------------------------------------------------------ browsers --

  async function browserOf(person) {
    if (!person.b) {
      person.b = await launchBrowser();
      person.page = person.b.page;
      opened.push(person);
    }
    return person.page;
  }

  async function signIn(person) {
    const page = await browserOf(person);
    assertStatus(await visit(page, `${server.url}/signin`), isOk, '2xx', 'GET /signin');
    await checkPage(page, `sign-in page (${person.label})`);
    await page.locator('#email').fill(person.email);
    await page.locator('#password').fill(person.password);
    await navigateBy(page, () => page.getByRole('main').getByRole('button', { name: 'Sign in', exact: true }).click());
    if (pathOf(page) === '/signin') assert.fail(`${person.label} (${person.email}) could not sign in\n${await describePage(page)}`);
    await expectVisible(page.getByRole('banner').getByRole('button', { name: 'Sign out', exact: true }), `"Sign out" once ${person.label} is signed in`);
    await checkPage(page, `landing page after ${person.label} signs in (${pathOf(page)})`);
    return page;
  }

  /** The rows of the registered-systems table, as text. */
  async function systemRows(page) {
    return (await page.locator('main table tbody tr').allInnerTexts()).map((r) => r.replace(/\s+/g, ' ').trim());
  }

  // -------------------------------------------------------------- system --

  async function askToken(assertion) {
    const res = await fetch(`${server.url}/fhir/R4/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: JWT_BEARER, client_assertion: assertion }).toString(),
    });
    return { status: res.status, headers: res.headers, body: await readJson(res) };
  }

  function assertion(extra = {}) {
    return clientAssertion({ privateKey, kid, clientId: shared.clientId, aud: shared.tokenUrl, ...extra });
  }

  /** A live bearer token (a new one when the last is near its 5 minutes). */
  async function bearer() {
    if (!shared.token || Date.now() - shared.token.at > 240_000) {
      const t = await askToken(assertion());
      assert.equal(t.status, 200, `a token for a fresh assertion: ${JSON.stringify(t.body)}`);
      shared.token = { value: t.body.access_token, at: Date.now() };
    }
    return shared.token.value;
  }

  async function fhir(method, p, { body, token } = {}) {
    const headers = { accept: 'application/fhir+json', authorization: `Bearer ${token ?? (await bearer())}` };
    if (body !== undefined) headers['content-type'] = 'application/fhir+json';
    const res = await fetch(`${server.url}/fhir/R4${p}`, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const type = res.headers.get('content-type') ?? '';
    const json = await readJson(res);
    assert.ok(type.startsWith('application/fhir+json'), `${method} ${p}: content type ${JSON.stringify(type)} (${res.status})`);
    return { status: res.status, headers: res.headers, body: json };
  }

  const postBundle = (entries) => fhir('POST', '', { body: { resourceType: 'Bundle', type: 'transaction', entry: entries } });

  async function search(type) {
    const r = await fhir('GET', `/${type}?patient=${shared.patientId}&_count=100`);
    assert.equal(r.status, 200, `${type} search: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.resourceType, 'Bundle');
    assert.equal(r.body.type, 'searchset');
    assert.equal(typeof r.body.total, 'number', `${type} search: a total`);
    return r.body;
  }

  async function allTotals() {
    const out = {};
    for (const type of TYPES) out[type] = (await search(type)).total;
    return out;
  }

  // -------------------------------------------------- what the system sends --

  const nhsIdentifier = () => ({ system: NHS_SYSTEM, value: shared.nhsNumber });
  const general = { tag: [{ system: CATEGORY_SYSTEM, code: 'general' }] };
  const isoDay = (d) => d.toISOString().slice(0, 10);
  const today = new Date();
  const inDays = (n) => isoDay(new Date(today.getTime() + n * 86_400_000));

  /** One transaction entry: `value` is the business identifier's value. */
  function entry(type, value, resource, method = 'POST') {
    const identifier = [{ system: `${idSystem}/${type}`, value }];
    return {
      fullUrl: `urn:uuid:${randomUUID()}`,
      resource: { resourceType: type, identifier, ...resource },
      request:
        method === 'PUT'
          ? { method: 'PUT', url: `${type}?identifier=${identifier[0].system}|${value}` }
          : { method: 'POST', url: type },
    };
  }

  // Per type: what is posted, and what must come back. Titles are unique to
  // this run, so the record page and the searches find exactly these.
  const specs = {
    AllergyIntolerance: {
      title: `Penicillin allergy (e2e ${tok})`,
      make(s) {
        return entry('AllergyIntolerance', `ALG-${tok}`, {
          meta: general,
          patient: { identifier: nhsIdentifier() },
          code: { text: s.title },
          onsetDateTime: '2019-06-02',
          note: [{ text: 'Rash and swelling within an hour.' }],
        });
      },
      check(r, s) {
        assert.equal(r.code?.text, s.title);
        assert.equal(r.onsetDateTime, '2019-06-02');
        assert.equal(r.note?.[0]?.text, 'Rash and swelling within an hour.');
        assert.equal(r.recorder?.display, GP_PRACTICE);
        assert.equal(r.patient?.reference, `Patient/${shared.patientId}`);
      },
    },
    Condition: {
      title: `Hypertension (e2e ${tok})`,
      make(s) {
        // No tag: General by default. The patient by a conditional reference;
        // the title from the first coding's display.
        return entry('Condition', `CON-${tok}`, {
          clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'resolved' }] },
          subject: { reference: `Patient?identifier=${NHS_SYSTEM}|${shared.nhsNumber}` },
          code: { coding: [{ system: 'http://snomed.info/sct', code: '38341003', display: s.title }] },
          onsetDateTime: '2021-05-04T10:00:00Z',
          abatementDateTime: '2022-01-10',
          note: [{ text: 'Home readings reviewed.' }],
        });
      },
      check(r, s) {
        assert.equal(r.code?.text, s.title);
        assert.equal(r.onsetDateTime, '2021-05-04');
        assert.equal(r.abatementDateTime, '2022-01-10');
        assert.equal(r.note?.[0]?.text, 'Home readings reviewed.');
        assert.equal(r.recorder?.display, GP_PRACTICE);
        assert.equal(r.subject?.reference, `Patient/${shared.patientId}`);
      },
    },
    MedicationStatement: {
      title: `Amlodipine 5 mg tablets (e2e ${tok})`,
      make(s) {
        return entry('MedicationStatement', `MED-${tok}`, {
          meta: general,
          status: 'completed',
          subject: { identifier: nhsIdentifier() },
          medicationCodeableConcept: { text: s.title },
          effectivePeriod: { start: '2024-01-15', end: '2024-07-15' },
          note: [{ text: 'One each morning.' }],
        });
      },
      check(r, s) {
        assert.equal(r.medicationCodeableConcept?.text, s.title);
        assert.deepEqual(r.effectivePeriod, { start: '2024-01-15', end: '2024-07-15' });
        assert.equal(r.status, 'completed', 'a medication whose period ended is completed');
        assert.equal(r.note?.[0]?.text, 'One each morning.');
        assert.equal(r.informationSource?.display, GP_PRACTICE);
        assert.equal(r.subject?.reference, `Patient/${shared.patientId}`);
      },
    },
    Immunization: {
      title: `Influenza vaccine (e2e ${tok})`,
      make(s) {
        return entry('Immunization', `IMM-${tok}`, {
          meta: general,
          status: 'completed',
          patient: { reference: `Patient?identifier=${NHS_SYSTEM}|${shared.nhsNumber}` },
          vaccineCode: { coding: [{ system: 'http://snomed.info/sct', code: '1181000221105', display: 'Influenza vaccine' }], text: s.title },
          occurrenceDateTime: '2024-10-01T11:15:00+01:00',
          note: [{ text: 'Left upper arm.' }],
        });
      },
      check(r, s) {
        assert.equal(r.vaccineCode?.text, s.title);
        assert.equal(r.occurrenceDateTime, '2024-10-01');
        assert.equal(r.note?.[0]?.text, 'Left upper arm.');
        assert.equal(r.performer?.[0]?.actor?.display, GP_PRACTICE);
        assert.equal(r.patient?.reference, `Patient/${shared.patientId}`);
      },
    },
    Encounter: {
      title: `Asthma review (e2e ${tok})`,
      make(s) {
        return entry('Encounter', `ENC-${tok}`, {
          meta: general,
          status: 'finished',
          class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
          type: [{ text: s.title }],
          subject: { identifier: nhsIdentifier() },
          period: { start: '2025-02-03T09:00:00Z', end: '2025-02-04T10:00:00Z' },
        });
      },
      check(r, s) {
        assert.equal(r.type?.[0]?.text, s.title);
        assert.deepEqual(r.period, { start: '2025-02-03', end: '2025-02-04' });
        assert.equal(r.serviceProvider?.display, GP_PRACTICE);
        assert.equal(r.subject?.reference, `Patient/${shared.patientId}`);
      },
    },
    Appointment: {
      title: `Nurse appointment (e2e ${tok})`,
      day: inDays(30),
      make(s) {
        // The clinician comes first: the patient is found among the participants.
        return entry('Appointment', `APT-${tok}`, {
          meta: general,
          status: 'booked',
          description: s.title,
          start: `${s.day}T09:30:00Z`,
          end: `${s.day}T09:45:00Z`,
          comment: 'Room 3.',
          participant: [
            { actor: { display: 'Practice nurse' }, status: 'accepted' },
            { actor: { type: 'Patient', identifier: nhsIdentifier() }, status: 'accepted' },
          ],
        });
      },
      check(r, s) {
        assert.equal(r.description, s.title);
        assert.equal(r.start?.slice(0, 10), s.day, `the appointment's day (start ${r.start})`);
        assert.equal(r.status, 'booked', 'an appointment to come is booked');
        assert.equal(r.comment, 'Room 3.');
        const actors = (r.participant ?? []).map((p) => p.actor?.reference ?? p.actor?.display);
        assert.ok(actors.includes(`Patient/${shared.patientId}`), `the patient takes part: ${JSON.stringify(actors)}`);
        assert.ok(actors.includes(GP_PRACTICE), `the practice takes part: ${JSON.stringify(actors)}`);
      },
    },
    CarePlan: {
      title: `Asthma action plan (e2e ${tok})`,
      updatedTitle: `Asthma action plan, revised (e2e ${tok})`,
      start: inDays(-10),
      end: inDays(170),
      make(s, title = s.title, method = 'POST') {
        return entry(
          'CarePlan',
          `CPL-${tok}`,
          {
            meta: general,
            status: 'active',
            intent: 'plan',
            title,
            description: 'Use the preventer twice a day; see the nurse if the reliever is needed more than three times a week.',
            subject: { identifier: nhsIdentifier() },
            period: { start: s.start, end: s.end },
          },
          method,
        );
      },
      check(r, s, title = s.title) {
        assert.equal(r.title, title);
        assert.equal(r.description, 'Use the preventer twice a day; see the nurse if the reliever is needed more than three times a week.');
        assert.deepEqual(r.period, { start: s.start, end: s.end });
        assert.equal(r.status, 'active');
        assert.equal(r.author?.display, GP_PRACTICE);
        assert.equal(r.subject?.reference, `Patient/${shared.patientId}`);
      },
    },
  };

  /** Checks one resource as read back: its type, id, category and fields. */
  function checkResource(type, r, title) {
    assert.equal(r.resourceType, type);
    assert.equal(r.id, shared.created[type].id, `${type}: the id from the location`);
    assert.deepEqual(
      (r.meta?.tag ?? []).filter((t) => t.system === CATEGORY_SYSTEM).map((t) => t.code),
      ['general'],
      `${type}: the category tag`,
    );
    try {
      if (title) specs[type].check(r, specs[type], title);
      else specs[type].check(r, specs[type]);
    } catch (err) {
      err.message = `${type} as read back: ${err.message}\n${JSON.stringify(r, null, 2)}`;
      throw err;
    }
  }

  /** Asserts a refusal: status, an OperationOutcome whose issues all name `where`. */
  function assertRefusal(res, status, where, what) {
    assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.resourceType, 'OperationOutcome', what);
    const issues = res.body.issue ?? [];
    assert.ok(issues.length > 0, `${what}: at least one issue`);
    const places = [...new Set(issues.flatMap((i) => i.expression ?? []))].sort();
    assert.deepEqual(places, [...where].sort(), `${what}: the entries named (issues: ${JSON.stringify(issues)})`);
    for (const i of issues) assert.equal(i.severity, 'error', `${what}: ${JSON.stringify(i)}`);
    return issues;
  }

  // ------------------------------------------------------------------ 1 --

  step('the administrator opens Data feeds from the organisation home; a private key is refused with a visible error', async (t) => {
    const page = await signIn(people.admin);
    if (pathOf(page) !== '/organisations') {
      await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Your organisation', exact: true }).click());
    }
    await assertPath(page, '/organisations', "the administrator's organisations");
    await checkPage(page, 'organisations list (administrator)');
    await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: GP_PRACTICE, exact: true }).click());
    const m = pathOf(page).match(/^\/organisations\/([^/]+)$/);
    assert.ok(m, `expected /organisations/<id>, got ${pathOf(page)}`);
    shared.orgId = m[1];
    shared.feedsPath = `/organisations/${shared.orgId}/feeds`;
    await checkPage(page, `${GP_PRACTICE} home (administrator)`);

    const res = await navigateBy(page, () => page.getByRole('main').getByRole('link', { name: 'Data feeds', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'opening Data feeds');
    await assertPath(page, shared.feedsPath, 'after "Data feeds"');
    assert.equal(await h1Text(page), 'Data feeds', 'h1 of the feeds page');
    await assertMainContains(page, 'No systems are registered.', 'the feeds page before any registration');
    await checkPage(page, 'data feeds (none registered)');

    // The page tells the system where to ask for tokens: the server's own URL.
    const codes = (await page.getByRole('main').locator('code').allInnerTexts()).map((c) => c.trim());
    shared.tokenUrl = codes.find((c) => c.endsWith('/fhir/R4/token')) ?? '';
    t.diagnostic(`token URL on the page: ${shared.tokenUrl}`);
    assert.equal(shared.tokenUrl, `${server.url}/fhir/R4/token`, `the token URL printed on the feeds page (codes: ${JSON.stringify(codes)})`);
    assert.ok(codes.includes(`${server.url}/fhir/R4`), `the FHIR base printed on the feeds page (codes: ${JSON.stringify(codes)})`);

    // A private key pasted by mistake.
    await page.locator('#name').fill(shared.systemName);
    await page.locator('#jwks').fill(JSON.stringify({ keys: [privateJwk] }, null, 2));
    const refused = await navigateBy(page, () => page.getByRole('button', { name: 'Register system', exact: true }).click());
    t.diagnostic(`a private key answered ${refused.status()}`);
    assertStatus(refused, (s) => s === 422, '422', 'registering a private key');
    await assertPath(page, shared.feedsPath, 'after registering a private key');
    const summary = page.locator('.nhsuk-error-summary');
    await expectVisible(summary, 'an error summary for a private key');
    const summaryLink = summary.locator('a[href="#jwks"]');
    await expectVisible(summaryLink, 'the error summary links to the key set field');
    assert.match(await summaryLink.innerText(), /private key/i, 'the error summary says it is a private key');
    await expectVisible(page.locator('#jwks-error'), 'the inline error above the key set field');
    assert.match(await page.locator('#jwks-error').innerText(), /private key/i, 'the inline error says it is a private key');
    assert.match((await page.locator('#jwks').getAttribute('aria-describedby')) ?? '', /\bjwks-error\b/, 'the field is described by its error');
    await assertMainContains(page, 'No systems are registered.', 'nothing is registered after the refusal');
    await checkPage(page, 'data feeds: a private key refused');
  });

  step('the administrator registers the system by its public RS512 key; it is listed, active, with its client id', async (t) => {
    const page = people.admin.page;
    await page.locator('#name').fill(shared.systemName);
    await page.locator('#jwks').fill(JSON.stringify({ keys: [publicJwk] }, null, 2));
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Register system', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'registering the public key');
    await assertPath(page, shared.feedsPath, 'after "Register system"');
    await assertMainContains(page, 'System registered.', 'the notice after registering');
    await assertMainLacks(page, 'No systems are registered.', 'the feeds page after registering');
    await checkPage(page, 'data feeds (one system registered)');

    const rows = await systemRows(page);
    t.diagnostic(`registered systems: ${JSON.stringify(rows)}`);
    assert.equal(rows.length, 1, `one registered system (the private key was not registered): ${JSON.stringify(rows)}`);
    assert.ok(rows[0].includes(shared.systemName), `the row names the system: ${rows[0]}`);
    assert.ok(rows[0].includes(kid), `the row lists the key id ${kid}: ${rows[0]}`);
    assert.ok(rows[0].includes('Active'), `the system is active: ${rows[0]}`);
    const clientIds = (await page.locator('main code.keyhold-client-id').allInnerTexts()).map((c) => c.trim());
    assert.equal(clientIds.length, 1, `one client id on the page: ${JSON.stringify(clientIds)}`);
    shared.clientId = clientIds[0];
    assert.match(shared.clientId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'the client id');
    t.diagnostic(`client id: ${shared.clientId}`);
  });

  // ------------------------------------------------------------------ 2 --

  step('the patient (verified, sharing with no one) lets the practice view and add General entries', async (t) => {
    const page = await signIn(people.patient);
    await assertPath(page, '/record', 'the patient after signing in');
    shared.patientName = ((await page.locator('.keyhold-banner__name').innerText()) ?? '').replace(/\s+/g, ' ').trim();
    shared.nhsNumber = ((await page.locator('.keyhold-banner__nhs-number strong').innerText()) ?? '').replace(/\s/g, '');
    assert.match(shared.nhsNumber, /^999\d{7}$/, 'the synthetic NHS number in the banner');
    t.diagnostic(`patient: ${shared.patientName}, NHS number ${shared.nhsNumber}`);

    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Sharing', exact: true }).click());
    await assertPath(page, '/record/sharing', 'after "Sharing"');
    await assertMainContains(page, 'You are not sharing your record with anyone.', 'the sharing page before the grant');
    await checkPage(page, 'sharing page (sharing with no one)');

    await navigateBy(page, () => linkOrButton(page, 'Share your record').click());
    await assertPath(page, '/record/sharing/new', 'after "Share your record"');
    await checkPage(page, 'share form');
    await page.locator('#grantee-kind-organisation').check();
    await page.locator('#organisation').selectOption({ label: GP_PRACTICE });
    await page.locator('input[name="may-read"]').check();
    await page.locator('input[name="may-contribute"]').check();
    const act = page.locator('input[name="may-act"]');
    if (await act.count()) await act.uncheck();
    const boxes = page.locator('input[type="checkbox"][name^="category-"]');
    const n = await boxes.count();
    assert.ok(n >= 2, `the form offers the categories (${n})`);
    for (let i = 0; i < n; i++) {
      const box = boxes.nth(i);
      if ((await box.getAttribute('name')) === 'category-general') await box.check();
      else await box.uncheck();
    }
    await page.locator('#purpose').fill(`Practice systems may add to my record (e2e ${tok})`);
    const res = await navigateBy(page, () => page.getByRole('button', { name: 'Share', exact: true }).click());
    assertStatus(res, isOk, '2xx', 'sharing with the practice');
    await assertPath(page, '/record/sharing', 'after "Share"');
    await assertMainContains(page, "Shared. The organisation's staff can see it now.", 'the notice after sharing with an organisation');
    await checkPage(page, 'sharing page after sharing with the practice');

    const card = page.locator('main .nhsuk-card').filter({ has: page.getByRole('heading', { name: GP_PRACTICE }) });
    await expectVisible(card, `a card for the grant to ${GP_PRACTICE}`);
    const text = (await card.first().innerText()).replace(/\s+/g, ' ');
    t.diagnostic(`grant card: ${text}`);
    assert.match(text, /Active/, 'an organisation grant is active at once');
    assert.ok(text.includes('General'), `the grant covers General: ${text}`);
    for (const c of ['Mental health', 'Sexual health', 'Social care', 'Restricted']) {
      assert.ok(!text.includes(c), `the grant must not cover ${c}: ${text}`);
    }
  });

  // ------------------------------------------------------------------ 3 --

  step('the system trades an RS512 client assertion for a token; the same assertion again, a wrong audience and a foreign key are refused; the token is taken, a made-up one is not', async (t) => {
    const jwt = assertion();
    const first = await askToken(jwt);
    assert.equal(first.status, 200, `the token endpoint: ${JSON.stringify(first.body)}`);
    assert.equal(first.body.token_type, 'Bearer');
    assert.equal(first.body.expires_in, 300);
    assert.equal(typeof first.body.access_token, 'string');
    assert.ok(first.body.access_token.length >= 20, 'a token of some length');
    assert.equal(first.headers.get('cache-control'), 'no-store', 'tokens are not cached');
    shared.token = { value: first.body.access_token, at: Date.now() };

    const replay = await askToken(jwt);
    t.diagnostic(`replay: ${replay.status} ${JSON.stringify(replay.body)}`);
    assert.equal(replay.status, 401, `the same assertion again: ${JSON.stringify(replay.body)}`);
    assert.equal(replay.body.error, 'invalid_client');
    assert.ok(!('access_token' in replay.body), 'no token for a replay');

    const wrongAud = await askToken(assertion({ aud: `${server.url}/fhir/R4` }));
    assert.equal(wrongAud.status, 401, `an assertion for another audience: ${JSON.stringify(wrongAud.body)}`);
    assert.equal(wrongAud.body.error, 'invalid_client');

    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const forged = await askToken(clientAssertion({ privateKey: other.privateKey, kid, clientId: shared.clientId, aud: shared.tokenUrl }));
    assert.equal(forged.status, 401, `an assertion signed by a key never registered: ${JSON.stringify(forged.body)}`);
    assert.equal(forged.body.error, 'invalid_client');

    // The token is taken (an empty Bundle is refused as such, 400), a made-up one is not (401).
    const empty = { resourceType: 'Bundle', type: 'transaction', entry: [] };
    const taken = await fhir('POST', '', { token: shared.token.value, body: empty });
    assertRefusal(taken, 400, ['Bundle'], 'an empty Bundle with the token');
    const madeUp = await fhir('POST', '', { token: `${Math.floor(Date.now() / 1000) + 200}.${randomToken(43)}`, body: empty });
    assert.equal(madeUp.status, 401, `a made-up token: ${JSON.stringify(madeUp.body)}`);
    assert.equal(madeUp.body.issue?.[0]?.code, 'login');
    assert.match(madeUp.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/, 'WWW-Authenticate for a made-up token');
    await validateAll([
      { what: 'the OperationOutcome for an empty Bundle', doc: taken.body },
      { what: 'the OperationOutcome for a made-up token', doc: madeUp.body },
    ]);
  });

  // ------------------------------------------------------------------ 4 --

  step('the system posts one transaction with an entry of each ingestible type: 200, every entry 201 Created', async (t) => {
    const entries = TYPES.map((type) => specs[type].make(specs[type]));
    const posted = { resourceType: 'Bundle', type: 'transaction', entry: entries };
    const res = await fhir('POST', '', { body: posted });
    assert.equal(res.status, 200, `the transaction: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.resourceType, 'Bundle');
    assert.equal(res.body.type, 'transaction-response');
    assert.equal(res.body.entry?.length, TYPES.length, `one response per entry: ${JSON.stringify(res.body)}`);
    TYPES.forEach((type, i) => {
      const r = res.body.entry[i].response ?? {};
      assert.equal(r.status, '201 Created', `entry ${i} (${type}): ${JSON.stringify(r)}`);
      const m = (r.location ?? '').match(new RegExp(`^${type}/([0-9a-f]{64})/_history/1$`));
      assert.ok(m, `entry ${i} (${type}): location ${JSON.stringify(r.location)}`);
      shared.created[type] = { id: m[1] };
    });
    assert.equal(new Set(Object.values(shared.created).map((c) => c.id)).size, TYPES.length, 'every entry has its own id');
    t.diagnostic(`locations: ${res.body.entry.map((e) => e.response.location).join(', ')}`);
    await validateAll([
      { what: 'the transaction Bundle posted', doc: posted },
      { what: 'the transaction-response', doc: res.body },
    ]);
  });

  step('the system reads each entry by id and finds it by patient; every answer is valid and the fields round-trip', async (t) => {
    const docs = [];
    for (const type of TYPES) {
      const { id } = shared.created[type];
      const read = await fhir('GET', `/${type}/${id}`);
      assert.equal(read.status, 200, `${type}/${id}: ${JSON.stringify(read.body)}`);
      // The patient's id, as the system learns it from what it wrote.
      const ref = read.body.patient?.reference ?? read.body.subject?.reference ?? read.body.participant?.find((p) => p.actor?.reference?.startsWith('Patient/'))?.actor?.reference;
      const pid = ref?.replace(/^Patient\//, '');
      assert.ok(pid, `${type}/${id} names its patient: ${JSON.stringify(read.body)}`);
      if (!shared.patientId) {
        shared.patientId = pid;
        assert.ok(id.startsWith(pid.replace(/-/g, '')), `the resource id ${id} starts with the patient's ${pid}`);
      }
      checkResource(type, read.body);
      docs.push({ what: `${type} read by id`, doc: read.body });

      const found = await search(type);
      const matches = (found.entry ?? []).filter((e) => e.resource?.id === id);
      assert.equal(matches.length, 1, `${type}: the search by patient finds the entry once (total ${found.total})`);
      assert.deepEqual(matches[0].resource, read.body, `${type}: the search gives the same resource as the read`);
      assert.equal(matches[0].fullUrl, `${server.url}/fhir/R4/${type}/${id}`, `${type}: fullUrl`);
      // Nobody else wrote under this run's titles.
      const same = (found.entry ?? []).filter((e) => JSON.stringify(e.resource).includes(`(e2e ${tok})`));
      assert.equal(same.length, 1, `${type}: only one entry of this run`);
      shared.totals[type] = found.total;
      docs.push({ what: `${type} searchset`, doc: found });
    }
    t.diagnostic(`patient id ${shared.patientId}; totals ${JSON.stringify(shared.totals)}`);
    await validateAll(docs);
  });

  // ------------------------------------------------------------------ 5 --

  step('a re-post of the care plan with a changed title updates it: 200 OK, _history/2, and no second entry', async () => {
    const s = specs.CarePlan;
    const res = await postBundle([s.make(s, s.updatedTitle, 'PUT')]);
    assert.equal(res.status, 200, `the re-post: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.type, 'transaction-response');
    assert.equal(res.body.entry?.length, 1);
    assert.equal(res.body.entry[0].response?.status, '200 OK', `an update: ${JSON.stringify(res.body.entry[0])}`);
    assert.equal(res.body.entry[0].response?.location, `CarePlan/${shared.created.CarePlan.id}/_history/2`, 'the same resource, version 2');

    const read = await fhir('GET', `/CarePlan/${shared.created.CarePlan.id}`);
    assert.equal(read.status, 200, JSON.stringify(read.body));
    checkResource('CarePlan', read.body, s.updatedTitle);
    const found = await search('CarePlan');
    assert.equal(found.total, shared.totals.CarePlan, 'the search total for CarePlan does not grow');
    const titles = (found.entry ?? []).map((e) => e.resource.title);
    assert.ok(titles.includes(s.updatedTitle), `the new title is found: ${JSON.stringify(titles)}`);
    assert.ok(!titles.includes(s.title), `the old title is gone: ${JSON.stringify(titles)}`);
    await validateAll([
      { what: 'the update transaction-response', doc: res.body },
      { what: 'the CarePlan after the update', doc: read.body },
      { what: 'the CarePlan searchset after the update', doc: found },
    ]);
  });

  // ------------------------------------------------------------------ 6 --

  step('a Bundle with one malformed entry among good ones is refused whole (400), naming that entry; nothing is written', async (t) => {
    const goodCondition = entry('Condition', `CON-2-${tok}`, {
      subject: { identifier: nhsIdentifier() },
      code: { text: `Eczema (e2e ${tok}, refused bundle)` },
      onsetDateTime: '2023-03-01',
    });
    // A year alone is not a day.
    const malformed = entry('Immunization', `IMM-2-${tok}`, {
      status: 'completed',
      patient: { identifier: nhsIdentifier() },
      vaccineCode: { text: `Tetanus booster (e2e ${tok}, refused bundle)` },
      occurrenceDateTime: '2024',
    });
    const goodEncounter = entry('Encounter', `ENC-2-${tok}`, {
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      type: [{ text: `Dressing change (e2e ${tok}, refused bundle)` }],
      subject: { identifier: nhsIdentifier() },
      period: { start: '2025-03-03' },
    });
    shared.refusedTitles.push(goodCondition.resource.code.text, malformed.resource.vaccineCode.text, goodEncounter.resource.type[0].text);
    const res = await postBundle([goodCondition, malformed, goodEncounter]);
    const issues = assertRefusal(res, 400, ['Bundle.entry[1]'], 'a Bundle with a malformed entry');
    t.diagnostic(`issues: ${JSON.stringify(issues)}`);
    assert.ok(issues.some((i) => /occurrenceDateTime/.test(i.diagnostics ?? '')), `an issue says what is wrong: ${JSON.stringify(issues)}`);

    const totals = await allTotals();
    assert.deepEqual(totals, shared.totals, 'the search totals do not change');
    await validateAll([{ what: 'the OperationOutcome for a malformed entry', doc: res.body }]);
  });

  step('a Bundle with entries the patients did not allow is refused whole (422), naming those entries; nothing is written', async (t) => {
    const good = entry('AllergyIntolerance', `ALG-2-${tok}`, {
      patient: { identifier: nhsIdentifier() },
      code: { text: `Latex allergy (e2e ${tok}, refused bundle)` },
      onsetDateTime: '2020-01-01',
    });
    // Mental health is not shared with the practice.
    const notShared = entry('Condition', `CON-3-${tok}`, {
      meta: { tag: [{ system: CATEGORY_SYSTEM, code: 'mental_health' }] },
      subject: { identifier: nhsIdentifier() },
      code: { text: `Anxiety (e2e ${tok}, refused bundle)` },
      onsetDateTime: '2023-09-09',
    });
    // A record nobody shares with the practice.
    const stranger = entry('Encounter', `ENC-3-${tok}`, {
      status: 'finished',
      class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
      type: [{ text: `Home visit (e2e ${tok}, refused bundle)` }],
      subject: { identifier: { system: NHS_SYSTEM, value: UNSHARED_NHS_NUMBER } },
      period: { start: '2025-04-04' },
    });
    shared.refusedTitles.push(good.resource.code.text, notShared.resource.code.text);
    const res = await postBundle([good, notShared, stranger]);
    const issues = assertRefusal(res, 422, ['Bundle.entry[1]', 'Bundle.entry[2]'], 'a Bundle with entries not allowed');
    t.diagnostic(`issues: ${JSON.stringify(issues)}`);

    const totals = await allTotals();
    assert.deepEqual(totals, shared.totals, 'the search totals do not change');
    const allergies = await search('AllergyIntolerance');
    assert.ok(!JSON.stringify(allergies).includes(good.resource.code.text), 'the allowed entry of the refused Bundle was not written');
    await validateAll([
      { what: 'the Bundle posted (entries not allowed)', doc: { resourceType: 'Bundle', type: 'transaction', entry: [good, notShared, stranger] } },
      { what: 'the OperationOutcome for entries not allowed', doc: res.body },
    ]);
  });

  // ------------------------------------------------------------------ 7 --

  step('the patient sees the entries on their record, from the practice, and the writes in their access log', async (t) => {
    const page = people.patient.page;
    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'My record', exact: true }).click());
    await assertPath(page, '/record', 'the patient back on their record');
    await checkPage(page, "the patient's record with the fed entries");
    const expected = TYPES.map((type) => (type === 'CarePlan' ? specs.CarePlan.updatedTitle : specs[type].title));
    for (const title of expected) {
      const link = page.getByRole('main').getByRole('link', { name: title, exact: true });
      await expectVisible(link, `the entry "${title}" on the record`);
      assert.equal(await link.count(), 1, `"${title}" is listed once`);
      const row = page.locator('main table tbody tr').filter({ has: page.getByRole('link', { name: title, exact: true }) });
      const cells = (await row.locator('td').allInnerTexts()).map((c) => c.trim());
      assert.equal(cells[3], GP_PRACTICE, `"${title}" is from the practice (row ${JSON.stringify(cells)})`);
      assert.equal(cells[2], 'General', `"${title}" is in General (row ${JSON.stringify(cells)})`);
    }
    await assertMainLacks(page, specs.CarePlan.title, 'the care plan\'s old title');
    for (const title of shared.refusedTitles) await assertMainLacks(page, title, 'entries of refused Bundles');

    await navigateBy(page, () => page.getByRole('banner').getByRole('link', { name: 'Who has seen my record', exact: true }).click());
    await assertPath(page, '/record/access', 'after "Who has seen my record"');
    await checkPage(page, 'who has seen your record (after the feed)');
    const rows = (await page.locator('main table tbody tr').allInnerTexts()).map((r) => r.replace(/\s+/g, ' ').trim());
    const bySystem = rows.filter((r) => r.includes(SYSTEM_ROLE));
    const writes = bySystem.filter((r) => !r.includes('Viewed'));
    t.diagnostic(`writes by the system:\n  ${writes.join('\n  ')}`);
    const added = bySystem.filter((r) => r.includes('Added an entry') && r.includes('Allowed'));
    const changed = bySystem.filter((r) => r.includes('Changed an entry') && r.includes('Allowed'));
    assert.equal(added.length, TYPES.length, `one "Added an entry" line by ${SYSTEM_ROLE} per entry written:\n  ${writes.join('\n  ')}`);
    assert.equal(changed.length, 1, `one "Changed an entry" line for the update:\n  ${writes.join('\n  ')}`);
    for (const r of [...added, ...changed]) assert.ok(r.includes(GP_PRACTICE), `the line names the practice: ${r}`);
    assert.ok(
      bySystem.some((r) => r.includes('Refused')),
      `the refused write into Mental health is logged as refused:\n  ${writes.join('\n  ')}`,
    );
  });

  // ------------------------------------------------------------------ 8 --

  step("the administrator stops the system; its token is then refused (401), and so is a new assertion", async (t) => {
    // A token that works right before the stop, so the 401 comes from the stop.
    const t0 = await askToken(assertion());
    assert.equal(t0.status, 200, JSON.stringify(t0.body));
    const token = t0.body.access_token;
    const readPath = `/CarePlan/${shared.created.CarePlan.id}`;
    const before = await fhir('GET', readPath, { token });
    assert.equal(before.status, 200, `the read works before the stop: ${JSON.stringify(before.body)}`);

    const page = people.admin.page;
    await visit(page, `${server.url}${shared.feedsPath}`);
    await checkPage(page, 'data feeds before stopping');
    const stop = page.getByRole('button', { name: `Stop ${shared.systemName}`, exact: true });
    await expectVisible(stop, `a "Stop ${shared.systemName}" button`);
    const res = await navigateBy(page, () => stop.click());
    assertStatus(res, isOk, '2xx', 'stopping the system');
    await assertPath(page, shared.feedsPath, 'after "Stop"');
    await assertMainContains(page, 'System stopped.', 'the notice after stopping');
    await expectAbsent(page.getByRole('button', { name: `Stop ${shared.systemName}`, exact: true }), 'a Stop button for a stopped system');
    const rows = await systemRows(page);
    assert.equal(rows.length, 1, JSON.stringify(rows));
    assert.match(rows[0], /Stopped/, `the system is shown stopped: ${rows[0]}`);
    await checkPage(page, 'data feeds after stopping');

    const after = await fhir('GET', readPath, { token });
    t.diagnostic(`read after the stop: ${after.status} ${JSON.stringify(after.body)}`);
    assert.equal(after.status, 401, `the token after the stop: ${JSON.stringify(after.body)}`);
    assert.equal(after.body.resourceType, 'OperationOutcome');
    assert.equal(after.body.issue?.[0]?.code, 'login');
    assert.match(after.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/, 'WWW-Authenticate');
    const write = await fhir('POST', '', { token, body: { resourceType: 'Bundle', type: 'transaction', entry: [specs.Encounter.make(specs.Encounter)] } });
    assert.equal(write.status, 401, `a write with the token after the stop: ${JSON.stringify(write.body)}`);
    const again = await askToken(assertion());
    assert.equal(again.status, 401, `a new assertion after the stop: ${JSON.stringify(again.body)}`);
    assert.equal(again.body.error, 'invalid_client');
    await validateAll([
      { what: 'the OperationOutcome for a stopped system\'s token', doc: after.body },
      { what: 'the OperationOutcome for a stopped system\'s write', doc: write.body },
    ]);
  });

  // ---------------------------------------------------------------- end --

  step(
    'every page each browser loaded was checked with axe',
    async (t) => {
      const missing = [];
      for (const p of opened) {
        t.diagnostic(`${p.label}: ${p.b.visits.loads.length} page loads`);
        for (const l of p.b.visits.unchecked()) missing.push(`${p.label}: #${l.seq} ${l.url}`);
      }
      assert.ok(opened.length === 2, `both browsers were opened (${opened.length})`);
      assert.ok(missing.length === 0, `${missing.length} page load(s) were never checked with axe:\n  ${missing.join('\n  ')}`);
    },
    { critical: false },
  );

  step(
    'every page loaded its assets and ran its scripts without errors',
    async () => {
      const problems = [];
      for (const p of opened) {
        problems.push(...p.b.visits.assetFailures.map((f) => `${p.label}: asset: ${f}`));
        problems.push(...p.b.visits.consoleErrors.map((e) => `${p.label}: console: ${e}`));
      }
      assert.ok(problems.length === 0, `${problems.length} problem(s) while loading pages:\n  ${problems.join('\n  ')}`);
    },
    { critical: false },
  );
});

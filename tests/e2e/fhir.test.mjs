// The FHIR API against `keyhold serve --demo`, every answer validated by an
// independent FHIR library (PyPI fhir.resources, run from
// tests/fhir/validate.py): the CapabilityStatement; a Patient read by the demo
// carer, whom the patient shares with; every entry type searched and read by
// id; Questionnaire; DocumentReference and Binary (as a resource and as the
// file); the patient's Consent and AuditEvent searches; and the
// OperationOutcome of each error (not signed in, not shared, unknown type, not
// JSON). No browser: plain HTTP.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';

import { startServer, repoRoot } from './lib/server.mjs';
import { createCookieJar, fetchWithJar } from './lib/idp.mjs';

const DEMO_PASSWORD = 'keyhold-demo-2026';
const CARER = 'carer@demo.keyhold.test';
const PATIENT = 'patient@demo.keyhold.test';
const STRANGER = 'doctor@demo.keyhold.test';
const python = path.join(repoRoot, 'tests', 'fhir', '.venv', 'bin', 'python');
const validator = path.join(repoRoot, 'tests', 'fhir', 'validate.py');

/** Runs the independent validator on one JSON document; rejects with its report. */
function validate(doc, what) {
  return new Promise((resolve, reject) => {
    const child = execFile(python, [validator], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${what} is not valid FHIR:\n${stderr || err.message}\n${JSON.stringify(doc, null, 2)}`));
      else resolve(stdout.trim());
    });
    child.stdin.end(JSON.stringify(doc));
  });
}

async function signIn(server, email) {
  const jar = createCookieJar();
  const page = await fetchWithJar(`${server.url}/signin`, jar);
  const html = await page.text();
  const token = html.match(/name="csrf_token" value="([^"]+)"/)?.[1];
  assert.ok(token, 'a CSRF token on /signin');
  const res = await fetchWithJar(`${server.url}/signin`, jar, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ csrf_token: token, email, password: DEMO_PASSWORD }).toString(),
  });
  await res.body?.cancel();
  assert.equal(res.status, 303, `signing in as ${email}`);
  return jar;
}

async function fhirGet(server, jar, p, accept = 'application/fhir+json') {
  const res = await fetchWithJar(`${server.url}${p}`, jar, { headers: { accept } });
  const type = res.headers.get('content-type') ?? '';
  const body = JSON.parse(await res.text());
  assert.ok(type.startsWith('application/fhir+json'), `${p}: content type ${type}`);
  return { status: res.status, body };
}

/** The path of a Bundle's `next` link, if any. */
function nextPath(bundle) {
  const url = bundle.link?.find((l) => l.relation === 'next')?.url;
  return url ? url.slice(url.indexOf('/fhir/R4/')) : undefined;
}

/** Validates a searchset and every resource in it; returns the resources. */
async function validateSearchset(body, type) {
  assert.equal(body.resourceType, 'Bundle', JSON.stringify(body));
  assert.equal(body.type, 'searchset');
  assert.match(await validate(body, `the ${type} searchset`), /valid Bundle/);
  const found = (body.entry ?? []).map((e) => e.resource);
  for (const r of found) {
    assert.equal(r.resourceType, type);
    assert.match(await validate(r, `a ${type}`), new RegExp(`valid ${type}`));
  }
  return found;
}

const ENTRY_TYPES = [
  'AllergyIntolerance',
  'MedicationStatement',
  'Immunization',
  'Appointment',
  'Encounter',
  'Condition',
  'CarePlan',
  'QuestionnaireResponse',
];

describe('FHIR R4 API, validated by fhir.resources', () => {
  let server;
  let carer;
  let patient;
  let patientId;

  before(async () => {
    server = await startServer({ extraArgs: ['--demo'] });
    carer = await signIn(server, CARER);
    patient = await signIn(server, PATIENT);
    const people = await (await fetchWithJar(`${server.url}/people`, carer)).text();
    patientId = people.match(/\/people\/([0-9a-f-]{36})\/record/)?.[1];
    assert.ok(patientId, 'the carer sees the person they care for on /people');
  });

  after(async () => {
    await server?.stop();
  });

  it('metadata is a valid CapabilityStatement, without signing in', async () => {
    const { status, body } = await fhirGet(server, createCookieJar(), '/fhir/R4/metadata');
    assert.equal(status, 200);
    assert.equal(body.resourceType, 'CapabilityStatement');
    assert.equal(body.fhirVersion, '4.0.1');
    assert.match(await validate(body, 'the CapabilityStatement'), /valid CapabilityStatement/);
  });

  it('the carer reads the shared patient as a valid Patient with the NHS number', async () => {
    const { status, body } = await fhirGet(server, carer, `/fhir/R4/Patient/${patientId}`);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.resourceType, 'Patient');
    assert.equal(body.id, patientId);
    const nhs = body.identifier?.find((i) => i.system === 'https://fhir.nhs.uk/Id/nhs-number');
    assert.match(nhs?.value ?? '', /^999\d{7}$/, 'a synthetic NHS number');
    assert.ok(body.name?.[0]?.family, 'a family name');
    assert.match(await validate(body, 'the Patient'), /valid Patient/);
  });

  it("the carer searches the shared record's entries: valid searchset Bundles of valid resources", async () => {
    let seen = 0;
    for (const type of ENTRY_TYPES) {
      const { status, body } = await fhirGet(server, carer, `/fhir/R4/${type}?patient=${patientId}&_count=100`);
      assert.equal(status, 200, `${type}: ${JSON.stringify(body)}`);
      assert.equal(body.resourceType, 'Bundle');
      assert.equal(body.type, 'searchset');
      assert.match(await validate(body, `the ${type} searchset`), /valid Bundle/);
      for (const e of body.entry ?? []) {
        assert.equal(e.resource.resourceType, type);
        // The carer's grant covers General and Social care only.
        const tag = e.resource.meta?.tag?.[0]?.code;
        assert.ok(['general', 'social_care'].includes(tag), `${type} ${e.resource.id} is in ${tag}, which is not shared`);
        assert.match(await validate(e.resource, `a ${type}`), new RegExp(`valid ${type}`));
        seen += 1;
      }
    }
    assert.ok(seen > 0, 'the demo record has shared entries to find');
  });

  it('the patient reads every entry type by id: the same valid resource the search found', async () => {
    for (const type of ENTRY_TYPES) {
      const { status, body } = await fhirGet(server, patient, `/fhir/R4/${type}?patient=${patientId}&_count=100`);
      assert.equal(status, 200, `${type}: ${JSON.stringify(body)}`);
      const found = await validateSearchset(body, type);
      assert.ok(found.length > 0, `the demo record has a ${type}`);
      const first = found[0];
      assert.match(first.id, /^[0-9a-f]{64}$/, `${type} id is patient hex + entry hex`);
      assert.ok(first.id.startsWith(patientId.replaceAll('-', '')), `${type} id starts with the patient's`);
      assert.ok(body.entry[0].fullUrl.endsWith(`/fhir/R4/${type}/${first.id}`), body.entry[0].fullUrl);
      const read = await fhirGet(server, patient, `/fhir/R4/${type}/${first.id}`);
      assert.equal(read.status, 200, `${type}/${first.id}: ${JSON.stringify(read.body)}`);
      assert.deepEqual(read.body, first);
      assert.match(await validate(read.body, `a ${type} read by id`), new RegExp(`valid ${type}`));
    }
    // The demo care plan: running, from the social care team.
    const { body } = await fhirGet(server, carer, `/fhir/R4/CarePlan?patient=${patientId}`);
    const plan = body.entry?.[0]?.resource;
    assert.equal(plan?.status, 'active', JSON.stringify(body));
    assert.equal(plan.intent, 'plan');
    assert.equal(plan.meta.tag[0].code, 'social_care');
  });

  it('the questionnaires are valid Questionnaires, searched and read', async () => {
    const { status, body } = await fhirGet(server, carer, '/fhir/R4/Questionnaire');
    assert.equal(status, 200, JSON.stringify(body));
    const found = await validateSearchset(body, 'Questionnaire');
    assert.deepEqual(found.map((q) => q.id), ['phq-9', 'gad-7']);
    for (const [id, items] of [['phq-9', 9], ['gad-7', 7]]) {
      const read = await fhirGet(server, carer, `/fhir/R4/Questionnaire/${id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body.item.filter((i) => i.type === 'choice').length, items, id);
      assert.deepEqual(
        read.body.item[1].answerOption.map((o) => o.valueCoding.display),
        ['Not at all', 'Several days', 'More than half the days', 'Nearly every day'],
      );
      assert.match(await validate(read.body, `Questionnaire ${id}`), /valid Questionnaire/);
    }
  });

  it('a shared document is a valid DocumentReference, and its Binary is valid or the file itself', async () => {
    const { status, body } = await fhirGet(server, carer, `/fhir/R4/DocumentReference?patient=${patientId}`);
    assert.equal(status, 200, JSON.stringify(body));
    const docs = await validateSearchset(body, 'DocumentReference');
    const letter = docs.find((d) => d.description === 'Discharge summary');
    assert.ok(letter, 'the demo discharge summary is shared with the carer');
    const read = await fhirGet(server, carer, `/fhir/R4/DocumentReference/${letter.id}`);
    assert.equal(read.status, 200);
    assert.deepEqual(read.body, letter);
    assert.match(await validate(read.body, 'a DocumentReference read by id'), /valid DocumentReference/);

    const attachment = letter.content[0].attachment;
    assert.equal(attachment.url, `Binary/${letter.id}`);
    assert.equal(attachment.contentType, 'application/pdf');
    const binary = await fhirGet(server, carer, `/fhir/R4/${attachment.url}`);
    assert.equal(binary.status, 200, JSON.stringify(binary.body));
    assert.equal(binary.body.resourceType, 'Binary');
    assert.equal(binary.body.contentType, 'application/pdf');
    const bytes = Buffer.from(binary.body.data, 'base64');
    assert.equal(bytes.length, attachment.size);
    assert.equal(bytes.subarray(0, 5).toString('latin1'), '%PDF-');
    assert.match(await validate(binary.body, 'the Binary'), /valid Binary/);

    const raw = await fetchWithJar(`${server.url}/fhir/R4/${attachment.url}`, carer, { headers: { accept: '*/*' } });
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get('content-type'), 'application/pdf');
    assert.match(raw.headers.get('content-disposition') ?? '', /^attachment/);
    assert.equal(raw.headers.get('x-content-type-options'), 'nosniff');
    const file = Buffer.from(await raw.arrayBuffer());
    assert.ok(file.equals(bytes), 'the file is the Binary\'s content');

    // Someone it is not shared with gets neither, whichever way they ask.
    const stranger = await signIn(server, STRANGER);
    for (const accept of ['application/fhir+json', '*/*']) {
      const res = await fetchWithJar(`${server.url}/fhir/R4/${attachment.url}`, stranger, { headers: { accept } });
      assert.equal(res.status, 404, accept);
      const refused = JSON.parse(await res.text());
      assert.equal(refused.issue?.[0]?.code, 'not-found');
      assert.match(await validate(refused, `the refused Binary (${accept})`), /valid OperationOutcome/);
    }
  });

  it("the patient's grants are valid Consents, and the carer who only reads may not list them", async () => {
    const { status, body } = await fhirGet(server, patient, `/fhir/R4/Consent?patient=${patientId}`);
    assert.equal(status, 200, JSON.stringify(body));
    const consents = await validateSearchset(body, 'Consent');
    assert.equal(consents.length, 2, 'the GP practice and the carer');
    for (const c of consents) {
      assert.equal(c.status, 'active');
      assert.equal(c.provision.type, 'permit');
      assert.equal(c.policyRule.coding[0].code, 'OPTIN');
    }
    const names = consents.map((c) => c.provision.actor[0].reference.display).sort();
    assert.deepEqual(names, ['Riverside Medical Practice', 'Sam Reid']);

    const refused = await fhirGet(server, carer, `/fhir/R4/Consent?patient=${patientId}`);
    assert.equal(refused.status, 404);
    assert.equal(refused.body.issue?.[0]?.code, 'not-found');
    assert.match(await validate(refused.body, 'the refused Consent search'), /valid OperationOutcome/);
  });

  it('Patient/$everything is one valid Bundle of the whole record, and only for who may export it', async () => {
    const { status, body } = await fhirGet(server, patient, `/fhir/R4/Patient/${patientId}/$everything`);
    assert.equal(status, 200, JSON.stringify(body));
    assert.equal(body.type, 'searchset');
    assert.equal(body.entry[0].resource.resourceType, 'Patient');
    assert.equal(body.entry[0].resource.id, patientId);
    const types = new Set(body.entry.map((e) => e.resource.resourceType));
    for (const t of ['AllergyIntolerance', 'MedicationStatement', 'Condition', 'DocumentReference']) {
      assert.ok(types.has(t), `$everything carries ${t}: ${[...types]}`);
    }
    assert.equal(body.total, body.entry.length);
    assert.match(await validate(body, 'the $everything Bundle'), /valid Bundle/);
    for (const e of body.entry) {
      const t = e.resource.resourceType;
      assert.match(await validate(e.resource, `a ${t} in $everything`), new RegExp(`valid ${t}`));
    }
    const stranger = await signIn(server, STRANGER);
    const refused = await fhirGet(server, stranger, `/fhir/R4/Patient/${patientId}/$everything`);
    assert.equal(refused.status, 404);
    assert.match(await validate(refused.body, 'the refused $everything'), /valid OperationOutcome/);
  });

  it("the patient's access log is valid AuditEvents, paged by next links", async () => {
    let p = `/fhir/R4/AuditEvent?patient=${patientId}&_count=5`;
    let pages = 0;
    let events = 0;
    while (p && pages < 3) {
      const { status, body } = await fhirGet(server, patient, p);
      assert.equal(status, 200, JSON.stringify(body));
      const found = await validateSearchset(body, 'AuditEvent');
      for (const e of found) {
        assert.equal(e.type.code, '110110');
        assert.equal(e.entity[0].what.reference, `Patient/${patientId}`);
        assert.equal(e.source.observer.display, 'Keyhold');
      }
      events += found.length;
      pages += 1;
      p = nextPath(body);
    }
    assert.ok(pages > 1, 'the demo log runs to more than one page of 5');
    assert.ok(events > 5);
    const { body } = await fhirGet(server, patient, `/fhir/R4/AuditEvent?patient=${patientId}&_count=100`);
    const carerReads = (body.entry ?? []).filter((e) => e.resource.agent[0].who.display === 'Sam Reid');
    assert.ok(carerReads.some((e) => e.resource.action === 'R'), "the carer's reads are in the log");

    const refused = await fhirGet(server, carer, `/fhir/R4/AuditEvent?patient=${patientId}`);
    assert.equal(refused.status, 404);
    assert.match(await validate(refused.body, 'the refused AuditEvent search'), /valid OperationOutcome/);
  });

  it('each error is a valid OperationOutcome with the right status', async () => {
    const stranger = await signIn(server, STRANGER);
    const cases = [
      ['not signed in', createCookieJar(), `/fhir/R4/Patient/${patientId}`, undefined, 401, 'login'],
      ['not shared with this doctor', stranger, `/fhir/R4/Patient/${patientId}`, undefined, 404, 'not-found'],
      ['a malformed id', carer, '/fhir/R4/Patient/..%2F..%2Fetc', undefined, 404, 'not-found'],
      ['a type this server does not offer', carer, '/fhir/R4/Observation?patient=x', undefined, 404, 'not-supported'],
      ['XML asked for', carer, '/fhir/R4/metadata', 'application/fhir+xml', 406, 'not-supported'],
      ['a search without a patient', carer, '/fhir/R4/Condition', undefined, 400, 'invalid'],
      ['a search by an unknown parameter', carer, `/fhir/R4/Condition?patient=${patientId}&colour=blue`, undefined, 400, 'invalid'],
      ["a search of a record not shared", stranger, `/fhir/R4/Condition?patient=${patientId}`, undefined, 404, 'not-found'],
      ['an entry id of another shape', carer, '/fhir/R4/Condition/not-an-id', undefined, 404, 'not-found'],
      ['a type not read by id', carer, '/fhir/R4/AuditEvent/1', undefined, 404, 'not-supported'],
      ['an unknown questionnaire', carer, '/fhir/R4/Questionnaire/phq-10', undefined, 404, 'not-found'],
      ['a Binary that is not a document id', carer, '/fhir/R4/Binary/x', undefined, 404, 'not-found'],
      ["documents not shared", stranger, `/fhir/R4/DocumentReference?patient=${patientId}`, undefined, 404, 'not-found'],
      ['questionnaires, not signed in', createCookieJar(), '/fhir/R4/Questionnaire', undefined, 401, 'login'],
    ];
    for (const [what, jar, p, accept, status, code] of cases) {
      const res = await fhirGet(server, jar, p, accept);
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.resourceType, 'OperationOutcome', what);
      assert.equal(res.body.issue?.[0]?.code, code, what);
      assert.match(await validate(res.body, `the OperationOutcome (${what})`), /valid OperationOutcome/);
    }
  });

  it('the validator itself refuses what is not FHIR', async () => {
    await assert.rejects(validate({ resourceType: 'Patient', birthDate: '15/04/1980' }, 'a bad Patient'));
    await assert.rejects(validate({ resourceType: 'Patient', nickname: 'x' }, 'an unknown field'));
  });
});

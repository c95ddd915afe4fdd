// The FHIR API's first slice against `keyhold serve --demo`, every answer
// validated by an independent FHIR library (PyPI fhir.resources, run from
// tests/fhir/validate.py): the CapabilityStatement; a Patient read by the demo
// carer, whom the patient shares with; and the OperationOutcome of each error
// (not signed in, not shared, unknown type, not JSON). No browser: plain HTTP.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';

import { startServer, repoRoot } from './lib/server.mjs';
import { createCookieJar, fetchWithJar } from './lib/idp.mjs';

const DEMO_PASSWORD = 'keyhold-demo-2026';
const CARER = 'carer@demo.keyhold.test';
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

describe('FHIR R4 API (first slice), validated by fhir.resources', () => {
  let server;
  let carer;
  let patientId;

  before(async () => {
    server = await startServer({ extraArgs: ['--demo'] });
    carer = await signIn(server, CARER);
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
    const types = ['AllergyIntolerance', 'MedicationStatement', 'Immunization', 'Appointment', 'Encounter', 'Condition'];
    let seen = 0;
    for (const type of types) {
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
